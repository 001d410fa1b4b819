//! Configuration the app was given (`--config` and `--secret` values),
//! through `wasi:config/store` (`@0.2.0-draft-2024-09-27`, what Spin
//! links, and `@0.2.0-rc.1`, what `wasmtime serve -Sconfig` links) and
//! Spin's variables (`fermyon:spin/variables@2.0.0` on both engines,
//! `spin:variables/variables@3.0.0` on the concurrent one).

use wasmtime::component::Accessor;

use super::backend::ConfigValues;
use super::bindings::concurrent::spin::variables::variables as spin3;
use super::bindings::plain::fermyon::spin::variables as spin2;
use super::bindings::plain::wasi::config0_2_0_draft_2024_09_27::store as draft;
use super::bindings::plain::wasi::config0_2_0_rc_1::store as rc1;
use super::grant::{HasState, StateView};

fn pairs(config: &ConfigValues) -> Vec<(String, String)> {
    config
        .0
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl draft::Host for StateView<'_> {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, draft::Error>> {
        Ok(Ok(self.config().get(&key).map(str::to_owned)))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, draft::Error>> {
        Ok(Ok(pairs(self.config())))
    }
}

impl rc1::Host for StateView<'_> {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, rc1::Error>> {
        Ok(Ok(self.config().get(&key).map(str::to_owned)))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, rc1::Error>> {
        Ok(Ok(pairs(self.config())))
    }
}

/// Why a Spin variable lookup failed.
#[derive(Debug, PartialEq, Eq)]
enum Miss {
    InvalidName(String),
    Undefined(String),
}

/// Spin's rules for a variable name: `[a-z][a-z0-9_]*`, no `__`, not
/// ending in `_`.
fn check_name(name: &str) -> Result<(), Miss> {
    let reason = if name.is_empty() {
        Some("it is empty".to_string())
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        Some(format!(
            "it holds {c:?}; names hold only lower-case ASCII letters, digits and `_`"
        ))
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some("it must start with a lower-case ASCII letter".into())
    } else if name.ends_with('_') {
        Some("it must end with a letter or a digit".into())
    } else if name.contains("__") {
        Some("it must not hold two `_` in a row".into())
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Miss::InvalidName(format!(
            "invalid variable name `{name}`: {reason}"
        ))),
        None => Ok(()),
    }
}

/// The value of Spin variable `name`: the config value of that exact key,
/// else of its upper-case form (`--config API_KEY=...` serves `api_key`).
fn variable(config: &ConfigValues, name: &str) -> Result<String, Miss> {
    check_name(name)?;
    config
        .get(name)
        .or_else(|| config.get(&name.to_ascii_uppercase()))
        .map(str::to_owned)
        .ok_or_else(|| {
            Miss::Undefined(format!(
                "no variable `{name}`: give the app `--config {name}=VALUE` (or `--secret`)"
            ))
        })
}

impl From<Miss> for spin2::Error {
    fn from(miss: Miss) -> Self {
        match miss {
            Miss::InvalidName(m) => spin2::Error::InvalidName(m),
            Miss::Undefined(m) => spin2::Error::Undefined(m),
        }
    }
}

impl From<Miss> for spin3::Error {
    fn from(miss: Miss) -> Self {
        match miss {
            Miss::InvalidName(m) => spin3::Error::InvalidName(m),
            Miss::Undefined(m) => spin3::Error::Undefined(m),
        }
    }
}

impl spin2::Host for StateView<'_> {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, spin2::Error>> {
        Ok(variable(self.config(), &name).map_err(Into::into))
    }
}

impl spin3::Host for StateView<'_> {}

impl<T: Send> spin3::HostWithStore<T> for HasState {
    async fn get(
        acc: &Accessor<T, Self>,
        name: String,
    ) -> wasmtime::Result<Result<String, spin3::Error>> {
        let found = acc.with(|mut access| variable(access.get().config(), &name));
        Ok(found.map_err(Into::into))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> ConfigValues {
        ConfigValues(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn spin_variables_are_found_exactly_then_upper_case() {
        let c = config(&[("greeting", "hi"), ("API_KEY", "k"), ("api_key2", "x")]);
        assert_eq!(variable(&c, "greeting"), Ok("hi".into()));
        assert_eq!(variable(&c, "api_key"), Ok("k".into()));
        assert_eq!(variable(&c, "api_key2"), Ok("x".into()));
        assert!(
            matches!(variable(&c, "missing"), Err(Miss::Undefined(m)) if m.contains("--config missing="))
        );
    }

    #[test]
    fn spin_variable_names_follow_spins_rules() {
        for bad in ["", "Bad", "1a", "a-b", "a__b", "a_", "_a", "é"] {
            assert!(
                matches!(check_name(bad), Err(Miss::InvalidName(m)) if m.contains("invalid variable name")),
                "{bad:?} passed"
            );
        }
        for good in ["a", "a1", "a_b", "api_key_2"] {
            assert_eq!(check_name(good), Ok(()), "{good:?}");
        }
    }
}
