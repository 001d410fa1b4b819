//! Runs a schedule against a cluster under load: injects each fault,
//! issues deploys, redeploys and removals during faults and between them,
//! and records every acknowledgement with its version.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::{Call, Cluster};
use crate::faults::{Fault, Kind, Rng, Step};
use crate::load::{APPS, Clock, DEADLINE_MS, Streaks};

/// Names deployed, redeployed and removed by the schedule.
const CHURN: [&str; 4] = ["c0", "c1", "c2", "c3"];
/// The name deployed on both sides of a partition.
pub const SPLIT: &str = "split";
/// How long an admin call may take before its outcome is unknown.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the schedule waits for every node to serve every app again.
const SETTLE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Deploy,
    Redeploy,
    Remove,
}

impl OpKind {
    pub fn label(self) -> &'static str {
        match self {
            OpKind::Deploy => "deploy",
            OpKind::Redeploy => "redeploy",
            OpKind::Remove => "remove",
        }
    }
}

/// What an admin call came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged with this stamp; a removal acknowledged by a host that
    /// cannot say its version has `None`.
    Acked(Option<(u64, String)>),
    Refused(u16),
    /// No answer: the change may or may not have been made.
    Indeterminate,
}

/// A node's apps: (name, version, origin), sorted.
pub type Apps = Vec<(String, u64, String)>;

/// One deploy, redeploy or removal.
#[derive(Debug, Clone)]
pub struct Op {
    pub start: u32,
    pub end: u32,
    pub node: usize,
    pub kind: OpKind,
    pub name: String,
    pub outcome: Outcome,
}

/// The schedule's state and what it recorded.
pub struct Runner<'a> {
    pub cluster: &'a mut Cluster,
    pub clock: Clock,
    pub rng: Rng,
    pub faults: Vec<Fault>,
    pub ops: Vec<Op>,
    sha256: String,
    hello: Vec<u8>,
    live: BTreeSet<String>,
}

fn spec(name: &str, sha256: &str, replicas: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "name": name,
        "component": sha256,
        "timeout_ms": DEADLINE_MS,
        "memory": 128u64 << 20,
        "max_concurrency": 100,
        "max_queue": 1000,
        "replicas": replicas,
    }))
    .unwrap()
}

/// The stamp in an admin reply: `version` and `origin`.
fn stamp(body: &str) -> Option<(u64, String)> {
    let view: serde_json::Value = serde_json::from_str(body).ok()?;
    Some((
        view["version"].as_u64()?,
        view["origin"].as_str()?.to_string(),
    ))
}

impl<'a> Runner<'a> {
    pub fn new(cluster: &'a mut Cluster, clock: Clock, seed: u64, hello: Vec<u8>) -> Runner<'a> {
        Runner {
            cluster,
            clock,
            rng: Rng::new(seed ^ 0x5eed),
            faults: Vec::new(),
            ops: Vec::new(),
            sha256: String::new(),
            hello,
            live: BTreeSet::new(),
        }
    }

    /// Uploads the component to node `k` unless it has it.
    fn upload(&mut self, k: usize) -> Result<(), String> {
        if !self.sha256.is_empty() {
            let head = Call::get(&format!("/v1/components/{}", self.sha256), ADMIN_TIMEOUT);
            if self.cluster.admin(k, &head).is_ok_and(|(s, _)| s == 200) {
                return Ok(());
            }
        }
        let call = Call {
            method: "POST",
            path: "/v1/components".into(),
            content_type: "application/wasm",
            body: self.hello.clone(),
            timeout: Duration::from_secs(120),
        };
        let (status, body) = self.cluster.admin(k, &call)?;
        let reply: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        match reply["sha256"].as_str() {
            Some(sha) if status == 200 => {
                self.sha256 = sha.to_string();
                Ok(())
            }
            _ => Err(format!("upload to n{k}: {status} {body}")),
        }
    }

    /// Deploys (or redeploys) `name` on node `k` and records the outcome.
    pub fn deploy(&mut self, k: usize, name: &str, replicas: serde_json::Value) -> Outcome {
        let start = self.clock.now();
        let kind = if self.live.contains(name) {
            OpKind::Redeploy
        } else {
            OpKind::Deploy
        };
        let outcome = match self.upload(k) {
            Err(_) => Outcome::Indeterminate,
            Ok(()) => {
                let call = Call {
                    method: "PUT",
                    path: format!("/v1/apps/{name}"),
                    content_type: "application/json",
                    body: spec(name, &self.sha256, replicas),
                    timeout: ADMIN_TIMEOUT,
                };
                outcome(self.cluster.admin(k, &call))
            }
        };
        if matches!(outcome, Outcome::Acked(_)) {
            self.live.insert(name.to_string());
        }
        self.record(start, k, kind, name, outcome)
    }

    /// Removes `name` on node `k` and records the outcome.
    pub fn remove(&mut self, k: usize, name: &str) -> Outcome {
        let start = self.clock.now();
        let call = Call {
            method: "DELETE",
            path: format!("/v1/apps/{name}"),
            content_type: "application/json",
            body: Vec::new(),
            timeout: ADMIN_TIMEOUT,
        };
        let outcome = outcome(self.cluster.admin(k, &call));
        if matches!(outcome, Outcome::Acked(_)) {
            self.live.remove(name);
        }
        self.record(start, k, OpKind::Remove, name, outcome)
    }

    fn record(
        &mut self,
        start: u32,
        k: usize,
        kind: OpKind,
        name: &str,
        outcome: Outcome,
    ) -> Outcome {
        let end = self.clock.now();
        eprintln!(
            "chaos: {:>6} ms {} {name} on n{k}: {outcome:?}",
            end,
            kind.label()
        );
        self.ops.push(Op {
            start,
            end,
            node: k,
            kind,
            name: name.to_string(),
            outcome: outcome.clone(),
        });
        outcome
    }

    /// A random churn change on node `k`.
    pub fn churn(&mut self, k: usize) {
        let name = CHURN[self.rng.below(CHURN.len())];
        let replicas = match self.rng.below(3) {
            0 => serde_json::json!(1),
            1 => serde_json::json!(2),
            _ => serde_json::json!("all"),
        };
        if self.live.contains(name) && self.rng.below(2) == 0 {
            self.remove(k, name);
        } else {
            self.deploy(k, name, replicas);
        }
    }

    /// Deploys the loaded apps on node 0 and waits until every node serves them.
    pub fn setup(&mut self, streaks: &Streaks) {
        for (app, replicas) in APPS.iter().zip([
            serde_json::json!(1),
            serde_json::json!(2),
            serde_json::json!("all"),
        ]) {
            let outcome = self.deploy(0, app, replicas);
            assert!(
                matches!(outcome, Outcome::Acked(Some(_))),
                "{app}: {outcome:?}"
            );
        }
        let since = self.clock.now();
        self.settle(streaks, since, Duration::from_secs(60));
        assert!(
            streaks.all_served_since(since),
            "the apps were not served from every node within 60 s"
        );
    }

    /// Waits (bounded) until every node serves every app again after `since`.
    pub fn settle(&self, streaks: &Streaks, since: u32, bound: Duration) {
        let started = Instant::now();
        while started.elapsed() < bound && !streaks.all_served_since(since) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A node that is up, not in `avoid`.
    fn pick(&mut self, avoid: &[usize]) -> usize {
        let up: Vec<usize> = (0..self.cluster.len())
            .filter(|k| self.cluster.is_up(*k) && !avoid.contains(k))
            .collect();
        up[self.rng.below(up.len())]
    }

    /// Quiet time with one churn change in the middle, then the fault.
    pub fn step(&mut self, step: &Step, streaks: &Arc<Streaks>) {
        let half = Duration::from_millis(u64::from(step.quiet_ms / 2));
        std::thread::sleep(half);
        // Not on the node about to be replaced: its acks must spread first.
        let k = self.pick(&step.nodes);
        self.churn(k);
        std::thread::sleep(half);
        let start = self.clock.now();
        eprintln!(
            "chaos: {start:>6} ms {} on {:?}",
            step.kind.label(),
            step.nodes
        );
        self.inject(step);
        let heal = self.clock.now();
        self.faults.push(Fault {
            kind: step.kind,
            nodes: step.nodes.clone(),
            start,
            heal,
        });
        self.settle(streaks, heal, SETTLE);
    }

    fn inject(&mut self, step: &Step) {
        let hold = Duration::from_millis(u64::from(step.hold_ms));
        let [first, ..] = step.nodes[..] else {
            unreachable!("every fault hits a node")
        };
        match step.kind {
            Kind::Kill9 | Kind::Wipe => {
                self.cluster.kill(first);
                if step.kind == Kind::Wipe {
                    self.cluster.wipe(first);
                }
                let other = self.pick(&step.nodes);
                self.churn(other);
                std::thread::sleep(hold);
                self.cluster.start(first);
            }
            Kind::Freeze => {
                self.cluster.signal(first, "STOP");
                let other = self.pick(&step.nodes);
                self.churn(other);
                std::thread::sleep(hold);
                self.cluster.signal(first, "CONT");
            }
            Kind::Partition | Kind::Isolate => self.cut(step, hold),
            Kind::SplitBrain => self.split_brain(step, hold),
        }
    }

    fn net(&self) -> &crate::net::Net {
        self.cluster
            .net
            .as_ref()
            .expect("link faults need namespaces")
    }

    /// A partition or an isolation, with a change on each side.
    fn cut(&mut self, step: &Step, hold: Duration) {
        match step.kind {
            Kind::Isolate => self.net().isolate(step.nodes[0]),
            _ => self.net().partition(&step.nodes),
        }
        let third = hold / 3;
        std::thread::sleep(third);
        let inside = step.nodes[self.rng.below(step.nodes.len())];
        self.churn(inside);
        std::thread::sleep(third);
        let outside = self.pick(&step.nodes);
        self.churn(outside);
        std::thread::sleep(third);
        self.net().heal();
    }

    /// One name deployed at once on a node of each side of a partition.
    fn split_brain(&mut self, step: &Step, hold: Duration) {
        self.net().partition(&step.nodes);
        std::thread::sleep(hold / 3);
        let inside = step.nodes[self.rng.below(step.nodes.len())];
        let outside = self.pick(&step.nodes);
        let start = self.clock.now();
        let body = spec(SPLIT, &self.sha256, serde_json::json!(1));
        for k in [inside, outside] {
            // Both must have the component before the two deploys race.
            let _ = self.upload(k);
        }
        let call = || Call {
            method: "PUT",
            path: format!("/v1/apps/{SPLIT}"),
            content_type: "application/json",
            body: body.clone(),
            timeout: ADMIN_TIMEOUT,
        };
        let cluster = &*self.cluster;
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(|| cluster.admin(inside, &call()));
            let b = scope.spawn(|| cluster.admin(outside, &call()));
            (a.join().unwrap(), b.join().unwrap())
        });
        let kind = if self.live.contains(SPLIT) {
            OpKind::Redeploy
        } else {
            OpKind::Deploy
        };
        for (k, result) in [(inside, a), (outside, b)] {
            let outcome = outcome(result);
            if matches!(outcome, Outcome::Acked(_)) {
                self.live.insert(SPLIT.to_string());
            }
            self.record(start, k, kind, SPLIT, outcome);
        }
        std::thread::sleep(hold * 2 / 3);
        self.net().heal();
    }

    /// Every node's apps (name, version, origin), once all nodes agree or
    /// after `bound`; whether they agreed.
    pub fn converge(&self, bound: Duration) -> (Vec<Apps>, bool) {
        let started = Instant::now();
        loop {
            let finals: Vec<_> = (0..self.cluster.len()).map(|k| self.apps(k)).collect();
            let agreed = finals.iter().all(|f| f == &finals[0]);
            if agreed || started.elapsed() > bound {
                return (finals, agreed);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Requests forwarded successfully, summed over the nodes' current
    /// processes (`shoal_forwarded_requests_total{outcome="ok"}`).
    pub fn forwarded(&self) -> u64 {
        let call = Call::get("/metrics", ADMIN_TIMEOUT);
        (0..self.cluster.len())
            .filter_map(|k| self.cluster.admin(k, &call).ok())
            .flat_map(|(_, text)| {
                text.lines()
                    .filter(|l| {
                        l.starts_with("shoal_forwarded_requests") && l.contains("outcome=\"ok\"")
                    })
                    .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                    .collect::<Vec<_>>()
            })
            .sum()
    }

    fn apps(&self, k: usize) -> Apps {
        let call = Call::get("/v1/apps", ADMIN_TIMEOUT);
        let Ok((200, body)) = self.cluster.admin(k, &call) else {
            return Vec::new();
        };
        let views: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap_or_default();
        let mut apps: Vec<_> = views
            .iter()
            .filter_map(|v| {
                let (version, origin) = stamp(&v.to_string())?;
                Some((v["name"].as_str()?.to_string(), version, origin))
            })
            .collect();
        apps.sort();
        apps
    }
}

fn outcome(result: Result<(u16, String), String>) -> Outcome {
    match result {
        Ok((200, body)) => Outcome::Acked(stamp(&body)),
        Ok((status, _)) => Outcome::Refused(status),
        Err(_) => Outcome::Indeterminate,
    }
}
