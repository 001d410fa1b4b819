//! The gatherer: while someone looks at the dashboard, a task polls every
//! live peer's figures (every 1 s, 2 s past 20 peers, 5 s past 100, each
//! poll in a task of its own so a frozen peer delays nobody), reads this
//! node's own, and once a second turns them into a sample of rates kept in
//! a ring of the last 300 and sent to every stream. It starts on the first
//! `/ui/api` request and stops 60 s after the last one, once no stream is
//! open: an idle host pays nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::figures::{LINES_PER_APP, Sources};
use super::rates::{Delta, Reading, Readings, Ring, percentile, poll_interval};
use crate::clock::unix_now_ms;
use crate::mesh::membership::Members;
use crate::mesh::peer::Figures;
use crate::metrics::latency_bounds_ms;

/// Samples kept: five minutes of one a second.
pub(crate) const SAMPLES: usize = 300;
/// How long the gatherer runs on after the last request, with no stream open.
const LINGER: Duration = Duration::from_secs(60);
/// A node's rates count while its newest figures are at most this old.
const FRESH_MS: u64 = 15_000;

/// One guest line as the dashboard gets it.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Line {
    pub node: String,
    pub seq: u64,
    pub at_ms: u64,
    pub text: String,
    /// Its place among every line gathered (streams read past the last).
    #[serde(skip)]
    pub index: u64,
}

/// What is known of one node.
#[derive(Default)]
pub(crate) struct Seen {
    pub figures: Option<Figures>,
    /// When its newest figures arrived (this node's clock, ms).
    pub received_ms: u64,
    readings: Readings,
    /// The number of its last guest line gathered.
    after: u64,
    polling: bool,
    polled: Option<Instant>,
}

/// An app's or a node's rates over the last seconds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Rate {
    pub rps: f64,
    pub eps: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<bool>,
}

/// Rates of every app (over every node) and of every node.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Rates {
    pub apps: BTreeMap<String, Rate>,
    pub nodes: BTreeMap<String, Rate>,
}

#[derive(Default)]
pub(crate) struct State {
    pub nodes: HashMap<String, Seen>,
    samples: Option<Ring<Arc<str>>>,
    /// The last lines of each app, of every node (at most 200 an app).
    logs: HashMap<String, Ring<Line>>,
    lines: u64,
}

impl State {
    /// Records `figures` of `node`, arrived now.
    fn record(&mut self, node: &str, figures: Figures) {
        let now = unix_now_ms();
        let seen = self.nodes.entry(node.to_string()).or_default();
        if figures.log_seq < seen.after {
            seen.after = 0; // it restarted: its lines are numbered anew
        }
        let mut lines = Vec::new();
        for line in &figures.logs {
            if line.seq > seen.after {
                lines.push(line.clone());
            }
        }
        seen.after = lines.iter().map(|l| l.seq).max().unwrap_or(seen.after);
        seen.readings.push(Reading {
            at_ms: now,
            apps: figures
                .apps
                .iter()
                .map(|a| (a.app.clone(), a.clone()))
                .collect(),
        });
        seen.received_ms = now;
        seen.figures = Some(Figures {
            logs: Vec::new(),
            ..figures
        });
        for line in lines {
            self.lines += 1;
            let ring = self
                .logs
                .entry(line.app.clone())
                .or_insert_with(|| Ring::new(LINES_PER_APP));
            ring.push(Line {
                node: node.to_string(),
                seq: line.seq,
                at_ms: line.at_ms,
                text: line.text,
                index: self.lines,
            });
        }
    }

    /// The lines of `app` gathered after `index`, oldest first.
    pub(crate) fn lines_after(&self, app: &str, index: u64) -> Vec<Line> {
        self.logs.get(app).map_or_else(Vec::new, |ring| {
            ring.iter().filter(|l| l.index > index).cloned().collect()
        })
    }

    /// The rates now, over the members `members` knows.
    pub(crate) fn rates(&self, members: &Members) -> Rates {
        let now = unix_now_ms();
        let bounds = latency_bounds_ms();
        let mut rates = Rates::default();
        let mut apps: BTreeMap<String, (f64, f64, Delta)> = BTreeMap::new();
        for member in members.all.values() {
            let seen = self.nodes.get(&member.name);
            let fresh = seen
                .and_then(|s| s.readings.newest_at())
                .is_some_and(|at| now.saturating_sub(at) <= FRESH_MS);
            let mut node = Rate {
                live: Some(member.live),
                ..Rate::default()
            };
            if member.live && fresh {
                for (app, delta) in seen.map(|s| s.readings.deltas()).unwrap_or_default() {
                    node.rps += delta.rps();
                    node.eps += delta.eps();
                    let sum = apps.entry(app).or_default();
                    sum.0 += delta.rps();
                    sum.1 += delta.eps();
                    sum.2.add(&delta);
                }
            }
            node.rps = hundredths(node.rps);
            node.eps = hundredths(node.eps);
            rates.nodes.insert(member.name.clone(), node);
        }
        for (app, (rps, eps, delta)) in apps {
            let rate = Rate {
                rps: hundredths(rps),
                eps: hundredths(eps),
                p50_ms: percentile(&delta.buckets, &bounds, 0.5).map(hundredths),
                p99_ms: percentile(&delta.buckets, &bounds, 0.99).map(hundredths),
                live: None,
            };
            rates.apps.insert(app, rate);
        }
        rates
    }

    /// The samples kept, oldest first.
    pub(crate) fn samples(&self) -> Vec<Arc<str>> {
        self.samples
            .as_ref()
            .map_or_else(Vec::new, |r| r.iter().cloned().collect())
    }
}

/// `x` to two decimals: what a page shows, in fewer bytes.
fn hundredths(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The gatherer of this process's node.
pub(crate) struct Gatherer {
    state: Mutex<State>,
    samples: broadcast::Sender<Arc<str>>,
    running: AtomicBool,
    viewers: AtomicUsize,
    last_request: Mutex<Instant>,
}

/// Keeps the gatherer running while held (an open stream).
pub(crate) struct Viewer(Arc<Gatherer>);

impl Drop for Viewer {
    fn drop(&mut self) {
        self.0.viewers.fetch_sub(1, Ordering::SeqCst);
        self.0.touched();
    }
}

impl Gatherer {
    /// The one gatherer (a host serves one node).
    pub(crate) fn get() -> Arc<Gatherer> {
        static GATHERER: OnceLock<Arc<Gatherer>> = OnceLock::new();
        GATHERER
            .get_or_init(|| {
                Arc::new(Gatherer {
                    state: Mutex::default(),
                    samples: broadcast::channel(16).0,
                    running: AtomicBool::new(false),
                    viewers: AtomicUsize::new(0),
                    last_request: Mutex::new(Instant::now()),
                })
            })
            .clone()
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn touched(&self) {
        *self.last_request.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// A request came: starts the gatherer if it was not running.
    pub(crate) fn touch(self: &Arc<Self>, sources: impl FnOnce() -> Sources) {
        self.touched();
        if !self.running.swap(true, Ordering::SeqCst) {
            let sources = sources();
            tracing::info!("the dashboard's gatherer starts");
            tokio::spawn(self.clone().run(sources));
        }
    }

    /// A stream opened: the gatherer runs while it is.
    pub(crate) fn viewer(self: &Arc<Self>) -> (Viewer, broadcast::Receiver<Arc<str>>) {
        self.viewers.fetch_add(1, Ordering::SeqCst);
        (Viewer(self.clone()), self.samples.subscribe())
    }

    fn idle(&self) -> bool {
        let last = *self.last_request.lock().unwrap_or_else(|e| e.into_inner());
        self.viewers.load(Ordering::SeqCst) == 0 && last.elapsed() > LINGER
    }

    async fn run(self: Arc<Self>, sources: Sources) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.idle() {
                self.running.store(false, Ordering::SeqCst);
                // A request between the check and the store restarts it.
                if !self.idle() && !self.running.swap(true, Ordering::SeqCst) {
                    continue;
                }
                *self.state() = State::default();
                tracing::info!("the dashboard's gatherer stops: nobody looked for a minute");
                return;
            }
            self.round(&sources);
        }
    }

    /// One second's work: poll the peers due, read this node, sample.
    fn round(self: &Arc<Self>, sources: &Sources) {
        let members = sources.mesh.membership.members();
        let peers: Vec<_> = members
            .live()
            .filter(|m| m.name != members.me)
            .filter_map(|m| Some((m.name.clone(), m.peer?)))
            .collect();
        let interval = poll_interval(peers.len());
        let mut state = self.state();
        let after = state.nodes.get(&members.me).map_or(0, |s| s.after);
        state.record(&members.me, sources.figures(after));
        for (name, address) in peers {
            let seen = state.nodes.entry(name.clone()).or_default();
            if seen.polling || seen.polled.is_some_and(|at| at.elapsed() < interval) {
                continue;
            }
            seen.polling = true;
            seen.polled = Some(Instant::now());
            let (gatherer, client, after) = (self.clone(), sources.mesh.peer.clone(), seen.after);
            tokio::spawn(async move {
                let figures = client.figures(address, after).await;
                let mut state = gatherer.state();
                match figures {
                    Ok(figures) => state.record(&name, figures),
                    Err(error) => {
                        tracing::debug!(peer = %name, error = %format!("{error:#}"), "no figures from a peer this round")
                    }
                }
                if let Some(seen) = state.nodes.get_mut(&name) {
                    seen.polling = false;
                }
            });
        }
        let rates = state.rates(&members);
        let sample = serde_json::json!({
            "t_ms": unix_now_ms(),
            "apps": rates.apps,
            "nodes": rates.nodes,
        });
        let sample: Arc<str> = sample.to_string().into();
        state
            .samples
            .get_or_insert_with(|| Ring::new(SAMPLES))
            .push(sample.clone());
        drop(state);
        let _ = self.samples.send(sample);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::guest_logs::LogLine;
    use crate::mesh::membership::Member;
    use crate::metrics::AppFigures;

    fn member(name: &str, live: bool) -> Member {
        Member {
            name: name.into(),
            generation: 1,
            gossip: "127.0.0.1:1".parse().unwrap(),
            live,
            peer: None,
            ingress: None,
            ingress_cert: None,
            capacity: 1,
            load: 0,
            state: String::new(),
            ready: String::new(),
        }
    }

    fn members(live: &[(&str, bool)]) -> Members {
        Members {
            me: live[0].0.into(),
            all: live
                .iter()
                .map(|&(n, l)| (n.to_string(), member(n, l)))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn figures(requests: u64, log_seq: u64, logs: &[(u64, &str)]) -> Figures {
        let mut buckets = vec![0; latency_bounds_ms().len() + 1];
        buckets[2] = requests; // (0.5, 1] ms
        Figures {
            apps: vec![AppFigures {
                app: "a".into(),
                requests,
                errors: requests / 10,
                buckets,
            }],
            log_seq,
            logs: logs
                .iter()
                .map(|&(seq, text)| LogLine {
                    app: "a".into(),
                    seq,
                    at_ms: 1,
                    text: text.into(),
                })
                .collect(),
            ..Figures::default()
        }
    }

    #[test]
    fn lines_are_kept_once_per_node_and_read_after_an_index() {
        let mut state = State::default();
        state.record("n2", figures(0, 2, &[(1, "one"), (2, "two")]));
        // The same lines again (a poll that raced): not kept twice.
        state.record("n2", figures(0, 3, &[(2, "two"), (3, "three")]));
        let lines = state.lines_after("a", 0);
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["one", "two", "three"]);
        assert!(lines.iter().all(|l| l.node == "n2"));
        assert_eq!(state.lines_after("a", lines[1].index).len(), 1);
        // Restarted: numbered from 1 again, and still kept.
        state.record("n2", figures(0, 1, &[(1, "again")]));
        assert_eq!(state.lines_after("a", lines[2].index)[0].text, "again");
        assert!(state.lines_after("b", 0).is_empty());
    }

    #[test]
    fn rates_add_up_over_live_nodes_and_a_dead_one_counts_nothing() {
        let mut state = State::default();
        for node in ["n1", "n2", "n3"] {
            state.record(node, figures(100, 0, &[]));
            let seen = state.nodes.get_mut(node).unwrap();
            // As if read a second later, 10 more requests.
            let mut reading = Reading {
                at_ms: seen.received_ms + 1000,
                apps: BTreeMap::new(),
            };
            reading
                .apps
                .insert("a".into(), figures(110, 0, &[]).apps[0].clone());
            seen.readings.push(reading);
        }
        let rates = state.rates(&members(&[("n1", true), ("n2", true), ("n3", false)]));
        assert_eq!(rates.nodes["n1"].rps, 10.0);
        assert_eq!(rates.nodes["n3"].rps, 0.0);
        assert_eq!(rates.nodes["n3"].live, Some(false));
        let a = &rates.apps["a"];
        assert_eq!((a.rps, a.eps), (20.0, 2.0));
        let p50 = a.p50_ms.unwrap();
        assert!((0.5..=1.0).contains(&p50), "{p50}");
    }
}
