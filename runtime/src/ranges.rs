//! Which special-purpose range an IP address is in: loopback, private,
//! link-local (cloud metadata lives at 169.254.169.254 and fd00:ec2::254),
//! multicast, unspecified and the other ranges that are not the public
//! internet. A guest reaches these only when its policy names the address
//! or its network explicitly.
//!
//! IPv6 forms that carry an IPv4 address (v4-mapped, v4-compatible, NAT64,
//! 6to4) are judged by the IPv4 address they carry, so `[::ffff:127.0.0.1]`
//! is loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 ranges that are not the public internet, with the name a refusal
/// gives them.
const V4: &[([u8; 4], u8, &str)] = &[
    ([0, 0, 0, 0], 8, "unspecified"),
    ([10, 0, 0, 0], 8, "private"),
    ([100, 64, 0, 0], 10, "shared (carrier-grade NAT)"),
    ([127, 0, 0, 0], 8, "loopback"),
    ([169, 254, 0, 0], 16, "link-local"),
    ([172, 16, 0, 0], 12, "private"),
    ([192, 0, 0, 0], 24, "IETF protocol assignment"),
    ([192, 168, 0, 0], 16, "private"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([224, 0, 0, 0], 4, "multicast"),
    ([240, 0, 0, 0], 4, "reserved"),
];

/// IPv6 ranges that are not the public internet (the ones carrying IPv4
/// addresses are handled by [`embedded_v4`]).
const V6: &[(u128, u8, &str)] = &[
    (0, 128, "unspecified"),
    (1, 128, "loopback"),
    (0xfc00 << 112, 7, "unique local (private)"),
    (0xfe80 << 112, 10, "link-local"),
    (0xfec0 << 112, 10, "site-local"),
    (0xff00 << 112, 8, "multicast"),
    (0x0064_ff9b_0001 << 80, 48, "NAT64 (local use)"),
];

/// The special-purpose range `ip` is in, or `None` for a public address.
pub(crate) fn special(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            if let Some((_, _, name)) = V6.iter().find(|(net, len, _)| within(bits, *net, *len)) {
                return Some(name);
            }
            embedded_v4(v6).and_then(special_v4)
        }
    }
}

/// `ip` with a v4-mapped IPv6 address (`::ffff:a.b.c.d`) turned into the
/// IPv4 address it maps, so one address has one form in every comparison.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Whether `ip` names this machine whichever listener answers it: loopback
/// or unspecified (a connection to `0.0.0.0` reaches the local host).
pub(crate) fn is_local(ip: IpAddr) -> bool {
    let ip = canonical(ip);
    ip.is_loopback() || ip.is_unspecified()
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(ip);
    V4.iter()
        .find(|(net, len, _)| {
            let shift = 32 - u32::from(*len);
            (bits >> shift) == (u32::from_be_bytes(*net) >> shift)
        })
        .map(|(_, _, name)| *name)
}

/// The IPv4 address an IPv6 address carries and a network would deliver
/// to: v4-compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4
/// `2002:AABB:CCDD::`.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low = Ipv4Addr::from(bits as u32);
    if within(bits, 0, 96) || within(bits, 0x0064_ff9b << 96, 96) {
        return Some(low);
    }
    if within(bits, 0x2002 << 112, 16) {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

fn within(bits: u128, net: u128, len: u8) -> bool {
    let shift = 128 - u32::from(len);
    shift == 128 || (bits >> shift) == (net >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> Option<&'static str> {
        special(s.parse().unwrap())
    }

    #[test]
    fn v4_ranges_that_are_not_the_internet_are_named() {
        assert_eq!(range("127.0.0.1"), Some("loopback"));
        assert_eq!(range("127.255.0.9"), Some("loopback"));
        assert_eq!(range("169.254.169.254"), Some("link-local"));
        assert_eq!(range("10.1.2.3"), Some("private"));
        assert_eq!(range("172.31.255.255"), Some("private"));
        assert_eq!(range("192.168.0.1"), Some("private"));
        assert_eq!(range("100.100.100.200"), Some("shared (carrier-grade NAT)"));
        assert_eq!(range("0.0.0.0"), Some("unspecified"));
        assert_eq!(range("224.0.0.251"), Some("multicast"));
        assert_eq!(range("255.255.255.255"), Some("reserved"));
        assert_eq!(range("172.32.0.1"), None);
        assert_eq!(range("8.8.8.8"), None);
        assert_eq!(range("93.184.216.34"), None);
    }

    #[test]
    fn v6_ranges_and_embedded_v4_are_named() {
        assert_eq!(range("::1"), Some("loopback"));
        assert_eq!(range("::"), Some("unspecified"));
        assert_eq!(range("fe80::1"), Some("link-local"));
        assert_eq!(range("fd00:ec2::254"), Some("unique local (private)"));
        assert_eq!(range("ff02::1"), Some("multicast"));
        assert_eq!(range("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(range("::ffff:169.254.169.254"), Some("link-local"));
        assert_eq!(range("::127.0.0.1"), Some("loopback"));
        assert_eq!(range("64:ff9b::a9fe:a9fe"), Some("link-local"));
        assert_eq!(range("2002:7f00:1::"), Some("loopback"));
        assert_eq!(range("::ffff:8.8.8.8"), None);
        assert_eq!(range("2606:4700::1111"), None);
    }

    #[test]
    fn mapped_addresses_compare_as_ipv4_and_local_means_this_machine() {
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(canonical(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
        assert!(is_local("127.0.0.2".parse().unwrap()));
        assert!(is_local("::ffff:127.0.0.1".parse().unwrap()));
        assert!(is_local("0.0.0.0".parse().unwrap()));
        assert!(is_local("::1".parse().unwrap()));
        assert!(!is_local("10.0.0.1".parse().unwrap()));
    }
}
