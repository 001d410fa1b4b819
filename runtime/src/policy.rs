//! Capability policy: what an app is granted. Deny by default: no
//! preopened directories, no sockets, no host environment, and outbound HTTP
//! only to the hosts an app is allowed.

use std::fmt;
use std::str::FromStr;

/// What an app may do beyond computing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Environment variables the guest sees; nothing else of the host's.
    pub env: Vec<(String, String)>,
    /// Hosts the guest may send HTTP requests to.
    pub allow_outbound: Vec<OutboundRule>,
    /// Hosts the guest may never reach, whatever `allow_outbound` says (the
    /// host puts its own admin address here).
    pub deny_outbound: Vec<OutboundRule>,
}

/// One `HOST[:PORT]` pattern; `*` matches any host, and a missing port
/// matches any port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRule {
    host: String,
    port: Option<u16>,
}

impl OutboundRule {
    /// Whether a request to `host:port` matches this rule.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host_ok = self.host == "*"
            || self
                .host
                .eq_ignore_ascii_case(host.trim_matches(['[', ']']));
        host_ok && self.port.is_none_or(|p| p == port)
    }
}

impl FromStr for OutboundRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let s = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"))
            .unwrap_or(s);
        if s.is_empty() || s.contains('/') {
            return Err(format!(
                "invalid outbound rule `{s}`: expected HOST, HOST:PORT or `*` (e.g. `api.example.com:443`)"
            ));
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') && !port.contains(']') => {
                let port = port.parse::<u16>().map_err(|_| {
                    format!(
                        "invalid port in outbound rule `{s}`: expected a number from 1 to 65535"
                    )
                })?;
                (host, Some(port))
            }
            _ => (s, None),
        };
        Ok(OutboundRule {
            host: host.trim_matches(['[', ']']).to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for OutboundRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

impl Policy {
    /// Whether the guest may send a request to `host:port`.
    pub fn outbound_allowed(&self, host: &str, port: u16) -> bool {
        !self.deny_outbound.iter().any(|r| r.matches(host, port))
            && self.allow_outbound.iter().any(|r| r.matches(host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> OutboundRule {
        s.parse().unwrap()
    }

    #[test]
    fn rules_match_host_and_optional_port() {
        assert!(rule("example.com").matches("EXAMPLE.com", 443));
        assert!(rule("example.com:8080").matches("example.com", 8080));
        assert!(!rule("example.com:8080").matches("example.com", 80));
        assert!(rule("*").matches("anything", 1));
        assert!(rule("127.0.0.1:9000").matches("127.0.0.1", 9000));
        assert!(rule("[::1]:80").matches("[::1]", 80));
        assert!(rule("http://example.com").matches("example.com", 80));
    }

    #[test]
    fn bad_rules_are_refused_with_a_hint() {
        assert!("".parse::<OutboundRule>().is_err());
        assert!(
            "a.com:port"
                .parse::<OutboundRule>()
                .unwrap_err()
                .contains("1 to 65535")
        );
        assert!("a.com/path".parse::<OutboundRule>().is_err());
    }

    #[test]
    fn deny_wins_over_allow_and_nothing_is_allowed_by_default() {
        let mut policy = Policy::default();
        assert!(!policy.outbound_allowed("example.com", 80));
        policy.allow_outbound.push(rule("*"));
        policy.deny_outbound.push(rule("127.0.0.1:7070"));
        assert!(policy.outbound_allowed("example.com", 80));
        assert!(!policy.outbound_allowed("127.0.0.1", 7070));
    }
}
