//! What one app's guests may reach of the state interfaces: the stores it
//! was granted, its engine, its limits and its configuration values
//! ([`StateGrant`], built once per app), and the per-instance part
//! ([`StateCtx`]: how many stores are open). Every interface opens stores
//! and checks keys, values and batches here, before the engine is called.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use wasmtime::component::{HasData, Resource, ResourceTable};

use super::backend::{ConfigValues, KvBackend, KvError, KvLimits, StoreId};
use crate::policy::Policy;

/// The store `open("")` means: `wasmtime serve`'s only store, and Spin's
/// `open_default()`.
pub(crate) const DEFAULT_STORE: &str = "default";

/// What an app's guests were granted; shared by all its instances.
pub(crate) struct StateGrant {
    app: Arc<str>,
    stores: BTreeSet<Arc<str>>,
    backend: Option<Arc<dyn KvBackend>>,
    pub(crate) limits: KvLimits,
    pub(crate) config: ConfigValues,
}

impl fmt::Debug for StateGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateGrant")
            .field("app", &self.app)
            .field("stores", &self.stores)
            .field("backend", &self.backend.is_some())
            .field("limits", &self.limits)
            .field("config", &self.config)
            .finish()
    }
}

impl StateGrant {
    /// The grant of app `app`: the stores and configuration `policy`
    /// names, in `backend`, held to `limits`.
    pub(crate) fn new(
        app: &Arc<str>,
        policy: &Policy,
        limits: &KvLimits,
        backend: Option<Arc<dyn KvBackend>>,
    ) -> Arc<StateGrant> {
        Arc::new(StateGrant {
            app: app.clone(),
            stores: policy
                .kv_stores
                .iter()
                .map(|s| Arc::from(s.as_str()))
                .collect(),
            backend,
            limits: limits.clone(),
            config: policy.config.clone(),
        })
    }
}

/// The state part of one instance's store data.
pub(crate) struct StateCtx {
    grant: Arc<StateGrant>,
    open: usize,
}

impl StateCtx {
    /// A fresh context under `grant`, with no store open.
    pub(crate) fn new(grant: &Arc<StateGrant>) -> StateCtx {
        StateCtx {
            grant: grant.clone(),
            open: 0,
        }
    }
}

/// What the state interfaces' host functions work on: the instance's
/// state context and its resource table.
pub(crate) struct StateView<'a> {
    pub(crate) ctx: &'a mut StateCtx,
    pub(crate) table: &'a mut ResourceTable,
}

/// The `HasData` marker the bindings are linked with.
pub(crate) struct HasState;

impl HasData for HasState {
    type Data<'a> = StateView<'a>;
}

/// An open store: the resource every key-value interface hands out (Spin's
/// `store` and wasi's `bucket` are the same thing).
pub struct Bucket {
    handle: Handle,
}

/// A compare-and-swap in progress (`wasi:keyvalue@0.2.0-draft2`): the key
/// and the version its value was seen at (`None`: absent). Holds no value,
/// so a guest cannot pin host memory with many of them.
pub struct Cas {
    pub(crate) handle: Handle,
    pub(crate) key: String,
    pub(crate) seen: Option<u64>,
}

/// What a call on an open store needs, cloned out of the store data so no
/// borrow of it is held across the engine's await.
#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) backend: Arc<dyn KvBackend>,
    pub(crate) id: StoreId,
    pub(crate) grant: Arc<StateGrant>,
}

/// Why a state call was refused before or by the engine; each interface
/// turns it into its own error variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The store was not granted, or the host has no engine.
    AccessDenied,
    /// The instance holds `max_open` stores already.
    TableFull(usize),
    /// A check or the engine refused it.
    Kv(KvError),
}

impl From<KvError> for Refusal {
    fn from(error: KvError) -> Self {
        Refusal::Kv(error)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::AccessDenied => f.write_str("access-denied"),
            Refusal::TableFull(limit) => write!(
                f,
                "too many open stores (limit {limit} per instance); drop one before opening another"
            ),
            Refusal::Kv(error) => error.fmt(f),
        }
    }
}

impl StateView<'_> {
    /// Opens store `name` (`""` is `default`) if the app was granted it.
    pub(crate) fn open(&mut self, name: &str) -> Result<Resource<Bucket>, Refusal> {
        let grant = &self.ctx.grant;
        let name = if name.is_empty() { DEFAULT_STORE } else { name };
        let backend = match (&grant.backend, grant.stores.contains(name)) {
            (Some(backend), true) => backend.clone(),
            (None, true) => {
                tracing::warn!(app = %grant.app, store = name, "guest opened a key-value store, but this host gives the app no key-value engine");
                return Err(Refusal::AccessDenied);
            }
            (_, false) => {
                tracing::warn!(app = %grant.app, store = name, "guest opened a key-value store it was not granted; grant it with `--kv {name}`");
                return Err(Refusal::AccessDenied);
            }
        };
        if self.ctx.open >= grant.limits.max_open {
            tracing::warn!(app = %grant.app, store = name, limit = grant.limits.max_open, "guest holds too many open key-value stores");
            return Err(Refusal::TableFull(grant.limits.max_open));
        }
        let bucket = Bucket {
            handle: Handle {
                backend,
                id: StoreId {
                    app: grant.app.clone(),
                    store: name.into(),
                },
                grant: grant.clone(),
            },
        };
        let resource = self
            .table
            .push(bucket)
            .map_err(|e| Refusal::Kv(KvError::Unavailable(format!("cannot open a store: {e}"))))?;
        self.ctx.open += 1;
        Ok(resource)
    }

    /// What a call on the open store `bucket` needs. A handle that is not
    /// an open store is the guest's bug: a trap, as for any resource.
    pub(crate) fn handle(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<Handle> {
        Ok(self.table.get(bucket)?.handle.clone())
    }

    /// Closes the store `bucket`.
    pub(crate) fn close(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        self.ctx.open = self.ctx.open.saturating_sub(1);
        Ok(())
    }

    /// The configuration values the app was given.
    pub(crate) fn config(&self) -> &ConfigValues {
        &self.ctx.grant.config
    }
}

impl Handle {
    /// The app's key-value limits.
    pub(crate) fn limits(&self) -> &KvLimits {
        &self.grant.limits
    }

    /// Refuses a key the interfaces forbid: empty, over `max_key` bytes,
    /// or holding a NUL.
    pub(crate) fn check_key(&self, key: &str) -> Result<(), KvError> {
        check_key(key, self.limits())
    }

    /// Refuses a value over `max_value` bytes.
    pub(crate) fn check_value(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        let max = self.limits().max_value;
        if value.len() > max {
            return Err(KvError::Limit(format!(
                "the value for `{}` is {} bytes, over the {} limit per value",
                shown(key),
                value.len(),
                size(max as u64)
            )));
        }
        Ok(())
    }

    /// Refuses a batch of more than `max_batch` keys, then checks each key.
    pub(crate) fn check_batch<'k>(
        &self,
        keys: impl ExactSizeIterator<Item = &'k str>,
    ) -> Result<(), KvError> {
        let max = self.limits().max_batch;
        if keys.len() > max {
            return Err(KvError::Limit(format!(
                "a batch of {} keys is over the limit of {max} keys per call; split it",
                keys.len()
            )));
        }
        keys.into_iter().try_for_each(|k| self.check_key(k))
    }
}

/// Refuses a key the interfaces forbid (see [`Handle::check_key`]).
pub(crate) fn check_key(key: &str, limits: &KvLimits) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::Invalid(
            "a key must not be empty (keys are 1 to 256 bytes of UTF-8 without NUL)".into(),
        ));
    }
    if key.len() > limits.max_key {
        return Err(KvError::Limit(format!(
            "the key `{}` is {} bytes, over the {}-byte limit per key",
            shown(key),
            key.len(),
            limits.max_key
        )));
    }
    if key.contains('\0') {
        return Err(KvError::Invalid(format!(
            "the key `{}` holds a NUL byte, which keys may not hold",
            shown(key)
        )));
    }
    Ok(())
}

/// At most the first 32 characters of `key`, NULs escaped, for a message.
fn shown(key: &str) -> String {
    let mut out: String = key
        .chars()
        .take(32)
        .collect::<String>()
        .replace('\0', "\\0");
    if key.chars().count() > 32 {
        out.push('…');
    }
    out
}

/// `bytes` as an operator writes it: `1 MiB`, `256 B`, `1.5 KiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut unit = 0;
    let mut value = bytes as f64;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_against_each_rule_and_the_limit_is_named() {
        let limits = KvLimits::default();
        assert_eq!(check_key("a", &limits), Ok(()));
        assert_eq!(check_key(&"k".repeat(256), &limits), Ok(()));
        let long = check_key(&"k".repeat(257), &limits).unwrap_err();
        assert!(
            matches!(&long, KvError::Limit(m) if m.contains("257 bytes") && m.contains("256-byte limit")),
            "{long}"
        );
        assert!(matches!(check_key("", &limits), Err(KvError::Invalid(m)) if m.contains("empty")));
        assert!(
            matches!(check_key("a\0b", &limits), Err(KvError::Invalid(m)) if m.contains("NUL") && m.contains("a\\0b"))
        );
    }

    #[test]
    fn sizes_read_as_an_operator_writes_them() {
        assert_eq!(size(256), "256 B");
        assert_eq!(size(1 << 20), "1 MiB");
        assert_eq!(size(64 << 20), "64 MiB");
        assert_eq!(size(1536), "1.5 KiB");
    }
}
