//! The key-value engine of one host: [`SqliteKv`], SQLite in
//! `<data-dir>/kv.db`, behind the runtime's [`KvBackend`] trait.
//!
//! Writes go to one writer thread ([`writer`]) that group-commits them;
//! reads use a few read-only connections ([`readers`]). Every mutation is
//! one [`WriteRequest`] applied by [`apply::apply`], so a replicated engine
//! can reuse it as its state machine. Besides the trait it answers what
//! operators ask: stores and usage per app, and purging an app's data.

pub(crate) mod apply;
mod readers;
mod schema;
#[cfg(test)]
mod tests;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::Context;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use shoal_runtime::state::{
    Cursor, Entry, KeyPage, KvBackend, KvError, StoreId, WriteRequest, Written,
};
use tokio::sync::{mpsc, oneshot};

pub(crate) use self::apply::Purged;
use self::readers::Readers;
use self::writer::{Done, Job, Work, Writer};
use crate::metrics::KvMetrics;

/// Jobs waiting for the writer before senders wait (the backpressure).
const QUEUE: usize = 8192;
/// A cursor's high bits name its store, the low ones the last row listed.
const STORE_SHIFT: u32 = 40;

/// SQLite on one host: durable once a write is acknowledged.
pub(crate) struct SqliteKv {
    jobs: Option<mpsc::Sender<Job>>,
    readers: Arc<Readers>,
    path: PathBuf,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SqliteKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteKv")
            .field("path", &self.path)
            .finish()
    }
}

/// One store as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoreUsage {
    pub store: String,
    pub keys: u64,
    pub bytes: u64,
}

/// One app's data, over all its stores.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct AppUsage {
    pub app: String,
    pub stores: u64,
    pub keys: u64,
    pub bytes: u64,
}

impl SqliteKv {
    /// Opens (creating if needed) the engine at `path`, e.g.
    /// `<data-dir>/kv.db`, and starts its writer thread.
    pub(crate) fn open(path: &Path, metrics: KvMetrics) -> anyhow::Result<SqliteKv> {
        SqliteKv::open_with(path, metrics, |_| Ok(()))
    }

    fn open_with(
        path: &Path,
        metrics: KvMetrics,
        setup: impl FnOnce(&Connection) -> rusqlite::Result<()>,
    ) -> anyhow::Result<SqliteKv> {
        let fail = || {
            format!(
                "cannot open the key-value store `{}`; check the directory's permissions and free space",
                path.display()
            )
        };
        let (conn, next_version) = schema::open_writer(path).with_context(fail)?;
        setup(&conn).with_context(fail)?;
        let readers = Readers::open(path).with_context(fail)?;
        let (jobs, receiver) = mpsc::channel(QUEUE);
        let writer = Writer {
            conn,
            next_version,
            metrics,
        };
        let handle = std::thread::Builder::new()
            .name("shoal-kv-writer".into())
            .spawn(move || writer.run(receiver))
            .context("cannot start the key-value writer thread")?;
        Ok(SqliteKv {
            jobs: Some(jobs),
            readers,
            path: path.to_path_buf(),
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Where the data lives.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    async fn submit(&self, work: Work) -> Result<Done, KvError> {
        let gone = || KvError::Unavailable("the key-value store is shutting down".into());
        let jobs = self.jobs.as_ref().ok_or_else(gone)?;
        let (reply, answer) = oneshot::channel();
        jobs.send(Job { work, reply }).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Every store of `app`, by name (blocks briefly on a read connection).
    pub(crate) fn stores(&self, app: &str) -> Result<Vec<StoreUsage>, KvError> {
        self.readers
            .wait(|conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT store, keys, bytes FROM kv_stores WHERE app = ?1 ORDER BY store",
                )?;
                let rows = statement.query_map(params![app], |r| {
                    Ok(StoreUsage {
                        store: r.get(0)?,
                        keys: r.get::<_, i64>(1)?.max(0) as u64,
                        bytes: r.get::<_, i64>(2)?.max(0) as u64,
                    })
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| readers::read_error(&e))
    }

    /// The data of every app that has any, by app (blocks briefly).
    pub(crate) fn usage_by_app(&self) -> Result<Vec<AppUsage>, KvError> {
        self.readers
            .wait(|conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT app, COUNT(*), SUM(keys), SUM(bytes) FROM kv_stores GROUP BY app ORDER BY app",
                )?;
                let rows = statement.query_map([], |r| {
                    Ok(AppUsage {
                        app: r.get(0)?,
                        stores: r.get::<_, i64>(1)?.max(0) as u64,
                        keys: r.get::<_, i64>(2)?.max(0) as u64,
                        bytes: r.get::<_, i64>(3)?.max(0) as u64,
                    })
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| readers::read_error(&e))
    }

    /// The data of `app` (zeros if it has none).
    pub(crate) fn usage(&self, app: &str) -> AppUsage {
        let stores = self.stores(app).unwrap_or_default();
        AppUsage {
            app: app.to_string(),
            stores: stores.len() as u64,
            keys: stores.iter().map(|s| s.keys).sum(),
            bytes: stores.iter().map(|s| s.bytes).sum(),
        }
    }

    /// Deletes every store of `app`, durably, and says what went.
    pub(crate) async fn purge(&self, app: &str) -> Result<Purged, KvError> {
        match self.submit(Work::Purge(app.to_string())).await? {
            Done::Purged(purged) => Ok(purged),
            Done::Written(_) => unreachable!("a purge answers what it purged"),
        }
    }
}

impl Drop for SqliteKv {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what it holds and stop.
        self.jobs.take();
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("the key-value writer thread panicked");
        }
    }
}

/// A page of `store` after `after` (keyset: rows are listed by id).
fn page(
    conn: &Connection,
    store: &StoreId,
    after: Option<Cursor>,
    limit: usize,
) -> Result<KeyPage, KvError> {
    let sql = |e: rusqlite::Error| readers::read_error(&e);
    let id = apply::store_id(conn, store).map_err(sql)?;
    let start = match (id, after) {
        (_, None) => 0,
        (Some(id), Some(cursor)) if cursor >> STORE_SHIFT == id as u64 => {
            (cursor & ((1 << STORE_SHIFT) - 1)) as i64
        }
        (_, Some(_)) => {
            return Err(KvError::Invalid(format!(
                "this cursor belongs to another store than `{}`; start the listing again without one",
                store.store
            )));
        }
    };
    let Some(id) = id else {
        return Ok(KeyPage::default());
    };
    let mut statement = conn
        .prepare_cached(
            "SELECT id, key FROM kv WHERE store_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )
        .map_err(sql)?;
    let rows: Vec<(i64, String)> = statement
        .query_map(params![id, start, limit as i64 + 1], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .and_then(|rows| rows.collect())
        .map_err(sql)?;
    let more = rows.len() > limit;
    let rows = &rows[..rows.len().min(limit)];
    let next = match (more, rows.last()) {
        (true, Some((last, _))) => Some(((id as u64) << STORE_SHIFT) | *last as u64),
        _ => None,
    };
    Ok(KeyPage {
        keys: rows.iter().map(|(_, k)| k.clone()).collect(),
        next,
    })
}

#[async_trait::async_trait]
impl KvBackend for SqliteKv {
    async fn get(&self, store: &StoreId, key: &str) -> Result<Option<Entry>, KvError> {
        let (app, name, key) = (store.app.clone(), store.store.clone(), key.to_string());
        self.readers
            .run(move |conn| readers::get(conn, &app, &name, &key))
            .await
    }

    async fn exists(&self, store: &StoreId, key: &str) -> Result<bool, KvError> {
        let (app, name, key) = (store.app.clone(), store.store.clone(), key.to_string());
        self.readers
            .run(move |conn| readers::exists(conn, &app, &name, &key))
            .await
    }

    async fn get_many(
        &self,
        store: &StoreId,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        let (app, name, keys) = (store.app.clone(), store.store.clone(), keys.to_vec());
        let read = self
            .readers
            .blocking(move |conn| {
                keys.iter()
                    .map(|key| readers::get(conn, &app, &name, key).map(|e| e.map(|e| e.value)))
                    .collect()
            })
            .await?;
        read.map_err(|e| readers::read_error(&e))
    }

    async fn list_keys(
        &self,
        store: &StoreId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<KeyPage, KvError> {
        let store = store.clone();
        self.readers
            .blocking(move |conn| Ok(page(conn, &store, after, limit)))
            .await?
            .map_err(|e| readers::read_error(&e))?
    }

    async fn write(&self, request: WriteRequest) -> Result<Written, KvError> {
        match self.submit(Work::Write(request)).await? {
            Done::Written(written) => Ok(written),
            Done::Purged(_) => unreachable!("a write answers what it wrote"),
        }
    }
}
