//! What this node accepted or merged, app by app: table `history` of
//! `shoal.db`, one row per deploy, removal or rollback this node saved
//! (written in the same transaction as the record), the last
//! [`KEPT_PER_APP`] of each app kept. The dashboard shows it as recent
//! changes, and a rollback deploys an older row's spec again.

use rusqlite::{Connection, Transaction, params};

use super::Store;
use crate::clock::unix_now_ms;
use crate::desired::Record;
use crate::spec::{AppSpec, redacted};

/// Rows kept per app; older ones are deleted as new ones come.
pub(crate) const KEPT_PER_APP: usize = 20;

/// Why a record was saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Deploy,
    Remove,
    /// A deploy of an older version's spec, made here.
    Rollback,
}

impl Kind {
    /// A deploy or a removal, by what the record holds.
    pub(crate) fn of(record: &Record) -> Kind {
        if record.spec.is_some() {
            Kind::Deploy
        } else {
            Kind::Remove
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Deploy => "deploy",
            Kind::Remove => "remove",
            Kind::Rollback => "rollback",
        }
    }

    fn parse(text: &str) -> Kind {
        match text {
            "remove" => Kind::Remove,
            "rollback" => Kind::Rollback,
            _ => Kind::Deploy,
        }
    }
}

/// One saved change.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub name: String,
    pub version: u64,
    pub origin: String,
    /// When this node saved it, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub kind: Kind,
    /// The spec deployed (`None` for a removal, or a row this version
    /// cannot read).
    pub spec: Option<AppSpec>,
}

/// Creates the table in a database opened by this version.
pub(super) fn create(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS history (
             name TEXT NOT NULL,
             version INTEGER NOT NULL,
             origin TEXT NOT NULL,
             at_ms INTEGER NOT NULL,
             kind TEXT NOT NULL,
             spec_json TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS history_by_name ON history (name);",
    )
}

/// Adds `record` saved as `kind` now, and trims its app's rows.
pub(super) fn write(tx: &Transaction, record: &Record, kind: Kind) -> anyhow::Result<()> {
    tx.execute(
        "INSERT INTO history (name, version, origin, at_ms, kind, spec_json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            record.name,
            record.version as i64,
            record.origin,
            unix_now_ms() as i64,
            kind.as_str(),
            serde_json::to_string(&record.spec)?
        ],
    )?;
    tx.execute(
        "DELETE FROM history WHERE name = ?1 AND rowid NOT IN
             (SELECT rowid FROM history WHERE name = ?1 ORDER BY rowid DESC LIMIT ?2)",
        params![record.name, KEPT_PER_APP as i64],
    )?;
    Ok(())
}

impl Store {
    /// The newest `limit` changes of every app, newest first.
    pub(crate) fn history(&self, limit: usize) -> anyhow::Result<Vec<Change>> {
        self.changes(None, limit)
    }

    /// The changes of app `name` kept here, newest first.
    pub(crate) fn history_of(&self, name: &str) -> anyhow::Result<Vec<Change>> {
        self.changes(Some(name), KEPT_PER_APP)
    }

    fn changes(&self, name: Option<&str>, limit: usize) -> anyhow::Result<Vec<Change>> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let mut statement = db.prepare(
            "SELECT name, version, origin, at_ms, kind, spec_json FROM history
             WHERE ?1 IS NULL OR name = ?1 ORDER BY rowid DESC LIMIT ?2",
        )?;
        let rows = statement.query_map(params![name, limit as i64], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
            ))
        })?;
        let mut changes = Vec::new();
        for row in rows {
            let (name, version, origin, at_ms, kind, json) = row?;
            let spec = serde_json::from_str::<Option<AppSpec>>(&json).unwrap_or_else(|error| {
                tracing::warn!(app = %name.escape_debug(), version, problem = %redacted(&error), "a change in the history cannot be read by this version of shoal; it cannot be rolled back to");
                None
            });
            changes.push(Change {
                name,
                version: version as u64,
                origin,
                at_ms: at_ms as u64,
                kind: Kind::parse(&kind),
                spec,
            });
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, version: u64, live: bool) -> Record {
        let spec: AppSpec = serde_json::from_value(serde_json::json!({
            "name": name, "component": "a".repeat(64), "timeout_ms": 1000,
            "memory": 1048576, "max_concurrency": 1, "max_queue": 1
        }))
        .unwrap();
        Record {
            name: name.into(),
            version,
            origin: "n1".into(),
            at: 100,
            spec: live.then_some(spec),
        }
    }

    #[test]
    fn saved_records_are_kept_newest_first_and_trimmed_per_app() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for version in 1..=25 {
            assert!(store.put_record(&record("one", version, true)).unwrap());
        }
        store
            .put_record_as(&record("two", 1, true), Kind::Rollback)
            .unwrap();
        // A record the store refuses (older) leaves no row.
        assert!(!store.put_record(&record("one", 3, false)).unwrap());
        store.put_record(&record("one", 26, false)).unwrap();
        let one = store.history_of("one").unwrap();
        assert_eq!(one.len(), KEPT_PER_APP);
        assert_eq!((one[0].version, one[0].kind), (26, Kind::Remove));
        assert!(one[0].spec.is_none());
        assert_eq!((one[1].version, one[1].kind), (25, Kind::Deploy));
        assert!(one[1].spec.is_some());
        assert_eq!(one.last().unwrap().version, 7);
        let all = store.history(3).unwrap();
        let seen: Vec<_> = all.iter().map(|c| (c.name.as_str(), c.version)).collect();
        assert_eq!(seen, [("one", 26), ("two", 1), ("one", 25)]);
        assert_eq!(all[1].kind, Kind::Rollback);
    }
}
