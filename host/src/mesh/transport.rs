//! chitchat over authenticated, encrypted UDP. chitchat's own transport
//! sends plaintext and checks nothing but a cluster id; this one seals
//! every datagram under the cluster key and drops (and counts) anything
//! that does not open.
//!
//! chitchat 0.13 keeps its wire encoding crate-private, so the sealing
//! sits beside chitchat's own `UdpSocket` instead of replacing it: that
//! socket (on 127.0.0.1, port chosen by the OS) encodes and decodes, and
//! talks only to small loopback relay sockets, one per peer. An outgoing
//! message goes inner socket → the peer's relay → sealed → the public
//! gossip socket → the peer. An incoming datagram is opened, then handed
//! to the inner socket from the sender's relay, and its source is mapped
//! back to the sender. Relays accept datagrams only from the inner socket.
//!
//! Wire format: `SHG1` | 24-byte nonce | XChaCha20-Poly1305 ciphertext of
//! chitchat's encoded envelope (the purpose is bound in as associated
//! data). The seal adds 44 bytes; chitchat fills messages up to the UDP
//! limit less its own headroom, so a full-size message could pass the
//! limit once sealed. Shoal keeps every node's state under 4 KB, far from
//! that; a sealed message that is still too big is dropped, counted and
//! logged, and the send reports success, because chitchat's server stops
//! on a send error.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use tokio::net::UdpSocket;

use super::key::{ClusterKey, Sealer};

const TAG: &[u8; 4] = b"SHG1";
/// The most a UDP datagram can carry over IPv4.
const MAX_DATAGRAM: usize = 65_507;
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Traffic counters, read by `/metrics`.
#[derive(Debug, Default)]
pub struct TransportStats {
    pub sent_packets: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub received_packets: AtomicU64,
    pub received_bytes: AtomicU64,
    pub dropped_packets: AtomicU64,
}

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
        let public = UdpSocket::bind(listen_addr)
            .await
            .with_context(|| format!("cannot bind gossip on {listen_addr}/udp"))?;
        let inner = chitchat::transport::UdpSocket::open(LOOPBACK).await?;
        let inner_addr = Socket::local_addr(&inner)?;
        Ok(Box::new(SealedUdpSocket {
            public,
            inner,
            inner_addr,
            relays: HashMap::new(),
            peers: HashMap::new(),
            sealer: Sealer::new(&self.key, "gossip"),
            stats: self.stats.clone(),
            buf: vec![0; MAX_DATAGRAM],
            warned: None,
        }))
    }
}

const LOOPBACK: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

struct SealedUdpSocket {
    /// The gossip address: sealed datagrams only.
    public: UdpSocket,
    /// chitchat's own socket, on loopback: plain datagrams, relays only.
    inner: chitchat::transport::UdpSocket,
    inner_addr: SocketAddr,
    /// One loopback relay per peer.
    relays: HashMap<SocketAddr, UdpSocket>,
    /// Relay address → the peer it stands for.
    peers: HashMap<SocketAddr, SocketAddr>,
    sealer: Sealer,
    stats: Arc<TransportStats>,
    buf: Vec<u8>,
    warned: Option<Instant>,
}

impl SealedUdpSocket {
    fn drop_packet(&mut self, from: SocketAddr, why: &str) {
        self.stats.dropped_packets.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%from, why, "gossip packet dropped");
        if self.warned.is_none_or(|t| t.elapsed() > WARN_EVERY) {
            self.warned = Some(Instant::now());
            tracing::warn!(
                %from,
                "gossip packet failed authentication ({why}): is this node using the same cluster key (`--cluster-key-file`)?"
            );
        }
    }

    /// The relay standing for `peer`, made on first use.
    async fn relay(&mut self, peer: SocketAddr) -> anyhow::Result<&UdpSocket> {
        if !self.relays.contains_key(&peer) {
            let relay = UdpSocket::bind(LOOPBACK)
                .await
                .context("cannot bind a loopback gossip relay")?;
            self.peers.insert(relay.local_addr()?, peer);
            self.relays.insert(peer, relay);
        }
        Ok(&self.relays[&peer])
    }

    /// Opens one sealed datagram from `from` and hands it to chitchat's
    /// socket through `from`'s relay.
    async fn deliver(&mut self, len: usize, from: SocketAddr) -> anyhow::Result<()> {
        let Some(sealed) = self.buf[..len].strip_prefix(TAG) else {
            self.drop_packet(from, "not a Shoal gossip packet");
            return Ok(());
        };
        let Ok(plain) = self.sealer.open(sealed) else {
            self.drop_packet(from, "not sealed with this cluster key");
            return Ok(());
        };
        self.stats.received_packets.fetch_add(1, Ordering::Relaxed);
        self.stats
            .received_bytes
            .fetch_add(len as u64, Ordering::Relaxed);
        let inner = self.inner_addr;
        self.relay(from).await?.send_to(&plain, inner).await?;
        Ok(())
    }
}

fn transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::OutOfMemory
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

#[async_trait]
impl Socket for SealedUdpSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.public
            .local_addr()
            .context("cannot read the gossip socket's address")
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let relay_addr = self.relay(to).await?.local_addr()?;
        self.inner.send(relay_addr, envelope).await?;
        let inner = self.inner_addr;
        let relay = &self.relays[&to];
        // The inner socket just sent on loopback: the datagram is there.
        let plain = loop {
            let (len, from) = relay.recv_from(&mut self.buf).await?;
            if from == inner {
                break self.buf[..len].to_vec();
            }
        };
        let mut datagram = Vec::with_capacity(TAG.len() + plain.len() + 40);
        datagram.extend_from_slice(TAG);
        datagram.extend_from_slice(&self.sealer.seal(&plain));
        if datagram.len() > MAX_DATAGRAM {
            self.stats.dropped_packets.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                bytes = datagram.len(),
                %to,
                "gossip message too large for one datagram once sealed; dropped"
            );
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        match self.public.send_to(&datagram, to).await {
            Ok(sent) => {
                self.stats.sent_packets.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .sent_bytes
                    .fetch_add(sent as u64, Ordering::Relaxed);
                Ok(SendOutcome {
                    num_bytes_sent: sent,
                })
            }
            Err(error) if transient(&error) => {
                tracing::debug!(%to, %error, "gossip send failed");
                Ok(SendOutcome { num_bytes_sent: 0 })
            }
            Err(error) => Err(error).context("cannot send gossip"),
        }
    }

    /// Cancel-safe: it waits on two cancel-safe receives, and a datagram
    /// handed to the inner socket is read on the next call if this one is
    /// cancelled.
    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            tokio::select! {
                biased;
                received = self.inner.recv() => {
                    let mut outcome = received?;
                    match self.peers.get(&outcome.from_addr) {
                        Some(peer) => {
                            outcome.from_addr = *peer;
                            return Ok(outcome);
                        }
                        // Not from a relay: someone on this machine.
                        None => self.drop_packet(outcome.from_addr, "sent to the inner socket directly"),
                    }
                }
                received = self.public.recv_from(&mut self.buf) => {
                    match received {
                        Ok((len, from)) => self.deliver(len, from).await?,
                        Err(error) if transient(&error) => {
                            tracing::debug!(%error, "transient gossip receive error");
                        }
                        Err(error) => return Err(error).context("cannot receive gossip"),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn node(
        name: &str,
        key: &ClusterKey,
        seeds: Vec<String>,
    ) -> (chitchat::ChitchatHandle, Arc<TransportStats>, SocketAddr) {
        let addr = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let stats = Arc::new(TransportStats::default());
        let config = chitchat::ChitchatConfig {
            chitchat_id: chitchat::ChitchatId::new(name.to_string(), 1, addr),
            cluster_id: "test".into(),
            gossip_interval: Duration::from_millis(50),
            listen_addr: addr,
            seed_nodes: seeds,
            failure_detector_config: chitchat::FailureDetectorConfig {
                initial_interval: Duration::from_millis(50),
                ..Default::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(60),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V1,
        };
        let transport = SealedUdpTransport::new(key.clone(), stats.clone());
        let handle = chitchat::spawn_chitchat(config, vec![], &transport)
            .await
            .unwrap();
        (handle, stats, addr)
    }

    async fn live(handle: &chitchat::ChitchatHandle) -> usize {
        handle.with_chitchat(|c| c.live_nodes().count()).await
    }

    #[tokio::test]
    async fn members_with_the_key_meet_and_others_are_dropped() {
        let key = ClusterKey::generate();
        let (a, a_stats, a_addr) = node("a", &key, vec![]).await;
        let (b, _, _) = node("b", &key, vec![a_addr.to_string()]).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while live(&a).await < 2 || live(&b).await < 2 {
            assert!(Instant::now() < deadline, "same-key nodes never met");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (c, _, _) = node("c", &ClusterKey::generate(), vec![a_addr.to_string()]).await;
        let junk = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        junk.send_to(b"junk", a_addr).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(live(&a).await, 2);
        assert_eq!(live(&c).await, 1);
        assert!(a_stats.dropped_packets.load(Ordering::Relaxed) >= 2);
        assert!(a_stats.received_bytes.load(Ordering::Relaxed) > 0);
    }
}
