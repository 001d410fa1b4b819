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

    #[test]
    fn an_app_being_upgraded_here_is_advertised_at_its_old_version() {
        let snap = |digest: &str, hello: u64| {
            Arc::new(Snapshot {
                digest: digest.into(),
                apps: vec![("a".into(), 1), ("hello".into(), hello)],
            })
        };
        let (d1, d2, d3) = (snap("d1", 1), snap("d2", 2), snap("d3", 3));
        let older = [d3.clone(), d2.clone(), d1.clone()];
        let serving = |hello: u64| {
            move |name: &str| match name {
                "a" => Some((1, 2)),
                "hello" => Some((hello, 1)),
                _ => None,
            }
        };
        // Installing hello@3 while it serves hello@1: d1 says so.
        let (against, ready, load) = to_advertise(&d3, &older, serving(1));
        assert_eq!(
            (against.digest.as_str(), ready, load),
            ("d1", BTreeSet::from([0, 1]), 3)
        );
        // Served at the current version: the current snapshot.
        let (against, ready, _) = to_advertise(&d3, &older, serving(3));
        assert_eq!(
            (against.digest.as_str(), ready),
            ("d3", BTreeSet::from([0, 1]))
        );
        // Too far back for readers to be sure to hold it: the current one.
        let far: Vec<_> = (0..ADVERTISE_BACK)
            .map(|_| d3.clone())
            .chain([d1])
            .collect();
        let (against, _, _) = to_advertise(&d3, &far, serving(1));
        assert_eq!(against.digest, "d3");
        // No remembered state says more: the current one.
        let (against, ready, _) = to_advertise(&d3, std::slice::from_ref(&d3), serving(1));
        assert_eq!(
            (against.digest.as_str(), ready),
            ("d3", BTreeSet::from([0]))
        );
    }

    /// A reader that holds `hello@1` and an advertiser `h` ready for it.
    mod ahead {
        use super::*;
        use crate::desired::Record;
        use crate::mesh::membership::Member;

        fn record(name: &str) -> Record {
            Record {
                name: name.into(),
                version: 1,
                origin: "h".into(),
                at: 10,
                spec: Some(crate::spec::tests::spec(name)),
            }
        }

        fn members(ready: String, live: bool, generation: u64) -> Members {
            let h = Member {
                name: "h".into(),
                generation,
                gossip: ([127, 0, 0, 1], 1).into(),
                live,
                peer: Some(([127, 0, 0, 1], 2).into()),
                ingress: Some(([127, 0, 0, 1], 3).into()),
                ingress_cert: None,
                capacity: 1,
                load: 0,
                state: digest_of(&ready).unwrap_or_default().into(),
                ready,
            };
            Members {
                me: "f".into(),
                all: [("h".to_string(), h)].into(),
            }
        }

        /// The reader's state and snapshot, and `h`'s advertisement
        /// against a state one deploy ahead (`midway`), which the reader
        /// does not hold.
        fn setup() -> (Desired, Arc<Snapshot>, String) {
            let desired = Desired::new([record("hello")], 0);
            let ahead = Desired::new([record("hello"), record("midway")], 0).snapshot();
            assert_eq!(ahead.apps[0].0, "hello");
            let s1 = desired.snapshot();
            (desired, s1, encode(&ahead, &BTreeSet::from([0, 1])))
        }

        #[test]
        fn a_holder_ahead_of_the_reader_stays_ready_for_what_it_served() {
            let (desired, s1, ahead) = setup();
            let mut seen = Seen::default();
            let now = Instant::now();
            let before = members(encode(&s1, &BTreeSet::from([0])), true, 1);
            let table =
                ReadyTable::build(&before, std::slice::from_ref(&s1), &desired, &mut seen, now);
            assert_eq!(table.ready_nodes("hello"), ["h"]);
            assert!(table.is_live("h") && !table.is_live("f"));
            assert!(!table.catching_up());
            // `h` took a deploy the reader has not pulled yet.
            let after = members(ahead.clone(), true, 1);
            let later = now + Duration::from_secs(1);
            let table = ReadyTable::build(
                &after,
                std::slice::from_ref(&s1),
                &desired,
                &mut seen,
                later,
            );
            assert_eq!(table.ready_nodes("hello"), ["h"]);
            assert!(table.ready_nodes("midway").is_empty());
            assert!(table.catching_up(), "h holds a state the reader does not");
            // Once the reader holds the new state, it decodes it as is.
            let caught_up = Desired::new([record("hello"), record("midway")], 0);
            let s2 = caught_up.snapshot();
            let table = ReadyTable::build(&after, &[s2, s1], &caught_up, &mut seen, later);
            assert_eq!(table.ready_nodes("midway"), ["h"]);
            assert!(!table.catching_up());
        }

        #[test]
        fn what_was_seen_is_forgotten_past_its_time_on_death_restart_or_garbage() {
            let (desired, s1, ahead) = setup();
            let before = members(encode(&s1, &BTreeSet::from([0])), true, 1);
            let now = Instant::now();
            let cases = [
                ("too old", members(ahead.clone(), true, 1), REMEMBER_FOR, 1),
                ("dead", members(ahead.clone(), false, 1), Duration::ZERO, 1),
                (
                    "restarted",
                    members(ahead.clone(), true, 2),
                    Duration::ZERO,
                    2,
                ),
                (
                    "garbage",
                    members("junk".into(), true, 1),
                    Duration::ZERO,
                    1,
                ),
            ];
            for (case, after, age, generation) in cases {
                let mut seen = Seen::default();
                let snapshots = [s1.clone()];
                ReadyTable::build(&before, &snapshots, &desired, &mut seen, now);
                let table = ReadyTable::build(&after, &snapshots, &desired, &mut seen, now + age);
                assert!(table.ready_nodes("hello").is_empty(), "{case}");
                assert_eq!(table.is_live("h"), case != "dead", "{case}");
                // Still forgotten once it is back, ahead: never reinvented.
                let back = members(ahead.clone(), true, generation);
                let table = ReadyTable::build(&back, &snapshots, &desired, &mut seen, now + age);
                assert!(table.ready_nodes("hello").is_empty(), "{case}");
            }
        }
    }
}
