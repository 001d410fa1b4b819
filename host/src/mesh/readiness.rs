//! Which apps a node is ready to serve, in a few bytes of gossip.
//!
//! A node advertises `DIGEST:BITS`, where DIGEST names the desired state
//! it holds (see [`Snapshot`]) and BITS marks, in the snapshot's order, the
//! apps it serves at exactly the snapshot's version. Whichever is shorter
//! of a bitmap (one bit per app) and a list of gaps between set positions
//! (LEB128) is sent, hex-encoded, so a node that holds ten apps of a
//! thousand sends ~30 characters and one that holds all of them ~250.
//! A reader decodes it against the snapshot with that digest if it has it;
//! if it does not (the advertiser is ahead of it), the node counts as ready
//! for nothing until the reader catches up, which anti-entropy makes short.

use std::collections::BTreeSet;

use super::desired::Snapshot;

/// Encodes the positions (in `snapshot.apps`) that are ready.
pub(crate) fn encode(snapshot: &Snapshot, ready: &BTreeSet<usize>) -> String {
    let mut bitmap = vec![0u8; snapshot.apps.len().div_ceil(8)];
    for &i in ready {
        bitmap[i / 8] |= 1 << (i % 8);
    }
    let mut gaps = Vec::new();
    let mut last = 0usize;
    for &i in ready {
        let mut gap = i - last;
        last = i;
        loop {
            let byte = (gap & 0x7f) as u8;
            gap >>= 7;
            if gap == 0 {
                gaps.push(byte);
                break;
            }
            gaps.push(byte | 0x80);
        }
    }
    let (kind, bytes) = if gaps.len() < bitmap.len() {
        ('g', gaps)
    } else {
        ('b', bitmap)
    };
    format!("{}:{kind}{}", snapshot.digest, hex::encode(bytes))
}

/// The digest an advertisement refers to.
pub(crate) fn digest_of(advertised: &str) -> Option<&str> {
    advertised.split_once(':').map(|(digest, _)| digest)
}

/// The ready positions of an advertisement made against `snapshot`; `None`
/// if it was made against another one or is malformed.
pub(crate) fn decode(snapshot: &Snapshot, advertised: &str) -> Option<BTreeSet<usize>> {
    let (digest, body) = advertised.split_once(':')?;
    if digest != snapshot.digest {
        return None;
    }
    let kind = body.chars().next()?;
    let bytes = hex::decode(&body[1..]).ok()?;
    let len = snapshot.apps.len();
    let mut ready = BTreeSet::new();
    match kind {
        'b' => {
            for (i, byte) in bytes.iter().enumerate() {
                for bit in 0..8 {
                    let position = i * 8 + bit;
                    if byte & (1 << bit) != 0 && position < len {
                        ready.insert(position);
                    }
                }
            }
        }
        'g' => {
            let mut position = 0usize;
            let mut gap = 0usize;
            let mut shift = 0;
            for byte in bytes {
                gap |= usize::from(byte & 0x7f).checked_shl(shift)?;
                if byte & 0x80 != 0 {
                    shift += 7;
                    continue;
                }
                position = position.checked_add(gap)?;
                if position >= len {
                    return None;
                }
                ready.insert(position);
                gap = 0;
                shift = 0;
            }
            if shift != 0 {
                return None;
            }
        }
        _ => return None,
    }
    Some(ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(apps: usize) -> Snapshot {
        Snapshot {
            digest: "d1".into(),
            apps: (0..apps).map(|i| (format!("app-{i:04}"), 1)).collect(),
        }
    }

    #[test]
    fn round_trips_sparse_and_dense_sets() {
        let s = snapshot(1000);
        for ready in [
            BTreeSet::new(),
            BTreeSet::from([0]),
            BTreeSet::from([3, 200, 999]),
            (0..1000).step_by(100).collect(),
            (0..1000).collect(),
            (0..1000).filter(|i| i % 3 != 0).collect(),
        ] {
            let text = encode(&s, &ready);
            assert_eq!(decode(&s, &text), Some(ready.clone()), "{text}");
            assert_eq!(digest_of(&text), Some("d1"));
        }
    }

    #[test]
    fn stays_small() {
        let s = snapshot(1000);
        let ten: BTreeSet<usize> = (0..1000).step_by(100).collect();
        assert!(encode(&s, &ten).len() < 40, "{}", encode(&s, &ten));
        let all: BTreeSet<usize> = (0..1000).collect();
        assert!(encode(&s, &all).len() < 260);
    }

    #[test]
    fn other_snapshots_and_garbage_decode_to_nothing() {
        let s = snapshot(10);
        let text = encode(&s, &BTreeSet::from([1]));
        let other = Snapshot {
            digest: "d2".into(),
            apps: s.apps.clone(),
        };
        assert_eq!(decode(&other, &text), None);
        for junk in ["", "d1", "d1:", "d1:x00", "d1:gzz", "d1:g7f", "d1:gff"] {
            assert_eq!(decode(&s, junk), None, "{junk}");
        }
    }
}
