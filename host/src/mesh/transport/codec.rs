//! chitchat's encoding of its messages, through chitchat's own socket.
//!
//! chitchat 0.13 keeps the encoding of its messages crate-private
//! (`ChitchatEnvelope::serialize` and `deserialize` are `pub(crate)`, and
//! `Digest` has no public encoder), so each sealed socket holds a [`Codec`]:
//! chitchat's `UdpSocket` on 127.0.0.1 and a "tap" socket connected to it.
//! To encode, chitchat's socket sends the message to the tap; to decode, the
//! tap sends the opened bytes to chitchat's socket and reads back the
//! message. chitchat's socket silently skips bytes it cannot decode, so every
//! decode is followed by a marker message (a `Syn` for a cluster id no node
//! uses) that closes it: a message read before the marker is the decoded
//! datagram, a marker alone means it did not decode. Only plaintext that
//! passed authentication ever reaches loopback, and chitchat's socket is
//! connected to the tap (see `pin`), so the kernel drops whatever another
//! local process sends it before chitchat can decode it.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use chitchat::transport::{RecvOutcome, Socket};
use chitchat::{ChitchatEnvelope, ChitchatMessage, ProtocolVersion};
use tokio::net::UdpSocket;

/// How long a loopback round trip through the codec may take before the
/// datagram is counted lost (only a flooded loopback socket loses one).
pub(super) const CODEC_TIMEOUT: Duration = Duration::from_millis(500);
/// Cluster id of the marker that closes each decode; no node can have it.
const MARKER_CLUSTER_ID: &str = "\0shoal: end of decoded datagram";
pub(super) const LOOPBACK: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// chitchat's own socket, used to encode and decode its messages, and the
/// tap socket it talks to on loopback. Each decode step is one socket
/// operation, so that a caller can record its progress after every await.
pub(super) struct Codec {
    chitchat: chitchat::transport::UdpSocket,
    tap: UdpSocket,
    tap_addr: SocketAddr,
    buf: Vec<u8>,
    /// The marker, encoded; authenticated input starting with it is refused.
    marker: Vec<u8>,
}

fn marker_envelope() -> ChitchatEnvelope {
    ChitchatEnvelope {
        version: ProtocolVersion::V0,
        message: ChitchatMessage::Syn {
            cluster_id: MARKER_CLUSTER_ID.to_string(),
            digest: Default::default(),
        },
    }
}

impl Codec {
    pub(super) async fn open() -> anyhow::Result<Codec> {
        let chitchat = chitchat::transport::UdpSocket::open(LOOPBACK).await?;
        let chitchat_addr = Socket::local_addr(&chitchat)?;
        let tap = UdpSocket::bind(LOOPBACK)
            .await
            .context("cannot bind the gossip codec socket on 127.0.0.1; is loopback up?")?;
        // Connected: the kernel drops whatever else is sent to the tap.
        tap.connect(chitchat_addr)
            .await
            .context("cannot connect the gossip codec socket")?;
        // And the other way: only the tap reaches chitchat's decoder.
        super::pin::pin(chitchat_addr, tap.local_addr()?)?;
        let mut codec = Codec {
            chitchat,
            tap_addr: tap.local_addr()?,
            tap,
            buf: vec![0; 1 << 16],
            marker: Vec::new(),
        };
        codec.marker = codec.encode(marker_envelope()).await?.to_vec();
        Ok(codec)
    }

    /// Where the decoder's input comes from.
    pub(super) fn tap_addr(&self) -> SocketAddr {
        self.tap_addr
    }

    /// The marker, encoded.
    pub(super) fn marker(&self) -> &[u8] {
        &self.marker
    }

    /// chitchat's encoding of `envelope`.
    pub(super) async fn encode(&mut self, envelope: ChitchatEnvelope) -> anyhow::Result<&[u8]> {
        // A cancelled encode may have left its message behind.
        while self.tap.try_recv(&mut self.buf).is_ok() {}
        self.chitchat.send(self.tap_addr, envelope).await?;
        let len = tokio::time::timeout(CODEC_TIMEOUT, self.tap.recv(&mut self.buf))
            .await
            .context("gossip codec lost a message on loopback")?
            .context("gossip codec cannot read from loopback")?;
        Ok(&self.buf[..len])
    }

    /// Hands `message` to the decoder.
    pub(super) async fn feed(&self, message: &[u8]) -> io::Result<()> {
        self.tap.send(message).await.map(drop)
    }

    /// Hands the marker to the decoder, closing the message fed before it.
    pub(super) async fn feed_marker(&self) -> io::Result<()> {
        self.tap.send(&self.marker).await.map(drop)
    }

    /// The next message the decoder read: a decoded one, or the marker (see
    /// [`is_marker`]). Cancel-safe.
    pub(super) async fn decoded(&mut self) -> anyhow::Result<RecvOutcome> {
        self.chitchat.recv().await
    }
}

#[cfg(test)]
impl Codec {
    /// Where chitchat's decoder listens.
    pub(super) fn decoder_addr(&self) -> SocketAddr {
        Socket::local_addr(&self.chitchat).unwrap()
    }
}

/// Whether `envelope` is the marker that closes a decode.
pub(super) fn is_marker(envelope: &ChitchatEnvelope) -> bool {
    *envelope == marker_envelope()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::transport::test_support::{ARRIVES, syn};

    /// Another local process sends chitchat's decoder a message of its
    /// own, valid or a zstd bomb: it is never decoded, and what the
    /// transport feeds still is.
    #[tokio::test]
    async fn only_the_transport_reaches_the_decoder() {
        let mut codec = Codec::open().await.unwrap();
        let stranger = UdpSocket::bind(LOOPBACK).await.unwrap();
        let forged = codec.encode(syn("from a stranger")).await.unwrap().to_vec();
        let ours = codec
            .encode(syn("from the transport"))
            .await
            .unwrap()
            .to_vec();
        stranger
            .send_to(&forged, codec.decoder_addr())
            .await
            .unwrap();
        codec.feed(&ours).await.unwrap();
        codec.feed_marker().await.unwrap();
        let first = tokio::time::timeout(ARRIVES, codec.decoded())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.from_addr, codec.tap_addr());
        assert_eq!(first.envelope, syn("from the transport"));
        let second = tokio::time::timeout(ARRIVES, codec.decoded())
            .await
            .unwrap()
            .unwrap();
        assert!(is_marker(&second.envelope), "{:?}", second.envelope);
    }
}
