//! `AppSpec`: what a deployment says about one app, as sent to the admin API
//! and stored in the database. Validation lives here so every way in (CLI
//! flags, `shoal.toml`, raw API calls) gets the same answers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_runtime::{DeniedAddrs, Limits, OutboundRule, Policy};

use crate::replicas::Replicas;

/// One app's desired state.
///
/// Read leniently: fields a newer version added land in `extra` and are
/// written back as they came, so a record passes through a node of an
/// older version intact and a database written by a newer one still
/// opens. What a user sends is strict: the admin API refuses a spec with
/// [`unknown_field`](AppSpec::unknown_field)s.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AppSpec {
    /// `[a-z0-9-]`, 1 to 63 characters, starting and ending alphanumeric.
    pub name: String,
    /// The sha256 of the component, uploaded before.
    pub component: String,
    /// Path prefix; default `/NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Serve requests for this Host instead of (or besides) a prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub timeout_ms: u64,
    pub memory: u64,
    pub max_concurrency: u32,
    pub max_queue: u32,
    #[serde(default)]
    pub allow_outbound: Vec<String>,
    /// How many nodes of a mesh serve it.
    #[serde(default)]
    pub replicas: Replicas,
    /// Fields this version does not know, from a newer one.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Env values and fields of newer versions may be secrets: `Debug` shows
/// their names only.
impl fmt::Debug for AppSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppSpec")
            .field("name", &self.name)
            .field("component", &self.component)
            .field("route", &self.route)
            .field("hostname", &self.hostname)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("timeout_ms", &self.timeout_ms)
            .field("memory", &self.memory)
            .field("max_concurrency", &self.max_concurrency)
            .field("max_queue", &self.max_queue)
            .field("allow_outbound", &self.allow_outbound)
            .field("replicas", &self.replicas)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a spec was refused; the message names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct SpecError(pub String);

impl AppSpec {
    /// A spec for `name` with every other field empty or zero, for the
    /// caller to fill in (the component's sha256 once it is known).
    pub(crate) fn named(name: impl Into<String>) -> AppSpec {
        AppSpec {
            name: name.into(),
            component: String::new(),
            route: None,
            hostname: None,
            env: BTreeMap::new(),
            timeout_ms: 0,
            memory: 0,
            max_concurrency: 0,
            max_queue: 0,
            allow_outbound: Vec::new(),
            replicas: Replicas::default(),
            extra: BTreeMap::new(),
        }
    }

    /// A field this version does not know (sent by a newer client, or
    /// misspelt), if there is one.
    pub(crate) fn unknown_field(&self) -> Option<&str> {
        self.extra.keys().next().map(String::as_str)
    }

    /// The route this app is served under: its own, else `/NAME` (a hostname
    /// route alone means no prefix route).
    pub(crate) fn prefix(&self) -> Option<String> {
        match (&self.route, &self.hostname) {
            (Some(route), _) => Some(route.clone()),
            (None, Some(_)) => None,
            (None, None) => Some(format!("/{}", self.name)),
        }
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits {
            timeout: Duration::from_millis(self.timeout_ms),
            memory: self.memory,
            max_concurrency: self.max_concurrency as usize,
            max_queue: self.max_queue as usize,
            kv: Default::default(),
        }
    }

    /// The policy, with `deny` (the host's own admin port) and `denied`
    /// (every mesh member's listeners) added.
    pub(crate) fn policy(&self, deny: &[OutboundRule], denied: &DeniedAddrs) -> Policy {
        Policy {
            env: self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            allow_outbound: self
                .allow_outbound
                .iter()
                .filter_map(|r| r.parse().ok())
                .collect(),
            deny_outbound: deny.to_vec(),
            denied_addrs: denied.clone(),
            kv_stores: Vec::new(),
            config: Default::default(),
        }
    }

    /// Checks every field; `max_memory` is the host's cap per instance.
    pub(crate) fn validate(&self, max_memory: u64) -> Result<(), SpecError> {
        validate_name(&self.name)?;
        if self.component.len() != 64 || !self.component.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SpecError(format!(
                "`component` must be the hex sha256 of an uploaded component, got `{}`",
                self.component
            )));
        }
        if let Some(route) = &self.route {
            validate_route(route)?;
        }
        if let Some(hostname) = &self.hostname {
            validate_hostname(hostname)?;
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(SpecError(format!(
                    "invalid env variable name `{key}`: it must be non-empty and contain no `=`"
                )));
            }
        }
        if self.timeout_ms == 0 {
            return Err(SpecError(
                "`timeout` must be more than zero, e.g. `30s`".into(),
            ));
        }
        if self.memory == 0 || self.memory > max_memory {
            return Err(SpecError(format!(
                "`memory` of {} bytes is outside what this host allows (1 to {max_memory} bytes); lower it or start the host with a larger `--max-memory`",
                self.memory
            )));
        }
        if self.max_concurrency == 0 {
            return Err(SpecError("`max-concurrency` must be at least 1".into()));
        }
        for rule in &self.allow_outbound {
            rule.parse::<OutboundRule>().map_err(SpecError)?;
        }
        Ok(())
    }
}

/// What a JSON error says, with every quoted string in it blanked: serde
/// quotes the value it could not read (`invalid type: string "…"`), and a
/// stored or sent spec holds env values.
pub(crate) fn redacted(error: &serde_json::Error) -> String {
    let mut out = String::new();
    for (i, part) in error.to_string().split('"').enumerate() {
        if i > 0 {
            out.push('"');
        }
        out.push_str(if i % 2 == 1 { "…" } else { part });
    }
    out
}

impl AppSpec {
    /// Checks `max_concurrency` against `cap`, the instances this host
    /// gives one app.
    pub(crate) fn check_concurrency(&self, cap: u32) -> Result<(), SpecError> {
        if self.max_concurrency > cap {
            return Err(SpecError(format!(
                "`max-concurrency` of {} is over the {cap} instances this host gives one app; lower it (`--max-concurrency {cap}`) or start the host with a larger `--max-app-concurrency`",
                self.max_concurrency
            )));
        }
        Ok(())
    }
}

pub(crate) fn validate_name(name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(SpecError(format!(
            "invalid app name `{name}`: use 1 to 63 lowercase letters, digits and dashes, e.g. `hello-api`"
        )))
    }
}

fn validate_route(route: &str) -> Result<(), SpecError> {
    let ok = route.starts_with('/')
        && (route == "/" || !route.ends_with('/'))
        && !route.contains("//")
        && !route.contains(['?', '#', ' ', '%'])
        && route.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(SpecError(format!(
            "invalid route `{route}`: a route is a path prefix like `/api` or `/` (no trailing slash, query or spaces)"
        )))
    }
}

fn validate_hostname(host: &str) -> Result<(), SpecError> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(SpecError(format!(
            "invalid hostname `{host}`: use a lowercase DNS name like `api.example.com`"
        )))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn spec(name: &str) -> AppSpec {
        AppSpec {
            name: name.into(),
            component: "a".repeat(64),
            route: None,
            hostname: None,
            env: BTreeMap::new(),
            timeout_ms: 30_000,
            memory: 128 << 20,
            max_concurrency: 10,
            max_queue: 10,
            allow_outbound: vec![],
            replicas: Replicas::default(),
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn names_routes_and_hostnames_are_checked() {
        assert!(spec("hello-api").validate(1 << 30).is_ok());
        for bad in ["", "Hello", "-x", "x-", "a_b", &"a".repeat(64)] {
            assert!(spec(bad).validate(1 << 30).is_err(), "{bad}");
        }
        let mut s = spec("a");
        for bad in ["api", "/api/", "//x", "/a?b", "/a b"] {
            s.route = Some(bad.into());
            assert!(s.validate(1 << 30).is_err(), "{bad}");
        }
        s.route = Some("/".into());
        assert!(s.validate(1 << 30).is_ok());
        s.hostname = Some("API.example.com".into());
        assert!(s.validate(1 << 30).is_err());
        s.hostname = Some("api.example.com".into());
        assert!(s.validate(1 << 30).is_ok());
    }

    #[test]
    fn limits_are_checked_against_the_host() {
        let mut s = spec("a");
        s.memory = 2 << 30;
        assert!(s.validate(1 << 30).unwrap_err().0.contains("--max-memory"));
        let mut s = spec("a");
        s.allow_outbound = vec!["x/y".into()];
        assert!(s.validate(1 << 30).is_err());
        let s = spec("a");
        assert!(s.check_concurrency(10).is_ok());
        let refused = s.check_concurrency(9).unwrap_err().0;
        assert!(refused.contains("--max-app-concurrency"), "{refused}");
    }

    #[test]
    fn unknown_fields_are_kept_and_named_and_secrets_stay_out_of_debug() {
        let mut json = serde_json::to_value(spec("a")).unwrap();
        json["added_later"] = serde_json::json!({ "x": 1 });
        json["env"] = serde_json::json!({ "API_KEY": "s3cr3t" });
        let read: AppSpec = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(read.unknown_field(), Some("added_later"));
        assert_eq!(serde_json::to_value(&read).unwrap(), json);
        let debug = format!("{read:?}");
        assert!(
            debug.contains("API_KEY") && !debug.contains("s3cr3t"),
            "{debug}"
        );
        assert_eq!(spec("a").unknown_field(), None);
    }

    #[test]
    fn json_errors_are_told_without_the_values() {
        let error =
            serde_json::from_str::<AppSpec>(r#"{"name": "a", "memory": "s3cr3t"}"#).unwrap_err();
        let told = redacted(&error);
        assert!(
            !told.contains("s3cr3t") && told.contains("invalid type"),
            "{told}"
        );
    }

    #[test]
    fn the_default_route_is_the_name_unless_a_hostname_is_given() {
        let mut s = spec("shop");
        assert_eq!(s.prefix().as_deref(), Some("/shop"));
        s.hostname = Some("shop.example".into());
        assert_eq!(s.prefix(), None);
        s.route = Some("/".into());
        assert_eq!(s.prefix().as_deref(), Some("/"));
    }
}
