//! What this node accepted or merged, app by app: table `history` of
//! `shoal.db`, one row per deploy, removal or rollback this node saved
//! (written in the same transaction as the record), the last
//! [`KEPT_PER_APP`] of each app kept. The dashboard shows it as recent
//! changes, and a rollback deploys an older row's spec again.

use rusqlite::{Connection, Transaction, params};

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

/// The newest `limit` changes, of app `name` or (`None`) of every app,
/// newest first.
pub(super) fn read(
    db: &Connection,
    name: Option<&str>,
    limit: usize,
) -> anyhow::Result<Vec<Change>> {
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
