//! The sealed socket, one datagram at a time: what opens, what is dropped
//! and counted, and a `recv` cancelled at every step.

use chitchat::{ChitchatMessage, ProtocolVersion};
use tokio::time::timeout;

use super::*;
use crate::mesh::key::ClusterKey;
use crate::mesh::transport::codec::LOOPBACK;
use crate::mesh::transport::fragments::{MAX_CHUNK, MAX_DATAGRAM};
use crate::mesh::transport::test_support::{ARRIVES, QUIET, load, syn};

async fn socket(key: &ClusterKey) -> (SealedUdpSocket, Arc<TransportStats>) {
    socket_with(Keyring::single(key.clone())).await
}

async fn socket_with(keys: Keyring) -> (SealedUdpSocket, Arc<TransportStats>) {
    let stats = Arc::new(TransportStats::default());
    let socket = SealedUdpSocket::bind(LOOPBACK, keys, stats.clone(), None)
        .await
        .unwrap();
    (socket, stats)
}

/// A stamp for a datagram sealed now, by sender 42, for `to`.
fn stamp(to: SocketAddr) -> Stamp {
    Stamp {
        sender: 42,
        sent_ms: unix_now_ms(),
        to,
    }
}

#[tokio::test]
async fn a_syn_to_its_own_address_is_never_sent_and_peers_still_get_through() {
    // A restarted node's earlier incarnation (same address, a dead id) is
    // a gossip target chitchat may pick. Sending it a Syn once made the
    // replay guard refuse every datagram sealed for this node for 10 min.
    let key = ClusterKey::generate();
    let (mut a, a_stats) = socket(&key).await;
    let (mut b, _) = socket(&key).await;
    let a_addr = a.local_addr().unwrap();
    let sent = a.send(a_addr, syn("myself")).await.unwrap();
    assert_eq!(sent.num_bytes_sent, 0);
    assert!(
        timeout(QUIET, a.recv()).await.is_err(),
        "a Syn to itself arrived"
    );
    b.send(a_addr, syn("from b")).await.unwrap();
    let received = timeout(ARRIVES, a.recv()).await.unwrap().unwrap();
    assert_eq!(received.envelope, syn("from b"));
    assert_eq!(load(&a_stats.dropped_packets), 0);
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
    // What a member running the wire format before this one sends.
    let mut first_format = b"SHG1".to_vec();
    first_format.extend_from_slice(&[7; 100]);
    // A plaintext chitchat Syn, as chitchat's own transport would send.
    let plain = a.codec.encode(syn("shoal")).await.unwrap().to_vec();
    for datagram in [&b"x"[..], &[b'j'; 150], &forged, &first_format, &plain] {
        junk.send_to(datagram, b_addr).await.unwrap();
    }
    assert!(timeout(QUIET, b.recv()).await.is_err());
    assert_eq!(load(&b_stats.dropped_packets), 5);
    for (reason, count) in [
        ("too_short", 2),
        ("wrong_tag", 1),
        ("unauthenticated", 1),
        ("other_version", 1),
    ] {
        assert_eq!(dropped(&b_stats, reason), count, "{reason}");
    }

    a.send(b_addr, syn("shoal")).await.unwrap();
    let received = timeout(ARRIVES, b.recv()).await.unwrap().unwrap();
    assert_eq!(received.from_addr, a_addr);
    assert_eq!(load(&b_stats.received_packets), 6);
}

#[tokio::test]
async fn authenticated_garbage_is_dropped_without_losing_track_of_senders() {
    let key = ClusterKey::generate();
    let (mut a, _) = socket(&key).await;
    let (mut b, b_stats) = socket(&key).await;
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let holder = UdpSocket::bind(LOOPBACK).await.unwrap();
    let marker = b.codec.marker().to_vec();
    let mut after_marker = marker.clone();
    after_marker.extend_from_slice(b"trailing");
    let mut bad_header = vec![0; FRAGMENT_HEADER_LEN - 2];
    bad_header.extend([3, 2]);
    let bad_header = key.seal_with_aad(Purpose::Gossip, WIRE_TAG, &bad_header);
    for (id, message) in [&b"not chitchat"[..], &marker, &after_marker]
        .into_iter()
        .enumerate()
    {
        for datagram in seal_datagrams(&key, stamp(b_addr), id as u32, message) {
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
    let datagrams = seal_datagrams(&key, stamp(b_addr), 1, &message);
    assert_eq!(datagrams.len(), 2);
    assert!(datagrams.iter().all(|d| d.len() <= MAX_DATAGRAM));

    peer.send_to(&datagrams[1], b_addr).await.unwrap();
    assert!(timeout(QUIET, b.recv()).await.is_err(), "half a message");
    peer.send_to(&datagrams[0], b_addr).await.unwrap();
    let received = timeout(ARRIVES, b.recv()).await.unwrap().unwrap();
    assert_eq!(received.from_addr, peer.local_addr().unwrap());
    assert_eq!(received.envelope, syn(big));

    // A repeated fragment is a replay.
    peer.send_to(&datagrams[0], b_addr).await.unwrap();
    assert!(timeout(QUIET, b.recv()).await.is_err());
    assert_eq!(dropped(&b_stats, "replayed"), 1);
    assert_eq!(load(&b_stats.dropped_packets), 1);
}

fn dropped(stats: &TransportStats, reason: &str) -> u64 {
    let (_, count) = stats
        .dropped_by_reason()
        .find(|(label, _)| *label == reason)
        .unwrap();
    count
}

/// A copy of a datagram, one sealed too long ago, and one sealed for
/// another member are each dropped and counted by reason; the original
/// still arrives.
#[tokio::test]
async fn replays_are_dropped_and_counted() {
    let key = ClusterKey::generate();
    let (mut b, b_stats) = socket(&key).await;
    let (mut c, _) = socket(&key).await;
    let (b_addr, c_addr) = (b.local_addr().unwrap(), c.local_addr().unwrap());
    let holder = UdpSocket::bind(LOOPBACK).await.unwrap();
    let message = b.codec.encode(syn("once")).await.unwrap().to_vec();
    let captured = seal_datagrams(&key, stamp(b_addr), 1, &message).remove(0);
    holder.send_to(&captured, b_addr).await.unwrap();
    let received = timeout(ARRIVES, b.recv()).await.unwrap().unwrap();
    assert_eq!(received.envelope, syn("once"));
    for _ in 0..3 {
        holder.send_to(&captured, b_addr).await.unwrap();
    }
    let window = replay_window_ms();
    let old = Stamp {
        sent_ms: unix_now_ms() - window - 1_000,
        ..stamp(b_addr)
    };
    holder
        .send_to(&seal_datagrams(&key, old, 2, &message)[0], b_addr)
        .await
        .unwrap();
    // b gossips with c: a datagram sealed for c is not for b.
    b.send(c_addr, syn("hello c")).await.unwrap();
    timeout(ARRIVES, c.recv()).await.unwrap().unwrap();
    holder
        .send_to(&seal_datagrams(&key, stamp(c_addr), 3, &message)[0], b_addr)
        .await
        .unwrap();
    assert!(timeout(QUIET, b.recv()).await.is_err(), "nothing opens");
    assert_eq!(dropped(&b_stats, "replayed"), 3);
    assert_eq!(dropped(&b_stats, "stale"), 1);
    assert_eq!(dropped(&b_stats, "misaddressed"), 1);
    assert_eq!(load(&b_stats.dropped_packets), 5);
}

fn replay_window_ms() -> u64 {
    crate::mesh::transport::replay::WINDOW.as_millis() as u64
}

/// A rolling keyring: both keys open, the first seals; a member that has
/// not yet added the new key cannot open what the new primary sealed.
#[tokio::test]
async fn a_keyring_opens_under_any_key_and_seals_under_the_first() {
    use crate::mesh::keyring::KeySet;
    let (old, new) = (ClusterKey::generate(), ClusterKey::generate());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.key");
    let write = |keys: &[&ClusterKey]| {
        let text: String = keys.iter().map(|k| format!("{}\n", k.to_hex())).collect();
        std::fs::write(&file, text).unwrap();
    };
    write(&[&old]);
    let ring = Keyring::new(KeySet::load(&file).unwrap(), Some(file.clone()));
    let (mut a, _) = socket_with(ring.clone()).await;
    let (mut b, b_stats) = socket(&old).await;
    let (mut c, _) = socket(&new).await;
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());

    write(&[&old, &new]);
    ring.reload().unwrap();
    a.send(b_addr, syn("under the old key")).await.unwrap();
    timeout(ARRIVES, b.recv()).await.unwrap().unwrap();
    c.send(a_addr, syn("under the new key")).await.unwrap();
    let received = timeout(ARRIVES, a.recv()).await.unwrap().unwrap();
    assert_eq!(received.envelope, syn("under the new key"));

    write(&[&new, &old]);
    ring.reload().unwrap();
    b.send(a_addr, syn("still the old key")).await.unwrap();
    timeout(ARRIVES, a.recv()).await.unwrap().unwrap();
    a.send(b_addr, syn("sealed under the new key"))
        .await
        .unwrap();
    assert!(timeout(QUIET, b.recv()).await.is_err());
    assert_eq!(dropped(&b_stats, "unauthenticated"), 1);
}
