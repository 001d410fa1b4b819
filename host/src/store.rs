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
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

use crate::spec::AppSpec;

/// One stored deployment.
#[derive(Debug, Clone)]
pub(crate) struct StoredApp {
    pub spec: AppSpec,
    pub version: u64,
    /// Seconds since the Unix epoch.
    pub deployed_at: u64,
}

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
        let mut tmp = tempfile::NamedTempFile::new_in(&self.components)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.component_path(sha256))?;
        File::open(&self.components)?.sync_all()?;
        Ok(())
    }

    /// Records a deployment of `spec` as `version`.
    pub(crate) fn put_app(&self, spec: &AppSpec, version: u64) -> anyhow::Result<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let json = serde_json::to_string(spec)?;
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        db.execute(
            "INSERT INTO apps (name, version, spec, deployed_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET version = ?2, spec = ?3, deployed_at = ?4",
            params![spec.name, version as i64, json, now as i64],
        )?;
        Ok(now)
    }

    /// Removes an app; returns whether it existed.
    pub(crate) fn remove_app(&self, name: &str) -> anyhow::Result<bool> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        Ok(db.execute("DELETE FROM apps WHERE name = ?1", params![name])? > 0)
    }

    /// The highest version `name` ever had while it existed, if it exists.
    pub(crate) fn version_of(&self, name: &str) -> anyhow::Result<Option<u64>> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let version: Option<i64> = db
            .query_row(
                "SELECT version FROM apps WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
            .optional()?;
        Ok(version.map(|v| v as u64))
    }

    pub(crate) fn apps(&self) -> anyhow::Result<Vec<StoredApp>> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let mut statement =
            db.prepare("SELECT spec, version, deployed_at FROM apps ORDER BY name")?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })?;
        let mut apps = Vec::new();
        for row in rows {
            let (json, version, deployed_at) = row?;
            let spec = serde_json::from_str(&json)
                .with_context(|| format!("stored spec is unreadable: {json}"))?;
            apps.push(StoredApp {
                spec,
                version: version as u64,
                deployed_at: deployed_at as u64,
            });
        }
        Ok(apps)
    }

    /// Deletes component files no app points at, and leftover temporary
    /// files of uploads that were never acknowledged. Call at start only.
    pub(crate) fn sweep(&self) -> anyhow::Result<usize> {
        let keep: HashSet<String> = self
            .apps()?
            .into_iter()
            .map(|a| format!("{}.wasm", a.spec.component))
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

    #[test]
    fn apps_and_components_survive_reopening_and_sweeping() {
        let dir = tempfile::tempdir().unwrap();
        let kept = "a".repeat(64);
        let orphan = "b".repeat(64);
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_component(&kept, b"kept").unwrap();
            store.put_component(&orphan, b"orphan").unwrap();
            store.put_app(&spec("one", &kept), 1).unwrap();
            store.put_app(&spec("one", &kept), 2).unwrap();
            store.put_app(&spec("two", &kept), 1).unwrap();
            assert!(store.remove_app("two").unwrap());
            assert!(!store.remove_app("two").unwrap());
        }
        let store = Store::open(dir.path()).unwrap();
        let apps = store.apps().unwrap();
        assert_eq!(apps.len(), 1);
        assert_eq!((apps[0].spec.name.as_str(), apps[0].version), ("one", 2));
        assert_eq!(store.sweep().unwrap(), 1);
        assert!(store.has_component(&kept) && !store.has_component(&orphan));
        assert_eq!(store.read_component(&kept).unwrap(), b"kept");
    }
}
