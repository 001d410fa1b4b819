//! Placement: which nodes serve which app, computed alike by every node
//! from the same inputs (live members with their capacities, the apps with
//! their replica counts), so no coordinator is needed.
//!
//! **Algorithm: weighted rendezvous hashing with bounded loads, settled
//! by deferred acceptance.** Each (app, node) pair gets a score
//! `-capacity / ln(u)`, `u` uniform in (0, 1) from sha256 of the two
//! names; an app prefers nodes in descending score (highest-random-weight
//! hashing). Plain rendezvous leaves some nodes with twice the mean, so
//! each node also gets a bound: its weighted share of all placements times
//! `1 + EPSILON`, rounded up. Apps propose to nodes down their preference
//! list; a node over its bound turns away the app that scores lowest with
//! it, which proposes on (Gale–Shapley). The outcome does not depend on the
//! order of proposals, which keeps a join or a leave from cascading the way
//! a first-come bounded walk does (measured: 2.1% moved on a join against
//! 1.6% here). `EPSILON` = 0.08 keeps the bound at 11 for 10 apps per node
//! from 98 to 102 nodes: a bound that steps with every join moves many
//! apps at once. Replicas of one app always land on distinct nodes.
//!
//! **Determinism:** same members and apps, in any order, give the same
//! placement on every node running the same version of this code.
//!
//! Cost: O(apps × members × log members) per computation (~10 ms for
//! 100 × 1,000 in release); it runs on membership and app changes only.
//! Figures (100 nodes, 1,000 apps, equal capacity, replicas 1; mean of
//! 50 joins and 50 leaves): max/mean 1.10; moved by a join 1.57%, by a
//! leave 1.50% (1% is the least possible). The mesh simulation prints them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Slack over a node's fair share before it counts as full.
const EPSILON: f64 = 0.08;

/// How many nodes should serve an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replicas {
    Count(u32),
    All,
}

impl Default for Replicas {
    fn default() -> Self {
        Replicas::Count(1)
    }
}

impl FromStr for Replicas {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("all") {
            return Ok(Replicas::All);
        }
        match s.parse::<u32>() {
            Ok(0) | Err(_) => Err(format!(
                "invalid replicas `{s}`: give a number of nodes (1 or more) or `all`"
            )),
            Ok(n) => Ok(Replicas::Count(n)),
        }
    }
}

impl fmt::Display for Replicas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Replicas::Count(n) => write!(f, "{n}"),
            Replicas::All => f.write_str("all"),
        }
    }
}

impl Serialize for Replicas {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Replicas::Count(n) => serializer.serialize_u32(*n),
            Replicas::All => serializer.serialize_str("all"),
        }
    }
}

impl<'de> Deserialize<'de> for Replicas {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::Number(n) => n.to_string(),
            Raw::Text(text) => text,
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A live node that can hold apps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// Relative weight; 0 counts as 1.
    pub capacity: u32,
}

/// An app and how many nodes it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    pub app: String,
    pub replicas: Replicas,
}

/// Every app's holders, most preferred first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    holders: BTreeMap<String, Vec<String>>,
}

/// 64 bits of sha256 over the two names (length-prefixed).
fn hash(a: &str, b: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update((a.len() as u64).to_be_bytes());
    hasher.update(a.as_bytes());
    hasher.update(b.as_bytes());
    let digest = hasher.finalize();
    u64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
}

/// Weighted rendezvous score: larger is preferred.
fn score(app: &str, node: &str, capacity: u32) -> f64 {
    // u in (0, 1): never 0 or 1, so ln(u) < 0.
    let u = ((hash(app, node) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(capacity.max(1)) / u.ln()
}

impl Placement {
    pub fn compute(members: &[Member], demands: &[Demand]) -> Placement {
        let mut members: Vec<&Member> = members.iter().collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        members.dedup_by(|a, b| a.name == b.name);
        let mut demands: Vec<&Demand> = demands.iter().collect();
        demands.sort_by(|a, b| (hash(&a.app, ""), &a.app).cmp(&(hash(&b.app, ""), &b.app)));
        demands.dedup_by(|a, b| a.app == b.app);
        let mut placement = Placement::default();
        if members.is_empty() {
            for demand in demands {
                placement.holders.insert(demand.app.clone(), Vec::new());
            }
            return placement;
        }
        let n = members.len();
        let wanted = |d: &Demand| match d.replicas {
            Replicas::All => n,
            Replicas::Count(c) => (c as usize).min(n),
        };
        let total: usize = demands.iter().map(|d| wanted(d)).sum();
        let weight: f64 = members.iter().map(|m| f64::from(m.capacity.max(1))).sum();
        let bounds: Vec<usize> = members
            .iter()
            .map(|m| {
                let share = total as f64 * f64::from(m.capacity.max(1)) / weight;
                (((1.0 + EPSILON) * share) - 1e-9).ceil().max(1.0) as usize
            })
            .collect();
        // Each app's nodes, most preferred first.
        let ranked: Vec<Vec<(f64, usize)>> = demands
            .iter()
            .map(|demand| {
                let mut ranked: Vec<(f64, usize)> = members
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (score(&demand.app, &m.name, m.capacity), i))
                    .collect();
                ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                ranked
            })
            .collect();
        // Deferred acceptance: apps propose down their rankings; a full
        // node keeps the apps that score highest with it and turns the
        // weakest away, who propose on. The result does not depend on the
        // order of proposals.
        let mut held: Vec<Vec<(f64, usize)>> = vec![Vec::new(); n];
        let mut next = vec![0usize; demands.len()];
        let mut holding = vec![0usize; demands.len()];
        let mut queue: std::collections::VecDeque<usize> = (0..demands.len()).collect();
        while let Some(a) = queue.pop_front() {
            let want = wanted(demands[a]);
            while holding[a] < want && next[a] < n {
                let (s, node) = ranked[a][next[a]];
                next[a] += 1;
                held[node].push((s, a));
                holding[a] += 1;
                if held[node].len() > bounds[node] {
                    // Turn away the weakest (ties: the later app).
                    let (weakest, _) = held[node]
                        .iter()
                        .enumerate()
                        .min_by(|x, y| x.1.0.total_cmp(&y.1.0).then(y.1.1.cmp(&x.1.1)))
                        .map(|(i, v)| (i, *v))
                        .unwrap_or((0, (0.0, 0)));
                    let (_, loser) = held[node].swap_remove(weakest);
                    holding[loser] -= 1;
                    if loser != a {
                        queue.push_back(loser);
                    }
                }
            }
        }
        // Apps every node turned away (bounds too tight to fit): their
        // most preferred nodes, over the bound.
        for (a, demand) in demands.iter().enumerate() {
            let want = wanted(demand);
            let mut k = 0;
            while holding[a] < want && k < n {
                let (s, node) = ranked[a][k];
                k += 1;
                if !held[node].iter().any(|&(_, x)| x == a) {
                    held[node].push((s, a));
                    holding[a] += 1;
                }
            }
        }
        let mut holders: Vec<Vec<(f64, usize)>> = vec![Vec::new(); demands.len()];
        for (node, apps) in held.iter().enumerate() {
            for &(s, a) in apps {
                holders[a].push((s, node));
            }
        }
        for (a, mut nodes) in holders.into_iter().enumerate() {
            nodes.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
            placement.holders.insert(
                demands[a].app.clone(),
                nodes
                    .into_iter()
                    .map(|(_, i)| members[i].name.clone())
                    .collect(),
            );
        }
        placement
    }

    /// The nodes `app` is placed on, most preferred first.
    pub fn holders(&self, app: &str) -> &[String] {
        self.holders.get(app).map_or(&[], Vec::as_slice)
    }

    /// The apps placed on `node`.
    pub fn apps_on(&self, node: &str) -> Vec<&str> {
        self.holders
            .iter()
            .filter(|(_, nodes)| nodes.iter().any(|n| n == node))
            .map(|(app, _)| app.as_str())
            .collect()
    }

    /// Number of (app, node) placements.
    pub fn len(&self) -> usize {
        self.holders.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Placements per node.
    pub fn loads(&self) -> HashMap<&str, usize> {
        let mut loads = HashMap::new();
        for nodes in self.holders.values() {
            for node in nodes {
                *loads.entry(node.as_str()).or_default() += 1;
            }
        }
        loads
    }

    /// Share of the (app, node) placements of `self` that `other` lacks.
    pub fn moved_from(&self, other: &Placement) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        let moved = self
            .holders
            .iter()
            .map(|(app, nodes)| {
                let before = other.holders(app);
                nodes.iter().filter(|n| !before.contains(n)).count()
            })
            .sum::<usize>();
        moved as f64 / self.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<Member> {
        (0..n)
            .map(|i| Member {
                name: format!("node-{i:03}"),
                capacity: 256,
            })
            .collect()
    }

    fn demands(n: usize, replicas: Replicas) -> Vec<Demand> {
        (0..n)
            .map(|i| Demand {
                app: format!("app-{i:04}"),
                replicas,
            })
            .collect()
    }

    fn balance(p: &Placement, nodes: usize) -> f64 {
        let max = p.loads().values().copied().max().unwrap_or(0) as f64;
        max / (p.len() as f64 / nodes as f64)
    }

    /// Mean share moved by a join and by a leave, over several nodes.
    fn movement(nodes: usize, apps: usize, replicas: Replicas) -> (f64, f64) {
        let m = members(nodes);
        let d = demands(apps, replicas);
        let base = Placement::compute(&m, &d);
        let mut join = 0.0;
        let mut leave = 0.0;
        let trials = 10;
        for t in 0..trials {
            let mut more = m.clone();
            more.push(Member {
                name: format!("joiner-{t}"),
                capacity: 256,
            });
            join += Placement::compute(&more, &d).moved_from(&base);
            let mut fewer = m.clone();
            fewer.remove(t * nodes / trials);
            leave += Placement::compute(&fewer, &d).moved_from(&base);
        }
        (join / trials as f64, leave / trials as f64)
    }

    #[test]
    fn same_inputs_in_any_order_place_alike() {
        let m = members(10);
        let d = demands(100, Replicas::Count(2));
        let mut m2 = m.clone();
        m2.reverse();
        let mut d2 = d.clone();
        d2.rotate_left(37);
        assert_eq!(Placement::compute(&m, &d), Placement::compute(&m2, &d2));
    }

    #[test]
    fn replicas_are_distinct_and_all_means_everyone() {
        let m = members(3);
        let mut d = demands(10, Replicas::Count(2));
        d.push(Demand {
            app: "everywhere".into(),
            replicas: Replicas::All,
        });
        d.push(Demand {
            app: "many".into(),
            replicas: Replicas::Count(7),
        });
        let p = Placement::compute(&m, &d);
        for demand in &d[..10] {
            let h = p.holders(&demand.app);
            assert_eq!(h.len(), 2);
            assert_ne!(h[0], h[1]);
        }
        assert_eq!(p.holders("everywhere").len(), 3);
        assert_eq!(p.holders("many").len(), 3);
        assert!(Placement::compute(&[], &d).holders("many").is_empty());
    }

    #[test]
    fn a_hundred_nodes_stay_balanced_and_move_little() {
        let p = Placement::compute(&members(100), &demands(1000, Replicas::Count(1)));
        let b = balance(&p, 100);
        assert!(b <= 1.15, "max/mean {b}");
        let (join, leave) = movement(100, 1000, Replicas::Count(1));
        assert!(join <= 0.02 && leave <= 0.02, "join {join} leave {leave}");
    }

    #[test]
    fn replicas_are_the_same_story() {
        let p = Placement::compute(&members(100), &demands(1000, Replicas::Count(2)));
        assert!(balance(&p, 100) <= 1.15);
        let (join, leave) = movement(100, 1000, Replicas::Count(2));
        assert!(join <= 0.02 && leave <= 0.02, "join {join} leave {leave}");
    }

    #[test]
    fn replicas_parse_and_serialise() {
        assert_eq!("3".parse::<Replicas>(), Ok(Replicas::Count(3)));
        assert_eq!("ALL".parse::<Replicas>(), Ok(Replicas::All));
        assert!("0".parse::<Replicas>().unwrap_err().contains("1 or more"));
        assert!("x".parse::<Replicas>().is_err());
        assert_eq!(serde_json::to_string(&Replicas::All).unwrap(), "\"all\"");
        assert_eq!(
            serde_json::from_str::<Replicas>("2").unwrap(),
            Replicas::Count(2)
        );
        assert_eq!(
            serde_json::from_str::<Replicas>("\"all\"").unwrap(),
            Replicas::All
        );
        assert!(serde_json::from_str::<Replicas>("0").is_err());
    }
}
