//! Read connections to `kv.db`. In WAL mode a read that starts after a
//! COMMIT returned sees it, and writes are acknowledged only after COMMIT,
//! so reads see every acknowledged write. Small reads (`get`, `exists`) run
//! inline on the caller's thread when a connection is free; listings and
//! batches go to a blocking thread.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use shoal_runtime::state::{Entry, KvError};

use super::schema;

/// How many read connections there are.
const READERS: usize = 4;

#[derive(Debug)]
pub(crate) struct Readers {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    pub(crate) fn open(path: &Path) -> anyhow::Result<Arc<Readers>> {
        let conns = (0..READERS)
            .map(|_| schema::open_reader(path).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Arc::new(Readers {
            conns,
            next: AtomicUsize::new(0),
        }))
    }

    /// Runs `read` on a connection, waiting for one (blocks).
    pub(crate) fn wait<T>(&self, read: impl FnOnce(&Connection) -> T) -> T {
        if let Some(conn) = self.free() {
            return read(&conn);
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        let conn = self.conns[i].lock().unwrap_or_else(|e| e.into_inner());
        read(&conn)
    }

    fn free(&self) -> Option<std::sync::MutexGuard<'_, Connection>> {
        self.conns.iter().find_map(|conn| conn.try_lock().ok())
    }

    /// Runs `read` now if a connection is free; else gives it back.
    fn inline<T, F: FnOnce(&Connection) -> T>(&self, read: F) -> Result<T, F> {
        match self.free() {
            Some(conn) => Ok(read(&conn)),
            None => Err(read),
        }
    }

    /// Runs `read` inline if a connection is free, else on a blocking thread.
    pub(crate) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, KvError> {
        let read = match self.inline(read) {
            Ok(done) => done,
            Err(read) => self.blocking(read).await?,
        };
        read.map_err(|e| read_error(&e))
    }

    /// Runs `read` on a blocking thread.
    pub(crate) async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<rusqlite::Result<T>, KvError> {
        let readers = self.clone();
        tokio::task::spawn_blocking(move || readers.wait(read))
            .await
            .map_err(|e| KvError::Unavailable(format!("a key-value read was cut short: {e}")))
    }
}

pub(crate) fn read_error(error: &rusqlite::Error) -> KvError {
    KvError::Io(format!("the key-value store could not be read: {error}"))
}

/// The entry at `key` of store (`app`, `store`).
pub(crate) fn get(
    conn: &Connection,
    app: &str,
    store: &str,
    key: &str,
) -> rusqlite::Result<Option<Entry>> {
    conn.prepare_cached(
        "SELECT kv.value, kv.version FROM kv JOIN kv_stores s ON s.id = kv.store_id
         WHERE s.app = ?1 AND s.store = ?2 AND kv.key = ?3",
    )?
    .query_row(params![app, store, key], |r| {
        Ok(Entry {
            value: r.get(0)?,
            version: r.get::<_, i64>(1)? as u64,
        })
    })
    .optional()
}

/// Whether `key` of store (`app`, `store`) holds a value.
pub(crate) fn exists(
    conn: &Connection,
    app: &str,
    store: &str,
    key: &str,
) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT 1 FROM kv JOIN kv_stores s ON s.id = kv.store_id
         WHERE s.app = ?1 AND s.store = ?2 AND kv.key = ?3",
    )?
    .query_row(params![app, store, key], |_| Ok(()))
    .optional()
    .map(|found| found.is_some())
}
