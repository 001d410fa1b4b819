//! Readiness: which apps a node is ready to serve, in a few bytes of
//! gossip, and the table of who is ready for what that forwarding reads.
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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use super::membership::{Members, Membership, keys};
use crate::desired::{Desired, Snapshot};

/// What this node serves of `snapshot`: the positions of the apps it
/// serves at the snapshot's version, and its requests in flight over every
/// app it serves. `here(name)` gives the version served here and its
/// requests in flight (active and queued), if it is served here at all.
pub(crate) fn served(
    snapshot: &Snapshot,
    here: impl Fn(&str) -> Option<(u64, usize)>,
) -> (BTreeSet<usize>, usize) {
    let mut ready = BTreeSet::new();
    let mut load = 0;
    for (position, (name, version)) in snapshot.apps.iter().enumerate() {
        if let Some((served, in_flight)) = here(name) {
            load += in_flight;
            if served == *version {
                ready.insert(position);
            }
        }
    }
    (ready, load)
}

/// Gossips what this node serves: its readiness against `snapshot`, the
/// snapshot's digest, and its load.
pub(crate) async fn advertise(
    membership: &Membership,
    snapshot: &Snapshot,
    ready: &BTreeSet<usize>,
    load: usize,
) -> anyhow::Result<()> {
    membership
        .set(keys::READY, &encode(snapshot, ready))
        .await?;
    membership.set(keys::STATE, &snapshot.digest).await?;
    membership.set(keys::LOAD, &load.to_string()).await
}

/// A node ready to serve an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    pub node: String,
    pub ingress: SocketAddr,
    /// The fingerprint of its ingress's certificate, when it has TLS.
    pub cert: Option<String>,
    pub load: u32,
}

/// Who is ready for what, rebuilt by the controller from gossip.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ReadyTable {
    /// Ready at the app's current version.
    current: HashMap<String, Vec<Holder>>,
    /// Ready at an older version only (a rollout in progress).
    older: HashMap<String, Vec<Holder>>,
}

impl ReadyTable {
    /// Decodes every other live member's readiness against the snapshots
    /// this node remembers.
    pub(crate) fn build(members: &Members, snapshots: &[Arc<Snapshot>], desired: &Desired) -> Self {
        let mut table = ReadyTable::default();
        for member in members.live().filter(|m| m.name != members.me) {
            let Some(ingress) = member.ingress else {
                continue;
            };
            let Some(digest) = digest_of(&member.ready) else {
                continue;
            };
            let Some(snapshot) = snapshots.iter().find(|s| s.digest == digest) else {
                continue;
            };
            let Some(positions) = decode(snapshot, &member.ready) else {
                continue;
            };
            for position in positions {
                let (name, version) = &snapshot.apps[position];
                let holder = Holder {
                    node: member.name.clone(),
                    ingress,
                    cert: member.ingress_cert.clone(),
                    load: member.load,
                };
                match desired.live(name) {
                    Some((record, _)) if record.version == *version => {
                        table.current.entry(name.clone()).or_default().push(holder)
                    }
                    Some(_) => table.older.entry(name.clone()).or_default().push(holder),
                    None => {}
                }
            }
        }
        table
    }

    /// Names of the other nodes ready for the current version of `app`.
    pub(crate) fn ready_nodes(&self, app: &str) -> Vec<String> {
        let mut nodes: Vec<String> = self
            .current
            .get(app)
            .into_iter()
            .flatten()
            .map(|h| h.node.clone())
            .collect();
        nodes.sort();
        nodes
    }

    /// Apps each other node is ready for, by node.
    pub(crate) fn held(&self) -> HashMap<String, Vec<String>> {
        let mut held: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (app, holders) in &self.current {
            for holder in holders {
                held.entry(&holder.node).or_default().push(app.clone());
            }
        }
        held.into_iter()
            .map(|(node, mut apps)| {
                apps.sort();
                (node.to_string(), apps)
            })
            .collect()
    }

    /// The fingerprints of every holder's ingress certificate.
    pub(crate) fn certs(&self) -> HashSet<String> {
        self.current
            .values()
            .chain(self.older.values())
            .flatten()
            .filter_map(|h| h.cert.clone())
            .collect()
    }

    pub(crate) fn candidates(&self, app: &str) -> &[Holder] {
        match self.current.get(app) {
            Some(holders) if !holders.is_empty() => holders,
            _ => self.older.get(app).map_or(&[], Vec::as_slice),
        }
    }
}

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
