//! Readiness: which apps a node is ready to serve, in a few bytes of
//! gossip, and the table of who is ready for what that forwarding reads.
//!
//! A node advertises `DIGEST:BITS`, where DIGEST names the desired state
//! it holds (see [`Snapshot`]) and BITS marks, in the snapshot's order, the
//! apps it serves at exactly the snapshot's version. Whichever is shorter
//! of a bitmap (one bit per app) and a list of gaps between set positions
//! (LEB128) is sent, hex-encoded, so a node that holds ten apps of a
//! thousand sends ~30 characters and one that holds all of them ~250.
//! A reader decodes it against the snapshot with that digest if it has it.
//! If it does not (the advertiser is ahead of it: a deploy reached the
//! advertiser first), the reader goes on with what it last decoded of that
//! member ([`Seen`]) for at most [`REMEMBER_FOR`], until anti-entropy
//! brings it the new state: an advertiser ahead still serves what it
//! served a moment ago, so a deploy elsewhere never leaves a forwarder
//! with no holder for an app that has one.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::membership::{Member, Members, Membership, keys};
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

/// How many of the latest states readiness may be advertised against
/// while an app installs here: readers remember more than these (16), so
/// they can decode it, and an install that never ends stops counting
/// after a few changes of state.
const ADVERTISE_BACK: usize = 4;

/// What this node should advertise it serves: its readiness against
/// `current`, or, while an app is served here at another version than
/// `current` says (its new version is being installed here), against the
/// one of the [`ADVERTISE_BACK`] latest states of `older` (newest first)
/// that marks more apps ready, if one does: an app being upgraded here
/// stays visibly served at its old version, so forwarders keep sending it
/// here meanwhile. Returns that snapshot, the ready positions in it, and
/// the requests in flight over every app served here.
pub(crate) fn to_advertise(
    current: &Arc<Snapshot>,
    older: &[Arc<Snapshot>],
    here: impl Fn(&str) -> Option<(u64, usize)>,
) -> (Arc<Snapshot>, BTreeSet<usize>, usize) {
    let (ready, load) = served(current, &here);
    let serving = current.apps.iter().filter(|(name, _)| here(name).is_some());
    if ready.len() == serving.count() {
        return (current.clone(), ready, load);
    }
    let mut best = (current.clone(), ready);
    let older = older.iter().take(ADVERTISE_BACK);
    for snapshot in older.filter(|s| s.digest != current.digest) {
        let (ready, _) = served(snapshot, &here);
        if ready.len() > best.1.len() {
            best = (snapshot.clone(), ready);
        }
    }
    (best.0, best.1, load)
}

/// Gossips what this node serves: its readiness against `snapshot`, the
/// snapshot's digest, and its load.
pub(crate) async fn advertise(
    membership: &Membership,
    snapshot: &Snapshot,
    ready: &BTreeSet<usize>,
    load: usize,
) -> anyhow::Result<()> {
    advertise_against(membership, &snapshot.digest, snapshot, ready, load).await
}

/// Gossips the digest of the desired state held (`state`), readiness
/// against `snapshot` (that state's or an older one, see
/// [`to_advertise`]), and load.
pub(crate) async fn advertise_against(
    membership: &Membership,
    state: &str,
    snapshot: &Snapshot,
    ready: &BTreeSet<usize>,
    load: usize,
) -> anyhow::Result<()> {
    membership
        .set(keys::READY, &encode(snapshot, ready))
        .await?;
    membership.set(keys::STATE, state).await?;
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
    /// The other nodes live now, ready for anything or not.
    live: BTreeSet<String>,
    /// Whether this node may not know every app of the mesh yet: a live
    /// peer holds another desired state, or it has yet to meet one.
    catching_up: bool,
}

/// How long what a member was last decoded as ready for stands in for an
/// advertisement this node cannot decode yet: well past the time
/// anti-entropy takes to bring the state it names.
pub(crate) const REMEMBER_FOR: Duration = Duration::from_secs(10);

/// What each other member's readiness last decoded as, kept by the
/// controller from one table to the next: the advertisement, the snapshot
/// it decoded against, and when. Forgotten when the member dies or
/// restarts (a new generation), advertises garbage, or is not decoded for
/// [`REMEMBER_FOR`].
#[derive(Debug, Default)]
pub(crate) struct Seen(HashMap<String, Sighting>);

#[derive(Debug)]
struct Sighting {
    generation: u64,
    at: Instant,
    snapshot: Arc<Snapshot>,
    ready: String,
}

impl Seen {
    /// Forgets members that are gone, dead, restarted or not decoded for
    /// too long.
    fn forget_stale(&mut self, members: &Members, now: Instant) {
        self.0.retain(|name, sighting| {
            members.all.get(name).is_some_and(|m| {
                m.live
                    && m.generation == sighting.generation
                    && now.saturating_duration_since(sighting.at) < REMEMBER_FOR
            })
        });
    }

    /// `member`'s ready positions and the snapshot they index: decoded
    /// against `snapshots` (and remembered) if its advertisement names one
    /// of them, else what it was last decoded as; `None` if neither.
    fn decode(
        &mut self,
        member: &Member,
        snapshots: &[Arc<Snapshot>],
        now: Instant,
    ) -> Option<(Arc<Snapshot>, BTreeSet<usize>)> {
        let known =
            digest_of(&member.ready).map(|digest| snapshots.iter().find(|s| s.digest == digest));
        let Some(known) = known else {
            self.0.remove(&member.name);
            return None;
        };
        let Some(snapshot) = known else {
            // Ahead of this node: what it served a moment ago.
            let sighting = self.0.get(&member.name)?;
            let positions = decode(&sighting.snapshot, &sighting.ready)?;
            return Some((sighting.snapshot.clone(), positions));
        };
        let Some(positions) = decode(snapshot, &member.ready) else {
            self.0.remove(&member.name);
            return None;
        };
        let sighting = Sighting {
            generation: member.generation,
            at: now,
            snapshot: snapshot.clone(),
            ready: member.ready.clone(),
        };
        self.0.insert(member.name.clone(), sighting);
        Some((snapshot.clone(), positions))
    }
}

impl ReadyTable {
    /// Decodes every other live member's readiness against the snapshots
    /// this node remembers, or, for a member ahead of this node, takes
    /// what `seen` last decoded of it (see [`Seen`]); `now` is the time
    /// sightings are made and aged at.
    pub(crate) fn build(
        members: &Members,
        snapshots: &[Arc<Snapshot>],
        desired: &Desired,
        seen: &mut Seen,
        now: Instant,
    ) -> Self {
        let ours = &desired.snapshot().digest;
        let mut table = ReadyTable {
            catching_up: members
                .live()
                .any(|m| m.name != members.me && !m.state.is_empty() && m.state != *ours),
            ..ReadyTable::default()
        };
        seen.forget_stale(members, now);
        for member in members.live().filter(|m| m.name != members.me) {
            table.live.insert(member.name.clone());
            let Some(ingress) = member.ingress else {
                continue;
            };
            let Some((snapshot, positions)) = seen.decode(member, snapshots, now) else {
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

    /// An empty table for a node that may not know the mesh's apps yet
    /// (`catching_up`: it is joining one).
    pub(crate) fn empty(catching_up: bool) -> Self {
        ReadyTable {
            catching_up,
            ..ReadyTable::default()
        }
    }

    /// Whether this node may not know every app of the mesh yet: a route
    /// it does not know may be one a peer has, so it is no reason for a
    /// 404.
    pub(crate) fn catching_up(&self) -> bool {
        self.catching_up
    }

    /// Whether this node sees no other live node.
    pub(crate) fn alone(&self) -> bool {
        self.live.is_empty()
    }

    /// Counts this node as catching up (it has yet to meet the mesh).
    pub(crate) fn set_catching_up(&mut self) {
        self.catching_up = true;
    }

    /// Whether `node` is another node the mesh counts live.
    pub(crate) fn is_live(&self, node: &str) -> bool {
        self.live.contains(node)
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
mod tests;
