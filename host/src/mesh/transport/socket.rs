//! The sealed socket chitchat gossips through: seals what chitchat sends,
//! and opens, reassembles and decodes what arrives.
//!
//! A send error does not stop chitchat's server (it logs `gossip` errors and
//! ignores reply errors; only a `recv` error ends its loop), so send errors
//! are returned as chitchat's own transport returns them, and `recv` returns
//! an error only when a socket is broken.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket};
use chitchat::{ChitchatEnvelope, ChitchatMessage};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::codec::{CODEC_TIMEOUT, Codec, is_marker};
use super::drops::{DropReason, Drops};
use super::fragments::{
    Added, DATAGRAM_OVERHEAD, FRAGMENT_HEADER_LEN, FragmentHeader, Reassembly, Stamp, WIRE_MAGIC,
    WIRE_TAG, seal_datagrams,
};
use super::replay::{Refusal, ReplayGuard};
use super::stats::TransportStats;
use crate::clock::unix_now_ms;
use crate::mesh::key::Purpose;
use crate::mesh::keyring::Keyring;

pub(super) struct SealedUdpSocket {
    /// The gossip address: sealed datagrams only.
    wire: UdpSocket,
    codec: Codec,
    key: Keyring,
    stats: Arc<TransportStats>,
    drops: Drops,
    /// Names this socket in what it seals; random, so a restarted node is
    /// a new sender to the replay guards of its peers.
    sender: u64,
    replay: ReplayGuard,
    recv_buf: Vec<u8>,
    /// The datagram being decoded; kept across cancelled `recv` calls.
    pending: Option<Pending>,
    reassembly: Reassembly,
    next_message_id: u32,
    /// This node's own addresses: the advertised one, and the bound one
    /// unless it is unspecified. Nothing is ever sent to them.
    own: Vec<SocketAddr>,
}

/// One authenticated message on its way through the decoder. Each step
/// records its progress, so a cancelled `recv` resumes where it stopped.
struct Pending {
    from: SocketAddr,
    wire_bytes: usize,
    /// Not yet handed to the decoder.
    message: Option<Vec<u8>>,
    marker_sent: bool,
    decoded: Option<ChitchatEnvelope>,
    deadline: Instant,
}

impl SealedUdpSocket {
    pub(super) async fn bind(
        listen_addr: SocketAddr,
        key: Keyring,
        stats: Arc<TransportStats>,
        advertised: Option<SocketAddr>,
    ) -> anyhow::Result<SealedUdpSocket> {
        let wire = UdpSocket::bind(listen_addr).await.with_context(|| {
            format!("cannot bind gossip to {listen_addr}/udp; is another process using that port?")
        })?;
        let mut random = [0u8; 12];
        getrandom::fill(&mut random).map_err(|error| {
            anyhow::anyhow!("the operating system's random number generator failed: {error}")
        })?;
        let (id, sender) = random.split_at(4);
        let codec = Codec::open().await?;
        let bound = wire.local_addr().ok().filter(|a| !a.ip().is_unspecified());
        let own = advertised.into_iter().chain(bound).map(canonical).collect();
        tracing::debug!(%listen_addr, codec = %codec.tap_addr(), "sealed gossip socket open");
        Ok(SealedUdpSocket {
            wire,
            codec,
            key,
            drops: Drops::new(stats.clone()),
            stats,
            sender: u64::from_le_bytes(sender.try_into()?),
            replay: ReplayGuard::default(),
            recv_buf: vec![0; 1 << 16],
            pending: None,
            reassembly: Reassembly::default(),
            next_message_id: u32::from_le_bytes(id.try_into()?),
            own,
        })
    }

    /// Checks and opens one datagram read into `recv_buf`; a whole message
    /// becomes `pending`.
    fn accept(&mut self, len: usize, from: SocketAddr) {
        self.stats.received_packets.fetch_add(1, Ordering::Relaxed);
        self.stats
            .received_bytes
            .fetch_add(len as u64, Ordering::Relaxed);
        let Some(sealed) = self.recv_buf[..len].strip_prefix(WIRE_TAG) else {
            let reason = if len < DATAGRAM_OVERHEAD {
                DropReason::TooShort
            } else if self.recv_buf[..len].starts_with(WIRE_MAGIC) {
                DropReason::OtherVersion
            } else {
                DropReason::WrongTag
            };
            return self.drops.record(1, from, reason);
        };
        let keys = self.key.current();
        let Ok(mut opened) = keys.open_with_aad(Purpose::Gossip, WIRE_TAG, sealed) else {
            return self.drops.record(1, from, DropReason::Unauthenticated);
        };
        let Some(header) = FragmentHeader::parse(&opened) else {
            return self.drops.record(1, from, DropReason::Malformed);
        };
        if let Err(refusal) = self.replay.check(&header, unix_now_ms()) {
            let reason = match refusal {
                Refusal::Stale { skew_ms } => {
                    tracing::debug!(%from, skew_ms, "gossip packet outside the replay window");
                    DropReason::Stale
                }
                Refusal::Replayed => DropReason::Replayed,
                Refusal::Misaddressed => DropReason::Misaddressed,
                Refusal::Forgotten => DropReason::Forgotten,
            };
            return self.drops.record(1, from, reason);
        }
        opened.drain(..FRAGMENT_HEADER_LEN);
        let (message, wire_bytes) = if header.count == 1 {
            (opened, len)
        } else {
            match self.reassemble(from, header, opened, len) {
                Some(whole) => whole,
                None => return,
            }
        };
        if message.starts_with(self.codec.marker()) {
            return self.drops.record(1, from, DropReason::Reserved);
        }
        self.pending = Some(Pending {
            from,
            wire_bytes,
            message: Some(message),
            marker_sent: false,
            decoded: None,
            deadline: Instant::now() + CODEC_TIMEOUT,
        });
    }

    /// Adds one fragment to its message; the message and its wire bytes
    /// once it is whole.
    fn reassemble(
        &mut self,
        from: SocketAddr,
        header: FragmentHeader,
        chunk: Vec<u8>,
        len: usize,
    ) -> Option<(Vec<u8>, usize)> {
        let now = Instant::now();
        for (sender, fragments) in self.reassembly.expire(now) {
            self.drops.record(fragments, sender, DropReason::Incomplete);
        }
        match self.reassembly.add(from, header, chunk, len, now) {
            Added::Complete {
                message,
                wire_bytes,
            } => return Some((message, wire_bytes)),
            Added::Waiting => {}
            Added::Refused => self.drops.record(1, from, DropReason::Repeated),
            Added::Evicted { sender, fragments } => {
                self.drops.record(fragments, sender, DropReason::Incomplete);
            }
        }
        None
    }

    /// Moves `pending` one step through the decoder; the message once it is
    /// decoded and closed by the marker. Every await is cancel-safe and
    /// progress is recorded right after it.
    async fn decode_pending(&mut self) -> anyhow::Result<Option<RecvOutcome>> {
        let Some(pending) = self.pending.as_mut() else {
            return Ok(None);
        };
        if let Some(message) = &pending.message {
            let sent = self.codec.feed(message).await;
            if let Err(error) = sent {
                return self.codec_send_failed(error);
            }
            pending.message = None;
        }
        if !pending.marker_sent {
            let sent = self.codec.feed_marker().await;
            if let Err(error) = sent {
                return self.codec_send_failed(error);
            }
            pending.marker_sent = true;
        }
        let deadline = pending.deadline;
        let outcome = match tokio::time::timeout_at(deadline, self.codec.decoded()).await {
            Ok(outcome) => outcome.context("gossip codec socket failed")?,
            Err(_elapsed) => {
                // The marker was lost on loopback; a decoded message stands.
                let pending = self.pending.take().expect("pending checked above");
                return Ok(self.finish(pending));
            }
        };
        if outcome.from_addr != self.codec.tap_addr() {
            tracing::debug!(from = %outcome.from_addr, "ignored a datagram sent to the gossip codec socket by another local process");
            return Ok(None);
        }
        if is_marker(&outcome.envelope) {
            let pending = self.pending.take().expect("pending checked above");
            return Ok(self.finish(pending));
        }
        if pending.decoded.is_none() {
            pending.decoded = Some(outcome.envelope);
        }
        Ok(None)
    }

    fn finish(&mut self, pending: Pending) -> Option<RecvOutcome> {
        match pending.decoded {
            Some(envelope) => Some(RecvOutcome {
                from_addr: pending.from,
                envelope,
                num_bytes_received: pending.wire_bytes,
            }),
            None => {
                self.drops.record(1, pending.from, DropReason::Undecodable);
                None
            }
        }
    }

    fn codec_send_failed(&mut self, error: io::Error) -> anyhow::Result<Option<RecvOutcome>> {
        if is_transient_io_error(&error) {
            let pending = self.pending.take().expect("pending checked above");
            self.drops.record(1, pending.from, DropReason::CodecBusy);
            return Ok(None);
        }
        Err(error).context("gossip codec cannot write to loopback")
    }
}

/// The same transient errors chitchat's `UdpSocket` survives.
fn is_transient_io_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::OutOfMemory
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

#[async_trait]
impl Socket for SealedUdpSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.wire
            .local_addr()
            .context("cannot read the gossip socket's address")
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        if self.own.contains(&canonical(to)) {
            tracing::debug!(%to, "gossip to this node's own address skipped (an earlier incarnation of it)");
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        let now_ms = unix_now_ms();
        if matches!(envelope.message, ChitchatMessage::Syn { .. }) {
            // A Syn goes to another member's advertised address (or a
            // seed). Replies go wherever a request came from, which may be
            // a relay or NAT that also forwards to this node, so only Syn
            // targets are known not to be this node.
            self.replay.gossiped_to(to, now_ms);
        }
        let message = self.codec.encode(envelope).await?;
        let id = self.next_message_id;
        self.next_message_id = id.wrapping_add(1);
        let stamp = Stamp {
            sender: self.sender,
            sent_ms: now_ms,
            to,
        };
        let datagrams = seal_datagrams(self.key.current().primary(), stamp, id, message);
        if datagrams.len() > 1 {
            tracing::debug!(%to, bytes = message.len(), fragments = datagrams.len(), "gossip message split");
        }
        let mut num_bytes_sent = 0;
        for datagram in &datagrams {
            let sent = self
                .wire
                .send_to(datagram, to)
                .await
                .with_context(|| format!("cannot send gossip to {to}"))?;
            self.stats.sent_packets.fetch_add(1, Ordering::Relaxed);
            self.stats
                .sent_bytes
                .fetch_add(sent as u64, Ordering::Relaxed);
            num_bytes_sent += sent;
        }
        Ok(SendOutcome { num_bytes_sent })
    }

    /// Cancel-safe like chitchat's: a datagram read off the wire is kept in
    /// `pending` and finished by the next call.
    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            if self.pending.is_some() {
                if let Some(outcome) = self.decode_pending().await? {
                    return Ok(outcome);
                }
                continue;
            }
            match self.wire.recv_from(&mut self.recv_buf).await {
                Ok((len, from)) => self.accept(len, from),
                Err(error) if is_transient_io_error(&error) => {
                    tracing::warn!(%error, "transient gossip receive error");
                }
                Err(error) => return Err(error).context("cannot receive gossip"),
            }
        }
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests;
