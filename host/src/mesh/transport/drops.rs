//! Refused datagrams: why each was refused, the counts in
//! [`TransportStats`] (in all and by reason), and at most one warning of a
//! kind per interval for those that suggest a misconfigured member or an
//! attack.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::stats::{DROP_REASONS, TransportStats};

/// At most one warning of a kind per this interval; the rest go to debug.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DropReason {
    TooShort,
    WrongTag,
    Unauthenticated,
    Malformed,
    Repeated,
    Incomplete,
    Reserved,
    Undecodable,
    CodecBusy,
    Stale,
    Replayed,
    Misaddressed,
    Forgotten,
    OtherVersion,
}

impl DropReason {
    pub(super) const ALL: [DropReason; DROP_REASONS] = [
        DropReason::TooShort,
        DropReason::WrongTag,
        DropReason::Unauthenticated,
        DropReason::Malformed,
        DropReason::Repeated,
        DropReason::Incomplete,
        DropReason::Reserved,
        DropReason::Undecodable,
        DropReason::CodecBusy,
        DropReason::Stale,
        DropReason::Replayed,
        DropReason::Misaddressed,
        DropReason::Forgotten,
        DropReason::OtherVersion,
    ];

    /// The `reason` label of `shoal_gossip_dropped_packets_total`.
    pub(super) fn label(self) -> &'static str {
        match self {
            DropReason::TooShort => "too_short",
            DropReason::WrongTag => "wrong_tag",
            DropReason::Unauthenticated => "unauthenticated",
            DropReason::Malformed => "malformed",
            DropReason::Repeated => "repeated_fragment",
            DropReason::Incomplete => "incomplete",
            DropReason::Reserved => "reserved",
            DropReason::Undecodable => "undecodable",
            DropReason::CodecBusy => "codec_busy",
            DropReason::Stale => "stale",
            DropReason::Replayed => "replayed",
            DropReason::Misaddressed => "misaddressed",
            DropReason::Forgotten => "forgotten",
            DropReason::OtherVersion => "other_version",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            DropReason::TooShort => "too short",
            DropReason::WrongTag => "not a shoal gossip packet",
            DropReason::Unauthenticated => "not sealed under this cluster key, or altered",
            DropReason::Malformed => "bad fragment header",
            DropReason::Repeated => "fragment repeats or contradicts an earlier one",
            DropReason::Incomplete => "fragments of a message never completed",
            DropReason::Reserved => "starts with the codec marker",
            DropReason::Undecodable => "not a chitchat message",
            DropReason::CodecBusy => "loopback codec socket busy",
            DropReason::Stale => "sealed too long ago, or by a clock too far from this one",
            DropReason::Replayed => "a copy of a datagram already received",
            DropReason::Misaddressed => "sealed for another member",
            DropReason::Forgotten => "older than every datagram still remembered",
            DropReason::OtherVersion => "another version of shoal's gossip wire format",
        }
    }

    fn kind(self) -> DropKind {
        match self {
            DropReason::TooShort | DropReason::WrongTag | DropReason::Unauthenticated => {
                DropKind::Authentication
            }
            DropReason::Malformed
            | DropReason::Reserved
            | DropReason::Undecodable
            | DropReason::OtherVersion => DropKind::Incompatible,
            DropReason::Repeated | DropReason::Incomplete | DropReason::CodecBusy => DropKind::Lost,
            DropReason::Stale => DropKind::Clock,
            DropReason::Replayed | DropReason::Misaddressed | DropReason::Forgotten => {
                DropKind::Replay
            }
        }
    }
}

/// What a dropped packet suggests, and so which warning it is worth.
enum DropKind {
    /// The sender may not hold the cluster key.
    Authentication,
    /// The sender holds the key but speaks another format.
    Incompatible,
    /// A member's clock is off, or someone plays back old datagrams.
    Clock,
    /// Someone plays back captured datagrams.
    Replay,
    /// The network or this host lost something.
    Lost,
}

/// Counts and reports the datagrams one socket refuses.
pub(super) struct Drops {
    stats: Arc<TransportStats>,
    auth_warnings: WarnLimiter,
    decode_warnings: WarnLimiter,
    clock_warnings: WarnLimiter,
    replay_warnings: WarnLimiter,
}

impl Drops {
    pub(super) fn new(stats: Arc<TransportStats>) -> Drops {
        Drops {
            stats,
            auth_warnings: WarnLimiter::default(),
            decode_warnings: WarnLimiter::default(),
            clock_warnings: WarnLimiter::default(),
            replay_warnings: WarnLimiter::default(),
        }
    }

    /// Counts `count` datagrams from `from` as dropped for `reason`.
    pub(super) fn record(&mut self, count: u64, from: SocketAddr, reason: DropReason) {
        self.stats
            .dropped_packets
            .fetch_add(count, Ordering::Relaxed);
        self.stats.dropped_by_reason[reason as usize].fetch_add(count, Ordering::Relaxed);
        let reason_text = reason.as_str();
        tracing::debug!(%from, reason = reason_text, count, "gossip packet dropped");
        match reason.kind() {
            DropKind::Authentication => {
                if let Some(suppressed) = self.auth_warnings.ready() {
                    tracing::warn!(
                        %from,
                        reason = reason_text,
                        suppressed,
                        "gossip packet failed authentication: is this node using the same cluster key (`--cluster-key-file`)?"
                    );
                }
            }
            DropKind::Incompatible => {
                if let Some(suppressed) = self.decode_warnings.ready() {
                    tracing::warn!(
                        %from,
                        reason = reason_text,
                        suppressed,
                        "gossip packet from a holder of the cluster key could not be decoded: do all members run the same shoal version?"
                    );
                }
            }
            DropKind::Clock => {
                if let Some(suppressed) = self.clock_warnings.ready() {
                    tracing::warn!(
                        %from,
                        reason = reason_text,
                        suppressed,
                        "gossip packet sealed outside the replay window: is this member's clock in sync with the others (NTP)?"
                    );
                }
            }
            DropKind::Replay => {
                if let Some(suppressed) = self.replay_warnings.ready() {
                    tracing::warn!(
                        %from,
                        reason = reason_text,
                        suppressed,
                        "gossip packet refused as a replay: someone is sending captured gossip again"
                    );
                }
            }
            // UDP loses and repeats datagrams; chitchat gossips again.
            DropKind::Lost => {}
        }
    }
}

impl TransportStats {
    /// Datagrams dropped, by the `reason` label of each.
    pub fn dropped_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL.into_iter().map(|reason| {
            let count = self.dropped_by_reason[reason as usize].load(Ordering::Relaxed);
            (reason.label(), count)
        })
    }
}

/// Lets one warning through per `WARN_INTERVAL` and counts the rest.
#[derive(Default)]
struct WarnLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    /// `Some(suppressed since the last warning)` when one may be logged now.
    fn ready(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < WARN_INTERVAL)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}
