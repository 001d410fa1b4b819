//! Configuration values and secrets the host hands the component:
//! `shoal run app.wasm --config greeting=hi --secret api_token=@token.txt`
//! (or `shoal deploy`, or `config`/`secrets` in `shoal.toml`).
//!
//! ```no_run
//! # fn main() -> Result<(), shoal_sdk::config::ConfigError> {
//! let greeting = shoal_sdk::config::get("greeting")?.unwrap_or_else(|| "hello".into());
//! for (key, value) in shoal_sdk::config::get_all()? {
//!     println!("{key} is set");
//! }
//! # Ok(()) }
//! ```
//!
//! Values are strings, fixed when the app is deployed: change them with a
//! new `shoal deploy` (or a restart of `shoal run`). Secrets read the same
//! as other values, but the host never shows them (`shoal ls`, its logs and
//! admin API list their names only).
//!
//! Unlike [`crate::env`], which reads WASI environment variables, these
//! calls are `wasi:config/store@0.2.0-draft-2024-09-27`, the interface Spin
//! links for its variables, so the same component is meant to read its
//! configuration on `spin up` too.

use crate::bindings::wasi::config::store;

/// Why the host could not answer a config call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The host's config source failed.
    #[error("{}", describe(key.as_deref(), "the config source failed", message))]
    Upstream {
        /// The key asked for (`None` for [`get_all`]).
        key: Option<String>,
        /// The host's reason.
        message: String,
    },
    /// Reading the value failed.
    #[error("{}", describe(key.as_deref(), "I/O error", message))]
    Io {
        /// The key asked for (`None` for [`get_all`]).
        key: Option<String>,
        /// The host's reason.
        message: String,
    },
}

fn describe(key: Option<&str>, what: &str, message: &str) -> String {
    match key {
        Some(key) => format!("config value `{key}`: {what}: {message}"),
        None => format!("config values: {what}: {message}"),
    }
}

impl ConfigError {
    fn from_wit(error: store::Error, key: Option<&str>) -> ConfigError {
        let key = key.map(str::to_string);
        match error {
            store::Error::Upstream(message) => ConfigError::Upstream { key, message },
            store::Error::Io(message) => ConfigError::Io { key, message },
        }
    }
}

/// The value of `key` (`--config KEY=VALUE` or `--secret KEY=@FILE`), or
/// `None` if the host sets none.
pub fn get(key: &str) -> Result<Option<String>, ConfigError> {
    store::get(key).map_err(|e| ConfigError::from_wit(e, Some(key)))
}

/// Every key the host sets and its value, sorted by key.
pub fn get_all() -> Result<Vec<(String, String)>, ConfigError> {
    let mut all = store::get_all().map_err(|e| ConfigError::from_wit(e, None))?;
    all.sort();
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key() {
        let error =
            ConfigError::from_wit(store::Error::Upstream("vault sealed".into()), Some("db"));
        assert_eq!(
            error.to_string(),
            "config value `db`: the config source failed: vault sealed"
        );
        let error = ConfigError::from_wit(store::Error::Io("eof".into()), None);
        assert_eq!(error.to_string(), "config values: I/O error: eof");
        assert!(matches!(error, ConfigError::Io { key: None, .. }));
    }
}
