//! Capability policy: what an app is granted. Deny by default: no
//! preopened directories, no sockets, no host environment, and outbound HTTP
//! only to the hosts an app is allowed.
//!
//! Outbound HTTP is judged twice: the URI's host against the rules before
//! anything is resolved ([`Policy::check_host`]), then every address the
//! host resolves to ([`Policy::check_addr`]). An address in a special range
//! (loopback, private, link-local, see `ranges.rs`) passes only when an IP
//! or CIDR rule names it; an address in the host's [`DeniedAddrs`] never
//! passes.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::denied::DeniedAddrs;
use crate::ranges;
use crate::state::ConfigValues;

/// What an app may do beyond computing.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Environment variables the guest sees; nothing else of the host's.
    pub env: Vec<(String, String)>,
    /// Hosts the guest may send HTTP requests to.
    pub allow_outbound: Vec<OutboundRule>,
    /// Hosts the guest may never reach, whatever `allow_outbound` says (the
    /// host puts its own admin port here).
    pub deny_outbound: Vec<OutboundRule>,
    /// Socket addresses the guest may never connect to, whatever
    /// `allow_outbound` says (the host's listeners and every mesh
    /// member's; shared with the host, which adds to it).
    pub denied_addrs: DeniedAddrs,
    /// Key-value stores the guest may open (`default` is Spin's name);
    /// opening any other is the interface's access-denied error.
    pub kv_stores: Vec<String>,
    /// Configuration values (and secrets) the guest may read.
    pub config: ConfigValues,
}

/// One outbound rule: `*`, a host name, an IP address or a CIDR network,
/// each with an optional port (a missing port matches any port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRule {
    target: Target,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Any,
    Name(String),
    /// An address and prefix length; a single IP is a full-length prefix.
    Net(IpAddr, u8),
}

/// Why an outbound request was refused; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No rule names the host.
    NotAllowed { host: String, port: u16 },
    /// A deny rule of the host's own matches it (`shoal host` denies its
    /// admin port on every address).
    HostDenied { host: String, port: u16 },
    /// The address is one of the host's or a mesh member's listeners.
    Member { addr: SocketAddr },
    /// The address is in a special range no IP or CIDR rule names.
    Range {
        addr: SocketAddr,
        range: &'static str,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAllowed { host, port } => write!(
                f,
                "outbound request to {host}:{port} denied by policy; grant it with `--allow-outbound {host}:{port}`"
            ),
            Refusal::HostDenied { host, port } => write!(
                f,
                "outbound request to {host}:{port} denied by the host whatever the app allows: a deny rule of the host's own matches it"
            ),
            Refusal::Member { addr } => write!(
                f,
                "outbound request to {addr} denied: it is a listener of a shoal host in this mesh, which guests may never reach"
            ),
            Refusal::Range { addr, range } => write!(
                f,
                "outbound request to {addr} denied: {} is a {range} address; grant it with `--allow-outbound {}` (or a CIDR such as `{}`)",
                addr.ip(),
                SocketAddr::new(addr.ip(), addr.port()),
                example_cidr(addr.ip()),
            ),
        }
    }
}

impl Refusal {
    /// Whether the refusal is about the address connected to, not the
    /// host named (the guest sees `destination-ip-prohibited`).
    pub(crate) fn is_address(&self) -> bool {
        matches!(self, Refusal::Member { .. } | Refusal::Range { .. })
    }
}

fn example_cidr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

impl OutboundRule {
    /// Whether a request naming `host:port` in its URI matches this rule:
    /// `*`, the same host name, or an IP literal within the rule's network.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.trim_matches(['[', ']']);
        match &self.target {
            Target::Any => true,
            Target::Name(name) => name.eq_ignore_ascii_case(host),
            Target::Net(..) => host.parse().is_ok_and(|ip| self.covers(ip)),
        }
    }

    /// Whether this is an IP or CIDR rule covering `addr`: only such a rule
    /// lets a guest reach a special-purpose address.
    pub fn covers_addr(&self, addr: SocketAddr) -> bool {
        self.port.is_none_or(|p| p == addr.port()) && self.covers(addr.ip())
    }

    fn covers(&self, ip: IpAddr) -> bool {
        let Target::Net(net, len) = self.target else {
            return false;
        };
        match (net, ranges::canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let shift = 32 - u32::from(len);
                shift == 32 || (u32::from(ip) >> shift) == (u32::from(net) >> shift)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let shift = 128 - u32::from(len);
                shift == 128 || (u128::from(ip) >> shift) == (u128::from(net) >> shift)
            }
            _ => false,
        }
    }
}

const RULE_FORMS: &str = "expected HOST, HOST:PORT, IP, IP:PORT, CIDR, CIDR:PORT or `*` (e.g. `api.example.com:443`, `127.0.0.1:9000`, `10.0.0.0/8`)";

impl FromStr for OutboundRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let s = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"))
            .unwrap_or(s);
        let invalid = || format!("invalid outbound rule `{s}`: {RULE_FORMS}");
        let (host, port) = split_port(s).ok_or_else(invalid)?;
        let port = match port {
            None => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                format!("invalid port in outbound rule `{s}`: expected a number from 1 to 65535")
            })?),
        };
        let target = if host == "*" {
            Target::Any
        } else if let Some((ip, len)) = host.split_once('/') {
            net(ip, len).ok_or_else(invalid)?
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            let ip = ranges::canonical(ip);
            Target::Net(ip, if ip.is_ipv4() { 32 } else { 128 })
        } else if host.is_empty() || host.contains(['/', '[', ']', ':', '*']) {
            return Err(invalid());
        } else {
            Target::Name(host.to_ascii_lowercase())
        };
        Ok(OutboundRule { target, port })
    }
}

/// `HOST` and `PORT` of `HOST[:PORT]`, where an IPv6 host with a port is
/// bracketed (`[::1]:80`, `[fd00::/8]:443`) and a bare IPv6 host has none.
fn split_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            after => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match s.matches(':').count() {
        0 => Some((s, None)),
        1 => s.split_once(':').map(|(h, p)| (h, Some(p))),
        _ => Some((s, None)),
    }
}

/// The network `ip/len`, with the bits past the prefix cleared.
fn net(ip: &str, len: &str) -> Option<Target> {
    let ip = ranges::canonical(ip.parse::<IpAddr>().ok()?);
    let len: u8 = len.parse().ok()?;
    match ip {
        IpAddr::V4(v4) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            Some(Target::Net(
                (u32::from(v4) & mask).to_be_bytes().into(),
                len,
            ))
        }
        IpAddr::V6(v6) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            Some(Target::Net(
                (u128::from(v6) & mask).to_be_bytes().into(),
                len,
            ))
        }
        _ => None,
    }
}

impl fmt::Display for OutboundRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.target {
            Target::Any => "*".to_string(),
            Target::Name(name) => name.clone(),
            Target::Net(ip, len) if u32::from(*len) == full_len(*ip) => ip.to_string(),
            Target::Net(ip, len) => format!("{ip}/{len}"),
        };
        match self.port {
            Some(port) if host.contains(':') => write!(f, "[{host}]:{port}"),
            Some(port) => write!(f, "{host}:{port}"),
            None => f.write_str(&host),
        }
    }
}

fn full_len(ip: IpAddr) -> u32 {
    if ip.is_ipv4() { 32 } else { 128 }
}

impl Policy {
    /// Whether the guest may send a request naming `host:port`, before any
    /// address is known.
    pub fn outbound_allowed(&self, host: &str, port: u16) -> bool {
        self.check_host(host, port).is_ok()
    }

    /// Judges the host a request names: a deny rule refuses it, and some
    /// allow rule must match it.
    pub(crate) fn check_host(&self, host: &str, port: u16) -> Result<(), Refusal> {
        let host = host.trim_matches(['[', ']']).to_string();
        if self.deny_outbound.iter().any(|r| r.matches(&host, port)) {
            return Err(Refusal::HostDenied { host, port });
        }
        if !self.allow_outbound.iter().any(|r| r.matches(&host, port)) {
            return Err(Refusal::NotAllowed { host, port });
        }
        Ok(())
    }

    /// Judges one address a request's host resolved to: never a denied
    /// listener, and a special-purpose address only when an IP or CIDR rule
    /// covers it.
    pub(crate) fn check_addr(&self, addr: SocketAddr) -> Result<(), Refusal> {
        let addr = SocketAddr::new(ranges::canonical(addr.ip()), addr.port());
        if self.denied_addrs.denies(addr) {
            return Err(Refusal::Member { addr });
        }
        if let Some(range) = ranges::special(addr.ip())
            && !self.allow_outbound.iter().any(|r| r.covers_addr(addr))
        {
            return Err(Refusal::Range { addr, range });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> OutboundRule {
        s.parse().unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
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
        assert!(rule("::1").matches("[::1]", 80));
        assert!(rule("http://example.com").matches("example.com", 80));
        assert!(rule("10.0.0.0/8").matches("10.9.8.7", 80));
        assert!(!rule("10.0.0.0/8").matches("11.0.0.1", 80));
        assert!(!rule("10.0.0.0/8").matches("internal.example", 80));
        assert!(rule("[fd00::/8]:443").matches("[fd12::1]", 443));
    }

    #[test]
    fn rules_read_back_as_written() {
        for s in [
            "*",
            "example.com",
            "example.com:443",
            "127.0.0.1:9000",
            "10.0.0.0/8",
            "10.0.0.0/8:443",
            "::1",
            "[::1]:80",
            "fd00::/8",
            "[fd00::/8]:443",
        ] {
            assert_eq!(rule(s).to_string(), s);
        }
        assert_eq!(rule("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(rule("::ffff:127.0.0.1").to_string(), "127.0.0.1");
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
        assert!("a.com:0".parse::<OutboundRule>().is_err());
        assert!("a.com/path".parse::<OutboundRule>().is_err());
        assert!("10.0.0.0/33".parse::<OutboundRule>().is_err());
        assert!("[::1".parse::<OutboundRule>().is_err());
        assert!(
            "a.com/8"
                .parse::<OutboundRule>()
                .unwrap_err()
                .contains("CIDR")
        );
    }

    #[test]
    fn deny_wins_over_allow_and_nothing_is_allowed_by_default() {
        let mut policy = Policy::default();
        assert!(!policy.outbound_allowed("example.com", 80));
        policy.allow_outbound.push(rule("*"));
        policy.deny_outbound.push(rule("*:7070"));
        assert!(policy.outbound_allowed("example.com", 80));
        assert!(!policy.outbound_allowed("127.0.0.1", 7070));
        assert!(!policy.outbound_allowed("localhost", 7070));
    }

    #[test]
    fn a_wildcard_or_a_name_never_reaches_a_special_address() {
        let policy = Policy {
            allow_outbound: vec![rule("*"), rule("internal.example")],
            ..Policy::default()
        };
        assert_eq!(policy.check_addr(addr("93.184.216.34:80")), Ok(()));
        for special in [
            "127.0.0.1:80",
            "169.254.169.254:80",
            "10.0.0.1:443",
            "[::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[fd00:ec2::254]:80",
            "0.0.0.0:80",
        ] {
            let refusal = policy.check_addr(addr(special)).unwrap_err();
            assert!(refusal.is_address(), "{refusal}");
            assert!(
                refusal.to_string().contains("--allow-outbound"),
                "{refusal}"
            );
        }
    }

    #[test]
    fn an_ip_or_cidr_rule_reaches_its_addresses_but_never_a_denied_listener() {
        let policy = Policy {
            allow_outbound: vec![rule("127.0.0.1:9000"), rule("10.0.0.0/8")],
            ..Policy::default()
        };
        policy
            .denied_addrs
            .extend([addr("127.0.0.1:7070"), addr("10.0.0.5:80")]);
        assert_eq!(policy.check_addr(addr("127.0.0.1:9000")), Ok(()));
        assert_eq!(policy.check_addr(addr("[::ffff:127.0.0.1]:9000")), Ok(()));
        assert_eq!(policy.check_addr(addr("10.200.0.1:443")), Ok(()));
        assert!(policy.check_addr(addr("127.0.0.1:9001")).is_err());
        assert!(policy.check_addr(addr("[::1]:9000")).is_err());
        assert_eq!(
            policy.check_addr(addr("10.0.0.5:80")),
            Err(Refusal::Member {
                addr: addr("10.0.0.5:80")
            })
        );
        let wide = Policy {
            allow_outbound: vec![rule("127.0.0.0/8")],
            denied_addrs: policy.denied_addrs.clone(),
            ..Policy::default()
        };
        assert!(matches!(
            wide.check_addr(addr("127.0.0.1:7070")),
            Err(Refusal::Member { .. })
        ));
    }
}
