//! Socket addresses no guest may connect to, whatever its policy allows:
//! the host fills this set with its own listeners and every mesh member's,
//! and adds to it as members join. The runtime knows only that these
//! addresses are denied, not what answers there.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use crate::ranges;

/// A shared, growing set of denied socket addresses. Clones share the set:
/// the host keeps one and updates it, every app's policy reads it at each
/// outbound connection.
#[derive(Clone, Default)]
pub struct DeniedAddrs {
    addrs: Arc<RwLock<Vec<SocketAddr>>>,
}

impl DeniedAddrs {
    /// An empty set.
    pub fn new() -> DeniedAddrs {
        DeniedAddrs::default()
    }

    /// Adds `addrs` (those already present are skipped).
    pub fn extend(&self, addrs: impl IntoIterator<Item = SocketAddr>) {
        let mut set = self.addrs.write().unwrap_or_else(|e| e.into_inner());
        for addr in addrs {
            let addr = SocketAddr::new(ranges::canonical(addr.ip()), addr.port());
            if !set.contains(&addr) {
                set.push(addr);
            }
        }
    }

    /// Whether a connection to `addr` would reach a denied address. A
    /// loopback or unspecified address stands for every other one (a
    /// listener on `0.0.0.0:P` answers `127.0.0.2:P` too).
    pub fn denies(&self, addr: SocketAddr) -> bool {
        let ip = ranges::canonical(addr.ip());
        let local = ranges::is_local(ip);
        let set = self.addrs.read().unwrap_or_else(|e| e.into_inner());
        set.iter().any(|denied| {
            denied.port() == addr.port()
                && (denied.ip() == ip || (local && ranges::is_local(denied.ip())))
        })
    }

    /// How many addresses are denied.
    pub fn len(&self) -> usize {
        self.addrs.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no address is denied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for DeniedAddrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.addrs.read().unwrap_or_else(|e| e.into_inner());
        f.debug_set().entries(set.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn clones_share_one_growing_set() {
        let host = DeniedAddrs::new();
        let app = host.clone();
        assert!(!app.denies(addr("10.0.0.5:7070")));
        host.extend([addr("10.0.0.5:7070"), addr("10.0.0.5:7070")]);
        assert_eq!(host.len(), 1);
        assert!(app.denies(addr("10.0.0.5:7070")));
        assert!(app.denies(addr("[::ffff:10.0.0.5]:7070")));
        assert!(!app.denies(addr("10.0.0.5:7071")));
        assert!(!app.denies(addr("10.0.0.6:7070")));
    }

    #[test]
    fn a_local_address_stands_for_every_local_address() {
        let set = DeniedAddrs::new();
        set.extend([addr("127.0.0.1:8080")]);
        assert!(set.denies(addr("127.0.0.2:8080")));
        assert!(set.denies(addr("0.0.0.0:8080")));
        assert!(set.denies(addr("[::1]:8080")));
        assert!(!set.denies(addr("10.0.0.1:8080")));
    }
}
