//! The desired state every node converges on: one [`Record`] per app name,
//! a deployment or a removal (a tombstone), and the rule that picks one
//! record when two nodes disagree.
//!
//! **The rule.** A record's stamp is `(version, origin)`; the highest stamp
//! wins, everywhere, whatever order records arrive in. A deploy on node N
//! takes version = 1 + the highest version N knows for that name (removals
//! included), so a later deploy beats an earlier one, and two concurrent
//! deploys of one name with the same version resolve to the node whose name
//! sorts last. Merging is commutative, associative and idempotent, which is
//! all anti-entropy needs.
//!
//! **The digest** names the set of live records (name, version, origin),
//! so two nodes with equal digests serve the same apps. Tombstones are left
//! out of it on purpose: a node that has collected an old tombstone and a
//! node that still keeps it agree.
//!
//! **The horizon.** Removals are forgotten after the tombstone lifetime;
//! a node's horizon is the time of the newest removal it (or a peer it
//! learned from) forgot. A live record older than the horizon, for a name
//! this node has no record of, may be one whose removal was forgotten: it
//! comes from a node that was away longer than the lifetime, and is
//! refused rather than brought back ([`pull`] has the rules, [`vet`] what
//! a peer's record must be).

pub(crate) mod pull;
pub(crate) mod vet;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::spec::AppSpec;

/// How long a removal is remembered by default, so a node that missed it
/// learns it (`shoal host --tombstone-lifetime`).
pub(crate) const TOMBSTONE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// One app's desired state, as decided by the node that accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub name: String,
    pub version: u64,
    /// The node that accepted the deploy or the removal.
    pub origin: String,
    /// Seconds since the Unix epoch, by the origin's clock.
    pub at: u64,
    /// `None` for a removal.
    pub spec: Option<AppSpec>,
}

impl Record {
    pub(crate) fn stamp(&self) -> (u64, &str) {
        (self.version, self.origin.as_str())
    }

    pub(crate) fn supersedes(&self, other: &Record) -> bool {
        self.stamp() > other.stamp()
    }
}

/// The apps of one desired state, by name, with their versions: what a
/// readiness advertisement is decoded against.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub digest: String,
    /// Live apps, sorted by name.
    pub apps: Vec<(String, u64)>,
}

/// All records this node knows, in memory; the store holds the same.
#[derive(Debug, Default, Clone)]
pub(crate) struct Desired {
    records: BTreeMap<String, Record>,
    /// Removals made before this time (seconds since the epoch) may have
    /// been forgotten, here or by a node this one pulled from.
    horizon: u64,
    /// The snapshot, computed on first use after a change.
    snapshot: OnceLock<Arc<Snapshot>>,
}

impl Desired {
    pub(crate) fn new(records: impl IntoIterator<Item = Record>, horizon: u64) -> Desired {
        let mut desired = Desired {
            horizon,
            ..Desired::default()
        };
        for record in records {
            desired.merge(record);
        }
        desired
    }

    /// Removals made before this time may have been forgotten.
    pub(crate) fn horizon(&self) -> u64 {
        self.horizon
    }

    /// Keeps `record` if it supersedes what is known of its name; returns
    /// whether it did.
    pub(crate) fn merge(&mut self, record: Record) -> bool {
        match self.records.get(&record.name) {
            Some(known) if !record.supersedes(known) => false,
            _ => {
                self.records.insert(record.name.clone(), record);
                self.snapshot = OnceLock::new();
                true
            }
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Record> {
        self.records.get(name)
    }

    /// The live spec of `name`, if it is deployed.
    pub(crate) fn live(&self, name: &str) -> Option<(&Record, &AppSpec)> {
        let record = self.records.get(name)?;
        Some((record, record.spec.as_ref()?))
    }

    /// Every deployed app with its record, by name.
    pub(crate) fn apps(&self) -> impl Iterator<Item = (&Record, &AppSpec)> {
        self.records
            .values()
            .filter_map(|r| Some((r, r.spec.as_ref()?)))
    }

    pub(crate) fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    /// The version a new deploy or removal of `name` takes here.
    pub(crate) fn next_version(&self, name: &str) -> u64 {
        self.records.get(name).map_or(0, |r| r.version) + 1
    }

    /// Forgets removals older than `before`, moving the horizon up to the
    /// newest of them; returns how many.
    pub(crate) fn collect_tombstones(&mut self, before: u64) -> usize {
        let old = self.records.len();
        let mut horizon = self.horizon;
        self.records.retain(|_, r| {
            let keep = r.spec.is_some() || r.at >= before;
            if !keep {
                horizon = horizon.max(r.at);
            }
            keep
        });
        self.horizon = horizon;
        self.snapshot = OnceLock::new();
        old - self.records.len()
    }

    /// The digest and the sorted live apps (computed once per state).
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .get_or_init(|| self.compute_snapshot())
            .clone()
    }

    fn compute_snapshot(&self) -> Arc<Snapshot> {
        let mut hasher = Sha256::new();
        let mut apps = Vec::new();
        for (record, _) in self.apps() {
            hasher.update(record.name.as_bytes());
            hasher.update([0]);
            hasher.update(record.version.to_be_bytes());
            hasher.update(record.origin.as_bytes());
            hasher.update([0]);
            apps.push((record.name.clone(), record.version));
        }
        let digest = hex::encode(&hasher.finalize()[..8]);
        Arc::new(Snapshot { digest, apps })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::spec;

    fn record(name: &str, version: u64, origin: &str, live: bool) -> Record {
        Record {
            name: name.into(),
            version,
            origin: origin.into(),
            at: 10,
            spec: live.then(|| spec(name)),
        }
    }

    #[test]
    fn merging_in_any_order_gives_the_same_state() {
        let records = [
            record("a", 1, "n1", true),
            record("a", 2, "n1", true),
            record("a", 2, "n2", true),
            record("b", 1, "n3", true),
            record("b", 2, "n1", false),
            record("c", 5, "n2", true),
        ];
        let forward = Desired::new(records.clone(), 0);
        let backward = Desired::new(records.iter().rev().cloned(), 0);
        assert_eq!(forward.snapshot(), backward.snapshot());
        assert_eq!(forward.get("a").unwrap().origin, "n2");
        assert!(forward.live("b").is_none());
        assert_eq!(forward.next_version("b"), 3);
        let names: Vec<&str> = forward.apps().map(|(r, _)| r.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        // Merging again changes nothing.
        let mut again = forward.clone();
        assert!(!records.iter().any(|r| again.merge(r.clone())));
    }

    #[test]
    fn digest_ignores_tombstones_and_sees_versions() {
        let with = Desired::new(
            [record("a", 1, "n", true), record("gone", 3, "n", false)],
            0,
        );
        let mut without = Desired::new([record("a", 1, "n", true)], 0);
        assert_eq!(with.snapshot().digest, without.snapshot().digest);
        without.merge(record("a", 2, "n", true));
        assert_ne!(with.snapshot().digest, without.snapshot().digest);
        let mut collected = with.clone();
        assert_eq!(collected.collect_tombstones(11), 1);
        assert_eq!(collected.records().count(), 1);
        // The horizon is the time of the newest removal forgotten.
        assert_eq!((with.horizon(), collected.horizon()), (0, 10));
        assert_eq!(with.snapshot().apps, [("a".to_string(), 1)]);
    }
}
