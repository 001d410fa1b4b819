//! Placement: which nodes serve which app, computed alike by every node from
//! the same inputs (live members with their capacities, apps with their
//! replica counts), so the mesh needs no coordinator.
//!
//! **Algorithm:** weighted rendezvous hashing with bounded loads, settled
//! rank by rank. Every (app, node) pair scores `capacity / -ln(u)`, `u`
//! uniform in (0, 1) from a stable hash of the two names, and an app prefers
//! nodes by descending score. Each node is bounded to `ceil((1 + ε) × its
//! weighted share of all placements)`, ε = 0.08. Apps that want every node
//! (`all`, or more replicas than members) take every node first and count
//! towards the bounds. The rest settle in rounds: in round `k` every app
//! still short proposes to its `k`-th choice, and each node takes proposals
//! by descending score while it has room; what the bounds cannot fit goes to
//! its most preferred nodes, over the bound. Replicas of an app are distinct
//! nodes, listed most preferred first.
//!
//! **Determinism:** the same members and apps, in any order, give the same
//! placement on every node running this version; names hash with SHA-256
//! and scores use only IEEE-754 `+ - × ÷` (no platform `ln`), so every
//! target agrees bit for bit. A change to any output must ship to every
//! node at once; `placements_match_the_recorded_fingerprints` pins it.
//!
//! **Cost:** O(A·N·log N) for A apps on N members, plus O(A log A) for each
//! of at most N rounds; it runs on membership and app changes only. Balance,
//! movement and the alternatives measured: `docs/placement.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::replicas::Replicas;

/// ε as a fraction: a node is full at `ceil((1 + 2/25) × its share)`.
const SLACK: (u64, u64) = (2, 25);

/// A node, by its index among the sorted members, with its score for one app.
type Choice = (f64, usize);

/// A live node that can hold apps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    /// Relative weight; 0 counts as 1.
    pub capacity: u32,
}

/// An app and how many nodes should run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demand {
    pub app: String,
    #[serde(default)]
    pub replicas: Replicas,
}

/// Every app's holders, most preferred first.
///
/// Deterministic: the same members and demands, in any order, give the same
/// placement. Member names are assumed unique (a duplicate keeps its largest
/// capacity); an app named twice gets the larger replica count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    holders: BTreeMap<String, Vec<String>>,
    /// The members placed over, sorted.
    nodes: Vec<String>,
}

impl Placement {
    /// Places `demands` over `members`.
    pub fn compute(members: &[Member], demands: &[Demand]) -> Placement {
        compute(members, demands, SLACK)
    }

    /// The nodes `app` is placed on, most preferred first; empty for an
    /// unknown app or when there are no members.
    pub fn holders(&self, app: &str) -> &[String] {
        self.holders.get(app).map_or(&[], Vec::as_slice)
    }

    /// Every app with its holders, by app name.
    pub fn apps(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.holders
            .iter()
            .map(|(app, nodes)| (app.as_str(), nodes.as_slice()))
    }

    /// The apps placed on `node`, by name.
    pub fn apps_on(&self, node: &str) -> Vec<&str> {
        self.apps()
            .filter(|(_, nodes)| nodes.iter().any(|n| n == node))
            .map(|(app, _)| app)
            .collect()
    }

    /// Placements per member, including members that hold nothing.
    pub fn loads(&self) -> BTreeMap<&str, usize> {
        let mut loads: BTreeMap<&str, usize> = self.nodes.iter().map(|n| (n.as_str(), 0)).collect();
        for nodes in self.holders.values() {
            for node in nodes {
                *loads.entry(node.as_str()).or_default() += 1;
            }
        }
        loads
    }

    /// Number of (app, node) placements.
    pub fn len(&self) -> usize {
        self.holders.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Share of the (app, node) placements of `self` that `other` lacks:
    /// `new.moved_from(&old)` is the share of placements a change started.
    pub fn moved_from(&self, other: &Placement) -> f64 {
        let total = self.len();
        if total == 0 {
            return 0.0;
        }
        let moved: usize = self
            .apps()
            .map(|(app, nodes)| {
                let before = other.holders(app);
                nodes.iter().filter(|n| !before.contains(n)).count()
            })
            .sum();
        moved as f64 / total as f64
    }
}

/// [`Placement::compute`] with the slack ε = `slack.0 / slack.1`.
fn compute(members: &[Member], demands: &[Demand], slack: (u64, u64)) -> Placement {
    let members = distinct_members(members);
    let demands = distinct_demands(demands);
    let nodes: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    if nodes.is_empty() {
        let holders = demands
            .iter()
            .map(|d| (d.app.clone(), Vec::new()))
            .collect();
        return Placement { holders, nodes };
    }
    let weights: Vec<u32> = members.iter().map(|m| m.capacity.max(1)).collect();
    let ranked = rank(&nodes, &weights, &demands);
    let wanted: Vec<usize> = demands
        .iter()
        .map(|d| d.replicas.wanted(nodes.len()))
        .collect();
    let mut room = bounds(&wanted, &weights, slack);
    let mut placed = place_everywhere(&wanted, &mut room);
    let short = settle(&ranked, &wanted, &mut placed, &mut room);
    overflow(&ranked, short, &mut placed);
    assemble(&demands, &ranked, &placed, &nodes)
}

/// The members sorted by name, each once: a duplicate keeps its largest
/// capacity.
fn distinct_members(members: &[Member]) -> Vec<&Member> {
    let mut members: Vec<&Member> = members.iter().collect();
    members.sort_by(|a, b| a.name.cmp(&b.name).then(b.capacity.cmp(&a.capacity)));
    debug_assert!(
        members.windows(2).all(|w| w[0].name != w[1].name),
        "duplicate member names"
    );
    members.dedup_by(|a, b| a.name == b.name);
    members
}

/// The demands sorted by app, each once: a duplicate keeps its larger
/// replica count.
fn distinct_demands(demands: &[Demand]) -> Vec<&Demand> {
    let mut demands: Vec<&Demand> = demands.iter().collect();
    demands.sort_by(|a, b| {
        a.app
            .cmp(&b.app)
            .then(b.replicas.size().cmp(&a.replicas.size()))
    });
    demands.dedup_by(|a, b| a.app == b.app);
    demands
}

/// Each app's nodes, most preferred first, with their scores; equal scores
/// go to the node whose name sorts first.
fn rank(nodes: &[String], weights: &[u32], demands: &[&Demand]) -> Vec<Vec<Choice>> {
    let node_hashes: Vec<u64> = nodes.iter().map(|n| name_hash(n)).collect();
    demands
        .iter()
        .map(|d| {
            let app = name_hash(&d.app);
            let mut row: Vec<Choice> = node_hashes
                .iter()
                .zip(weights)
                .enumerate()
                .map(|(i, (&node, &weight))| (score(pair_hash(app, node), weight), i))
                .collect();
            row.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
            row
        })
        .collect()
}

/// Each node's bound, `ceil((1 + ε) × its weighted share of all
/// placements)`, in exact integer arithmetic.
fn bounds(wanted: &[usize], weights: &[u32], slack: (u64, u64)) -> Vec<u64> {
    let total = wanted.iter().map(|&w| w as u128).sum::<u128>();
    let weight = weights.iter().map(|&w| u128::from(w)).sum::<u128>();
    let (num, den) = (u128::from(slack.0), u128::from(slack.1));
    weights
        .iter()
        .map(|&w| {
            let bound = (total * u128::from(w) * (den + num)).div_ceil(weight * den);
            u64::try_from(bound).unwrap_or(u64::MAX)
        })
        .collect()
}

/// Each app's holders so far: every node for the apps that want them all,
/// none for the others. The apps on every node take one slot of every
/// node's `room`.
fn place_everywhere(wanted: &[usize], room: &mut [u64]) -> Vec<Vec<usize>> {
    let n = room.len();
    let placed: Vec<Vec<usize>> = wanted
        .iter()
        .map(|&w| if w == n { (0..n).collect() } else { Vec::new() })
        .collect();
    let everywhere = placed.iter().filter(|p| !p.is_empty()).count() as u64;
    room.iter_mut()
        .for_each(|r| *r = r.saturating_sub(everywhere));
    placed
}

/// Round `k`: every app still short proposes to its `k`-th choice; each
/// node takes proposals by descending score while it has room (equal
/// scores: the app whose name sorts first); why this order:
/// `docs/placement.md`. Returns how many holders each app still lacks once
/// the rounds run out.
fn settle(
    ranked: &[Vec<Choice>],
    wanted: &[usize],
    placed: &mut [Vec<usize>],
    room: &mut [u64],
) -> Vec<usize> {
    let mut need: Vec<usize> = wanted
        .iter()
        .zip(placed.iter())
        .map(|(&w, p)| w - p.len())
        .collect();
    let mut active: Vec<usize> = (0..need.len()).filter(|&a| need[a] > 0).collect();
    let mut k = 0;
    while k < room.len() && !active.is_empty() {
        active.sort_by(|&x, &y| ranked[y][k].0.total_cmp(&ranked[x][k].0).then(x.cmp(&y)));
        for &a in &active {
            let node = ranked[a][k].1;
            if room[node] > 0 {
                room[node] -= 1;
                need[a] -= 1;
                placed[a].push(node);
            }
        }
        active.retain(|&a| need[a] > 0);
        k += 1;
    }
    need
}

/// Bounds too tight to fit everything (apps on every node filled small
/// ones): the apps still `short` go to their most preferred nodes, over
/// the bound.
fn overflow(ranked: &[Vec<Choice>], short: Vec<usize>, placed: &mut [Vec<usize>]) {
    for (a, mut need) in short.into_iter().enumerate() {
        for &(_, node) in &ranked[a] {
            if need == 0 {
                break;
            }
            if !placed[a].contains(&node) {
                placed[a].push(node);
                need -= 1;
            }
        }
    }
}

/// The placement: each app's holders by name, in its order of preference.
fn assemble(
    demands: &[&Demand],
    ranked: &[Vec<Choice>],
    placed: &[Vec<usize>],
    nodes: &[String],
) -> Placement {
    let holders = demands
        .iter()
        .zip(ranked)
        .zip(placed)
        .map(|((d, row), on)| {
            let holders = row
                .iter()
                .filter(|(_, i)| on.contains(i))
                .map(|&(_, i)| nodes[i].clone())
                .collect();
            (d.app.clone(), holders)
        })
        .collect();
    Placement {
        holders,
        nodes: nodes.to_vec(),
    }
}

/// The first 8 bytes of SHA-256 over `name`, big-endian.
fn name_hash(name: &str) -> u64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// SplitMix64's finaliser: a bijection that mixes every input bit.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The hash of an (app, node) pair from the hashes of the two names.
fn pair_hash(app: u64, node: u64) -> u64 {
    mix64(app ^ mix64(node.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// Weighted rendezvous score `weight / -ln(u)`; larger is preferred.
fn score(hash: u64, weight: u32) -> f64 {
    // u in (0, 1), never 0 or 1, from the top 53 bits.
    let u = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight) / -ln(u)
}

/// Natural logarithm of a positive normal `x` from `+ - × ÷` alone, so that
/// every platform computes the same bits (libm's `ln` may differ in the last
/// place). Error below 1e-15 relative, plenty for ranking.
fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let mut exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        exponent += 1;
    }
    // ln(m) = 2·atanh(s) = 2(s + s³/3 + s⁵/5 + …), |s| ≤ 0.172.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut series = 0.0;
    for k in (0..=10).rev() {
        series = series * s2 + 1.0 / f64::from(2 * k + 1);
    }
    2.0 * s * series + exponent as f64 * std::f64::consts::LN_2
}

#[cfg(test)]
mod tests;
