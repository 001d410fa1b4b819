//! `kv.db`: the tables, the pragmas, and how its connections are opened.
//!
//! Rows live in `kv`, one per key, keyed by `(store_id, key)`; `id` is the
//! listing order (keyset pagination) and stays put when a key is
//! overwritten, so a cursor outlives writes. `kv_stores` names each store
//! and keeps its byte and key counts, updated in the same transaction as
//! every write, so quotas, `shoal ls` and `/metrics` read one row per store.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

/// The schema version this code writes.
pub(crate) const SCHEMA: i64 = 1;

const PRAGMAS: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = FULL;
    PRAGMA busy_timeout = 5000;
    PRAGMA journal_size_limit = 67108864;
    PRAGMA foreign_keys = ON;
";

const TABLES: &str = "
    CREATE TABLE IF NOT EXISTS kv_meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS kv_stores (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        app TEXT NOT NULL,
        store TEXT NOT NULL,
        bytes INTEGER NOT NULL DEFAULT 0,
        keys INTEGER NOT NULL DEFAULT 0,
        UNIQUE (app, store)
    );
    CREATE TABLE IF NOT EXISTS kv (
        id INTEGER PRIMARY KEY,
        store_id INTEGER NOT NULL REFERENCES kv_stores(id),
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        version INTEGER NOT NULL,
        UNIQUE (store_id, key)
    );
    CREATE INDEX IF NOT EXISTS kv_page ON kv (store_id, id);
";

/// Opens the writer's connection to `path` (made private first), creating
/// the tables, and answers it with the next version to hand out.
pub(crate) fn open_writer(path: &Path) -> anyhow::Result<(Connection, u64)> {
    crate::dirs::create_private_file(path)?;
    let conn = Connection::open(path)?;
    conn.execute_batch(PRAGMAS)?;
    conn.execute_batch(TABLES)?;
    let schema: Option<i64> = conn
        .query_row("SELECT v FROM kv_meta WHERE k = 'schema'", [], |r| r.get(0))
        .optional()?;
    match schema {
        None => {
            conn.execute(
                "INSERT INTO kv_meta (k, v) VALUES ('schema', ?1), ('next_version', 1)",
                params![SCHEMA],
            )?;
        }
        Some(found) if found > SCHEMA => anyhow::bail!(
            "`{}` was written by a newer version of shoal (key-value schema {found}, this one knows {SCHEMA}); upgrade shoal",
            path.display()
        ),
        Some(_) => {}
    }
    let next: i64 = conn.query_row("SELECT v FROM kv_meta WHERE k = 'next_version'", [], |r| {
        r.get(0)
    })?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok((conn, next.max(1) as u64))
}

/// Opens a read-only connection to the database the writer made.
pub(crate) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = 1;")?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Saves the next version to hand out (inside the batch's transaction).
pub(crate) fn save_next_version(conn: &Connection, next: u64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE kv_meta SET v = ?1 WHERE k = 'next_version'")?
        .execute(params![next as i64])?;
    Ok(())
}
