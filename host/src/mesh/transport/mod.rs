//! chitchat gossip over authenticated, encrypted UDP.
//!
//! chitchat's own `UdpTransport` sends its messages in plaintext and checks
//! nothing but a cluster id. [`SealedUdpTransport`] seals every datagram
//! under the [cluster key](super::key::ClusterKey) and drops (and counts, in
//! [`TransportStats`]) anything that does not open.
//!
//! Wire format, one datagram: `SHG2` | 24-byte nonce | XChaCha20-Poly1305
//! ciphertext and tag (sub-key for the `gossip` purpose, `SHG2` as associated
//! data) of: sender id (u64) | sealing time (Unix ms, u64) | recipient
//! address (18 bytes) | message id (u32 LE) | fragment index (u8) |
//! fragment count (u8) | a chunk of chitchat's encoded message. Overhead:
//! [`DATAGRAM_OVERHEAD`], 84 bytes a datagram. A message too big for one
//! datagram goes as two. Datagrams are sealed under the primary key of the
//! [keyring](super::keyring::Keyring) and opened under any of its keys.
//!
//! - `fragments`: the wire format; seals a message into datagrams and
//!   reassembles them.
//! - `replay`: refuses copies, datagrams sealed for other members, and
//!   datagrams sealed too long ago.
//! - `codec`: chitchat's encoding of its messages, through its own socket;
//!   `pin` keeps every other local process away from that socket.
//! - `socket`: the sealed socket chitchat sends and receives through.
//! - `drops`: why a datagram was refused; counts and rate-limited warnings.
//! - `stats`: the traffic counters.
//!
//! Imports point one way: `socket` uses `codec`, `drops`, `fragments`,
//! `replay` and `stats`; `codec` uses `pin`; `replay` uses `fragments`;
//! `drops` uses `stats`; this file uses `socket` and `stats`.

mod codec;
mod drops;
mod fragments;
mod pin;
mod replay;
mod socket;
mod stats;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};

use super::keyring::Keyring;
use socket::SealedUdpSocket;

pub(crate) use fragments::DATAGRAM_OVERHEAD;
pub use stats::TransportStats;

/// chitchat's transport, sealed under the cluster keyring.
pub struct SealedUdpTransport {
    key: Keyring,
    stats: Arc<TransportStats>,
    /// The address this node advertises: never a gossip target.
    own: Option<SocketAddr>,
}

impl SealedUdpTransport {
    pub fn new(key: Keyring, stats: Arc<TransportStats>) -> Self {
        SealedUdpTransport {
            key,
            stats,
            own: None,
        }
    }

    /// Never gossips to `advertised`, this node's own address. chitchat
    /// skips its own id, but a restarted node's earlier incarnation (same
    /// address, older generation) is another, dead id it may pick; a Syn
    /// to itself would make the replay guard take its own address for a
    /// peer's and refuse everything sealed for it.
    pub fn never_to(mut self, advertised: SocketAddr) -> Self {
        self.own = Some(advertised);
        self
    }
}

#[async_trait]
impl Transport for SealedUdpTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket =
            SealedUdpSocket::bind(listen_addr, self.key.clone(), self.stats.clone(), self.own)
                .await?;
        Ok(Box::new(socket))
    }
}
