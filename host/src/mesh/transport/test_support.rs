//! What the transport's tests share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chitchat::{ChitchatEnvelope, ChitchatMessage, ProtocolVersion};

/// Nothing arrives within this; long enough for loopback.
pub(super) const QUIET: Duration = Duration::from_millis(300);
pub(super) const ARRIVES: Duration = Duration::from_secs(2);

pub(super) fn syn(cluster_id: impl Into<String>) -> ChitchatEnvelope {
    ChitchatEnvelope {
        version: ProtocolVersion::V1,
        message: ChitchatMessage::Syn {
            cluster_id: cluster_id.into(),
            digest: Default::default(),
        },
    }
}

pub(super) fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
