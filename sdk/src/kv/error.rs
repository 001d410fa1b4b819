//! What a key-value call can fail with, naming the store, the key and the
//! fix.

use crate::bindings::wasi::keyvalue::store;

/// Why a [`Store`](super::Store) call failed. Each message names the store
/// (and the key, when there is one) and, where there is one, the fix.
///
/// In a handler, `?` turns it into a response (see [`crate::Error`]):
/// [`KvError::AccessDenied`] answers 403 naming the `--kv` flag to add,
/// [`KvError::Contended`] 503, anything else 500 with the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The host did not grant this component the store: `shoal run` and
    /// `shoal deploy` grant one with `--kv NAME` (`default` is the store
    /// [`Store::open_default`](super::Store::open_default) opens).
    #[error(
        "key-value store `{store}` is not granted to this component; grant it with `--kv {store}` (on `shoal run`, `shoal deploy`, or `kv = [\"{store}\"]` in shoal.toml)"
    )]
    AccessDenied {
        /// The store's name.
        store: String,
    },
    /// The host has no store of that name.
    #[error("the host has no key-value store `{store}`")]
    NoSuchStore {
        /// The store's name.
        store: String,
    },
    /// The host refused or failed the call: a key or value over its
    /// limit, a store over its quota, a full disk, a value that is not a
    /// counter, ... The message is the host's.
    #[error("{}", other(store, key.as_deref(), message))]
    Other {
        /// The store's name.
        store: String,
        /// The key, for a call on one.
        key: Option<String>,
        /// The host's reason.
        message: String,
    },
    /// [`Store::cas`](super::Store::cas) lost the race for `key` to other
    /// writers `attempts` times in a row and gave up.
    #[error(
        "key `{key}` in key-value store `{store}`: compare-and-swap lost to concurrent writers {attempts} times in a row; try again later"
    )]
    Contended {
        /// The store's name.
        store: String,
        /// The key.
        key: String,
        /// How many swaps were tried.
        attempts: u32,
    },
    /// The value of `key` is not the JSON [`Store::get_json`](super::Store::get_json)
    /// or [`Store::cas_json`](super::Store::cas_json) expected, or a value
    /// to write does not serialize.
    #[cfg(feature = "json")]
    #[error("key `{key}` in key-value store `{store}`: {reason}")]
    Json {
        /// The store's name.
        store: String,
        /// The key.
        key: String,
        /// serde_json's reason.
        reason: String,
    },
}

fn other(store: &str, key: Option<&str>, message: &str) -> String {
    match key {
        Some(key) => format!("key `{key}` in key-value store `{store}`: {message}"),
        None => format!("key-value store `{store}`: {message}"),
    }
}

impl KvError {
    /// The store the failed call was on.
    pub fn store(&self) -> &str {
        match self {
            KvError::AccessDenied { store }
            | KvError::NoSuchStore { store }
            | KvError::Other { store, .. }
            | KvError::Contended { store, .. } => store,
            #[cfg(feature = "json")]
            KvError::Json { store, .. } => store,
        }
    }

    /// The interface's error for a call on `store` (and `key`), with names.
    pub(crate) fn from_wit(error: store::Error, store: &str, key: Option<&str>) -> KvError {
        let store = store.to_string();
        match error {
            store::Error::NoSuchStore => KvError::NoSuchStore { store },
            store::Error::AccessDenied => KvError::AccessDenied { store },
            store::Error::Other(message) => KvError::Other {
                store,
                key: key.map(str::to_string),
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_store_the_key_and_the_fix() {
        let denied = KvError::from_wit(store::Error::AccessDenied, "carts", Some("k"));
        assert_eq!(
            denied,
            KvError::AccessDenied {
                store: "carts".into()
            }
        );
        assert!(denied.to_string().contains("grant it with `--kv carts`"));
        let limit = KvError::from_wit(
            store::Error::Other("value of 1048577 bytes is over the 1 MiB limit".into()),
            "default",
            Some("big"),
        );
        assert_eq!(
            limit.to_string(),
            "key `big` in key-value store `default`: value of 1048577 bytes is over the 1 MiB limit"
        );
        let listing = KvError::from_wit(store::Error::Other("disk full".into()), "default", None);
        assert_eq!(listing.to_string(), "key-value store `default`: disk full");
        assert_eq!(listing.store(), "default");
        let missing = KvError::from_wit(store::Error::NoSuchStore, "x", None);
        assert_eq!(missing.to_string(), "the host has no key-value store `x`");
    }
}
