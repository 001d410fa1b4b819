//! The calls every key-value interface makes on an open store, with the
//! runtime's checks (key, value and batch sizes) before the engine is
//! called. Each interface only converts arguments and errors.

use super::backend::{
    CounterFormat, Cursor, Entry, KeyPage, KvError, WriteOp, WriteRequest, Written,
};
use super::grant::Handle;

impl Handle {
    /// The value at `key`.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.entry(key).await?.map(|e| e.value))
    }

    /// The entry (value and version) at `key`.
    pub(crate) async fn entry(&self, key: &str) -> Result<Option<Entry>, KvError> {
        self.check_key(key)?;
        self.backend.get(&self.id, key).await
    }

    /// Sets `key` to `value`.
    pub(crate) async fn set(&self, key: String, value: Vec<u8>) -> Result<(), KvError> {
        self.check_key(&key)?;
        self.check_value(&key, &value)?;
        self.write(WriteOp::Set { key, value }).await.map(drop)
    }

    /// Deletes `key` (absent is fine).
    pub(crate) async fn delete(&self, key: String) -> Result<(), KvError> {
        self.check_key(&key)?;
        self.write(WriteOp::Delete { key }).await.map(drop)
    }

    /// Whether `key` holds a value.
    pub(crate) async fn exists(&self, key: &str) -> Result<bool, KvError> {
        self.check_key(key)?;
        self.backend.exists(&self.id, key).await
    }

    /// One page of keys after `after`.
    pub(crate) async fn list(&self, after: Option<Cursor>) -> Result<KeyPage, KvError> {
        self.backend
            .list_keys(&self.id, after, self.limits().page.max(1))
            .await
    }

    /// Every key, page by page (for interfaces that answer one list; the
    /// app's quota bounds it).
    pub(crate) async fn all_keys(&self) -> Result<Vec<String>, KvError> {
        let mut keys = Vec::new();
        let mut after = None;
        loop {
            let page = self.list(after).await?;
            keys.extend(page.keys);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Adds `delta` to the counter at `key`, kept in `format`.
    pub(crate) async fn increment(
        &self,
        key: String,
        delta: i64,
        format: CounterFormat,
    ) -> Result<i64, KvError> {
        self.check_key(&key)?;
        match self
            .write(WriteOp::Increment { key, delta, format })
            .await?
        {
            Written::Counter(value) => Ok(value),
            other => Err(unexpected("an increment", &other)),
        }
    }

    /// The value of each key, in order.
    pub(crate) async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        self.check_batch(keys.iter().map(String::as_str))?;
        self.backend.get_many(&self.id, keys).await
    }

    /// Sets every pair, all or none.
    pub(crate) async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        self.check_batch(pairs.iter().map(|(k, _)| k.as_str()))?;
        for (key, value) in &pairs {
            self.check_value(key, value)?;
        }
        self.write(WriteOp::SetMany(pairs)).await.map(drop)
    }

    /// Deletes every key, all or none.
    pub(crate) async fn delete_many(&self, keys: Vec<String>) -> Result<(), KvError> {
        self.check_batch(keys.iter().map(String::as_str))?;
        self.write(WriteOp::DeleteMany(keys)).await.map(drop)
    }

    /// Writes `value` at `key` if it is still at version `expected`:
    /// `Ok(None)` when written, `Ok(Some(current))` when the key moved on.
    pub(crate) async fn swap(
        &self,
        key: String,
        expected: Option<u64>,
        value: Vec<u8>,
    ) -> Result<Option<Option<Entry>>, KvError> {
        self.check_key(&key)?;
        self.check_value(&key, &value)?;
        let op = WriteOp::Swap {
            key,
            expected,
            value,
        };
        match self.write(op).await? {
            Written::Swapped => Ok(None),
            Written::Conflict { current } => Ok(Some(current)),
            other => Err(unexpected("a swap", &other)),
        }
    }

    async fn write(&self, op: WriteOp) -> Result<Written, KvError> {
        let request = WriteRequest {
            store: self.id.clone(),
            op,
            quota: self.limits().quota,
        };
        self.backend.write(request).await
    }
}

/// An engine answered a write with the wrong kind of result: its bug.
fn unexpected(what: &str, written: &Written) -> KvError {
    KvError::Unavailable(format!(
        "the key-value engine answered {what} with {written:?}; this is a bug in the engine"
    ))
}
