//! Embedded state: a SQLite database (`shoal.db`) of deployed apps and
//! the changes this node saved ([`history`]), and component bytes stored
//! content-addressed by sha256 ([`components`]).
//!
//! Durability order: bytes are written to a temporary file, synced and
//! renamed (and the directory synced) before the database may point at
//! them; a deployment is acknowledged only after its transaction commits
//! with `synchronous=FULL`. So a kill at any moment leaves either the old
//! state or the new one, and unreferenced bytes are swept at start.
//!
//! The data dir is the owner's only (0700) and so is the database (0600):
//! it holds env values. A row this version cannot read (written by a newer
//! one, or damaged) is skipped with its name and the reason, never its
//! spec; fields and columns a newer version added are kept as they are.
//! All calls block: run them on a blocking thread.

pub(crate) mod components;
mod durable;
pub(crate) mod history;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

use self::components::Components;
pub(crate) use self::components::Corrupt;
pub(crate) use self::durable::write_durably;
use self::history::{Change, Kind};
use crate::desired::Record;
use crate::desired::pull::Changes;
use crate::spec::{AppSpec, redacted};

pub(crate) struct Store {
    db: Mutex<Connection>,
    components: Components,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`.
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Store> {
        crate::dirs::create_private_dir(dir).with_context(|| {
            format!(
                "cannot create the data directory `{}`; choose another with `--data-dir`",
                dir.display()
            )
        })?;
        let components = Components::open(dir)?;
        let db = open_private(&dir.join("shoal.db"))?;
        Ok(Store {
            db: Mutex::new(db),
            components,
        })
    }

    pub(crate) fn has_component(&self, sha256: &str) -> bool {
        self.components.has(sha256)
    }

    /// The bytes of `sha256`, checked against it; a file that no longer
    /// matches is moved aside and the error is a [`Corrupt`].
    pub(crate) fn read_component(&self, sha256: &str) -> anyhow::Result<Vec<u8>> {
        self.components.read(sha256)
    }

    /// Stores component bytes under their sha256, durably.
    pub(crate) fn put_component(&self, sha256: &str, bytes: &[u8]) -> anyhow::Result<()> {
        self.components.put(sha256, bytes)
    }

    /// Saves `record` unless the store already holds one for the same name
    /// that supersedes or equals it; returns whether it was saved. The check
    /// and the write are one transaction.
    #[cfg(test)]
    pub(crate) fn put_record(&self, record: &Record) -> anyhow::Result<bool> {
        self.put_record_as(record, Kind::of(record))
    }

    /// [`Store::put_record`], kept in the history as `kind`.
    pub(crate) fn put_record_as(&self, record: &Record, kind: Kind) -> anyhow::Result<bool> {
        let mut db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let tx = db.transaction()?;
        let saved = put_in(&tx, record)?;
        if saved {
            history::write(&tx, record, kind)?;
        }
        tx.commit()?;
        Ok(saved)
    }

    /// Saves what a pull changed, in one transaction (one sync): the new
    /// records (unless superseded meanwhile), the forgotten ones gone (if
    /// unchanged), and the horizon. Returns how many rows changed.
    pub(crate) fn apply(&self, changes: &Changes) -> anyhow::Result<usize> {
        let mut db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let tx = db.transaction()?;
        let mut saved = 0;
        for record in &changes.news {
            if put_in(&tx, record)? {
                history::write(&tx, record, Kind::of(record))?;
                saved += 1;
            }
        }
        for record in &changes.forget {
            saved += tx.execute(
                "DELETE FROM apps WHERE name = ?1 AND version = ?2 AND origin = ?3",
                params![record.name, record.version as i64, record.origin],
            )?;
        }
        raise_horizon(&tx, changes.horizon)?;
        tx.commit()?;
        Ok(saved)
    }

    /// Every record this version can read, removals (tombstones) included,
    /// by name. Rows it cannot read are logged (name and reason) and left
    /// in place.
    pub(crate) fn records(&self) -> anyhow::Result<Vec<Record>> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let mut statement =
            db.prepare("SELECT name, version, origin, spec, deployed_at FROM apps ORDER BY name")?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })?;
        let mut records = Vec::new();
        for row in rows {
            let (name, version, origin, json, at) = row?;
            let spec: Option<AppSpec> = match serde_json::from_str(&json) {
                Ok(spec) => spec,
                Err(error) => {
                    tracing::error!(app = %name.escape_debug(), version, problem = %redacted(&error), "a stored app cannot be read by this version of shoal (written by a newer one, or damaged); it is not served here until it is deployed again");
                    continue;
                }
            };
            records.push(Record {
                name,
                version: version as u64,
                origin,
                at: at as u64,
                spec,
            });
        }
        Ok(records)
    }

    /// The newest `limit` changes saved here, of every app, newest first.
    pub(crate) fn history(&self, limit: usize) -> anyhow::Result<Vec<Change>> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        history::read(&db, None, limit)
    }

    /// The changes of app `name` kept here, newest first.
    pub(crate) fn history_of(&self, name: &str) -> anyhow::Result<Vec<Change>> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        history::read(&db, Some(name), history::KEPT_PER_APP)
    }

    /// Removals made before this time may have been forgotten here.
    pub(crate) fn horizon(&self) -> anyhow::Result<u64> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let value: Option<i64> = db
            .query_row("SELECT value FROM meta WHERE key = 'horizon'", [], |row| {
                row.get(0)
            })
            .optional()?;
        Ok(value.map_or(0, |v| v as u64))
    }

    /// Forgets removals older than `before` (seconds since the epoch) and
    /// moves the horizon up to the newest of them; returns how many.
    pub(crate) fn collect_tombstones(&self, before: u64) -> anyhow::Result<usize> {
        let mut db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let tx = db.transaction()?;
        let newest: Option<i64> = tx.query_row(
            "SELECT MAX(deployed_at) FROM apps WHERE spec = 'null' AND deployed_at < ?1",
            params![before as i64],
            |row| row.get(0),
        )?;
        let collected = tx.execute(
            "DELETE FROM apps WHERE spec = 'null' AND deployed_at < ?1",
            params![before as i64],
        )?;
        if let Some(newest) = newest {
            raise_horizon(&tx, newest as u64)?;
        }
        tx.commit()?;
        Ok(collected)
    }

    /// Deletes component files no stored app points at (whether this
    /// version can read the rest of its spec or not), and leftovers of
    /// uploads never acknowledged. Call at start only.
    pub(crate) fn sweep(&self) -> anyhow::Result<usize> {
        let keep: HashSet<String> = {
            let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
            let mut statement = db.prepare("SELECT spec FROM apps")?;
            let specs = statement.query_map([], |row| row.get::<_, String>(0))?;
            let mut keep = HashSet::new();
            for spec in specs {
                let spec: serde_json::Value = serde_json::from_str(&spec?).unwrap_or_default();
                if let Some(component) = spec.get("component").and_then(|c| c.as_str()) {
                    keep.insert(component.to_string());
                }
            }
            keep
        };
        self.components.sweep(&keep)
    }
}

/// Opens the database at `path`, made private first (SQLite gives its
/// `-wal` and `-shm` files the database's mode), with its tables.
fn open_private(path: &Path) -> anyhow::Result<Connection> {
    let shown = path.display();
    crate::dirs::create_private_file(path)
        .with_context(|| format!("cannot make the database `{shown}` private to this user"))?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = Path::new(&side);
        if side.exists() {
            crate::dirs::create_private_file(side).with_context(|| {
                format!("cannot make `{}` private to this user", side.display())
            })?;
        }
    }
    let db =
        Connection::open(path).with_context(|| format!("cannot open the database `{shown}`"))?;
    db.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA busy_timeout = 5000;
         CREATE TABLE IF NOT EXISTS apps (
             name TEXT PRIMARY KEY,
             version INTEGER NOT NULL,
             spec TEXT NOT NULL,
             deployed_at INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS meta (
             key TEXT PRIMARY KEY,
             value INTEGER NOT NULL
         );",
    )
    .with_context(|| format!("cannot initialise the database `{shown}`"))?;
    // Stores made before the mesh have no `origin`: their deploys count
    // as made by no node, so any node's newer record supersedes them.
    let has_origin = db
        .prepare("SELECT 1 FROM pragma_table_info('apps') WHERE name = 'origin'")?
        .exists([])?;
    if !has_origin {
        db.execute_batch("ALTER TABLE apps ADD COLUMN origin TEXT NOT NULL DEFAULT ''")?;
    }
    history::create(&db).with_context(|| format!("cannot add the history to `{shown}`"))?;
    Ok(db)
}

/// Sets the stored horizon to `horizon` if that is later.
fn raise_horizon(tx: &rusqlite::Transaction, horizon: u64) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('horizon', ?1)
         ON CONFLICT(key) DO UPDATE SET value = MAX(value, ?1)",
        params![horizon as i64],
    )?;
    Ok(())
}

/// Saves `record` in `tx` unless what is there supersedes or equals it.
fn put_in(tx: &rusqlite::Transaction, record: &Record) -> anyhow::Result<bool> {
    let current: Option<(i64, String)> = tx
        .query_row(
            "SELECT version, origin FROM apps WHERE name = ?1",
            params![record.name],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    if let Some((version, origin)) = current
        && (version as u64, origin.as_str()) >= record.stamp()
    {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO apps (name, version, origin, spec, deployed_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(name) DO UPDATE SET version = ?2, origin = ?3, spec = ?4, deployed_at = ?5",
        params![
            record.name,
            record.version as i64,
            record.origin,
            serde_json::to_string(&record.spec)?,
            record.at as i64
        ],
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::pull::Changes;

    fn spec(name: &str, component: &str) -> AppSpec {
        serde_json::from_value(serde_json::json!({
            "name": name, "component": component, "timeout_ms": 1000,
            "memory": 1048576, "max_concurrency": 1, "max_queue": 1
        }))
        .unwrap()
    }

    fn record(name: &str, version: u64, origin: &str, spec: Option<AppSpec>) -> Record {
        Record {
            name: name.into(),
            version,
            origin: origin.into(),
            at: 100,
            spec,
        }
    }

    #[test]
    fn records_and_components_survive_reopening_and_sweeping() {
        let dir = tempfile::tempdir().unwrap();
        let kept = shoal_runtime::sha256_hex(b"kept");
        let orphan = shoal_runtime::sha256_hex(b"orphan");
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_component(&kept, b"kept").unwrap();
            store.put_component(&orphan, b"orphan").unwrap();
            let one = |v| record("one", v, "a", Some(spec("one", &kept)));
            assert!(store.put_record(&one(1)).unwrap());
            assert!(store.put_record(&one(2)).unwrap());
            // Older or equal stamps never replace what is there.
            assert!(!store.put_record(&record("one", 1, "z", None)).unwrap());
            assert!(!store.put_record(&record("one", 2, "a", None)).unwrap());
            let two = record("two", 1, "a", Some(spec("two", &orphan)));
            assert!(store.put_record(&two).unwrap());
            // Same version, higher node name: wins.
            assert!(store.put_record(&record("two", 1, "b", None)).unwrap());
        }
        let store = Store::open(dir.path()).unwrap();
        let records = store.records().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].name.as_str(), records[0].version), ("one", 2));
        assert!(records[1].spec.is_none());
        assert_eq!(store.sweep().unwrap(), 1);
        assert!(store.has_component(&kept) && !store.has_component(&orphan));
        assert_eq!(store.read_component(&kept).unwrap(), b"kept");
        assert_eq!(store.horizon().unwrap(), 0);
        assert_eq!(store.collect_tombstones(101).unwrap(), 1);
        assert_eq!(store.records().unwrap().len(), 1);
        assert_eq!(store.horizon().unwrap(), 100);
    }

    #[test]
    fn the_database_is_private_and_rows_of_newer_versions_are_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = Store::open(&data).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("shoal.db")), 0o600);
        let sha = "c".repeat(64);
        store
            .put_record(&record("new", 1, "a", Some(spec("new", &sha))))
            .unwrap();
        store
            .put_record(&record("bad", 1, "a", Some(spec("bad", &sha))))
            .unwrap();
        {
            let db = store.db.lock().unwrap();
            db.execute_batch(
                "UPDATE apps SET spec = json_set(spec, '$.later', 1) WHERE name = 'new';
                 UPDATE apps SET spec = json_set(spec, '$.memory', 'secret') WHERE name = 'bad';",
            )
            .unwrap();
        }
        let records = store.records().unwrap();
        assert_eq!(records.len(), 1);
        let spec = records[0].spec.as_ref().unwrap();
        assert_eq!(spec.unknown_field(), Some("later"));
        // Saving it again keeps the field it did not know.
        let changes = Changes {
            news: vec![Record {
                version: 2,
                ..records[0].clone()
            }],
            horizon: 50,
            ..Changes::default()
        };
        assert_eq!(store.apply(&changes).unwrap(), 1);
        let db = store.db.lock().unwrap();
        let json: String = db
            .query_row("SELECT spec FROM apps WHERE name = 'new'", [], |r| r.get(0))
            .unwrap();
        assert!(json.contains("\"later\":1"), "{json}");
        drop(db);
        assert_eq!(store.horizon().unwrap(), 50);
    }

    #[test]
    fn saved_records_are_kept_in_the_history_newest_first_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let sha = "a".repeat(64);
        let one = |v, live: bool| record("one", v, "n1", live.then(|| spec("one", &sha)));
        for version in 1..=25 {
            assert!(store.put_record(&one(version, true)).unwrap());
        }
        let two = record("two", 1, "n2", Some(spec("two", &sha)));
        store.put_record_as(&two, Kind::Rollback).unwrap();
        // A record the store refuses (older) leaves no row.
        assert!(!store.put_record(&one(3, false)).unwrap());
        let changes = Changes {
            news: vec![one(26, false)],
            ..Changes::default()
        };
        assert_eq!(store.apply(&changes).unwrap(), 1);
        let kept = store.history_of("one").unwrap();
        assert_eq!(kept.len(), history::KEPT_PER_APP);
        assert_eq!((kept[0].version, kept[0].kind), (26, Kind::Remove));
        assert!(kept[0].spec.is_none());
        assert_eq!((kept[1].version, kept[1].kind), (25, Kind::Deploy));
        assert_eq!(kept[1].spec.as_ref().unwrap().name, "one");
        assert_eq!(kept.last().unwrap().version, 7);
        let all = store.history(3).unwrap();
        let seen: Vec<_> = all.iter().map(|c| (c.name.as_str(), c.version)).collect();
        assert_eq!(seen, [("one", 26), ("two", 1), ("one", 25)]);
        assert_eq!(
            (all[1].kind, all[1].origin.as_str()),
            (Kind::Rollback, "n2")
        );
        // It survives reopening.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.history(100).unwrap().len(), 21);
    }
}
