//! The engine contract: the types every key-value engine speaks and the
//! [`KvBackend`] trait.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A position in a store's key listing. Opaque to the runtime: the engine
/// ties it to one store and refuses it for any other.
pub type Cursor = u64;

/// One store of one app. The guest names only the store; the app comes
/// from the grant, so one app can never address another's rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreId {
    /// The app that owns the store.
    pub app: Arc<str>,
    /// The store's name (`default` is Spin's).
    pub store: Arc<str>,
}

impl StoreId {
    /// The store `store` of app `app`.
    pub fn new(app: &str, store: &str) -> Self {
        StoreId {
            app: app.into(),
            store: store.into(),
        }
    }
}

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.store)
    }
}

/// A value and the version it was written at (a store-wide monotonic
/// number; compare-and-swap compares it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value's bytes.
    pub value: Vec<u8>,
    /// The version of the write that left this value.
    pub version: u64,
}

/// One page of a store's keys, in the engine's listing order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPage {
    /// The keys of this page.
    pub keys: Vec<String>,
    /// Where the next page starts; `None` when this page is the last.
    pub next: Option<Cursor>,
}

/// How a counter is kept as a value, so a guest that increments and then
/// reads sees what the runtime it was written for shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterFormat {
    /// ASCII decimal (`wasi:keyvalue@0.2.0-draft`, as wasmtime keeps it).
    Decimal,
    /// Eight bytes, little-endian two's complement (`@0.2.0-draft2`, as
    /// Spin keeps it).
    I64Le,
}

/// One mutation of one store, applied atomically: all of it or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Set `key` to `value`.
    Set { key: String, value: Vec<u8> },
    /// Delete `key`; deleting an absent key succeeds.
    Delete { key: String },
    /// Set every pair, all or none.
    SetMany(Vec<(String, Vec<u8>)>),
    /// Delete every key, all or none.
    DeleteMany(Vec<String>),
    /// Add `delta` to the counter at `key` (absent counts as 0) and answer
    /// the new value ([`Written::Counter`]).
    Increment {
        key: String,
        delta: i64,
        format: CounterFormat,
    },
    /// Write `value` only if `key` is still at version `expected` (`None`:
    /// only if absent). Answers [`Written::Swapped`] or
    /// [`Written::Conflict`].
    Swap {
        key: String,
        expected: Option<u64>,
        value: Vec<u8>,
    },
}

/// A mutation with everything the engine needs to decide it alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRequest {
    /// The store written.
    pub store: StoreId,
    /// What is written.
    pub op: WriteOp,
    /// The app's byte quota over all its stores (keys plus values); a
    /// write that would pass it is refused with [`KvError::Limit`].
    pub quota: u64,
}

/// What a write did, once it is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// A set or delete (one or many) was applied.
    Done,
    /// An increment was applied; the counter's new value.
    Counter(i64),
    /// A swap was applied.
    Swapped,
    /// A swap was not applied: the key moved on; what it holds now.
    Conflict { current: Option<Entry> },
}

/// Why an engine refused a call. Each message names the thing, the cause
/// and, where there is one, the fix; the runtime hands it to the guest as
/// the interface's own error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// Over a limit: key or value size, batch size, the app's quota.
    #[error("{0}")]
    Limit(String),
    /// A bad argument: a cursor of another store, a value that is not a
    /// counter, an overflow.
    #[error("{0}")]
    Invalid(String),
    /// The engine cannot answer now (shut down, overloaded, no quorum).
    #[error("{0}")]
    Unavailable(String),
    /// The disk failed or is full; nothing of the call was written.
    #[error("{0}")]
    Io(String),
}

/// A key-value engine. An acknowledged write is durable (on one host:
/// committed to disk); reads see every acknowledged write.
#[async_trait::async_trait]
pub trait KvBackend: Send + Sync + fmt::Debug + 'static {
    /// The entry at `key`, if any.
    async fn get(&self, store: &StoreId, key: &str) -> Result<Option<Entry>, KvError>;
    /// Whether `key` holds a value.
    async fn exists(&self, store: &StoreId, key: &str) -> Result<bool, KvError>;
    /// The value of each key, in order, `None` where absent.
    async fn get_many(
        &self,
        store: &StoreId,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, KvError>;
    /// Up to `limit` keys after `after` (from the start when `None`).
    /// Never loads the whole store.
    async fn list_keys(
        &self,
        store: &StoreId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<KeyPage, KvError>;
    /// Apply one mutation; answers only once it is durable.
    async fn write(&self, request: WriteRequest) -> Result<Written, KvError>;
}

/// What one app may put in its stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvLimits {
    /// Largest key, in bytes.
    pub max_key: usize,
    /// Largest value, in bytes.
    pub max_value: usize,
    /// The app's total over all its stores, keys plus values, in bytes.
    pub quota: u64,
    /// Stores one instance may hold open at once.
    pub max_open: usize,
    /// Keys per listed page.
    pub page: usize,
    /// Keys in one batch call.
    pub max_batch: usize,
}

impl Default for KvLimits {
    fn default() -> Self {
        KvLimits {
            max_key: 256,
            max_value: 1 << 20,
            quota: 64 << 20,
            max_open: 64,
            page: 1000,
            max_batch: 1000,
        }
    }
}

/// Configuration values an app is given (its `--config` and `--secret`
/// values together). `Debug` shows the keys only, never a value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConfigValues(pub BTreeMap<String, String>);

impl fmt::Debug for ConfigValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl ConfigValues {
    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}
