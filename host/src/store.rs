//! Embedded state: a SQLite database (`shoal.db`) of deployed apps, and
//! component bytes stored content-addressed by sha256 under `components/`.
//!
//! Durability order: bytes are written to a temporary file, synced and
//! renamed (and the directory synced) before the database may point at
//! them; a deployment is acknowledged only after its transaction commits
//! with `synchronous=FULL`. So a kill at any moment leaves either the old
//! state or the new one, and unreferenced bytes are swept at start.
//! All calls block: run them on a blocking thread.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

use crate::desired::Record;
use crate::spec::AppSpec;

pub(crate) struct Store {
    db: Mutex<Connection>,
    components: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`.
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Store> {
        let components = dir.join("components");
        std::fs::create_dir_all(&components).with_context(|| {
            format!(
                "cannot create the data directory `{}`; choose another with `--data-dir`",
                dir.display()
            )
        })?;
        let path = dir.join("shoal.db");
        let db = Connection::open(&path)
            .with_context(|| format!("cannot open the database `{}`", path.display()))?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS apps (
                 name TEXT PRIMARY KEY,
                 version INTEGER NOT NULL,
                 spec TEXT NOT NULL,
                 deployed_at INTEGER NOT NULL
             );",
        )
        .with_context(|| format!("cannot initialise the database `{}`", path.display()))?;
        // Stores made before the mesh have no `origin`: their deploys count
        // as made by no node, so any node's newer record supersedes them.
        let has_origin = db
            .prepare("SELECT 1 FROM pragma_table_info('apps') WHERE name = 'origin'")?
            .exists([])?;
        if !has_origin {
            db.execute_batch("ALTER TABLE apps ADD COLUMN origin TEXT NOT NULL DEFAULT ''")?;
        }
        Ok(Store {
            db: Mutex::new(db),
            components,
        })
    }

    fn component_path(&self, sha256: &str) -> PathBuf {
        self.components.join(format!("{sha256}.wasm"))
    }

    pub(crate) fn has_component(&self, sha256: &str) -> bool {
        self.component_path(sha256).is_file()
    }

    pub(crate) fn read_component(&self, sha256: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.component_path(sha256);
        std::fs::read(&path).with_context(|| format!("cannot read component `{}`", path.display()))
    }

    /// Stores component bytes under their sha256, durably.
    pub(crate) fn put_component(&self, sha256: &str, bytes: &[u8]) -> anyhow::Result<()> {
        if self.has_component(sha256) {
            return Ok(());
        }
        write_durably(&self.component_path(sha256), bytes)
    }

    /// Saves `record` unless the store already holds one for the same name
    /// that supersedes or equals it; returns whether it was saved. The check
    /// and the write are one transaction.
    pub(crate) fn put_record(&self, record: &Record) -> anyhow::Result<bool> {
        Ok(self.put_records(std::slice::from_ref(record))? == 1)
    }

    /// [`Store::put_record`] for many, in one transaction (one sync);
    /// returns how many were saved.
    pub(crate) fn put_records(&self, records: &[Record]) -> anyhow::Result<usize> {
        let mut db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let tx = db.transaction()?;
        let mut saved = 0;
        for record in records {
            if put_in(&tx, record)? {
                saved += 1;
            }
        }
        tx.commit()?;
        Ok(saved)
    }

    /// Every record, removals (tombstones) included, by name.
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
            let spec: Option<AppSpec> = serde_json::from_str(&json)
                .with_context(|| format!("stored spec of `{name}` is unreadable: {json}"))?;
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

    /// Forgets removals older than `before` (seconds since the epoch);
    /// returns how many.
    pub(crate) fn collect_tombstones(&self, before: u64) -> anyhow::Result<usize> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        Ok(db.execute(
            "DELETE FROM apps WHERE spec = 'null' AND deployed_at < ?1",
            params![before as i64],
        )?)
    }

    /// Deletes component files no app points at, and leftover temporary
    /// files of uploads that were never acknowledged. Call at start only.
    pub(crate) fn sweep(&self) -> anyhow::Result<usize> {
        let keep: HashSet<String> = self
            .records()?
            .into_iter()
            .filter_map(|r| r.spec)
            .map(|spec| format!("{}.wasm", spec.component))
            .collect();
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.components)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
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

/// Writes `bytes` to `path` so that a crash leaves the old contents or
/// the new, never a mix: temporary file, sync, rename, sync the directory.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::AppSpec;

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
        let kept = "a".repeat(64);
        let orphan = "b".repeat(64);
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_component(&kept, b"kept").unwrap();
            store.put_component(&orphan, b"orphan").unwrap();
            assert!(
                store
                    .put_record(&record("one", 1, "a", Some(spec("one", &kept))))
                    .unwrap()
            );
            assert!(
                store
                    .put_record(&record("one", 2, "a", Some(spec("one", &kept))))
                    .unwrap()
            );
            // Older or equal stamps never replace what is there.
            assert!(!store.put_record(&record("one", 1, "z", None)).unwrap());
            assert!(!store.put_record(&record("one", 2, "a", None)).unwrap());
            assert!(
                store
                    .put_record(&record("two", 1, "a", Some(spec("two", &orphan))))
                    .unwrap()
            );
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
        assert_eq!(store.collect_tombstones(101).unwrap(), 1);
        assert_eq!(store.records().unwrap().len(), 1);
    }
}
