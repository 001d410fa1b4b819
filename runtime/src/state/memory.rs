//! [`MemoryKv`]: an engine that keeps nothing past its process, for
//! `shoal run --state-dir :memory:` and for tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::backend::{
    CounterFormat, Cursor, Entry, KeyPage, KvBackend, KvError, StoreId, WriteOp, WriteRequest,
    Written,
};

/// Stores in a map behind one lock. Writes are atomic and serialized, so
/// increments and swaps are linearizable; listing is in first-write order
/// and its cursors name their store.
#[derive(Debug, Default)]
pub struct MemoryKv {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Store number (the cursor's high bits) per store.
    numbers: HashMap<StoreId, u64>,
    /// Per store: key → (listing id, entry), and id → key for listing.
    stores: HashMap<StoreId, Store>,
    /// Bytes (keys plus values) per app.
    usage: HashMap<std::sync::Arc<str>, u64>,
    version: u64,
}

#[derive(Debug, Default)]
struct Store {
    entries: HashMap<String, (u64, Entry)>,
    order: BTreeMap<u64, String>,
    next_id: u64,
}

const STORE_SHIFT: u32 = 40;

impl MemoryKv {
    /// An empty engine.
    pub fn new() -> Self {
        MemoryKv::default()
    }
}

impl Inner {
    fn number(&mut self, store: &StoreId) -> u64 {
        let next = self.numbers.len() as u64 + 1;
        *self.numbers.entry(store.clone()).or_insert(next)
    }

    fn store(&self, store: &StoreId) -> Option<&Store> {
        self.stores.get(store)
    }

    /// Applies `op` to a copy of the store, so a failure changes nothing.
    fn apply(&mut self, request: WriteRequest) -> Result<Written, KvError> {
        let WriteRequest { store, op, quota } = request;
        let used = self.usage.get(&store.app).copied().unwrap_or(0);
        let mut staged = Staged {
            store: self.stores.remove(&store).unwrap_or_default(),
            used,
            version: self.version + 1,
        };
        let result = staged.apply(op, quota);
        if result.is_ok() {
            self.version = staged.version;
            self.usage.insert(store.app.clone(), staged.used);
        }
        // On failure the staged copy was only touched through `try_*`
        // helpers that check before they change, so putting it back is
        // putting back the original.
        self.stores.insert(store, staged.store);
        result
    }
}

struct Staged {
    store: Store,
    used: u64,
    version: u64,
}

impl Staged {
    fn apply(&mut self, op: WriteOp, quota: u64) -> Result<Written, KvError> {
        match op {
            WriteOp::Set { key, value } => {
                self.check_quota(&[(&key, value.len())], quota)?;
                self.put(key, value);
                Ok(Written::Done)
            }
            WriteOp::SetMany(pairs) => {
                let sizes: Vec<(&String, usize)> =
                    pairs.iter().map(|(k, v)| (k, v.len())).collect();
                self.check_quota(&sizes, quota)?;
                for (key, value) in pairs {
                    self.put(key, value);
                }
                Ok(Written::Done)
            }
            WriteOp::Delete { key } => {
                self.remove(&key);
                Ok(Written::Done)
            }
            WriteOp::DeleteMany(keys) => {
                for key in keys {
                    self.remove(&key);
                }
                Ok(Written::Done)
            }
            WriteOp::Increment { key, delta, format } => {
                let current = match self.store.entries.get(&key) {
                    Some((_, entry)) => decode_counter(&entry.value, format, &key)?,
                    None => 0,
                };
                let next = current.checked_add(delta).ok_or_else(|| {
                    KvError::Invalid(format!(
                        "incrementing `{key}` by {delta} overflows a 64-bit counter"
                    ))
                })?;
                let value = encode_counter(next, format);
                self.check_quota(&[(&key, value.len())], quota)?;
                self.put(key, value);
                Ok(Written::Counter(next))
            }
            WriteOp::Swap {
                key,
                expected,
                value,
            } => {
                let current = self.store.entries.get(&key).map(|(_, e)| e.clone());
                if current.as_ref().map(|e| e.version) != expected {
                    return Ok(Written::Conflict { current });
                }
                self.check_quota(&[(&key, value.len())], quota)?;
                self.put(key, value);
                Ok(Written::Swapped)
            }
        }
    }

    fn check_quota(&self, writes: &[(&String, usize)], quota: u64) -> Result<(), KvError> {
        let mut used = self.used;
        for (key, len) in writes {
            if let Some((_, old)) = self.store.entries.get(key.as_str()) {
                used -= (key.len() + old.value.len()) as u64;
            }
            used += (key.len() + len) as u64;
        }
        if used > quota {
            return Err(KvError::Limit(format!(
                "this write would bring the app's key-value data to {used} bytes, over its quota of {quota} bytes; delete keys or raise `--kv-quota`"
            )));
        }
        Ok(())
    }

    fn put(&mut self, key: String, value: Vec<u8>) {
        let version = self.version;
        let added = (key.len() + value.len()) as u64;
        match self.store.entries.get_mut(&key) {
            Some((_, entry)) => {
                self.used -= (key.len() + entry.value.len()) as u64;
                *entry = Entry { value, version };
            }
            None => {
                self.store.next_id += 1;
                let id = self.store.next_id;
                self.store.order.insert(id, key.clone());
                self.store
                    .entries
                    .insert(key, (id, Entry { value, version }));
            }
        }
        self.used += added;
    }

    fn remove(&mut self, key: &str) {
        if let Some((id, entry)) = self.store.entries.remove(key) {
            self.store.order.remove(&id);
            self.used -= (key.len() + entry.value.len()) as u64;
        }
    }
}

/// The counter a value holds in `format`.
pub fn decode_counter(value: &[u8], format: CounterFormat, key: &str) -> Result<i64, KvError> {
    let parsed = match format {
        CounterFormat::Decimal => std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse::<i64>().ok()),
        CounterFormat::I64Le => <[u8; 8]>::try_from(value).ok().map(i64::from_le_bytes),
    };
    parsed.ok_or_else(|| {
        let shape = match format {
            CounterFormat::Decimal => "a decimal number",
            CounterFormat::I64Le => "an 8-byte little-endian integer",
        };
        KvError::Invalid(format!(
            "the value at `{key}` is not a counter ({shape}); set it to a number or use another key"
        ))
    })
}

/// `value` as `format` keeps it.
pub fn encode_counter(value: i64, format: CounterFormat) -> Vec<u8> {
    match format {
        CounterFormat::Decimal => value.to_string().into_bytes(),
        CounterFormat::I64Le => value.to_le_bytes().to_vec(),
    }
}

#[async_trait::async_trait]
impl KvBackend for MemoryKv {
    async fn get(&self, store: &StoreId, key: &str) -> Result<Option<Entry>, KvError> {
        let inner = self.inner.lock().expect("memory kv lock");
        Ok(inner
            .store(store)
            .and_then(|s| s.entries.get(key))
            .map(|(_, e)| e.clone()))
    }

    async fn exists(&self, store: &StoreId, key: &str) -> Result<bool, KvError> {
        let inner = self.inner.lock().expect("memory kv lock");
        Ok(inner
            .store(store)
            .is_some_and(|s| s.entries.contains_key(key)))
    }

    async fn get_many(
        &self,
        store: &StoreId,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        let inner = self.inner.lock().expect("memory kv lock");
        let found = inner.store(store);
        Ok(keys
            .iter()
            .map(|k| {
                found
                    .and_then(|s| s.entries.get(k))
                    .map(|(_, e)| e.value.clone())
            })
            .collect())
    }

    async fn list_keys(
        &self,
        store: &StoreId,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<KeyPage, KvError> {
        let mut inner = self.inner.lock().expect("memory kv lock");
        let number = inner.number(store);
        let start = match after {
            None => 0,
            Some(cursor) if cursor >> STORE_SHIFT == number => cursor & ((1 << STORE_SHIFT) - 1),
            Some(_) => {
                return Err(KvError::Invalid(format!(
                    "this cursor belongs to another store than `{}`; start the listing again without one",
                    store.store
                )));
            }
        };
        let Some(found) = inner.store(store) else {
            return Ok(KeyPage::default());
        };
        let mut page: Vec<(u64, String)> = found
            .order
            .range(start + 1..)
            .take(limit + 1)
            .map(|(id, k)| (*id, k.clone()))
            .collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let next = match (more, page.last()) {
            (true, Some((id, _))) => Some((number << STORE_SHIFT) | id),
            _ => None,
        };
        Ok(KeyPage {
            keys: page.into_iter().map(|(_, k)| k).collect(),
            next,
        })
    }

    async fn write(&self, request: WriteRequest) -> Result<Written, KvError> {
        let mut inner = self.inner.lock().expect("memory kv lock");
        inner.number(&request.store);
        inner.apply(request)
    }
}
