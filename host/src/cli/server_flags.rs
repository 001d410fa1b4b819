//! The flags that bound an HTTP listener's connections, shared by `run`
//! and `host` (whose admin API takes the same timeouts).

use std::time::Duration;

use clap::Args;

use crate::connections::Limits;
use crate::nofile;
use crate::units::parse_duration;

/// How long the admin API's connections may take to finish at shutdown at
/// most: followers of `shoal logs --follow` never finish by themselves.
const ADMIN_DRAIN: Duration = Duration::from_secs(5);

/// Timeouts and the connection cap of the HTTP listener(s).
#[derive(Args, Debug, Clone)]
pub(crate) struct ServerFlags {
    /// Longest a client may take to send a request head, from connecting
    /// or from the first byte after its last response.
    #[arg(long, value_name = "DURATION", default_value = "10s", env = "SHOAL_HEADER_READ_TIMEOUT", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// How long a connection with no request in flight stays open, and how
    /// long a response may wait on a client that does not read it.
    #[arg(long, value_name = "DURATION", default_value = "60s", env = "SHOAL_IDLE_TIMEOUT", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Interval of HTTP/2 keep-alive pings; a client that leaves one
    /// unanswered for as long is disconnected (`off`: no pings).
    #[arg(long, value_name = "DURATION|off", default_value = "20s", env = "SHOAL_HTTP2_KEEP_ALIVE", value_parser = parse_keep_alive)]
    pub http2_keep_alive: KeepAlive,

    /// Connections the ingress keeps open at once; past it the oldest
    /// idle or half-sent one is closed (default: 5/8 of the open-file limit
    /// above 64, at most 65536).
    #[arg(long, value_name = "N", env = "SHOAL_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// How long requests in flight may take to finish after the first
    /// Ctrl-C or SIGTERM; connections still open then are closed.
    #[arg(long, value_name = "DURATION", default_value = "30s", env = "SHOAL_DRAIN_TIMEOUT", value_parser = parse_duration)]
    pub drain_timeout: Duration,
}

/// `--http2-keep-alive`: an interval, or none.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeepAlive(Option<Duration>);

fn parse_keep_alive(s: &str) -> Result<KeepAlive, String> {
    match s.trim() {
        "off" | "none" => Ok(KeepAlive(None)),
        other => parse_duration(other).map(|d| KeepAlive(Some(d))),
    }
}

impl ServerFlags {
    /// The ingress's limits (`shoal run`'s only listener).
    pub(crate) fn ingress(&self) -> Limits {
        let cap = self
            .max_connections
            .map_or_else(|| default_caps().ingress, |n| n as usize);
        self.limits(cap, self.drain_timeout)
    }

    /// The admin API's limits: the same timeouts, its own cap, a drain of
    /// at most [`ADMIN_DRAIN`].
    pub(crate) fn admin(&self, max_connections: Option<u32>) -> Limits {
        let cap = max_connections.map_or_else(|| default_caps().admin, |n| n as usize);
        self.limits(cap, self.drain_timeout.min(ADMIN_DRAIN))
    }

    fn limits(&self, max_connections: usize, drain: Duration) -> Limits {
        Limits {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            http2_keep_alive: self.http2_keep_alive.0,
            max_connections,
            drain,
        }
    }
}

fn default_caps() -> nofile::Caps {
    nofile::caps(nofile::soft_limit_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_may_be_off() {
        assert!(parse_keep_alive("off").unwrap().0.is_none());
        assert_eq!(
            parse_keep_alive("5s").unwrap().0,
            Some(Duration::from_secs(5))
        );
        assert!(parse_keep_alive("0s").is_err());
    }
}
