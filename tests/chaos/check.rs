//! The checker: plain code over the recorded history, run after every
//! run. It finds what was lost, how long each fault took to recover from,
//! which requests failed outside fault windows, whether anything hung or
//! answered 503 without `Retry-After`, and whether memory and descriptors
//! grew; `violations` lists every broken promise.
//!
//! **The rule that picks a winner** among concurrent changes of one name
//! is the one `host/src/desired/mod.rs` documents: a record's stamp is
//! `(version, origin)`, compared as a number and then as a string, and the
//! highest stamp wins everywhere. [`winner`] is exactly that comparison.

use std::collections::BTreeMap;

use crate::faults::{Fault, Kind};
use crate::load::{APPS, Class, DEADLINE_MS, Event, GRACE_MS, Sample, client_timeout_ms};
use crate::run::{Op, OpKind, Outcome};

/// Every fault must be recovered from within this (the goal is 3 s).
pub const RECOVERY_BOUND_MS: u32 = 10_000;
/// A 503 for want of a holder this soon after a change is a deploy-spread 503.
const SPREAD_MS: u32 = 5_000;
/// Resource samples of a process's first seconds are left out.
const WARM_UP_MS: u32 = 15_000;

/// Everything a run recorded.
pub struct History {
    pub nodes: usize,
    pub events: Vec<Event>,
    pub faults: Vec<Fault>,
    pub ops: Vec<Op>,
    pub samples: Vec<Sample>,
    /// Each node's apps after the final heal: (name, version, origin).
    pub finals: Vec<Vec<(String, u64, String)>>,
    /// When the load stopped.
    pub end: u32,
    /// Requests the nodes forwarded (counted by their last processes).
    pub forwarded: u64,
}

/// Requests inside one kind of fault's windows.
#[derive(Debug, Default, Clone)]
pub struct Share {
    pub faults: usize,
    pub requests: usize,
    pub failed: usize,
    /// Of those, the requests to nodes the fault did not hit.
    pub requests_elsewhere: usize,
    pub failed_elsewhere: usize,
    pub by_class: BTreeMap<&'static str, usize>,
}

/// One process incarnation's resources.
#[derive(Debug, Clone)]
pub struct Resources {
    pub node: u8,
    pub incarnation: u16,
    pub rss_first_mib: f64,
    pub rss_last_mib: f64,
    pub fds_first: u32,
    pub fds_max: u32,
    pub rss_slope_mib_per_min: f64,
}

/// The violation text of [`Figures::handover_tail`]: a request forwarded
/// to a holder that had already let the app go, which forwarded it once
/// more and met the hop guard (503 + `Retry-After`). Found by the soak of
/// seed 0x18ee25d8d194e1c0: a holder must stop advertising an app and
/// drain before it drops it (`node::control::converge`).
pub const HANDOVER_TAIL: &str = "hop-guard 503s outside fault windows: forwarded to holders that had already let the app go (a hand-over must withdraw the app from gossip and drain first)";

/// The figures of a run, and what it broke.
#[derive(Debug, Default)]
pub struct Figures {
    pub requests: usize,
    pub failed: usize,
    /// Per fault kind: time to serve again, per surviving node and app (ms).
    pub recovery: BTreeMap<Kind, Vec<u32>>,
    pub shares: BTreeMap<Kind, Share>,
    /// Failures outside every fault window, but the deploy-spread 503s.
    pub outside: usize,
    /// 503s for want of a holder outside fault windows, within 5 s of a change.
    pub spread_503: usize,
    /// Hop-guard 503s outside fault windows: forwarded through holders
    /// that had just handed the app over (an open bug of issue 16).
    pub handover_tail: usize,
    pub acked: usize,
    pub acked_during_faults: usize,
    pub lost: usize,
    pub lost_during_faults: usize,
    /// Acknowledged, then outranked by a higher stamp: not lost.
    pub superseded: usize,
    pub indeterminate: usize,
    pub refused: usize,
    pub hung: usize,
    pub moved: usize,
    pub forwarded: u64,
    pub resources: Vec<Resources>,
    pub violations: Vec<String>,
}

type Stamp = (u64, String);

/// The documented rule: the highest `(version, origin)` wins.
pub fn winner<'a>(stamps: impl IntoIterator<Item = &'a Stamp>) -> Option<&'a Stamp> {
    stamps.into_iter().max()
}

pub fn check(history: &History) -> Figures {
    let mut figures = Figures {
        requests: history.events.len(),
        failed: history
            .events
            .iter()
            .filter(|e| e.class != Class::Ok)
            .count(),
        ..Figures::default()
    };
    let windows = recoveries(history, &mut figures);
    windowed(history, &windows, &mut figures);
    bounded(history, &mut figures);
    writes(history, &mut figures);
    resources(history, &mut figures);
    figures
}

/// One (node, app)'s window of one fault: `[start, heal + recovery]`.
#[derive(Debug, Clone, Copy)]
struct Window {
    fault: usize,
    node: u8,
    app: u8,
    start: u32,
    end: u32,
}

/// Per fault and (node, app): the first success after the heal that
/// begins three in a row.
fn recoveries(history: &History, figures: &mut Figures) -> Vec<Window> {
    let mut windows = Vec::new();
    for (i, fault) in history.faults.iter().enumerate() {
        let next = history.faults.get(i + 1).map_or(history.end, |f| f.start);
        for node in 0..history.nodes as u8 {
            for app in 0..APPS.len() as u8 {
                let after: Vec<&Event> = history
                    .events
                    .iter()
                    .filter(|e| e.node == node && e.app == app)
                    .filter(|e| e.start >= fault.heal && e.start < next)
                    .collect();
                let served = after
                    .windows(3)
                    .find(|w| w.iter().all(|e| e.class == Class::Ok))
                    .map(|w| w[0].end.saturating_sub(fault.heal));
                let end = match served {
                    Some(ms) => {
                        figures.recovery.entry(fault.kind).or_default().push(ms);
                        if ms > RECOVERY_BOUND_MS {
                            figures.violations.push(format!(
                                "n{node} served {} again {ms} ms after the {} at {} ms healed (bound {RECOVERY_BOUND_MS} ms)",
                                APPS[app as usize], fault.kind.label(), fault.heal
                            ));
                        }
                        fault.heal + ms
                    }
                    None => {
                        figures.violations.push(format!(
                            "n{node} never served {} again after the {} healed at {} ms",
                            APPS[app as usize],
                            fault.kind.label(),
                            fault.heal
                        ));
                        next
                    }
                };
                windows.push(Window {
                    fault: i,
                    node,
                    app,
                    start: fault.start,
                    end,
                });
            }
        }
    }
    windows
}

/// Shares of failures inside windows per kind; failures outside them.
fn windowed(history: &History, windows: &[Window], figures: &mut Figures) {
    for fault in &history.faults {
        figures.shares.entry(fault.kind).or_default().faults += 1;
    }
    let mut examples = Vec::new();
    for event in &history.events {
        let inside = windows.iter().find(|w| {
            w.node == event.node
                && w.app == event.app
                && event.end >= w.start
                && event.start <= w.end
        });
        if let Some(window) = inside {
            let fault = &history.faults[window.fault];
            let elsewhere = !fault.nodes.contains(&(event.node as usize));
            let share = figures.shares.entry(fault.kind).or_default();
            share.requests += 1;
            share.requests_elsewhere += usize::from(elsewhere);
            if event.class != Class::Ok {
                share.failed += 1;
                share.failed_elsewhere += usize::from(elsewhere);
                *share.by_class.entry(event.class.label()).or_default() += 1;
            }
            continue;
        }
        if event.class == Class::Ok {
            continue;
        }
        let spread = event.class == Class::NoHolder
            && history.ops.iter().any(|op| {
                matches!(op.outcome, Outcome::Acked(_))
                    && event.start >= op.start
                    && event.start <= op.end + SPREAD_MS
            });
        if spread {
            figures.spread_503 += 1;
        } else if event.class == Class::Moved {
            figures.handover_tail += 1;
        } else {
            figures.outside += 1;
        }
        if examples.len() < 5 {
            examples.push(format!(
                "n{} {} at {} ms: {}",
                event.node,
                APPS[event.app as usize],
                event.start,
                event.class.label()
            ));
        }
    }
    if figures.outside > 0 {
        figures.violations.push(format!(
            "{} requests failed outside fault windows, e.g. {examples:?}",
            figures.outside
        ));
    }
    if figures.handover_tail > 0 {
        figures
            .violations
            .push(format!("{} {HANDOVER_TAIL}", figures.handover_tail));
    }
    if figures.spread_503 > 0 {
        figures.violations.push(format!(
            "{} deploy-spread 503s: a forwarding node had no holder for an app while a change spread (see `mesh/readiness.rs`, `Seen`)",
            figures.spread_503
        ));
    }
}

/// Whether `node` was frozen at some point of `[start, end]`.
fn frozen(history: &History, node: u8, start: u32, end: u32) -> bool {
    history.faults.iter().any(|f| {
        f.kind == Kind::Freeze
            && f.nodes.contains(&(node as usize))
            && end >= f.start
            && start <= f.heal
    })
}

/// Whether `node` was cut off the majority at `at`.
fn cut_off(history: &History, node: u8, at: u32) -> bool {
    history.faults.iter().any(|f| {
        matches!(f.kind, Kind::Partition | Kind::Isolate | Kind::SplitBrain)
            && f.nodes.contains(&(node as usize))
            && at >= f.start
            && at <= f.heal
    })
}

/// No hang, `Retry-After` on every 503 and 502, and a minority side that
/// answers within its bound with 503, 502 or 504.
fn bounded(history: &History, figures: &mut Figures) {
    let answer_bound = DEADLINE_MS + GRACE_MS + 1_000;
    let (mut no_retry, mut minority_bad) = (Vec::new(), Vec::new());
    for e in &history.events {
        if e.class == Class::Hung && !frozen(history, e.node, e.start, e.end) {
            figures.hung += 1;
        }
        if e.class == Class::Moved {
            figures.moved += 1;
        }
        if matches!(e.status, 502 | 503) && !e.retry_after {
            no_retry.push(format!("n{} at {} ms: {}", e.node, e.start, e.status));
        }
        let answered_in_bound = matches!(
            e.class,
            Class::Ok | Class::NoHolder | Class::Moved | Class::BadGateway | Class::GatewayTimeout
        ) && e.end - e.start <= answer_bound;
        if cut_off(history, e.node, e.start) && !answered_in_bound {
            minority_bad.push(format!(
                "n{} {} at {} ms: {} after {} ms",
                e.node,
                APPS[e.app as usize],
                e.start,
                e.class.label(),
                e.end - e.start
            ));
        }
    }
    figures.forwarded = history.forwarded;
    let hops = crate::load::MAX_HOPS * history.events.len() as u64;
    if history.forwarded > hops {
        figures.violations.push(format!(
            "{} requests forwarded for {} sent: more than {} hops each, a loop",
            history.forwarded,
            history.events.len(),
            crate::load::MAX_HOPS
        ));
    }
    if figures.hung > 0 {
        figures.violations.push(format!(
            "{} requests to a running node hung past {} ms",
            figures.hung,
            client_timeout_ms()
        ));
    }
    if !no_retry.is_empty() {
        figures.violations.push(format!(
            "{} 502/503 answers without Retry-After, e.g. {:?}",
            no_retry.len(),
            &no_retry[..no_retry.len().min(5)]
        ));
    }
    if !minority_bad.is_empty() {
        figures.violations.push(format!(
            "{} requests to a cut-off node were not answered 503/502/504 within {answer_bound} ms, e.g. {:?}",
            minority_bad.len(),
            &minority_bad[..minority_bad.len().min(5)]
        ));
    }
}

/// Whether `at` falls inside a fault.
fn during_fault(history: &History, at: u32) -> bool {
    history.faults.iter().any(|f| at >= f.start && at <= f.heal)
}

/// No acknowledged change lost: every node holds, for every name, the
/// record the rule picks among everything acknowledged.
fn writes(history: &History, figures: &mut Figures) {
    let mut names: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in &history.ops {
        names.entry(op.name.as_str()).or_default().push(op);
        match &op.outcome {
            Outcome::Acked(_) => {
                figures.acked += 1;
                if during_fault(history, op.start) || during_fault(history, op.end) {
                    figures.acked_during_faults += 1;
                }
            }
            Outcome::Refused(_) => figures.refused += 1,
            Outcome::Indeterminate => figures.indeterminate += 1,
        }
    }
    for (k, apps) in history.finals.iter().enumerate() {
        for (name, ..) in apps {
            if !names.contains_key(name.as_str()) {
                figures
                    .violations
                    .push(format!("n{k} holds `{name}`, which no operation deployed"));
            }
        }
    }
    for (name, ops) in &names {
        let mut lost: Vec<&Op> = Vec::new();
        for (k, apps) in history.finals.iter().enumerate() {
            let held = apps
                .iter()
                .find(|(n, ..)| n == name)
                .map(|(_, v, o)| (*v, o.clone()));
            match judge(ops, held.as_ref()) {
                Ok(superseded) if k == 0 => figures.superseded += superseded,
                Ok(_) => {}
                Err((why, ops)) => {
                    figures.violations.push(format!("n{k} `{name}`: {why}"));
                    lost.extend(ops);
                }
            }
        }
        lost.sort_by_key(|op| (op.start, op.node));
        lost.dedup_by_key(|op| (op.start, op.node));
        figures.lost += lost.len();
        figures.lost_during_faults += lost
            .iter()
            .filter(|op| during_fault(history, op.start) || during_fault(history, op.end))
            .count();
    }
}

type Lost<'a> = (String, Vec<&'a Op>);

/// Judges one node's final record of a name against its operations: how
/// many acknowledgements the winner superseded, or why it is wrong and
/// which acknowledged operations it lost.
fn judge<'a>(ops: &[&'a Op], held: Option<&Stamp>) -> Result<usize, Lost<'a>> {
    let acked: Vec<(&Op, &Stamp)> = ops
        .iter()
        .filter_map(|op| match &op.outcome {
            Outcome::Acked(Some(stamp)) => Some((*op, stamp)),
            _ => None,
        })
        .collect();
    // An unanswered change, or a removal that could not say its stamp, may
    // legitimately have won.
    let unknown = |origin: Option<&str>| {
        ops.iter().any(|op| {
            let node = format!("n{}", op.node);
            let maybe = matches!(op.outcome, Outcome::Indeterminate | Outcome::Acked(None));
            maybe && origin.is_none_or(|o| o == node)
        })
    };
    let Some(best) = winner(acked.iter().map(|(_, s)| *s)) else {
        return match held {
            Some(h) if !unknown(Some(&h.1)) => {
                Err((format!("holds {h:?}, never acknowledged"), vec![]))
            }
            _ => Ok(0),
        };
    };
    let removed = acked
        .iter()
        .any(|(op, s)| *s == best && op.kind == OpKind::Remove);
    let superseded = acked.len() - 1;
    match held {
        Some(h) if h == best && !removed => Ok(superseded),
        None if removed => Ok(superseded),
        Some(h) if h > best && unknown(Some(&h.1)) => Ok(acked.len()),
        None if unknown(None) => Ok(acked.len()),
        Some(h) => {
            let lost = acked
                .iter()
                .filter(|(_, s)| *s > h)
                .map(|(op, _)| *op)
                .collect();
            Err((
                format!("holds {h:?}, but the rule picks {best:?} (removed: {removed})"),
                lost,
            ))
        }
        None => {
            let last_removal = acked
                .iter()
                .filter(|(op, _)| op.kind == OpKind::Remove)
                .map(|(_, s)| *s)
                .max();
            let lost = acked
                .iter()
                .filter(|(op, s)| op.kind != OpKind::Remove && Some(*s) > last_removal)
                .map(|(op, _)| *op)
                .collect();
            Err((
                format!("absent, but the rule picks the deploy {best:?}"),
                lost,
            ))
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Flat memory and descriptors per process incarnation.
fn resources(history: &History, figures: &mut Figures) {
    let mut runs: BTreeMap<(u8, u16), Vec<&Sample>> = BTreeMap::new();
    for sample in &history.samples {
        runs.entry((sample.node, sample.incarnation))
            .or_default()
            .push(sample);
    }
    for ((node, incarnation), samples) in runs {
        let first_at = samples[0].at;
        let warm: Vec<&Sample> = samples
            .into_iter()
            .filter(|s| s.at >= first_at + WARM_UP_MS)
            .collect();
        if warm.len() < 8 {
            continue;
        }
        let quarter = warm.len() / 4;
        let mib = |s: &&Sample| s.rss_kib as f64 / 1024.0;
        let first = median(&mut warm[..quarter].iter().map(mib).collect::<Vec<_>>());
        let last = median(
            &mut warm[warm.len() - quarter..]
                .iter()
                .map(mib)
                .collect::<Vec<_>>(),
        );
        let fds_first = warm[0].fds;
        let fds_max = warm.iter().map(|s| s.fds).max().unwrap_or(0);
        let slope = slope(&warm);
        let name = format!("n{node} (incarnation {incarnation})");
        if last > first * 1.3 + 16.0 {
            figures
                .violations
                .push(format!("{name}: RSS grew from {first:.1} to {last:.1} MiB"));
        }
        if fds_max > fds_first + 32 {
            figures.violations.push(format!(
                "{name}: descriptors grew from {fds_first} to {fds_max}"
            ));
        }
        let span_min = f64::from(warm[warm.len() - 1].at - warm[0].at) / 60_000.0;
        if span_min >= 5.0 && slope > 1.0 {
            figures
                .violations
                .push(format!("{name}: RSS grows {slope:.2} MiB/min"));
        }
        figures.resources.push(Resources {
            node,
            incarnation,
            rss_first_mib: first,
            rss_last_mib: last,
            fds_first,
            fds_max,
            rss_slope_mib_per_min: slope,
        });
    }
}

/// Least-squares slope of RSS over time, MiB per minute.
fn slope(samples: &[&Sample]) -> f64 {
    let n = samples.len() as f64;
    let xs: Vec<f64> = samples.iter().map(|s| f64::from(s.at) / 60_000.0).collect();
    let ys: Vec<f64> = samples.iter().map(|s| s.rss_kib as f64 / 1024.0).collect();
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let cov: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let var: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if var == 0.0 { 0.0 } else { cov / var }
}

/// Median and maximum.
pub fn median_max(values: &[u32]) -> (u32, u32) {
    let mut sorted = values.to_vec();
    sorted.sort();
    (
        sorted.get(sorted.len() / 2).copied().unwrap_or(0),
        sorted.last().copied().unwrap_or(0),
    )
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
