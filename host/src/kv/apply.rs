//! One [`WriteRequest`] applied to `kv.db`, all of it or nothing: the one
//! function every write goes through. The writer thread calls it for each
//! job of a batch inside the batch's transaction; a replicated engine's
//! state machine can call it for each log entry the same way, since it
//! decides everything (quota, counters, swaps) from the request and the
//! rows alone.

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use shoal_runtime::state::{
    CounterFormat, Entry, KvError, StoreId, WriteOp, WriteRequest, Written, decode_counter,
    encode_counter,
};

/// Why a write failed: the request's fault, or the database's.
#[derive(Debug)]
pub(crate) enum Failure {
    Kv(KvError),
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Failure {
        Failure::Sql(error)
    }
}

impl From<KvError> for Failure {
    fn from(error: KvError) -> Failure {
        Failure::Kv(error)
    }
}

/// The guest-visible error for a database failure.
pub(crate) fn io_error(error: &rusqlite::Error) -> KvError {
    match error.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => KvError::Io(format!(
            "the disk holding the key-value store is full ({error}); nothing of this write was kept; free space on the host"
        )),
        _ => KvError::Io(format!(
            "the key-value store could not write ({error}); nothing of this write was kept"
        )),
    }
}

impl Failure {
    pub(crate) fn into_kv(self) -> KvError {
        match self {
            Failure::Kv(error) => error,
            Failure::Sql(error) => io_error(&error),
        }
    }
}

/// Applies `request` inside the caller's open transaction, in a savepoint
/// of its own: on success it is kept (and `next_version` moves on), on any
/// failure none of it is. If the database lost the whole transaction (it
/// may, on a full disk), `conn.is_autocommit()` says so afterwards.
pub(crate) fn apply(
    conn: &Connection,
    request: &WriteRequest,
    next_version: &mut u64,
) -> Result<Written, Failure> {
    let version = *next_version;
    let written = in_savepoint(conn, |conn| apply_op(conn, request, version))?;
    *next_version += 1;
    Ok(written)
}

/// Runs `work` in a savepoint: kept whole on success, undone whole on
/// failure. If it can be neither, the whole transaction is rolled back
/// (the caller sees `conn.is_autocommit()`), never committed half.
pub(crate) fn in_savepoint<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, Failure>,
) -> Result<T, Failure> {
    conn.execute_batch("SAVEPOINT job")?;
    let result = work(conn);
    let ended = match &result {
        Ok(_) => conn.execute_batch("RELEASE job"),
        Err(_) if conn.is_autocommit() => Ok(()),
        Err(_) => conn.execute_batch("ROLLBACK TO job; RELEASE job"),
    };
    if let Err(error) = ended {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(error.into());
    }
    result
}

fn apply_op(conn: &Connection, request: &WriteRequest, version: u64) -> Result<Written, Failure> {
    let WriteRequest { store, op, quota } = request;
    let written = match op {
        WriteOp::Set { key, value } => {
            let id = ensure_store(conn, store)?;
            put(conn, id, key, value, version)?;
            Written::Done
        }
        WriteOp::SetMany(pairs) => {
            let id = ensure_store(conn, store)?;
            for (key, value) in pairs {
                put(conn, id, key, value, version)?;
            }
            Written::Done
        }
        WriteOp::Delete { key } => {
            if let Some(id) = store_id(conn, store)? {
                remove(conn, id, key)?;
            }
            return Ok(Written::Done);
        }
        WriteOp::DeleteMany(keys) => {
            if let Some(id) = store_id(conn, store)? {
                for key in keys {
                    remove(conn, id, key)?;
                }
            }
            return Ok(Written::Done);
        }
        WriteOp::Increment { key, delta, format } => {
            increment(conn, store, key, *delta, *format, version)?
        }
        WriteOp::Swap {
            key,
            expected,
            value,
        } => {
            let id = ensure_store(conn, store)?;
            let current = entry(conn, id, key)?;
            if current.as_ref().map(|e| e.version) != *expected {
                return Ok(Written::Conflict { current });
            }
            put(conn, id, key, value, version)?;
            Written::Swapped
        }
    };
    check_quota(conn, &store.app, *quota)?;
    Ok(written)
}

fn increment(
    conn: &Connection,
    store: &StoreId,
    key: &str,
    delta: i64,
    format: CounterFormat,
    version: u64,
) -> Result<Written, Failure> {
    let id = ensure_store(conn, store)?;
    let current = match entry(conn, id, key)? {
        Some(entry) => decode_counter(&entry.value, format, key)?,
        None => 0,
    };
    let next = current.checked_add(delta).ok_or_else(|| {
        KvError::Invalid(format!(
            "incrementing `{key}` by {delta} overflows a 64-bit counter"
        ))
    })?;
    put(conn, id, key, &encode_counter(next, format), version)?;
    Ok(Written::Counter(next))
}

/// The store's row id, if it was ever written.
pub(crate) fn store_id(conn: &Connection, store: &StoreId) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM kv_stores WHERE app = ?1 AND store = ?2")?
        .query_row(params![&*store.app, &*store.store], |r| r.get(0))
        .optional()
}

fn ensure_store(conn: &Connection, store: &StoreId) -> rusqlite::Result<i64> {
    if let Some(id) = store_id(conn, store)? {
        return Ok(id);
    }
    conn.prepare_cached("INSERT INTO kv_stores (app, store) VALUES (?1, ?2)")?
        .execute(params![&*store.app, &*store.store])?;
    Ok(conn.last_insert_rowid())
}

fn entry(conn: &Connection, id: i64, key: &str) -> rusqlite::Result<Option<Entry>> {
    conn.prepare_cached("SELECT value, version FROM kv WHERE store_id = ?1 AND key = ?2")?
        .query_row(params![id, key], |r| {
            Ok(Entry {
                value: r.get(0)?,
                version: r.get::<_, i64>(1)? as u64,
            })
        })
        .optional()
}

/// Sets `key`, keeping its row (and so its place in listings) if it has one,
/// and the store's counts with it.
fn put(conn: &Connection, id: i64, key: &str, value: &[u8], version: u64) -> rusqlite::Result<()> {
    let old: Option<i64> = conn
        .prepare_cached("SELECT length(value) FROM kv WHERE store_id = ?1 AND key = ?2")?
        .query_row(params![id, key], |r| r.get(0))
        .optional()?;
    conn.prepare_cached(
        "INSERT INTO kv (store_id, key, value, version) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (store_id, key) DO UPDATE SET value = excluded.value, version = excluded.version",
    )?
    .execute(params![id, key, value, version as i64])?;
    let (bytes, keys) = match old {
        Some(len) => (value.len() as i64 - len, 0),
        None => ((key.len() + value.len()) as i64, 1),
    };
    count(conn, id, bytes, keys)
}

fn remove(conn: &Connection, id: i64, key: &str) -> rusqlite::Result<()> {
    let gone: Option<i64> = conn
        .prepare_cached("DELETE FROM kv WHERE store_id = ?1 AND key = ?2 RETURNING length(value)")?
        .query_row(params![id, key], |r| r.get(0))
        .optional()?;
    match gone {
        Some(len) => count(conn, id, -(key.len() as i64 + len), -1),
        None => Ok(()),
    }
}

fn count(conn: &Connection, id: i64, bytes: i64, keys: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE kv_stores SET bytes = bytes + ?2, keys = keys + ?3 WHERE id = ?1")?
        .execute(params![id, bytes, keys])?;
    Ok(())
}

/// Bytes (keys plus values) of every store of `app`.
pub(crate) fn app_bytes(conn: &Connection, app: &str) -> rusqlite::Result<u64> {
    let used: i64 = conn
        .prepare_cached("SELECT COALESCE(SUM(bytes), 0) FROM kv_stores WHERE app = ?1")?
        .query_row(params![app], |r| r.get(0))?;
    Ok(used.max(0) as u64)
}

fn check_quota(conn: &Connection, app: &str, quota: u64) -> Result<(), Failure> {
    let used = app_bytes(conn, app)?;
    if used > quota {
        return Err(KvError::Limit(format!(
            "this write would bring the app's key-value data to {used} bytes, over its quota of {quota} bytes; delete keys or raise `--kv-quota`"
        ))
        .into());
    }
    Ok(())
}

/// What [`purge`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Purged {
    pub stores: u64,
    pub keys: u64,
    pub bytes: u64,
}

/// Deletes every store of `app` (for `shoal rm --purge`).
pub(crate) fn purge(conn: &Connection, app: &str) -> rusqlite::Result<Purged> {
    let (stores, keys, bytes): (i64, i64, i64) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(keys), 0), COALESCE(SUM(bytes), 0) FROM kv_stores WHERE app = ?1",
        params![app],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    conn.execute(
        "DELETE FROM kv WHERE store_id IN (SELECT id FROM kv_stores WHERE app = ?1)",
        params![app],
    )?;
    conn.execute("DELETE FROM kv_stores WHERE app = ?1", params![app])?;
    Ok(Purged {
        stores: stores as u64,
        keys: keys as u64,
        bytes: bytes as u64,
    })
}
