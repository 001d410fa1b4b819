//! Key-value state that outlives a request: named stores of byte values,
//! with atomic counters and compare-and-swap.
//!
//! ```no_run
//! use shoal_sdk::kv::Store;
//! use shoal_sdk::{Request, Result};
//!
//! #[shoal_sdk::http]
//! fn handle(_req: Request) -> Result<String> {
//!     let store = Store::open_default()?; // needs `--kv default` on the host
//!     let visits = store.increment("visits", 1)?;
//!     store.set("last-visit", b"just now")?;
//!     Ok(format!("visit number {visits}\n"))
//! }
//! ```
//!
//! Every request runs in a fresh instance, so a component keeps nothing in
//! memory between requests: what it wants to remember goes in a store.
//!
//! **Grants.** A component can open only the stores its host grants it:
//! `shoal run app.wasm --kv default` (repeat `--kv NAME` for more;
//! `shoal deploy --kv NAME`, `kv = ["default"]` in `shoal.toml`). Any
//! other name is [`KvError::AccessDenied`], whose message names the flag.
//! One app's stores are its own: another app opening the same name gets
//! its own, separate store.
//!
//! **Durability.** `shoal host` keeps stores in its data dir, and
//! `shoal run` under its own (it prints where; `--state-dir DIR` moves it,
//! `--state-dir :memory:` keeps nothing): once a call returns `Ok`, the
//! write survives a crash of the host. Reads see every write that has
//! returned, and [`Store::increment`] and [`Store::cas`] are atomic.
//!
//! **Limits.** The host bounds the size of keys and values and each app's
//! total (by default 256-byte keys, 1 MiB values and 64 MiB per app;
//! `--kv-quota`); going over is a [`KvError::Other`] naming the limit, and
//! nothing is written.
//!
//! The calls are `wasi:keyvalue@0.2.0-draft2` (`store` and `atomics`), the
//! draft Spin links, so a component using this module is meant to run on
//! `spin up` too, with the store named in its manifest's
//! `key_value_stores`. A component that never calls them does not import
//! them.

mod cas;
mod error;
mod keys;

use crate::bindings::wasi::keyvalue::{atomics, store};

pub use cas::CAS_ATTEMPTS;
pub use error::KvError;
pub use keys::KeyPage;

/// An open key-value store: see [the module](self).
///
/// Opening is cheap; open the store in each request that needs it.
pub struct Store {
    name: String,
    bucket: store::Bucket,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("name", &self.name).finish()
    }
}

impl Store {
    /// Opens the store `name`, which the host must grant (`--kv NAME`).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), shoal_sdk::kv::KvError> {
    /// let sessions = shoal_sdk::kv::Store::open("sessions")?; // `--kv sessions`
    /// # Ok(()) }
    /// ```
    pub fn open(name: &str) -> Result<Store, KvError> {
        let bucket = store::open(name).map_err(|e| KvError::from_wit(e, name, None))?;
        Ok(Store {
            name: name.to_string(),
            bucket,
        })
    }

    /// Opens the store `default` (`--kv default`), the one Spin's
    /// `Store::open_default` opens too.
    pub fn open_default() -> Result<Store, KvError> {
        Store::open("default")
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value of `key`, or `None` if it has none.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), shoal_sdk::kv::KvError> {
    /// # let store = shoal_sdk::kv::Store::open_default()?;
    /// match store.get("motd")? {
    ///     Some(bytes) => println!("{}", String::from_utf8_lossy(&bytes)),
    ///     None => println!("no message of the day"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.bucket.get(key).map_err(|e| self.error(e, key))
    }

    /// Sets `key` to `value`, replacing any value it had.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), shoal_sdk::kv::KvError> {
    /// # let store = shoal_sdk::kv::Store::open_default()?;
    /// store.set("motd", "hello")?;
    /// store.set("raw", [0u8, 1, 2])?;
    /// # Ok(()) }
    /// ```
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), KvError> {
        self.bucket
            .set(key, value.as_ref())
            .map_err(|e| self.error(e, key))
    }

    /// Removes `key` and its value; nothing happens if it has none.
    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        self.bucket.delete(key).map_err(|e| self.error(e, key))
    }

    /// Whether `key` has a value.
    pub fn exists(&self, key: &str) -> Result<bool, KvError> {
        self.bucket.exists(key).map_err(|e| self.error(e, key))
    }

    /// Every key of the store, fetched from the host a page at a time as
    /// the iterator reaches it (so a large store is never held whole).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), shoal_sdk::kv::KvError> {
    /// # let store = shoal_sdk::kv::Store::open_default()?;
    /// for key in store.keys() {
    ///     println!("{}", key?);
    /// }
    /// let notes = store
    ///     .keys()
    ///     .filter(|k| k.as_ref().map_or(true, |k| k.starts_with("note:")))
    ///     .collect::<Result<Vec<_>, _>>()?;
    /// # Ok(()) }
    /// ```
    pub fn keys(&self) -> Keys<'_> {
        Keys::new(self)
    }

    /// One page of keys: the first with `cursor` `None`, then the next
    /// with each page's [`KeyPage::cursor`] until that is `None`. For
    /// handing pages to a client; [`Store::keys`] follows them for you.
    pub fn keys_page(&self, cursor: Option<&str>) -> Result<KeyPage, KvError> {
        let page = self
            .bucket
            .list_keys(cursor)
            .map_err(|e| KvError::from_wit(e, &self.name, None))?;
        Ok(KeyPage {
            keys: page.keys,
            cursor: page.cursor,
        })
    }

    /// Adds `delta` (which may be negative) to the counter `key`
    /// atomically and returns its new value; a key without a value starts
    /// at 0. Concurrent increments never lose one another.
    ///
    /// A counter is stored as the host's counter encoding (on Shoal and
    /// Spin, 8 bytes little-endian), so keep it apart from keys written
    /// with [`Store::set`]: incrementing a key that holds something else
    /// is an error.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), shoal_sdk::kv::KvError> {
    /// # let store = shoal_sdk::kv::Store::open_default()?;
    /// let hits = store.increment("hits", 1)?;
    /// let stock = store.increment("stock", -3)?;
    /// # Ok(()) }
    /// ```
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        atomics::increment(&self.bucket, key, delta).map_err(|e| self.error(e, key))
    }

    /// Replaces the value of `key` with `update(current)` atomically: if
    /// another writer changes `key` between the read and the write, the
    /// write does not happen and `update` is called again on the newer
    /// value (up to [`CAS_ATTEMPTS`] times, then [`KvError::Contended`]).
    ///
    /// `update` gets `None` when the key has no value, and answers the new
    /// value, or `None` to leave the key as it is (and return at once). It
    /// may run more than once, so it should do nothing but compute.
    /// Returns what was written (`None`: `update` declined).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), shoal_sdk::kv::KvError> {
    /// # let store = shoal_sdk::kv::Store::open_default()?;
    /// // Append a name to a comma-separated list without losing a
    /// // concurrent append, unless it is there already.
    /// store.cas("guests", |current| {
    ///     let list = String::from_utf8_lossy(current.unwrap_or_default());
    ///     if list.split(',').any(|name| name == "ada") {
    ///         return None;
    ///     }
    ///     let sep = if list.is_empty() { "" } else { "," };
    ///     Some(format!("{list}{sep}ada").into_bytes())
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn cas(
        &self,
        key: &str,
        update: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, KvError> {
        let handle = atomics::Cas::new(&self.bucket, key).map_err(|e| self.error(e, key))?;
        cas::retry(handle, CAS_ATTEMPTS, update).map_err(|failed| match failed {
            cas::Failed::Store(e) => self.error(e, key),
            cas::Failed::Contended(attempts) => KvError::Contended {
                store: self.name.clone(),
                key: key.to_string(),
                attempts,
            },
        })
    }

    /// [`Store::cas`] on a value kept as JSON: `update` gets the current
    /// value parsed into a `T` (`None` if the key has none) and answers
    /// the new one (`None` to leave it). A current value that is not such
    /// JSON is [`KvError::Json`], and nothing is written.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), shoal_sdk::kv::KvError> {
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Cart { items: Vec<String> }
    ///
    /// # let store = shoal_sdk::kv::Store::open_default()?;
    /// // Add to the cart; a concurrent addition is never lost.
    /// store.cas_json("cart:42", |cart: Option<Cart>| {
    ///     let mut cart = cart.unwrap_or(Cart { items: vec![] });
    ///     cart.items.push("tea".into());
    ///     Some(cart)
    /// })?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "json")]
    pub fn cas_json<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        key: &str,
        mut update: impl FnMut(Option<T>) -> Option<T>,
    ) -> Result<Option<T>, KvError> {
        let mut failed = None;
        let mut written = None;
        self.cas(key, |current| {
            written = None;
            let current = match current.map(serde_json::from_slice::<T>).transpose() {
                Ok(current) => current,
                Err(e) => {
                    failed = Some(
                        self.json_error(key, format!("the value is not the JSON expected: {e}")),
                    );
                    return None;
                }
            };
            let next = update(current)?;
            match serde_json::to_vec(&next) {
                Ok(bytes) => {
                    written = Some(next);
                    Some(bytes)
                }
                Err(e) => {
                    failed = Some(
                        self.json_error(key, format!("the value does not serialize to JSON: {e}")),
                    );
                    None
                }
            }
        })?;
        match failed {
            Some(error) => Err(error),
            None => Ok(written),
        }
    }

    /// The value of `key` parsed as JSON into a `T`, or `None` if it has
    /// none. A value that is not such JSON is [`KvError::Json`].
    ///
    /// ```no_run
    /// # fn main() -> Result<(), shoal_sdk::kv::KvError> {
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Cart { items: Vec<String> }
    ///
    /// # let store = shoal_sdk::kv::Store::open_default()?;
    /// let mut cart: Cart = store.get_json("cart:42")?.unwrap_or(Cart { items: vec![] });
    /// cart.items.push("tea".into());
    /// store.set_json("cart:42", &cart)?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "json")]
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, KvError> {
        let Some(bytes) = self.get(key)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.json_error(key, format!("the value is not the JSON expected: {e}")))
    }

    /// Sets `key` to `value` serialized as JSON.
    #[cfg(feature = "json")]
    pub fn set_json<T: serde::Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), KvError> {
        let bytes = serde_json::to_vec(value).map_err(|e| {
            self.json_error(key, format!("the value does not serialize to JSON: {e}"))
        })?;
        self.set(key, bytes)
    }

    fn error(&self, error: store::Error, key: &str) -> KvError {
        KvError::from_wit(error, &self.name, Some(key))
    }

    #[cfg(feature = "json")]
    fn json_error(&self, key: &str, reason: String) -> KvError {
        KvError::Json {
            store: self.name.clone(),
            key: key.to_string(),
            reason,
        }
    }
}

/// An iterator over every key of a store, asking the host for one page at
/// a time: however large the store, it holds one page in memory.
///
/// Made by [`Store::keys`]. A failed page is yielded as one `Err`, after
/// which the iterator ends. Keys written or deleted while it runs may or
/// may not be listed; none is listed twice.
#[derive(Debug)]
pub struct Keys<'a>(keys::Pager<&'a Store>);

impl<'a> Keys<'a> {
    pub(crate) fn new(store: &'a Store) -> Keys<'a> {
        Keys(keys::Pager::new(store))
    }
}

impl Iterator for Keys<'_> {
    type Item = Result<String, KvError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

impl keys::Pages for &Store {
    fn page(&mut self, cursor: Option<&str>) -> Result<KeyPage, KvError> {
        self.keys_page(cursor)
    }
}
