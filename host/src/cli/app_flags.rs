//! The flags that describe an app's policy and limits, shared by `run` and
//! `deploy`.

use std::time::Duration;

use clap::Args;
use shoal_runtime::{DeniedAddrs, Limits, OutboundRule, Policy};

use crate::spec::AppSpec;
use crate::units::{parse_duration, parse_env, parse_size};

/// Defaults shared by the flags and `shoal.toml`.
pub(crate) mod defaults {
    pub const TIMEOUT: &str = "30s";
    pub const MEMORY: &str = "128MiB";
    pub const MAX_CONCURRENCY: u32 = 100;
    pub const MAX_QUEUE: u32 = 1000;
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
}

impl AppFlags {
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            timeout: self.timeout,
            memory: self.memory,
            max_concurrency: self.max_concurrency as usize,
            max_queue: self.max_queue as usize,
            kv: Default::default(),
        }
    }

    /// The spec of an app deployed with these flags.
    pub(crate) fn spec(
        &self,
        name: String,
        route: Option<String>,
        hostname: Option<String>,
    ) -> AppSpec {
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
        spec
    }

    /// The policy of an app run with these flags; guests never connect to
    /// `denied`.
    pub(crate) fn policy(&self, denied: &DeniedAddrs) -> Policy {
        Policy {
            env: self.env.clone(),
            allow_outbound: self.allow_outbound.clone(),
            deny_outbound: Vec::new(),
            denied_addrs: denied.clone(),
            kv_stores: Vec::new(),
            config: Default::default(),
        }
    }
}
