//! Rates from counts: what a node's readings over the last seconds say of
//! each app's requests, errors and latency (percentiles from the deltas of
//! its histogram buckets), the poll interval for a mesh of a given size,
//! and the bounded ring the samples are kept in. No IO here.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::metrics::AppFigures;

/// Rates are over this span (or the longest there is, when less).
pub(crate) const WINDOW_MS: u64 = 5_000;

/// How often each peer's figures are asked for: every second, every 2 s
/// past 20 peers, every 5 s past 100, so a dashboard on a large mesh costs
/// each node at most a request a second or so in all.
pub(crate) fn poll_interval(peers: usize) -> Duration {
    match peers {
        0..=20 => Duration::from_secs(1),
        21..=100 => Duration::from_secs(2),
        _ => Duration::from_secs(5),
    }
}

/// A ring that keeps the last `capacity` items.
#[derive(Debug)]
pub(crate) struct Ring<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> Ring<T> {
    pub(crate) fn new(capacity: usize) -> Ring<T> {
        Ring {
            items: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn push(&mut self, item: T) {
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    /// Oldest first.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.items.iter()
    }
}

/// One node's counts per app, read at `at_ms` (the gatherer's clock).
#[derive(Clone, Debug)]
pub(crate) struct Reading {
    pub at_ms: u64,
    pub apps: BTreeMap<String, AppFigures>,
}

/// What one app did on one node between two readings.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Delta {
    pub requests: u64,
    pub errors: u64,
    pub buckets: Vec<u64>,
    pub secs: f64,
}

impl Delta {
    pub(crate) fn rps(&self) -> f64 {
        per_sec(self.requests, self.secs)
    }

    pub(crate) fn eps(&self) -> f64 {
        per_sec(self.errors, self.secs)
    }

    /// Adds `other`'s counts (another node's, over about the same span).
    pub(crate) fn add(&mut self, other: &Delta) {
        self.requests += other.requests;
        self.errors += other.errors;
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
    }
}

fn per_sec(count: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        0.0
    } else {
        count as f64 / secs
    }
}

/// A count's growth from `old` to `new`; a count that went down was reset
/// (the node restarted), so all of `new` is growth.
fn grown(old: u64, new: u64) -> u64 {
    if new >= old { new - old } else { new }
}

/// What `new` adds to `old` (absent: nothing counted yet).
fn delta(old: Option<&AppFigures>, new: &AppFigures, secs: f64) -> Delta {
    let reset = old.is_some_and(|o| new.requests < o.requests);
    let old = old.filter(|_| !reset);
    let buckets = new
        .buckets
        .iter()
        .enumerate()
        .map(|(i, &n)| grown(old.and_then(|o| o.buckets.get(i).copied()).unwrap_or(0), n))
        .collect();
    Delta {
        requests: grown(old.map_or(0, |o| o.requests), new.requests),
        errors: grown(old.map_or(0, |o| o.errors), new.errors),
        buckets,
        secs,
    }
}

/// A node's readings over the last seconds, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Readings(VecDeque<Reading>);

impl Readings {
    /// Adds the newest reading; keeps what the window needs.
    pub(crate) fn push(&mut self, reading: Reading) {
        self.0.push_back(reading);
        let newest = self.0.back().map_or(0, |r| r.at_ms);
        while self.0.len() > 2 && self.0[1].at_ms + WINDOW_MS <= newest {
            self.0.pop_front();
        }
    }

    pub(crate) fn newest_at(&self) -> Option<u64> {
        self.0.back().map(|r| r.at_ms)
    }

    /// Per app, what the node did over the last [`WINDOW_MS`] (from the
    /// newest reading at least that old, else the oldest kept). Nothing
    /// with fewer than two readings: a first reading holds every count
    /// since the node started.
    pub(crate) fn deltas(&self) -> BTreeMap<String, Delta> {
        let (Some(newest), Some(oldest)) = (self.0.back(), self.0.front()) else {
            return BTreeMap::new();
        };
        if self.0.len() < 2 {
            return BTreeMap::new();
        }
        let base = self
            .0
            .iter()
            .rev()
            .find(|r| r.at_ms + WINDOW_MS <= newest.at_ms)
            .unwrap_or(oldest);
        let secs = (newest.at_ms - base.at_ms) as f64 / 1000.0;
        newest
            .apps
            .iter()
            .map(|(app, figures)| (app.clone(), delta(base.apps.get(app), figures, secs)))
            .collect()
    }
}

/// The latency below which a fraction `q` of the requests counted in
/// `buckets` fell, in ms, interpolated inside its bucket; `None` with no
/// requests. `bounds` are the buckets' upper bounds (one fewer than the
/// buckets: the last has none, and answers the last bound).
pub(crate) fn percentile(buckets: &[u64], bounds: &[f64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, &count) in buckets.iter().enumerate() {
        if count > 0 && (below + count) as f64 >= rank {
            let Some(&upper) = bounds.get(i) else {
                return bounds.last().copied();
            };
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
            return Some(lower + (upper - lower) * within);
        }
        below += count;
    }
    bounds.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(requests: u64, errors: u64, buckets: &[u64]) -> AppFigures {
        AppFigures {
            app: "a".into(),
            requests,
            errors,
            buckets: buckets.to_vec(),
        }
    }

    fn reading(at_ms: u64, f: AppFigures) -> Reading {
        Reading {
            at_ms,
            apps: [("a".to_string(), f)].into(),
        }
    }

    #[test]
    fn rates_are_over_the_last_five_seconds_of_readings() {
        let mut readings = Readings::default();
        readings.push(reading(0, figures(1000, 0, &[1000, 0])));
        assert!(readings.deltas().is_empty(), "one reading is no rate");
        for s in 1..=10u64 {
            // 10 requests a second, 1 of them an error, all in bucket 1.
            readings.push(reading(
                s * 1000,
                figures(1000 + s * 10, s, &[1000, s * 10]),
            ));
        }
        let a = &readings.deltas()["a"];
        assert_eq!(a.secs, 5.0);
        assert_eq!((a.requests, a.errors), (50, 5));
        assert_eq!(a.buckets, [0, 50]);
        assert_eq!((a.rps(), a.eps()), (10.0, 1.0));
        assert!(readings.0.len() <= 7, "kept {}", readings.0.len());
    }

    #[test]
    fn a_restarted_node_counts_from_zero_and_a_short_span_still_rates() {
        let mut readings = Readings::default();
        readings.push(reading(0, figures(500, 9, &[500])));
        readings.push(reading(2000, figures(20, 2, &[20])));
        let a = &readings.deltas()["a"];
        assert_eq!((a.requests, a.errors, a.secs), (20, 2, 2.0));
        assert_eq!(a.rps(), 10.0);
    }

    #[test]
    fn percentiles_interpolate_inside_the_bucket_of_their_rank() {
        let bounds = [1.0, 2.0, 4.0];
        assert_eq!(percentile(&[0, 0, 0, 0], &bounds, 0.5), None);
        // 100 requests in (1, 2] ms: p50 halfway through it.
        assert_eq!(percentile(&[0, 100, 0, 0], &bounds, 0.5), Some(1.5));
        // 90 fast, 10 in (2, 4]: p50 in the first, p99 near 4 ms.
        let buckets = [90, 0, 10, 0];
        assert_eq!(percentile(&buckets, &bounds, 0.5), Some(0.5 / 0.9));
        let p99 = percentile(&buckets, &bounds, 0.99).unwrap();
        assert!((p99 - 3.8).abs() < 1e-9, "{p99}");
        // Past the last bound: the last bound.
        assert_eq!(percentile(&[0, 0, 0, 5], &bounds, 0.99), Some(4.0));
    }

    #[test]
    fn deltas_of_many_nodes_add_up() {
        let mut sum = Delta::default();
        sum.add(&Delta {
            requests: 3,
            errors: 1,
            buckets: vec![1, 2],
            secs: 1.0,
        });
        sum.add(&Delta {
            requests: 2,
            errors: 0,
            buckets: vec![0, 1, 1],
            secs: 1.0,
        });
        assert_eq!((sum.requests, sum.errors), (5, 1));
        assert_eq!(sum.buckets, [1, 3, 1]);
    }

    #[test]
    fn the_ring_keeps_the_newest_items() {
        let mut ring = Ring::new(3);
        for i in 0..5 {
            ring.push(i);
        }
        assert_eq!(ring.iter().copied().collect::<Vec<_>>(), [2, 3, 4]);
        ring.push(5);
        assert_eq!(ring.iter().copied().collect::<Vec<_>>(), [3, 4, 5]);
    }

    #[test]
    fn the_poll_interval_grows_with_the_mesh() {
        assert_eq!(poll_interval(0), Duration::from_secs(1));
        assert_eq!(poll_interval(20), Duration::from_secs(1));
        assert_eq!(poll_interval(21), Duration::from_secs(2));
        assert_eq!(poll_interval(100), Duration::from_secs(2));
        assert_eq!(poll_interval(101), Duration::from_secs(5));
    }
}
