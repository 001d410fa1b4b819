//! Replayed gossip: a sealed datagram is accepted once, within
//! [`WINDOW`] of the time its sender sealed it, and never when it was
//! sealed for an address this node gossips to (another member).
//!
//! Without this, anyone who captured one sealed Syn could send it again
//! and again with a forged source address, and each copy would make its
//! receiver send up to two 65 KB datagrams of state to that address; or
//! hold back a node's last datagrams and play them after it died, so that
//! its heartbeats look fresh again. With it, a copy is refused by the node
//! it was sent to (seen before), by every node that gossips with that node
//! (sealed for someone else), and by everyone once [`WINDOW`] has passed.
//!
//! Memory is bounded: only authenticated datagrams are remembered, each
//! until its window closes, at most [`MAX_REMEMBERED`] of them; past that
//! the oldest is forgotten and everything sealed before it is refused.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use super::fragments::FragmentHeader;

/// How far a datagram's sealing time may be from this node's clock, either
/// way. Members' clocks must agree to within it (NTP keeps them to
/// milliseconds); a replay must come within it.
pub(super) const WINDOW: Duration = Duration::from_secs(10);
/// Datagrams remembered at most: a few seconds of gossip for a mesh of
/// thousands of nodes, about 3 MB.
pub(super) const MAX_REMEMBERED: usize = 65_536;
/// Addresses this node gossips to that are remembered at most.
pub(super) const MAX_TARGETS: usize = 4096;
/// How long an address this node gossiped to stays known as not its own.
pub(super) const TARGET_TTL: Duration = Duration::from_secs(600);

/// Why an authenticated datagram was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Sealed further than [`WINDOW`] from now; how far, in ms (positive:
    /// in the past).
    Stale { skew_ms: i64 },
    /// Seen before.
    Replayed,
    /// Sealed for an address this node gossips to, so not for this node.
    Misaddressed,
    /// Sealed before the oldest datagram still remembered.
    Forgotten,
}

/// One datagram: who sealed it and when, and which fragment of which
/// message it is. Ordered by time first, so the oldest go first.
type Seen = (u64, u64, u32, u8);

#[derive(Default)]
pub(super) struct ReplayGuard {
    seen: BTreeSet<Seen>,
    /// Datagrams sealed at or before this time (ms) are refused: the
    /// remembered ones that were forgotten to keep memory bounded.
    floor_ms: u64,
    /// Addresses this node started gossip with, and when it last did.
    targets: HashMap<SocketAddr, u64>,
}

impl ReplayGuard {
    /// Accepts a datagram at `now_ms` (Unix ms), or says why not.
    pub(super) fn check(&mut self, header: &FragmentHeader, now_ms: u64) -> Result<(), Refusal> {
        let window_ms = WINDOW.as_millis() as u64;
        while let Some(&(sent_ms, ..)) = self.seen.first() {
            if sent_ms.saturating_add(window_ms) >= now_ms {
                break;
            }
            self.seen.pop_first();
        }
        let stamp = header.stamp;
        let skew_ms = now_ms as i64 - stamp.sent_ms as i64;
        if skew_ms.unsigned_abs() > window_ms {
            return Err(Refusal::Stale { skew_ms });
        }
        if self.targets.contains_key(&stamp.to) {
            return Err(Refusal::Misaddressed);
        }
        if stamp.sent_ms <= self.floor_ms {
            return Err(Refusal::Forgotten);
        }
        let seen = (stamp.sent_ms, stamp.sender, header.id, header.index as u8);
        if !self.seen.insert(seen) {
            return Err(Refusal::Replayed);
        }
        if self.seen.len() > MAX_REMEMBERED
            && let Some((oldest_ms, ..)) = self.seen.pop_first()
        {
            self.floor_ms = self.floor_ms.max(oldest_ms);
        }
        Ok(())
    }

    /// Records that this node started gossip with `to` (sent it a Syn):
    /// `to` is another member, so nothing sealed for it is for this node.
    pub(super) fn gossiped_to(&mut self, to: SocketAddr, now_ms: u64) {
        let to = SocketAddr::new(to.ip().to_canonical(), to.port());
        if !self.targets.contains_key(&to) && self.targets.len() >= MAX_TARGETS {
            let ttl_ms = TARGET_TTL.as_millis() as u64;
            self.targets
                .retain(|_, last| last.saturating_add(ttl_ms) >= now_ms);
            if self.targets.len() >= MAX_TARGETS
                && let Some(oldest) = self.targets.iter().min_by_key(|(_, last)| **last)
            {
                let oldest = *oldest.0;
                self.targets.remove(&oldest);
            }
        }
        self.targets.insert(to, now_ms);
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fragments::Stamp;
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn me() -> SocketAddr {
        "127.0.0.1:7946".parse().unwrap()
    }

    fn header(sender: u64, sent_ms: u64, id: u32, index: usize) -> FragmentHeader {
        FragmentHeader {
            stamp: Stamp {
                sender,
                sent_ms,
                to: me(),
            },
            id,
            index,
            count: 2,
        }
    }

    #[test]
    fn a_datagram_is_accepted_once() {
        let mut guard = ReplayGuard::default();
        assert_eq!(guard.check(&header(1, NOW, 7, 0), NOW), Ok(()));
        assert_eq!(
            guard.check(&header(1, NOW, 7, 0), NOW + 5),
            Err(Refusal::Replayed)
        );
        // Its other fragment, another message, another sender: all new.
        for other in [
            header(1, NOW, 7, 1),
            header(1, NOW, 8, 0),
            header(2, NOW, 7, 0),
        ] {
            assert_eq!(guard.check(&other, NOW + 5), Ok(()), "{other:?}");
        }
    }

    #[test]
    fn only_datagrams_sealed_within_the_window_are_accepted() {
        let mut guard = ReplayGuard::default();
        let window = WINDOW.as_millis() as u64;
        assert_eq!(guard.check(&header(1, NOW - window, 1, 0), NOW), Ok(()));
        assert_eq!(guard.check(&header(1, NOW + window, 2, 0), NOW), Ok(()));
        assert_eq!(
            guard.check(&header(1, NOW - window - 1, 3, 0), NOW),
            Err(Refusal::Stale {
                skew_ms: window as i64 + 1
            })
        );
        assert_eq!(
            guard.check(&header(1, NOW + window + 1, 4, 0), NOW),
            Err(Refusal::Stale {
                skew_ms: -(window as i64) - 1
            })
        );
        // A replay after the window is stale, not merely seen.
        assert_eq!(
            guard.check(&header(1, NOW - window, 1, 0), NOW + 1),
            Err(Refusal::Stale {
                skew_ms: window as i64 + 1
            })
        );
    }

    #[test]
    fn memory_holds_one_window_and_is_bounded() {
        let mut guard = ReplayGuard::default();
        let window = WINDOW.as_millis() as u64;
        for id in 0..1000 {
            guard.check(&header(1, NOW, id, 0), NOW).unwrap();
        }
        assert_eq!(guard.remembered(), 1000);
        // Once their window has closed they are forgotten on the next check.
        let later = NOW + window + 1;
        guard.check(&header(1, later, 0, 0), later).unwrap();
        assert_eq!(guard.remembered(), 1);

        // A flood of fresh datagrams is capped; what was forgotten to make
        // room, and anything older, is refused rather than accepted again.
        let mut guard = ReplayGuard::default();
        for n in 0..=MAX_REMEMBERED as u64 {
            guard
                .check(&header(1, NOW + n / 100, n as u32, 0), NOW)
                .unwrap();
        }
        assert_eq!(guard.remembered(), MAX_REMEMBERED);
        assert_eq!(
            guard.check(&header(1, NOW, 0, 0), NOW),
            Err(Refusal::Forgotten)
        );
        assert_eq!(guard.check(&header(9, NOW + 1000, 0, 0), NOW), Ok(()));
    }

    #[test]
    fn datagrams_sealed_for_a_node_this_one_gossips_to_are_refused() {
        let mut guard = ReplayGuard::default();
        let other: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let sealed_for = |to: SocketAddr, id| FragmentHeader {
            stamp: Stamp {
                to,
                ..header(1, NOW, id, 0).stamp
            },
            ..header(1, NOW, id, 0)
        };
        assert_eq!(guard.check(&sealed_for(other, 1), NOW), Ok(()));
        guard.gossiped_to(other, NOW);
        assert_eq!(
            guard.check(&sealed_for(other, 2), NOW),
            Err(Refusal::Misaddressed)
        );
        // An IPv4-mapped form of the same address is the same address.
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:7001".parse().unwrap();
        guard.gossiped_to(mapped, NOW);
        let plain: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        assert_eq!(
            guard.check(&sealed_for(plain, 3), NOW),
            Err(Refusal::Misaddressed)
        );
        assert_eq!(guard.check(&sealed_for(me(), 4), NOW), Ok(()));

        // Targets are bounded; stale ones go first.
        for port in 0..MAX_TARGETS as u16 {
            guard.gossiped_to(SocketAddr::new(other.ip(), 10_000 + port), NOW);
        }
        assert!(guard.targets.len() <= MAX_TARGETS);
        let much_later = NOW + TARGET_TTL.as_millis() as u64 + 1;
        guard.gossiped_to(SocketAddr::new(other.ip(), 9), much_later);
        assert_eq!(guard.targets.len(), 1);
    }
}
