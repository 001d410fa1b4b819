//! chitchat gossip over authenticated, encrypted UDP.
//!
//! chitchat's own `UdpTransport` sends its messages in plaintext and checks
//! nothing but a cluster id. [`SealedUdpTransport`] seals every datagram
//! under the [cluster key](super::key::ClusterKey) and drops (and counts, in
//! [`TransportStats`]) anything that does not open.
//!
//! Wire format, one datagram: `SHG1` | 24-byte nonce | XChaCha20-Poly1305
//! ciphertext and tag (sub-key for the `gossip` purpose, `SHG1` as associated
//! data) of: message id (u32 LE) | fragment index (u8) | fragment count (u8) |
//! a chunk of chitchat's encoded message. Overhead:
//! [`DATAGRAM_OVERHEAD`], 50 bytes a datagram. A message too big for one datagram goes as two.
//!
//! - `fragments`: the wire format; seals a message into datagrams and
//!   reassembles them.
//! - `codec`: chitchat's encoding of its messages, through its own socket.
//! - `socket`: the sealed socket chitchat sends and receives through.
//! - `drops`: why a datagram was refused; counts and rate-limited warnings.
//! - `stats`: the traffic counters.
//!
//! Imports point one way: `socket` uses `codec`, `drops`, `fragments` and
//! `stats`; `drops` uses `stats`; this file uses `socket` and `stats`.

mod codec;
mod drops;
mod fragments;
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

use super::key::ClusterKey;
use socket::SealedUdpSocket;

pub(crate) use fragments::DATAGRAM_OVERHEAD;
pub use stats::TransportStats;

/// chitchat's transport, sealed under the cluster key.
pub struct SealedUdpTransport {
    key: ClusterKey,
    stats: Arc<TransportStats>,
}

impl SealedUdpTransport {
    pub fn new(key: ClusterKey, stats: Arc<TransportStats>) -> Self {
        SealedUdpTransport { key, stats }
    }
}

#[async_trait]
impl Transport for SealedUdpTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket =
            SealedUdpSocket::bind(listen_addr, self.key.clone(), self.stats.clone()).await?;
        Ok(Box::new(socket))
    }
}
