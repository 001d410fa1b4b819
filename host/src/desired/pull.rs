//! What a pull from a peer changes: the peer's records are vetted, those
//! that supersede what is known here are kept, and the horizon rules keep
//! a node that was away longer than the tombstone lifetime from bringing
//! removed apps back, in both directions:
//!
//! - **Refuse**: a live record for a name this node has no record of,
//!   older than this node's horizon, may be one whose removal was
//!   forgotten here. It is refused (its node was away at least a lifetime).
//! - **Forget**: a live record held here, for a name the peer has no
//!   record of, older than the peer's horizon, is one the peer refuses by
//!   the rule above; keeping it would leave the two apart for ever, so it
//!   is forgotten here too.
//!
//! Then this node takes the peer's horizon if it is later: it now holds
//! what the peer holds, so a record the peer would refuse is refused here.
//! A record's time comes from its origin's clock; the rules allow for a
//! skew of a tenth of the lifetime, at most two minutes.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Desired, Record, vet};

/// What a pull brings: every record a peer holds, and its horizon.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Pulled {
    pub horizon: u64,
    pub records: Vec<Record>,
    /// Names of records the peer holds that this version could not read
    /// (written by a newer one): the peer has a record of them.
    #[serde(skip)]
    pub unread: Vec<String>,
}

/// What merging a [`Pulled`] changes here, decided against one state.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Records that supersede what is known of their name.
    pub news: Vec<Record>,
    /// Live records held here to forget (the peer forgot their removal).
    pub forget: Vec<Record>,
    /// The horizon after the merge.
    pub horizon: u64,
    /// Records refused, by name, with the reason.
    pub refused: Vec<(String, String)>,
    /// The peer's horizon, if it was ignored: later than any removal old
    /// enough to be forgotten (a clock far ahead).
    pub ignored_horizon: Option<u64>,
}

impl Changes {
    /// Whether there is anything to save.
    pub(crate) fn is_empty(&self, desired: &Desired) -> bool {
        self.news.is_empty() && self.forget.is_empty() && self.horizon == desired.horizon
    }
}

/// How much older than a horizon a record must be for the rules to act.
fn skew(lifetime: Duration) -> u64 {
    (lifetime.as_secs() / 10).min(120)
}

impl Desired {
    /// What merging `pulled` at `now` would change, for a mesh whose
    /// tombstones live `lifetime`.
    pub(crate) fn changes(&self, pulled: Pulled, now: u64, lifetime: Duration) -> Changes {
        let skew = skew(lifetime);
        let collected = now.saturating_sub(lifetime.as_secs());
        let mut held: HashSet<String> = pulled.unread.into_iter().collect();
        let mut changes = Changes::default();
        let theirs = if pulled.horizon > collected.saturating_add(vet::MAX_AHEAD_SECS) {
            changes.ignored_horizon = Some(pulled.horizon);
            0
        } else {
            pulled.horizon
        };
        changes.horizon = self.horizon.max(theirs);
        for record in pulled.records {
            held.insert(record.name.clone());
            let known = self.get(&record.name);
            if known.is_some_and(|known| !record.supersedes(known)) {
                continue;
            }
            if let Err(why) = vet::vet(&record, now) {
                changes.refused.push((record.name, why));
                continue;
            }
            if record.spec.is_none() {
                // Removals past their lifetime are forgotten here already.
                if record.at >= collected {
                    changes.news.push(record);
                }
                continue;
            }
            if known.is_none() && record.at.saturating_add(skew) < self.horizon {
                changes.refused.push((
                    record.name,
                    "it is older than the removals this mesh has forgotten, from a node that was away longer than the tombstone lifetime; deploy it again if it is wanted".into(),
                ));
                continue;
            }
            changes.news.push(record);
        }
        changes.forget = self
            .apps()
            .map(|(record, _)| record)
            .filter(|r| !held.contains(&r.name) && r.at.saturating_add(skew) < theirs)
            .cloned()
            .collect();
        changes
    }

    /// Applies what [`Desired::changes`] decided.
    pub(crate) fn apply(&mut self, changes: &Changes) {
        for record in &changes.news {
            self.merge(record.clone());
        }
        for record in &changes.forget {
            self.records.remove(&record.name);
        }
        self.horizon = self.horizon.max(changes.horizon);
        self.snapshot = Default::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::spec;

    const LIFETIME: Duration = Duration::from_secs(1000);
    const NOW: u64 = 10_000;

    fn live(name: &str, version: u64, at: u64) -> Record {
        Record {
            name: name.into(),
            version,
            origin: "node-a".into(),
            at,
            spec: Some(spec(name)),
        }
    }

    fn removed(name: &str, version: u64, at: u64) -> Record {
        Record {
            spec: None,
            ..live(name, version, at)
        }
    }

    fn pulled(horizon: u64, records: Vec<Record>) -> Pulled {
        Pulled {
            horizon,
            records,
            unread: Vec::new(),
        }
    }

    fn names(records: &[Record]) -> Vec<&str> {
        records.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn news_supersede_and_old_removals_are_not_learned() {
        let here = Desired::new([live("a", 2, 5_000)], 0);
        let changes = here.changes(
            pulled(
                0,
                vec![
                    live("a", 1, 4_000),
                    live("a", 3, 9_000),
                    removed("old", 2, 8_000),
                    removed("recent", 2, 9_500),
                    live("b", 1, 9_900),
                ],
            ),
            NOW,
            LIFETIME,
        );
        assert_eq!(names(&changes.news), ["a", "recent", "b"]);
        assert!(changes.forget.is_empty() && changes.refused.is_empty());
        let mut after = here.clone();
        after.apply(&changes);
        assert_eq!(after.get("a").unwrap().version, 3);
        assert!(after.live("recent").is_none());
    }

    /// The node that stayed (horizon 8000: it forgot a removal made then)
    /// refuses the old record of a node that was away; the node that was
    /// away forgets it, takes the horizon, and keeps what is newer.
    #[test]
    fn a_node_away_past_the_lifetime_brings_nothing_back() {
        let mut stayed = Desired::new([live("kept", 1, 1_000)], 0);
        stayed.horizon = 8_000;
        let mut away = Desired::new(
            [
                live("kept", 1, 1_000),
                live("gone", 1, 2_000),
                live("new-here", 1, 9_990),
            ],
            0,
        );
        let theirs = pulled(away.horizon, away.records().cloned().collect());
        let changes = stayed.changes(theirs, NOW, LIFETIME);
        assert_eq!(names(&changes.news), ["new-here"]);
        assert_eq!(changes.refused.len(), 1);
        assert_eq!(changes.refused[0].0, "gone");
        assert!(changes.refused[0].1.contains("away"));

        let ours = pulled(stayed.horizon, stayed.records().cloned().collect());
        let changes = away.changes(ours, NOW, LIFETIME);
        assert_eq!(names(&changes.forget), ["gone"]);
        assert_eq!(changes.horizon, 8_000);
        away.apply(&changes);
        let left: Vec<&str> = away.apps().map(|(r, _)| r.name.as_str()).collect();
        assert_eq!(left, ["kept", "new-here"]);
        // Now it refuses the old record too, from anyone.
        let again = away.changes(pulled(0, vec![live("gone", 1, 2_000)]), NOW, LIFETIME);
        assert_eq!(again.refused.len(), 1);
    }

    #[test]
    fn a_new_node_learns_everything_and_the_skew_is_allowed() {
        let fresh = Desired::default();
        let changes = fresh.changes(
            pulled(8_000, vec![live("old", 1, 100), live("close", 1, 7_950)]),
            NOW,
            LIFETIME,
        );
        assert_eq!(names(&changes.news), ["old", "close"]);
        let stayed = Desired {
            horizon: 8_000,
            ..Desired::default()
        };
        // Within the skew (100 s for this lifetime) of the horizon: kept.
        let changes = stayed.changes(pulled(0, vec![live("close", 1, 7_950)]), NOW, LIFETIME);
        assert_eq!(names(&changes.news), ["close"]);
    }

    #[test]
    fn a_horizon_from_a_clock_far_ahead_is_ignored() {
        let here = Desired::new([live("mine", 1, 9_000)], 0);
        let changes = here.changes(pulled(NOW + 10_000, Vec::new()), NOW, LIFETIME);
        assert_eq!(changes.ignored_horizon, Some(NOW + 10_000));
        assert!(changes.forget.is_empty());
        assert_eq!(changes.horizon, 0);
    }

    #[test]
    fn records_the_peer_holds_but_cannot_be_read_here_are_not_forgotten() {
        let here = Desired::new([live("newer", 1, 100)], 0);
        let mut theirs = pulled(8_000, Vec::new());
        theirs.unread = vec!["newer".into()];
        assert!(here.changes(theirs, NOW, LIFETIME).forget.is_empty());
    }

    #[test]
    fn invalid_records_are_refused_with_the_reason() {
        let mut bad = live("ok", 1, 9_000);
        bad.spec.as_mut().unwrap().component = "nope".into();
        let changes =
            Desired::default().changes(pulled(0, vec![bad, live("fine", 1, 9_000)]), NOW, LIFETIME);
        assert_eq!(names(&changes.news), ["fine"]);
        assert!(changes.refused[0].1.contains("component"));
    }
}
