//! `AppSpec`: what a deployment says about one app, as sent to the admin API
//! and stored in the database. Validation lives here so every way in (CLI
//! flags, `shoal.toml`, raw API calls) gets the same answers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_runtime::state::{ConfigValues, KvLimits};
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
    /// Key-value stores the app may open (`--kv`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv: Vec<String>,
    /// Bytes (keys plus values) the app may keep over all its stores;
    /// `None`: [`KvLimits`]' default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_quota: Option<u64>,
    /// Configuration values the guest reads (`--config`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Configuration values never shown (`--secret`): views, logs and
    /// errors name them only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// A Spin application's components (`shoal deploy -f spin.toml`):
    /// when not empty, the app is served by these parts, chosen by route,
    /// and `component`/`route` name the first part (see [`PartSpec`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartSpec>,
    /// Fields this version does not know, from a newer one.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// One component of a Spin application: its bytes, the routes it answers,
/// the files it sees and what it may use. Every value is resolved when the
/// manifest is read (variables, templates), so a node that never saw the
/// manifest serves it from the record alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PartSpec {
    /// The manifest's component id (`[component.ID]`).
    pub id: String,
    /// The sha256 of its component, uploaded like any other.
    pub component: String,
    /// Its `[[trigger.http]]` routes, in manifest order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<PartRoute>,
    /// Files it sees, read-only, each a blob in the component store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSpec>,
    /// `environment`. Values may be secrets: views name them only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// `allowed_outbound_hosts`, templates resolved, in Spin's syntax.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_outbound: Vec<String>,
    /// `key_value_stores`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv: Vec<String>,
    /// `sqlite_databases`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sqlite: Vec<String>,
    /// Its variables (`[component.ID.variables]`), resolved; the names in
    /// `secret` are never shown.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret: Vec<String>,
}

/// One `[[trigger.http]]` route of a part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PartRoute {
    /// `/exact` or `/prefix/...` (a wildcard), as in the manifest, joined
    /// to the application's `base` if it has one.
    pub route: String,
    /// `route = { private = true }`: reachable only by the app's own
    /// components (self-requests), never from the ingress.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
}

/// One file a part sees: its path in the guest and the sha256 of its bytes
/// (a blob in the component store, copied to peers like a component).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSpec {
    /// Absolute guest path, e.g. `/static/index.html`.
    pub path: String,
    pub sha256: String,
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
            .field("kv", &self.kv)
            .field("kv_quota", &self.kv_quota)
            .field("config", &self.config.keys().collect::<Vec<_>>())
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field(
                "parts",
                &self.parts.iter().map(|p| &p.id).collect::<Vec<_>>(),
            )
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
            kv: Vec::new(),
            kv_quota: None,
            config: BTreeMap::new(),
            secrets: BTreeMap::new(),
            parts: Vec::new(),
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
            kv: KvLimits {
                quota: self.kv_quota.unwrap_or(KvLimits::default().quota),
                ..KvLimits::default()
            },
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
            kv_stores: self.kv.clone(),
            config: ConfigValues(
                self.config
                    .iter()
                    .chain(&self.secrets)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
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
        self.validate_state()
    }

    /// Checks the stores, quota, config and secrets.
    pub(crate) fn validate_state(&self) -> Result<(), SpecError> {
        for store in &self.kv {
            validate_store(store)?;
        }
        if self.kv_quota == Some(0) {
            return Err(SpecError(
                "`kv-quota` must be more than zero, e.g. `64MiB`".into(),
            ));
        }
        for (key, kind) in self
            .config
            .keys()
            .map(|k| (k, "config"))
            .chain(self.secrets.keys().map(|k| (k, "secret")))
        {
            if key.is_empty() || key.len() > MAX_CONFIG_KEY || key.contains(['=', '\0']) {
                return Err(SpecError(format!(
                    "invalid {kind} name `{}`: it must be 1 to {MAX_CONFIG_KEY} bytes with no `=` or NUL",
                    key.escape_debug()
                )));
            }
        }
        if let Some(both) = self.config.keys().find(|k| self.secrets.contains_key(*k)) {
            return Err(SpecError(format!(
                "`{both}` is given both as `--config` and as `--secret`; give it once"
            )));
        }
        let total: usize = self
            .config
            .iter()
            .chain(&self.secrets)
            .map(|(k, v)| k.len() + v.len())
            .sum();
        if total > MAX_CONFIG_TOTAL {
            return Err(SpecError(format!(
                "config and secrets together are {total} bytes, over the limit of {MAX_CONFIG_TOTAL} bytes (64 KiB); keep large data in a key-value store"
            )));
        }
        if !self.kv.is_empty() && self.replicas != Replicas::Count(1) {
            return Err(SpecError(format!(
                "an app with `--kv` runs on one node until its stores are replicated across the mesh (a later version of shoal); deploy it with `--replicas 1` (it asks for {})",
                self.replicas
            )));
        }
        Ok(())
    }
}

/// Longest config or secret name, in bytes.
const MAX_CONFIG_KEY: usize = 256;
/// Most bytes of config and secrets (names and values) of one app.
const MAX_CONFIG_TOTAL: usize = 64 << 10;

/// `default`, or 1 to 63 of `[a-z0-9_-]` starting alphanumeric.
pub(crate) fn validate_store(store: &str) -> Result<(), SpecError> {
    let ok = !store.is_empty()
        && store.len() <= 63
        && store
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && store.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(SpecError(format!(
            "invalid key-value store name `{}`: use 1 to 63 lowercase letters, digits, `_` and `-`, starting with a letter or digit, e.g. `default`",
            store.escape_debug()
        )))
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
            kv: vec![],
            kv_quota: None,
            config: BTreeMap::new(),
            secrets: BTreeMap::new(),
            parts: Vec::new(),
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn state_grants_config_and_secrets_are_checked_and_filled_in() {
        let mut s = spec("a");
        s.kv = vec!["default".into(), "sessions_2".into()];
        s.kv_quota = Some(1 << 20);
        s.config.insert("GREETING".into(), "hi".into());
        s.secrets.insert("TOKEN".into(), "s3cr3t".into());
        assert!(s.validate(1 << 30).is_ok());
        let policy = s.policy(&[], &DeniedAddrs::new());
        assert_eq!(policy.kv_stores, s.kv);
        assert_eq!(policy.config.get("TOKEN"), Some("s3cr3t"));
        assert_eq!(policy.config.get("GREETING"), Some("hi"));
        assert_eq!(s.limits().kv.quota, 1 << 20);
        assert_eq!(spec("a").limits().kv, KvLimits::default());
        let debug = format!("{s:?} {policy:?}");
        assert!(
            debug.contains("TOKEN") && !debug.contains("s3cr3t"),
            "{debug}"
        );
        assert!(
            !debug.contains("\"hi\""),
            "config values stay out of Debug: {debug}"
        );
        for bad in ["", "Default", "-x", "a/b", &"a".repeat(64)] {
            let mut t = s.clone();
            t.kv = vec![bad.into()];
            assert!(t.validate(1 << 30).is_err(), "{bad}");
        }
        let mut t = s.clone();
        t.config.insert("TOKEN".into(), "x".into());
        assert!(t.validate(1 << 30).unwrap_err().0.contains("both"));
        let mut t = s.clone();
        t.secrets.insert("A=B".into(), "x".into());
        let refused = t.validate(1 << 30).unwrap_err().0;
        assert!(
            refused.contains("secret") && !refused.contains("s3cr3t"),
            "{refused}"
        );
        let mut t = s.clone();
        t.config.insert("BIG".into(), "x".repeat(65 << 10));
        assert!(t.validate(1 << 30).unwrap_err().0.contains("64 KiB"));
        let mut t = s.clone();
        t.replicas = Replicas::Count(2);
        let refused = t.validate(1 << 30).unwrap_err().0;
        assert!(
            refused.contains("--replicas 1") && refused.contains("replicated"),
            "{refused}"
        );
        t.kv.clear();
        assert!(t.validate(1 << 30).is_ok(), "without --kv any replicas go");
    }

    #[test]
    fn old_records_round_trip_without_the_state_fields() {
        let json = serde_json::to_value(spec("a")).unwrap();
        for field in ["kv", "kv_quota", "config", "secrets"] {
            assert!(json.get(field).is_none(), "an empty `{field}` is written");
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
