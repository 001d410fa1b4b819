//! The gossip wire format: a chitchat message sealed into datagrams, and
//! their reassembly. Each datagram: `SHG2` | nonce | sealed(sender id u64
//! LE | sealed at, Unix ms u64 LE | recipient: IPv6 (IPv4 mapped) and port
//! u16 LE | message id u32 LE | fragment index u8 | fragment count u8 |
//! chunk). The sender id, time and recipient let a receiver refuse replays
//! (see `replay`); `SHG1`, the format before them, is refused, so every
//! member of a mesh must run a version that speaks `SHG2`.
//!
//! chitchat bounds messages by `MAX_UDP_DATAGRAM_PAYLOAD_SIZE` (65,507
//! bytes) with no slack at all: a SynAck's delta gets
//! `delta_mtu(digest_len) = 65_507 - 4 (header) - digest_len` bytes and an
//! Ack's `65_507 - 4`, the delta serializer admits entries while an upper
//! bound of its size is `<= mtu`, and chitchat's own test
//! `test_delta_mtu_matches_serialization` pins that accounting as exact. So
//! a message can be exactly 65,507 bytes (it takes incompressible values:
//! the bound counts blocks before zstd), and a Syn (the full digest and the
//! cluster id) is not bounded at all. Sealed, such a message would pass the
//! UDP limit. Dropping it is no fix: the delta is a deterministic function
//! of the two states, so the same oversized reply would be rebuilt every
//! round and that peer would never catch up. Messages over [`MAX_CHUNK`]
//! (65,423 bytes) are therefore sent as two datagrams and reassembled on
//! receipt; fragments are authenticated before any memory is spent on them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;

use crate::mesh::key::{ClusterKey, Purpose, SEAL_OVERHEAD};

/// Magic and version of the wire format; also the associated data.
pub(super) const WIRE_TAG: &[u8; 4] = b"SHG2";
/// What every version's tag starts with.
pub(super) const WIRE_MAGIC: &[u8; 3] = b"SHG";
/// The largest UDP payload over IPv4 (and the bound chitchat sizes against).
pub(super) const MAX_DATAGRAM: usize = 65_507;
/// Sender id (u64), time (u64), recipient (16 + 2), message id (u32),
/// fragment index (u8), fragment count (u8).
pub(super) const FRAGMENT_HEADER_LEN: usize = 8 + 8 + 18 + 6;
/// What the wire adds to each chunk of a message: the tag, the seal (nonce
/// and Poly1305 tag) and the fragment header, 84 bytes a datagram.
pub(crate) const DATAGRAM_OVERHEAD: usize = WIRE_TAG.len() + SEAL_OVERHEAD + FRAGMENT_HEADER_LEN;
/// The most of a chitchat message one datagram carries: 65,423 bytes.
pub(super) const MAX_CHUNK: usize = MAX_DATAGRAM - DATAGRAM_OVERHEAD;
// The largest chitchat message goes in two datagrams.
const _: () = assert!(2 * MAX_CHUNK >= MAX_DATAGRAM);
/// chitchat messages need at most two; more is refused as malformed.
pub(super) const MAX_FRAGMENTS: usize = 4;
/// Messages being reassembled at once; the oldest goes first.
pub(super) const MAX_PARTIAL_MESSAGES: usize = 64;
/// How long the fragments of one message wait for the rest.
pub(super) const PARTIAL_TTL: Duration = Duration::from_secs(5);

/// Who sealed a datagram, when, and for whom: what `replay` judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stamp {
    /// Random for each socket, so a restarted node is a new sender.
    pub sender: u64,
    /// Unix time in milliseconds, by the sender's clock.
    pub sent_ms: u64,
    /// The address the sender sent it to.
    pub to: SocketAddr,
}

/// Splits `message` into as few chunks as fit a datagram, of even size, and
/// seals each with its fragment header.
pub(super) fn seal_datagrams(
    key: &ClusterKey,
    stamp: Stamp,
    id: u32,
    message: &[u8],
) -> Vec<Vec<u8>> {
    let count = message.len().div_ceil(MAX_CHUNK).max(1);
    let chunk_len = message.len().div_ceil(count).max(1);
    let mut datagrams = Vec::with_capacity(count);
    let mut plaintext = Vec::with_capacity(FRAGMENT_HEADER_LEN + chunk_len);
    let to = match stamp.to.ip() {
        IpAddr::V4(ip) => ip.to_ipv6_mapped(),
        IpAddr::V6(ip) => ip,
    };
    for (index, chunk) in message.chunks(chunk_len).enumerate() {
        plaintext.clear();
        plaintext.extend_from_slice(&stamp.sender.to_le_bytes());
        plaintext.extend_from_slice(&stamp.sent_ms.to_le_bytes());
        plaintext.extend_from_slice(&to.octets());
        plaintext.extend_from_slice(&stamp.to.port().to_le_bytes());
        plaintext.extend_from_slice(&id.to_le_bytes());
        // `count` is at most 2 for anything chitchat can encode (65,507 bytes).
        plaintext.push(index as u8);
        plaintext.push(count as u8);
        plaintext.extend_from_slice(chunk);
        let sealed = key.seal_with_aad(Purpose::Gossip, WIRE_TAG, &plaintext);
        let mut datagram = Vec::with_capacity(WIRE_TAG.len() + sealed.len());
        datagram.extend_from_slice(WIRE_TAG);
        datagram.extend_from_slice(&sealed);
        datagrams.push(datagram);
    }
    datagrams
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct FragmentHeader {
    pub stamp: Stamp,
    pub id: u32,
    pub index: usize,
    pub count: usize,
}

impl FragmentHeader {
    pub(super) fn parse(plaintext: &[u8]) -> Option<FragmentHeader> {
        let header = plaintext.get(..FRAGMENT_HEADER_LEN)?;
        let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap());
        let ip: [u8; 16] = header[16..32].try_into().ok()?;
        let port = u16::from_le_bytes([header[32], header[33]]);
        let stamp = Stamp {
            sender: u64_at(0),
            sent_ms: u64_at(8),
            to: SocketAddr::new(Ipv6Addr::from(ip).to_canonical(), port),
        };
        let id = u32::from_le_bytes(header[34..38].try_into().ok()?);
        let (index, count) = (usize::from(header[38]), usize::from(header[39]));
        (index < count && count <= MAX_FRAGMENTS).then_some(FragmentHeader {
            stamp,
            id,
            index,
            count,
        })
    }
}

/// Fragments waiting for the rest of their message. Only authenticated
/// fragments get here, and there are at most `MAX_PARTIAL_MESSAGES`.
#[derive(Default)]
pub(super) struct Reassembly {
    partial: HashMap<(SocketAddr, u32), Partial>,
}

struct Partial {
    chunks: Vec<Option<Vec<u8>>>,
    wire_bytes: usize,
    started: Instant,
}

impl Partial {
    fn fragments(&self) -> u64 {
        self.chunks.iter().flatten().count() as u64
    }
}

#[derive(Debug, PartialEq)]
pub(super) enum Added {
    Complete {
        message: Vec<u8>,
        wire_bytes: usize,
    },
    Waiting,
    /// A fragment that contradicts or repeats what came before.
    Refused,
    /// Waiting, after evicting the oldest message's fragments.
    Evicted {
        sender: SocketAddr,
        fragments: u64,
    },
}

impl Reassembly {
    /// Forgets messages older than `PARTIAL_TTL`: their senders and how
    /// many fragments of theirs were lost.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<(SocketAddr, u64)> {
        let mut lost = Vec::new();
        self.partial.retain(|(sender, _), partial| {
            let keep = now.duration_since(partial.started) < PARTIAL_TTL;
            if !keep {
                lost.push((*sender, partial.fragments()));
            }
            keep
        });
        lost
    }

    pub(super) fn add(
        &mut self,
        from: SocketAddr,
        header: FragmentHeader,
        chunk: Vec<u8>,
        wire_bytes: usize,
        now: Instant,
    ) -> Added {
        let slot = (from, header.id);
        let mut evicted = None;
        if !self.partial.contains_key(&slot) && self.partial.len() >= MAX_PARTIAL_MESSAGES {
            let oldest = self
                .partial
                .iter()
                .min_by_key(|(_, partial)| partial.started)
                .map(|(slot, _)| *slot);
            if let Some(oldest) = oldest {
                let fragments = self.partial.remove(&oldest).map_or(0, |p| p.fragments());
                evicted = Some((oldest.0, fragments));
            }
        }
        let partial = self.partial.entry(slot).or_insert_with(|| Partial {
            chunks: vec![None; header.count],
            wire_bytes: 0,
            started: now,
        });
        if partial.chunks.len() != header.count || partial.chunks[header.index].is_some() {
            return Added::Refused;
        }
        partial.chunks[header.index] = Some(chunk);
        partial.wire_bytes += wire_bytes;
        if partial.chunks.iter().any(Option::is_none) {
            return match evicted {
                Some((sender, fragments)) => Added::Evicted { sender, fragments },
                None => Added::Waiting,
            };
        }
        let partial = self.partial.remove(&slot).expect("entry inserted above");
        Added::Complete {
            message: partial.chunks.into_iter().flatten().flatten().collect(),
            wire_bytes: partial.wire_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp = Stamp {
        sender: 0x0102_0304_0506_0708,
        sent_ms: 1_700_000_000_000,
        to: SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3)), 7946),
    };

    #[test]
    fn reassembly_is_bounded_and_refuses_contradictions() {
        let now = Instant::now();
        let from: SocketAddr = ([127, 0, 0, 1], 9).into();
        let header = |id, index, count| FragmentHeader {
            stamp: STAMP,
            id,
            index,
            count,
        };
        let mut reassembly = Reassembly::default();

        assert_eq!(
            reassembly.add(from, header(1, 0, 2), b"ab".to_vec(), 10, now),
            Added::Waiting
        );
        assert_eq!(
            reassembly.add(from, header(1, 0, 2), b"ab".to_vec(), 10, now),
            Added::Refused
        );
        assert_eq!(
            reassembly.add(from, header(1, 1, 3), b"cd".to_vec(), 10, now),
            Added::Refused
        );
        assert_eq!(
            reassembly.add(from, header(1, 1, 2), b"cd".to_vec(), 10, now),
            Added::Complete {
                message: b"abcd".to_vec(),
                wire_bytes: 20
            }
        );

        for id in 0..MAX_PARTIAL_MESSAGES as u32 {
            let at = now + Duration::from_millis(u64::from(id));
            assert_eq!(
                reassembly.add(from, header(id, 0, 2), vec![1], 10, at),
                Added::Waiting
            );
        }
        let later = now + Duration::from_secs(1);
        assert_eq!(
            reassembly.add(from, header(999, 0, 2), vec![1], 10, later),
            Added::Evicted {
                sender: from,
                fragments: 1
            }
        );
        assert_eq!(reassembly.partial.len(), MAX_PARTIAL_MESSAGES);
        assert!(
            !reassembly.partial.contains_key(&(from, 0)),
            "the oldest went"
        );

        // Id 0 was evicted; id 1, a millisecond younger, is the next to go.
        let just_past = now + PARTIAL_TTL + Duration::from_millis(1);
        assert_eq!(reassembly.expire(just_past), vec![(from, 1)]);
        let rest = reassembly.expire(later + PARTIAL_TTL);
        assert_eq!(rest.len(), MAX_PARTIAL_MESSAGES - 1);
        assert!(rest.iter().all(|&lost| lost == (from, 1)));
        assert!(reassembly.partial.is_empty());
    }

    #[test]
    fn a_datagram_adds_eighty_four_bytes_to_its_chunk() {
        assert_eq!(DATAGRAM_OVERHEAD, 84);
        assert_eq!(MAX_CHUNK, 65_423);
        let key = ClusterKey::generate();
        let datagrams = seal_datagrams(&key, STAMP, 7, &[1; 1000]);
        assert_eq!(datagrams.len(), 1);
        assert_eq!(datagrams[0].len(), 1000 + DATAGRAM_OVERHEAD);
    }

    #[test]
    fn headers_carry_the_stamp_and_are_checked() {
        let key = ClusterKey::generate();
        for to in [STAMP.to, "[2001:db8::7]:7000".parse().unwrap()] {
            let stamp = Stamp { to, ..STAMP };
            let datagram = &seal_datagrams(&key, stamp, 9, b"chunk")[0];
            let opened = key
                .open_with_aad(Purpose::Gossip, WIRE_TAG, &datagram[WIRE_TAG.len()..])
                .unwrap();
            let header = FragmentHeader::parse(&opened).unwrap();
            assert_eq!(
                header,
                FragmentHeader {
                    stamp,
                    id: 9,
                    index: 0,
                    count: 1
                }
            );
            assert_eq!(&opened[FRAGMENT_HEADER_LEN..], b"chunk");
        }
        let with = |index: u8, count: u8| {
            let mut plaintext = vec![0; FRAGMENT_HEADER_LEN - 2];
            plaintext.extend([index, count]);
            plaintext
        };
        assert!(FragmentHeader::parse(&with(1, 2)).is_some());
        for bad in [with(2, 2), with(0, 0), with(0, 5)] {
            assert_eq!(FragmentHeader::parse(&bad), None, "{bad:?}");
        }
        assert_eq!(FragmentHeader::parse(&with(0, 1)[..10]), None);
    }
}
