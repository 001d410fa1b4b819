//! The flags that describe an app's policy and limits, shared by `run` and
//! `deploy`.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use shoal_runtime::state::KvLimits;
use shoal_runtime::{DeniedAddrs, Limits, OutboundRule, Policy};

use crate::spec::AppSpec;
use crate::units::{parse_duration, parse_env, parse_secret, parse_size};

/// Defaults shared by the flags and `shoal.toml`.
pub(crate) mod defaults {
    pub const TIMEOUT: &str = "30s";
    pub const MEMORY: &str = "128MiB";
    pub const MAX_CONCURRENCY: u32 = 100;
    pub const MAX_QUEUE: u32 = 1000;
    pub const KV_QUOTA: &str = "64MiB";
}

/// Policy and limits of one app.
#[derive(Args, Debug, Clone)]
pub(crate) struct AppFlags {
    /// An environment variable the component sees (repeatable); it sees nothing
    /// of the host's environment.
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// Deadline for each request, e.g. `30s`, `500ms`, `2m`.
    #[arg(long, value_name = "DURATION", default_value = defaults::TIMEOUT, value_parser = parse_duration)]
    pub timeout: Duration,

    /// Linear memory per instance, e.g. `128MiB`, `1GiB`.
    #[arg(long, value_name = "SIZE", default_value = defaults::MEMORY, value_parser = parse_size)]
    pub memory: u64,

    /// Instances of the component running at once; more requests wait.
    #[arg(long, value_name = "N", default_value_t = defaults::MAX_CONCURRENCY, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrency: u32,

    /// Requests allowed to wait beyond `--max-concurrency`; past that, 503.
    #[arg(long, value_name = "N", default_value_t = defaults::MAX_QUEUE)]
    pub max_queue: u32,

    /// A host the component may send HTTP requests to, as HOST, HOST:PORT,
    /// IP[:PORT] or CIDR[:PORT] (repeatable; `*` for any). Nothing is
    /// allowed by default. Loopback, private, link-local and other
    /// non-public addresses are reached only through an IP or CIDR rule
    /// naming them, whatever name resolves to them; no rule reaches a
    /// shoal host's own listeners.
    #[arg(long = "allow-outbound", value_name = "HOST[:PORT]")]
    pub allow_outbound: Vec<OutboundRule>,

    /// A key-value store the component may open (repeatable; `default` is
    /// the one Spin and `wasmtime serve` guests open). None by default.
    /// Keys up to 256 bytes, values up to 1 MiB, 1000 keys per batch.
    #[arg(long = "kv", value_name = "NAME")]
    pub kv: Vec<String>,

    /// Bytes (keys plus values) the app may keep over all its stores.
    #[arg(long, value_name = "SIZE", default_value = defaults::KV_QUOTA, value_parser = parse_size)]
    pub kv_quota: u64,

    /// A configuration value the component reads through `wasi:config` or
    /// Spin variables (repeatable).
    #[arg(long = "config", value_name = "K=V", value_parser = parse_env)]
    pub config: Vec<(String, String)>,

    /// A secret configuration value, read like `--config` by the component
    /// but never shown by `shoal ls`, logs or errors (repeatable):
    /// `K=@FILE` reads FILE (one trailing newline dropped), a bare `K`
    /// reads this shell's environment variable `K`.
    #[arg(long = "secret", value_name = "K=@FILE|K")]
    pub secret: Vec<String>,
}

impl AppFlags {
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            timeout: self.timeout,
            memory: self.memory,
            max_concurrency: self.max_concurrency as usize,
            max_queue: self.max_queue as usize,
            kv: KvLimits {
                quota: self.kv_quota,
                ..KvLimits::default()
            },
        }
    }

    /// The `--secret` values, read from their files and the environment.
    pub(crate) fn secrets(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let here = std::path::Path::new(".");
        let mut secrets = BTreeMap::new();
        for arg in &self.secret {
            let (key, value) = parse_secret(arg, here).map_err(anyhow::Error::msg)?;
            secrets.insert(key, value);
        }
        Ok(secrets)
    }

    /// The spec of an app deployed with these flags.
    pub(crate) fn spec(
        &self,
        name: String,
        route: Option<String>,
        hostname: Option<String>,
    ) -> anyhow::Result<AppSpec> {
        let mut spec = AppSpec::named(name);
        spec.route = route;
        spec.hostname = hostname;
        spec.env = self.env.iter().cloned().collect();
        spec.timeout_ms = self.timeout.as_millis() as u64;
        spec.memory = self.memory;
        spec.max_concurrency = self.max_concurrency;
        spec.max_queue = self.max_queue;
        spec.allow_outbound = self
            .allow_outbound
            .iter()
            .map(ToString::to_string)
            .collect();
        spec.kv = self.kv.clone();
        spec.kv_quota = (self.kv_quota != KvLimits::default().quota).then_some(self.kv_quota);
        spec.config = self.config.iter().cloned().collect();
        spec.secrets = self.secrets()?;
        Ok(spec)
    }

    /// The policy of an app run with these flags; guests never connect to
    /// `denied`. Checks the flags as a deploy would.
    pub(crate) fn policy(&self, name: &str, denied: &DeniedAddrs) -> anyhow::Result<Policy> {
        let spec = self.spec(name.to_string(), None, None)?;
        spec.validate_state().map_err(anyhow::Error::msg)?;
        let mut policy = spec.policy(&[], denied);
        policy.allow_outbound = self.allow_outbound.clone();
        Ok(policy)
    }
}
