//! The gossip traffic counters.

use std::sync::atomic::AtomicU64;

/// How many reasons a datagram is dropped for (`drops::DropReason`).
pub(super) const DROP_REASONS: usize = 14;

/// Gossip traffic counters, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Datagrams handed to the OS.
    pub sent_packets: AtomicU64,
    /// Their wire bytes.
    pub sent_bytes: AtomicU64,
    /// Datagrams read from the gossip socket, accepted or not.
    pub received_packets: AtomicU64,
    /// Their wire bytes.
    pub received_bytes: AtomicU64,
    /// Received datagrams refused: not ours, failed authentication,
    /// malformed, undecodable, replayed, stale, or left incomplete in
    /// reassembly.
    pub dropped_packets: AtomicU64,
    /// The same, by reason (indexed by `DropReason`; read them with
    /// [`dropped_by_reason`](TransportStats::dropped_by_reason)).
    pub(super) dropped_by_reason: [AtomicU64; DROP_REASONS],
}
