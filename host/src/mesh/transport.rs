//! chitchat gossip over authenticated, encrypted UDP.
//!
//! chitchat's own `UdpTransport` sends its messages in plaintext and checks
//! nothing but a cluster id. [`SealedUdpTransport`] seals every datagram
//! under the [cluster key](super::key::ClusterKey) and drops (and counts)
//! anything that does not open.
//!
//! Wire format, one datagram: `SHG1` | 24-byte nonce | XChaCha20-Poly1305
//! ciphertext and tag (sub-key for the `gossip` purpose, `SHG1` as associated
//! data) of: message id (u32 LE) | fragment index (u8) | fragment count (u8) |
//! a chunk of chitchat's encoded message. Overhead: 50 bytes a datagram.
//!
//! **Encoding through chitchat's own socket.** chitchat 0.13 keeps the
//! encoding of its messages crate-private (`ChitchatEnvelope::serialize` and
//! `deserialize` are `pub(crate)`, and `Digest` has no public encoder), so
//! each socket also holds a *codec*: chitchat's `UdpSocket` on 127.0.0.1 and
//! a "tap" socket connected to it. To encode, chitchat's socket sends the
//! message to the tap; to decode, the tap sends the opened bytes to chitchat's
//! socket and reads back the message. chitchat's socket silently skips bytes
//! it cannot decode, so every decode is followed by a marker message (a
//! `Syn` for a cluster id no node uses) that closes it: a message read before
//! the marker is the decoded datagram, a marker alone means it did not
//! decode. Only plaintext that passed authentication ever reaches loopback,
//! and anything chitchat's socket receives from elsewhere is dropped.
//!
//! **Size.** chitchat bounds messages by `MAX_UDP_DATAGRAM_PAYLOAD_SIZE`
//! (65,507 bytes) with no slack at all: a SynAck's delta gets
//! `delta_mtu(digest_len) = 65_507 - 4 (header) - digest_len` bytes and an
//! Ack's `65_507 - 4`, the delta serializer admits entries while an upper
//! bound of its size is `<= mtu`, and chitchat's own test
//! `test_delta_mtu_matches_serialization` pins that accounting as exact. So
//! a message can be exactly 65,507 bytes (it takes incompressible values:
//! the bound counts blocks before zstd), and a Syn (the full digest and the
//! cluster id) is not bounded at all. Sealed, such a message would pass the
//! UDP limit. Dropping it is no fix: the delta is a deterministic function
//! of the two states, so the same oversized reply would be rebuilt every
//! round and that peer would never catch up. Messages over 65,457 bytes are
//! therefore sent as two datagrams and reassembled on receipt (fragments are
//! authenticated before any memory is spent on them). A send error does not
//! stop chitchat's server (it logs `gossip` errors and ignores reply errors;
//! only a `recv` error ends its loop), so send errors are returned as
//! chitchat's own transport does, and `recv` returns an error only when a
//! socket is broken.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::{ChitchatEnvelope, ChitchatMessage, ProtocolVersion};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::fragments::{
    Added, FRAGMENT_HEADER_LEN, FragmentHeader, Reassembly, WIRE_TAG, seal_datagrams,
};
use super::key::{ClusterKey, GOSSIP, SEAL_OVERHEAD};

/// Bytes a datagram carries beyond chitchat's message: tag, seal, fragment header.
pub(crate) const DATAGRAM_OVERHEAD: usize = 50;
/// How long a loopback round trip through the codec may take before the
/// datagram is counted lost (only a flooded loopback socket loses one).
const CODEC_TIMEOUT: Duration = Duration::from_millis(500);
/// At most one warning of a kind per this interval; the rest go to debug.
const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// Cluster id of the marker that closes each decode; no node can have it.
const MARKER_CLUSTER_ID: &str = "\0shoal: end of decoded datagram";
const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

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
    /// malformed, undecodable, repeated, or left incomplete in reassembly.
    pub dropped_packets: AtomicU64,
}

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

struct SealedUdpSocket {
    /// The gossip address: sealed datagrams only.
    wire: UdpSocket,
    codec: Codec,
    key: ClusterKey,
    stats: Arc<TransportStats>,
    recv_buf: Vec<u8>,
    /// The datagram being decoded; kept across cancelled `recv` calls.
    pending: Option<Pending>,
    reassembly: Reassembly,
    next_message_id: u32,
    auth_warnings: WarnLimiter,
    decode_warnings: WarnLimiter,
}

/// chitchat's own socket, used to encode and decode its messages (see the
/// module comment), and the tap socket it talks to on loopback.
struct Codec {
    chitchat: chitchat::transport::UdpSocket,
    tap: UdpSocket,
    tap_addr: SocketAddr,
    buf: Vec<u8>,
    /// The marker, encoded; authenticated input starting with it is refused.
    marker: Vec<u8>,
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
    async fn open() -> anyhow::Result<Codec> {
        let chitchat = chitchat::transport::UdpSocket::open(LOOPBACK).await?;
        let chitchat_addr = Socket::local_addr(&chitchat)?;
        let tap = UdpSocket::bind(LOOPBACK)
            .await
            .context("cannot bind the gossip codec socket on 127.0.0.1; is loopback up?")?;
        // Connected: the kernel drops whatever else is sent to the tap.
        tap.connect(chitchat_addr)
            .await
            .context("cannot connect the gossip codec socket")?;
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

    /// chitchat's encoding of `envelope`.
    async fn encode(&mut self, envelope: ChitchatEnvelope) -> anyhow::Result<&[u8]> {
        // A cancelled encode may have left its message behind.
        while self.tap.try_recv(&mut self.buf).is_ok() {}
        self.chitchat.send(self.tap_addr, envelope).await?;
        let len = tokio::time::timeout(CODEC_TIMEOUT, self.tap.recv(&mut self.buf))
            .await
            .context("gossip codec lost a message on loopback")?
            .context("gossip codec cannot read from loopback")?;
        Ok(&self.buf[..len])
    }
}

impl SealedUdpSocket {
    async fn bind(
        listen_addr: SocketAddr,
        key: ClusterKey,
        stats: Arc<TransportStats>,
    ) -> anyhow::Result<SealedUdpSocket> {
        let wire = UdpSocket::bind(listen_addr).await.with_context(|| {
            format!("cannot bind gossip to {listen_addr}/udp; is another process using that port?")
        })?;
        let mut id = [0u8; 4];
        getrandom::fill(&mut id).map_err(|error| {
            anyhow::anyhow!("the operating system's random number generator failed: {error}")
        })?;
        let codec = Codec::open().await?;
        tracing::debug!(%listen_addr, codec = %codec.tap_addr, "sealed gossip socket open");
        Ok(SealedUdpSocket {
            wire,
            codec,
            key,
            stats,
            recv_buf: vec![0; 1 << 16],
            pending: None,
            reassembly: Reassembly::default(),
            next_message_id: u32::from_le_bytes(id),
            auth_warnings: WarnLimiter::default(),
            decode_warnings: WarnLimiter::default(),
        })
    }

    fn drop_packets(&mut self, count: u64, from: SocketAddr, reason: DropReason) {
        self.stats
            .dropped_packets
            .fetch_add(count, Ordering::Relaxed);
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
            // UDP loses and repeats datagrams; chitchat gossips again.
            DropKind::Lost => {}
        }
    }

    /// Checks and opens one datagram read into `recv_buf`; a whole message
    /// becomes `pending`.
    fn accept(&mut self, len: usize, from: SocketAddr) {
        self.stats.received_packets.fetch_add(1, Ordering::Relaxed);
        self.stats
            .received_bytes
            .fetch_add(len as u64, Ordering::Relaxed);
        let Some(sealed) = self.recv_buf[..len].strip_prefix(WIRE_TAG) else {
            let reason = if len < WIRE_TAG.len() + SEAL_OVERHEAD + FRAGMENT_HEADER_LEN {
                DropReason::TooShort
            } else {
                DropReason::WrongTag
            };
            return self.drop_packets(1, from, reason);
        };
        let Ok(mut opened) = self.key.open_with_aad(GOSSIP, WIRE_TAG, sealed) else {
            return self.drop_packets(1, from, DropReason::Unauthenticated);
        };
        let Some(header) = FragmentHeader::parse(&opened) else {
            return self.drop_packets(1, from, DropReason::Malformed);
        };
        opened.drain(..FRAGMENT_HEADER_LEN);
        let (message, wire_bytes) = if header.count == 1 {
            (opened, len)
        } else {
            let now = Instant::now();
            for (sender, fragments) in self.reassembly.expire(now) {
                self.drop_packets(fragments, sender, DropReason::Incomplete);
            }
            match self.reassembly.add(from, header, opened, len, now) {
                Added::Complete {
                    message,
                    wire_bytes,
                } => (message, wire_bytes),
                Added::Waiting => return,
                Added::Refused => return self.drop_packets(1, from, DropReason::Repeated),
                Added::Evicted { sender, fragments } => {
                    return self.drop_packets(fragments, sender, DropReason::Incomplete);
                }
            }
        };
        if message.starts_with(&self.codec.marker) {
            return self.drop_packets(1, from, DropReason::Reserved);
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

    /// Moves `pending` one step through the decoder; the message once it is
    /// decoded and closed by the marker. Every await is cancel-safe and
    /// progress is recorded right after it.
    async fn decode_pending(&mut self) -> anyhow::Result<Option<RecvOutcome>> {
        let Some(pending) = self.pending.as_mut() else {
            return Ok(None);
        };
        if let Some(message) = &pending.message {
            let sent = self.codec.tap.send(message).await;
            if let Err(error) = sent {
                return self.codec_send_failed(error);
            }
            pending.message = None;
        }
        if !pending.marker_sent {
            let sent = self.codec.tap.send(&self.codec.marker).await;
            if let Err(error) = sent {
                return self.codec_send_failed(error);
            }
            pending.marker_sent = true;
        }
        let deadline = pending.deadline;
        let outcome = match tokio::time::timeout_at(deadline, self.codec.chitchat.recv()).await {
            Ok(outcome) => outcome.context("gossip codec socket failed")?,
            Err(_elapsed) => {
                // The marker was lost on loopback; a decoded message stands.
                let pending = self.pending.take().expect("pending checked above");
                return Ok(self.finish(pending));
            }
        };
        if outcome.from_addr != self.codec.tap_addr {
            tracing::debug!(from = %outcome.from_addr, "ignored a datagram sent to the gossip codec socket by another local process");
            return Ok(None);
        }
        if outcome.envelope == marker_envelope() {
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
                self.drop_packets(1, pending.from, DropReason::Undecodable);
                None
            }
        }
    }

    fn codec_send_failed(&mut self, error: io::Error) -> anyhow::Result<Option<RecvOutcome>> {
        if is_transient_io_error(&error) {
            let pending = self.pending.take().expect("pending checked above");
            self.drop_packets(1, pending.from, DropReason::CodecBusy);
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
        let message = self.codec.encode(envelope).await?;
        let id = self.next_message_id;
        self.next_message_id = id.wrapping_add(1);
        let datagrams = seal_datagrams(&self.key, id, message);
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

#[derive(Clone, Copy, Debug)]
enum DropReason {
    TooShort,
    WrongTag,
    Unauthenticated,
    Malformed,
    Repeated,
    Incomplete,
    Reserved,
    Undecodable,
    CodecBusy,
}

impl DropReason {
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
        }
    }

    fn kind(self) -> DropKind {
        match self {
            DropReason::TooShort | DropReason::WrongTag | DropReason::Unauthenticated => {
                DropKind::Authentication
            }
            DropReason::Malformed | DropReason::Reserved | DropReason::Undecodable => {
                DropKind::Incompatible
            }
            DropReason::Repeated | DropReason::Incomplete | DropReason::CodecBusy => DropKind::Lost,
        }
    }
}

/// What a dropped packet suggests, and so which warning it is worth.
enum DropKind {
    /// The sender may not hold the cluster key.
    Authentication,
    /// The sender holds the key but speaks another format.
    Incompatible,
    /// The network or this host lost something.
    Lost,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
    use tokio::time::timeout;

    use super::*;
    use crate::mesh::fragments::{MAX_CHUNK, MAX_DATAGRAM};

    /// Nothing arrives within this; long enough for loopback.
    const QUIET: Duration = Duration::from_millis(300);
    const ARRIVES: Duration = Duration::from_secs(2);

    fn syn(cluster_id: impl Into<String>) -> ChitchatEnvelope {
        ChitchatEnvelope {
            version: ProtocolVersion::V1,
            message: ChitchatMessage::Syn {
                cluster_id: cluster_id.into(),
                digest: Default::default(),
            },
        }
    }

    async fn socket(key: &ClusterKey) -> (SealedUdpSocket, Arc<TransportStats>) {
        let stats = Arc::new(TransportStats::default());
        let socket = SealedUdpSocket::bind(LOOPBACK, key.clone(), stats.clone())
            .await
            .unwrap();
        (socket, stats)
    }

    fn load(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn members_with_the_same_key_exchange_messages() {
        let key = ClusterKey::generate();
        let (mut a, a_stats) = socket(&key).await;
        let (mut b, b_stats) = socket(&key).await;
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());

        for envelope in [
            syn("shoal"),
            ChitchatEnvelope {
                version: ProtocolVersion::V0,
                message: ChitchatMessage::BadCluster,
            },
        ] {
            let expected = format!("{envelope:?}");
            let sent = a.send(b_addr, envelope).await.unwrap();
            let received = timeout(ARRIVES, b.recv()).await.unwrap().unwrap();
            assert_eq!(received.from_addr, a_addr);
            assert_eq!(format!("{:?}", received.envelope), expected);
            assert_eq!(received.num_bytes_received, sent.num_bytes_sent);
        }
        // And back.
        b.send(a_addr, syn("reply")).await.unwrap();
        let received = timeout(ARRIVES, a.recv()).await.unwrap().unwrap();
        assert_eq!(received.from_addr, b_addr);
        assert_eq!(received.envelope, syn("reply"));

        assert_eq!(load(&a_stats.sent_packets), 2);
        assert_eq!(load(&b_stats.received_packets), 2);
        assert_eq!(load(&a_stats.sent_bytes), load(&b_stats.received_bytes));
        assert_eq!(load(&b_stats.dropped_packets), 0);
    }

    #[tokio::test]
    async fn the_wire_carries_no_plaintext() {
        let key = ClusterKey::generate();
        let (mut a, _) = socket(&key).await;
        let sniffer = UdpSocket::bind(LOOPBACK).await.unwrap();
        a.send(sniffer.local_addr().unwrap(), syn("secret-cluster-name"))
            .await
            .unwrap();
        let mut buf = vec![0; 1 << 16];
        let len = timeout(ARRIVES, sniffer.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let wire = &buf[..len];
        assert!(wire.starts_with(WIRE_TAG));
        assert!(!wire.windows(6).any(|window| window == b"secret"));
    }

    #[tokio::test]
    async fn a_member_with_another_key_is_dropped_and_counted() {
        let (mut a, _) = socket(&ClusterKey::generate()).await;
        let (mut b, b_stats) = socket(&ClusterKey::generate()).await;
        let b_addr = b.local_addr().unwrap();
        a.send(b_addr, syn("shoal")).await.unwrap();
        assert!(timeout(QUIET, b.recv()).await.is_err(), "nothing opens");
        assert_eq!(load(&b_stats.received_packets), 1);
        assert_eq!(load(&b_stats.dropped_packets), 1);
    }

    #[tokio::test]
    async fn junk_is_dropped_and_counted_and_receiving_goes_on() {
        let key = ClusterKey::generate();
        let (mut a, _) = socket(&key).await;
        let (mut b, b_stats) = socket(&key).await;
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let junk = UdpSocket::bind(LOOPBACK).await.unwrap();
        let mut forged = WIRE_TAG.to_vec();
        forged.extend_from_slice(&[7; 100]);
        // A plaintext chitchat Syn, as chitchat's own transport would send.
        let plain = a.codec.encode(syn("shoal")).await.unwrap().to_vec();
        for datagram in [
            &b"x"[..],
            b"junk that is long enough to be sealed, but is not",
            &forged,
            &plain,
        ] {
            junk.send_to(datagram, b_addr).await.unwrap();
        }
        assert!(timeout(QUIET, b.recv()).await.is_err());
        assert_eq!(load(&b_stats.dropped_packets), 4);

        a.send(b_addr, syn("shoal")).await.unwrap();
        let received = timeout(ARRIVES, b.recv()).await.unwrap().unwrap();
        assert_eq!(received.from_addr, a_addr);
        assert_eq!(load(&b_stats.received_packets), 5);
    }

    #[tokio::test]
    async fn authenticated_garbage_is_dropped_without_losing_track_of_senders() {
        let key = ClusterKey::generate();
        let (mut a, _) = socket(&key).await;
        let (mut b, b_stats) = socket(&key).await;
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let holder = UdpSocket::bind(LOOPBACK).await.unwrap();
        let marker = b.codec.marker.clone();
        let mut after_marker = marker.clone();
        after_marker.extend_from_slice(b"trailing");
        let bad_header = key.seal_with_aad(GOSSIP, WIRE_TAG, &[0, 0, 0, 0, 3, 2]);
        for message in [&b"not chitchat"[..], &marker, &after_marker] {
            for datagram in seal_datagrams(&key, 9, message) {
                holder.send_to(&datagram, b_addr).await.unwrap();
            }
        }
        holder
            .send_to(&[&WIRE_TAG[..], &bad_header].concat(), b_addr)
            .await
            .unwrap();
        a.send(b_addr, syn("after the garbage")).await.unwrap();

        let received = timeout(ARRIVES, b.recv()).await.unwrap().unwrap();
        assert_eq!(
            received.from_addr, a_addr,
            "the message is a's, not the holder's"
        );
        assert_eq!(received.envelope, syn("after the garbage"));
        assert_eq!(load(&b_stats.dropped_packets), 4);
    }

    /// Polls `socket.recv()` once with only `budget` units of tokio's
    /// cooperative budget left, so that its `budget + 1`-th socket operation
    /// is pending even though data is there, and drops it at that point.
    async fn recv_cut_short(socket: &mut SealedUdpSocket, budget: usize) -> Option<RecvOutcome> {
        use std::task::Poll;
        use tokio::task::coop::poll_proceed;

        let mut recv = socket.recv();
        std::future::poll_fn(|cx| {
            // Spend the whole budget, then give back all but `budget` units:
            // each guard restores the budget it saw unless told otherwise.
            let mut guards = Vec::new();
            while let Poll::Ready(guard) = poll_proceed(cx) {
                guards.push(guard);
            }
            let restore = guards.len().checked_sub(budget);
            for (index, guard) in guards.iter().enumerate() {
                if Some(index) != restore {
                    guard.made_progress();
                }
            }
            drop(guards);
            Poll::Ready(match recv.as_mut().poll(cx) {
                Poll::Ready(outcome) => Some(outcome.unwrap()),
                Poll::Pending => None,
            })
        })
        .await
    }

    #[tokio::test]
    async fn recv_survives_being_cancelled_at_every_step() {
        let key = ClusterKey::generate();
        let (mut a, _) = socket(&key).await;
        let (mut b, b_stats) = socket(&key).await;
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        const MESSAGES: usize = 10;
        for n in 0..MESSAGES {
            a.send(b_addr, syn(format!("message {n}"))).await.unwrap();
        }
        let mut cancelled = 0;
        for n in 0..MESSAGES {
            // One socket operation per attempt: cut after reading the
            // datagram, after handing it to the decoder, after the marker,
            // after reading the decoded message, ...
            let outcome = 'attempts: {
                for budget in std::iter::once(0).chain(std::iter::repeat_n(1, 31)) {
                    // A fresh task poll: a full budget to start from.
                    tokio::task::yield_now().await;
                    if let Some(outcome) = recv_cut_short(&mut b, budget).await {
                        break 'attempts outcome;
                    }
                    cancelled += 1;
                }
                panic!("message {n} never arrived");
            };
            assert_eq!(outcome.from_addr, a_addr);
            assert_eq!(outcome.envelope, syn(format!("message {n}")));
        }
        assert!(
            cancelled >= 5 * MESSAGES,
            "cancelled only {cancelled} times"
        );
        assert_eq!(load(&b_stats.dropped_packets), 0);
    }

    #[tokio::test]
    async fn a_full_size_chitchat_message_is_split_and_reassembled() {
        let key = ClusterKey::generate();
        let (mut a, a_stats) = socket(&key).await;
        let (mut b, _) = socket(&key).await;
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        // 65,507 bytes, the most chitchat's own socket sends: 50 over what
        // one datagram carries once sealed. The id follows 7 bytes of header,
        // empty V1 digest and length.
        let big = "x".repeat(MAX_DATAGRAM - 7);
        assert_eq!(
            a.codec.encode(syn(big.clone())).await.unwrap().len(),
            MAX_DATAGRAM
        );
        let sent = a.send(b_addr, syn(big.clone())).await.unwrap();
        assert_eq!(load(&a_stats.sent_packets), 2);
        assert_eq!(
            sent.num_bytes_sent,
            MAX_DATAGRAM + 2 * (MAX_DATAGRAM - MAX_CHUNK)
        );
        let received = timeout(ARRIVES, b.recv()).await.unwrap().unwrap();
        assert_eq!(received.from_addr, a_addr);
        assert_eq!(received.envelope, syn(big));
        assert_eq!(received.num_bytes_received, sent.num_bytes_sent);

        // A message of exactly one datagram's worth still goes whole.
        let fits = "y".repeat(MAX_CHUNK - 7);
        a.send(b_addr, syn(fits.clone())).await.unwrap();
        assert_eq!(load(&a_stats.sent_packets), 3);
        let received = timeout(ARRIVES, b.recv()).await.unwrap().unwrap();
        assert_eq!(received.envelope, syn(fits));
    }

    #[tokio::test]
    async fn fragments_reassemble_in_any_order_and_a_lone_one_waits() {
        let key = ClusterKey::generate();
        let (mut a, _) = socket(&key).await;
        let (mut b, b_stats) = socket(&key).await;
        let b_addr = b.local_addr().unwrap();
        let peer = UdpSocket::bind(LOOPBACK).await.unwrap();
        let big = "z".repeat(MAX_CHUNK);
        let message = a.codec.encode(syn(big.clone())).await.unwrap().to_vec();
        let datagrams = seal_datagrams(&key, 1, &message);
        assert_eq!(datagrams.len(), 2);
        assert!(datagrams.iter().all(|d| d.len() <= MAX_DATAGRAM));

        peer.send_to(&datagrams[1], b_addr).await.unwrap();
        assert!(timeout(QUIET, b.recv()).await.is_err(), "half a message");
        peer.send_to(&datagrams[0], b_addr).await.unwrap();
        let received = timeout(ARRIVES, b.recv()).await.unwrap().unwrap();
        assert_eq!(received.from_addr, peer.local_addr().unwrap());
        assert_eq!(received.envelope, syn(big));

        // A repeated fragment starts a new message that never completes.
        peer.send_to(&datagrams[0], b_addr).await.unwrap();
        assert!(timeout(QUIET, b.recv()).await.is_err());
        assert_eq!(load(&b_stats.dropped_packets), 0);
    }

    #[tokio::test]
    async fn binding_a_taken_address_fails_and_sending_to_nobody_succeeds() {
        let key = ClusterKey::generate();
        let (mut a, _) = socket(&key).await;
        let taken = a.local_addr().unwrap();
        let transport = SealedUdpTransport::new(key, Arc::new(TransportStats::default()));
        let error = transport.open(taken).await.err().unwrap();
        assert!(
            format!("{error:#}").contains(&taken.to_string()),
            "{error:#}"
        );
        let nobody: SocketAddr = ([127, 0, 0, 2], taken.port()).into();
        a.send(nobody, syn("anyone?")).await.unwrap();
    }

    fn free_addr() -> SocketAddr {
        std::net::UdpSocket::bind(LOOPBACK)
            .unwrap()
            .local_addr()
            .unwrap()
    }

    async fn node(
        name: &str,
        key: &ClusterKey,
        seeds: &[SocketAddr],
    ) -> (ChitchatHandle, Arc<TransportStats>) {
        let addr = free_addr();
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(name.to_string(), 0, addr),
            cluster_id: "shoal-test".to_string(),
            gossip_interval: Duration::from_millis(50),
            listen_addr: addr,
            seed_nodes: seeds.iter().map(SocketAddr::to_string).collect(),
            failure_detector_config: FailureDetectorConfig {
                initial_interval: Duration::from_millis(50),
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(60),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V1,
        };
        let stats = Arc::new(TransportStats::default());
        let transport = SealedUdpTransport::new(key.clone(), stats.clone());
        let handle =
            chitchat::spawn_chitchat(config, vec![("role".into(), name.into())], &transport)
                .await
                .unwrap();
        (handle, stats)
    }

    async fn live_nodes(handle: &ChitchatHandle) -> usize {
        handle
            .with_chitchat(|chitchat| chitchat.live_nodes().count())
            .await
    }

    async fn shut_down(handle: ChitchatHandle) {
        timeout(ARRIVES, handle.shutdown()).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn chitchat_nodes_with_the_same_key_meet() {
        let key = ClusterKey::generate();
        let (a, a_stats) = node("a", &key, &[]).await;
        let (b, b_stats) = node("b", &key, &[a.chitchat_id().gossip_advertise_addr]).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while live_nodes(&a).await < 2 || live_nodes(&b).await < 2 {
            assert!(
                Instant::now() < deadline,
                "nodes with the same key never met"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // They share state, not just heartbeats.
        let b_id = b.chitchat_id().clone();
        let role = a
            .with_chitchat(|chitchat| {
                chitchat
                    .node_state(&b_id)
                    .and_then(|state| state.get("role").map(str::to_string))
            })
            .await;
        assert_eq!(role.as_deref(), Some("b"));
        assert_eq!(
            load(&a_stats.dropped_packets) + load(&b_stats.dropped_packets),
            0
        );
        assert!(load(&a_stats.received_bytes) > 0 && load(&b_stats.sent_bytes) > 0);
        shut_down(a).await;
        shut_down(b).await;
    }

    #[tokio::test]
    async fn chitchat_nodes_with_different_keys_never_meet() {
        let (a, a_stats) = node("a", &ClusterKey::generate(), &[]).await;
        let (b, _) = node(
            "b",
            &ClusterKey::generate(),
            &[a.chitchat_id().gossip_advertise_addr],
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            assert_eq!(live_nodes(&a).await, 1);
            assert_eq!(live_nodes(&b).await, 1);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(load(&a_stats.dropped_packets) > 0);
        shut_down(a).await;
        shut_down(b).await;
    }
}
