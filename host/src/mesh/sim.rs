//! A mesh of many nodes in one process, to measure what a laptop cannot
//! run for real: `shoal mesh-sim` (a benchmark, hidden from help).
//!
//! Each simulated node runs the real membership facade (chitchat, over
//! chitchat's in-memory transport instead of sealed UDP), holds a real
//! [`Desired`] state, pulls records from peers whose digest differs (the
//! rule of `sync`, with an in-memory call standing for the peer HTTP
//! request, whose body size is counted), places apps with the real
//! [`Placement`], and advertises readiness with the real encoding. What it
//! leaves out: compiling and serving (a node counts as ready for what it is
//! placed on as soon as its desired state settles), and the UDP sealing
//! (44 bytes per datagram, added to the byte counts).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chitchat::transport::ChannelTransport;

use super::desired::{Desired, Record};
use super::membership::{GossipConfig, Members, Membership, keys};
use super::placement::Placement;
use super::readiness;
use crate::spec::AppSpec;

/// Bytes the seal adds to every datagram.
const SEAL_OVERHEAD: u64 = 44;
/// chitchat's limit on one message.
const MTU: usize = 65_507;

/// What to simulate.
#[derive(Debug, Clone)]
pub(crate) struct SimConfig {
    pub nodes: usize,
    pub apps: usize,
    pub interval: Duration,
    /// Bound on every wait.
    pub timeout: Duration,
    /// Length of the window gossip traffic is measured over.
    pub window: Duration,
}

/// What the simulation measured.
#[derive(Debug)]
pub(crate) struct SimReport {
    pub nodes: usize,
    pub apps: usize,
    pub membership_converged: Duration,
    pub state_converged: Duration,
    pub ready_converged: Duration,
    pub peer_bytes: u64,
    pub balance: f64,
    pub mean_per_node: f64,
    pub max_per_node: usize,
    pub gossip_bytes_per_node_per_sec: f64,
    pub gossip_state_max: usize,
    pub leave_detected: Duration,
    pub leave_moved: f64,
    pub join_converged: Duration,
    pub join_moved: f64,
    /// Mean share moved over many leaves and joins of the converged mesh,
    /// computed with the same placement (one live leave and join swing by
    /// about half a point either way).
    pub mean_leave_moved: f64,
    pub mean_join_moved: f64,
    pub trials: usize,
}

struct SimNode {
    name: String,
    membership: Membership,
    desired: Mutex<Desired>,
    answer: Mutex<Option<Answer>>,
}

/// A peer's answer to a pull: its records and their size as JSON, kept
/// while its state does not change (a real node would serialise anew).
type Answer = (String, Arc<Vec<Record>>, u64);

impl SimNode {
    /// What a pull from this node gets, and its size on the wire.
    fn answer(&self) -> (Arc<Vec<Record>>, u64) {
        let desired = self.desired.lock().unwrap_or_else(|e| e.into_inner());
        let digest = desired.snapshot().digest.clone();
        let mut answer = self.answer.lock().unwrap_or_else(|e| e.into_inner());
        match answer.as_ref() {
            Some((known, records, bytes)) if *known == digest => (records.clone(), *bytes),
            _ => {
                let records: Arc<Vec<Record>> = Arc::new(desired.records().cloned().collect());
                let bytes = serde_json::to_vec(&*records).map_or(0, |b| b.len() as u64);
                *answer = Some((digest, records.clone(), bytes));
                (records, bytes)
            }
        }
    }

    fn digest(&self) -> String {
        self.desired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot()
            .digest
            .clone()
    }
}

struct Sim {
    config: SimConfig,
    transport: ChannelTransport,
    nodes: Mutex<Vec<Arc<SimNode>>>,
    peer_bytes: AtomicU64,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 20_000 + i as u16))
}

fn app_spec(name: &str) -> AppSpec {
    let mut spec = AppSpec::named(name);
    spec.component = format!("{:064x}", name.len());
    spec
}

impl Sim {
    fn nodes(&self) -> Vec<Arc<SimNode>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn start_node(self: &Arc<Self>, i: usize) -> anyhow::Result<Arc<SimNode>> {
        let name = format!("node-{i:03}");
        let gossip = GossipConfig {
            name: name.clone(),
            generation: 1,
            listen: addr(i),
            advertise: addr(i),
            seeds: if i == 0 {
                Vec::new()
            } else {
                vec![addr(0).to_string()]
            },
            interval: self.config.interval,
        };
        let initial = vec![
            (keys::CAPACITY.to_string(), "256".to_string()),
            (keys::LOAD.to_string(), "0".to_string()),
            (keys::PEER.to_string(), addr(i).to_string()),
            (keys::INGRESS.to_string(), addr(i).to_string()),
        ];
        let membership = Membership::start(&gossip, initial, &self.transport).await?;
        let node = Arc::new(SimNode {
            name,
            membership,
            desired: Mutex::new(Desired::default()),
            answer: Mutex::new(None),
        });
        self.nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(node.clone());
        tokio::spawn(agent(self.clone(), node.clone()));
        Ok(node)
    }

    fn node(&self, name: &str) -> Option<Arc<SimNode>> {
        self.nodes().into_iter().find(|n| n.name == name)
    }

    /// Waits until `done` holds, up to the timeout; returns the time taken.
    async fn wait(&self, what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<Duration> {
        let started = Instant::now();
        while !done() {
            anyhow::ensure!(
                started.elapsed() < self.config.timeout,
                "the simulation did not converge on {what} within {:?}",
                self.config.timeout
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(started.elapsed())
    }

    fn all_see(&self, nodes: &[Arc<SimNode>], live: usize) -> bool {
        nodes
            .iter()
            .all(|n| n.membership.members().live().count() == live)
    }

    /// Whether every node of `nodes` counts `name` live (or dead).
    fn all_think(&self, nodes: &[Arc<SimNode>], name: &str, live: bool) -> bool {
        nodes
            .iter()
            .all(|n| n.membership.members().live().any(|m| m.name == name) == live)
    }
}

/// One node's loop: anti-entropy and readiness, as `sync` and `control`.
async fn agent(sim: Arc<Sim>, node: Arc<SimNode>) {
    let mut stable: Option<(String, Instant)> = None;
    // Placement is recomputed only when its inputs change, as `control`
    // would see it: the state digest and the live members.
    let mut placed: Option<(String, Vec<String>)> = None;
    loop {
        tokio::time::sleep(sim.config.interval * 2).await;
        let members = node.membership.members();
        let mut pulls = 0;
        for member in members.peers_in_random_order() {
            if pulls == 2 {
                break;
            }
            let ours = node.digest();
            if member.state.is_empty() || member.state == ours {
                continue;
            }
            let Some(peer) = sim.node(&member.name) else {
                continue;
            };
            pulls += 1;
            let (records, bytes) = peer.answer();
            sim.peer_bytes
                .fetch_add(bytes + SEAL_OVERHEAD, Ordering::Relaxed);
            let mut desired = node.desired.lock().unwrap_or_else(|e| e.into_inner());
            for record in records.iter() {
                if desired
                    .get(&record.name)
                    .is_none_or(|known| record.supersedes(known))
                {
                    desired.merge(record.clone());
                }
            }
        }
        let (snapshot, placement_input) = {
            let desired = node.desired.lock().unwrap_or_else(|e| e.into_inner());
            (desired.snapshot(), desired.clone())
        };
        let _ = node.membership.set(keys::STATE, &snapshot.digest).await;
        // Ready for what placement gives it once the state has held still
        // for a moment (standing in for compiling).
        match &stable {
            Some((digest, since)) if *digest == snapshot.digest => {
                let live: Vec<String> = members.live().map(|m| m.name.clone()).collect();
                let inputs = (snapshot.digest.clone(), live);
                if since.elapsed() >= sim.config.interval * 2 && placed.as_ref() != Some(&inputs) {
                    placed = Some(inputs);
                    let placement = super::place(&members, &placement_input);
                    let ready: BTreeSet<usize> = snapshot
                        .apps
                        .iter()
                        .enumerate()
                        .filter(|(_, (app, _))| placement.holders(app).contains(&node.name))
                        .map(|(i, _)| i)
                        .collect();
                    let _ = node
                        .membership
                        .set(keys::READY, &readiness::encode(&snapshot, &ready))
                        .await;
                }
            }
            _ => stable = Some((snapshot.digest.clone(), Instant::now())),
        }
    }
}

fn placement_of(members: &Members, node: &SimNode) -> Placement {
    let desired = node
        .desired
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    super::place(members, &desired)
}

/// Runs the whole scenario: form, deploy, measure, lose a node, add one.
pub(crate) async fn run(config: SimConfig) -> anyhow::Result<SimReport> {
    let sim = Arc::new(Sim {
        config: config.clone(),
        transport: ChannelTransport::with_mtu(MTU),
        nodes: Mutex::new(Vec::new()),
        peer_bytes: AtomicU64::new(0),
    });
    let n = config.nodes;

    // 1. Membership.
    let started = Instant::now();
    for i in 0..n {
        sim.start_node(i).await?;
    }
    let nodes = sim.nodes();
    sim.wait("membership", || sim.all_see(&nodes, n)).await?;
    let membership_converged = started.elapsed();

    // 2. Desired state: every app deployed on some node, all at once.
    let started = Instant::now();
    let mut everything = Desired::default();
    for a in 0..config.apps {
        let name = format!("app-{a:04}");
        let origin = &nodes[(a * 7919) % n];
        let record = Record {
            name: name.clone(),
            version: 1,
            origin: origin.name.clone(),
            at: 0,
            spec: Some(app_spec(&name)),
        };
        everything.merge(record.clone());
        origin
            .desired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .merge(record);
    }
    let target = everything.snapshot();
    sim.wait("desired state", || {
        nodes.iter().all(|node| node.digest() == target.digest)
    })
    .await?;
    let state_converged = started.elapsed();

    // 3. Every node ready, and every node reading every other's readiness.
    sim.wait("readiness", || {
        nodes.iter().all(|node| {
            node.membership
                .members()
                .live()
                .all(|m| readiness::decode(&target, &m.ready).is_some())
        })
    })
    .await?;
    let ready_converged = started.elapsed();

    // 4. Balance, as node 0 computes it.
    let members = nodes[0].membership.members();
    let before = placement_of(&members, &nodes[0]);
    anyhow::ensure!(!before.is_empty(), "nothing was placed");
    let (mean_leave_moved, mean_join_moved, trials) = mean_movement(&members, &nodes[0]);
    let loads = before.loads();
    let max_per_node = loads.values().copied().max().unwrap_or(0);
    let mean_per_node = before.len() as f64 / n as f64;

    // 5. Gossip traffic in steady state, and state size.
    let bytes_before = sim.transport.statistics();
    tokio::time::sleep(config.window).await;
    let bytes_after = sim.transport.statistics();
    let wire = (bytes_after.num_bytes_total - bytes_before.num_bytes_total)
        + SEAL_OVERHEAD * (bytes_after.num_messages_total - bytes_before.num_messages_total);
    let gossip_bytes_per_node_per_sec = wire as f64 / n as f64 / config.window.as_secs_f64();
    let mut gossip_state_max = 0;
    for node in &nodes {
        gossip_state_max = gossip_state_max.max(node.membership.own_state_size().await);
    }

    // 6. One node leaves (stops gossiping, as after kill -9).
    let leaving = nodes[n / 2].clone();
    leaving.membership.stop();
    let rest: Vec<Arc<SimNode>> = nodes
        .iter()
        .filter(|node| node.name != leaving.name)
        .cloned()
        .collect();
    let leave_detected = sim.wait("a leave", || sim.all_see(&rest, n - 1)).await?;
    let after_leave = placement_of(&rest[0].membership.members(), &rest[0]);
    let leave_moved = after_leave.moved_from(&before);

    // 7. A new node joins.
    let started = Instant::now();
    let joiner = sim.start_node(n).await?;
    let mut with_joiner = rest.clone();
    with_joiner.push(joiner.clone());
    sim.wait("a join", || {
        sim.all_think(&with_joiner, &joiner.name, true) && joiner.digest() == target.digest
    })
    .await?;
    let join_converged = started.elapsed();
    let after_join = placement_of(&rest[0].membership.members(), &rest[0]);
    let join_moved = after_join.moved_from(&after_leave);

    for node in sim.nodes() {
        node.membership.stop();
    }
    Ok(SimReport {
        nodes: n,
        apps: config.apps,
        membership_converged,
        state_converged,
        ready_converged,
        peer_bytes: sim.peer_bytes.load(Ordering::Relaxed),
        balance: max_per_node as f64 / mean_per_node,
        mean_per_node,
        max_per_node,
        gossip_bytes_per_node_per_sec,
        gossip_state_max,
        leave_detected,
        leave_moved,
        join_converged,
        join_moved,
        mean_leave_moved,
        mean_join_moved,
        trials,
    })
}

/// Mean share of placements moved by removing each of some members, and by
/// adding as many new ones, one at a time.
fn mean_movement(members: &Members, node: &SimNode) -> (f64, f64, usize) {
    let desired = node
        .desired
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let base = super::place(members, &desired);
    let names: Vec<String> = members.live().map(|m| m.name.clone()).collect();
    let trials = names.len().min(20);
    let (mut leave, mut join) = (0.0, 0.0);
    for t in 0..trials {
        let mut fewer = members.clone();
        fewer.all.remove(&names[t * names.len() / trials]);
        leave += super::place(&fewer, &desired).moved_from(&base);
        let mut more = members.clone();
        let mut joiner = more.all.values().next().cloned().expect("a member");
        joiner.name = format!("joiner-{t}");
        more.all.insert(joiner.name.clone(), joiner);
        join += super::place(&more, &desired).moved_from(&base);
    }
    (leave / trials as f64, join / trials as f64, trials)
}

impl std::fmt::Display for SimReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.nodes as f64;
        writeln!(
            f,
            "mesh simulation: {} nodes, {} apps (replicas 1, equal capacity), chitchat in-memory transport",
            self.nodes, self.apps
        )?;
        writeln!(
            f,
            "membership converged (all see all)     {:>10.2?}",
            self.membership_converged
        )?;
        writeln!(
            f,
            "desired state converged (all digests)  {:>10.2?}",
            self.state_converged
        )?;
        writeln!(
            f,
            "readiness readable everywhere          {:>10.2?}",
            self.ready_converged
        )?;
        writeln!(
            f,
            "peer API bytes moved (anti-entropy)    {:>10} ({:.0} per node)",
            self.peer_bytes,
            self.peer_bytes as f64 / n
        )?;
        writeln!(
            f,
            "placement balance max/mean             {:>10.3}  (max {} / mean {:.1}; target <= 1.15)",
            self.balance, self.max_per_node, self.mean_per_node
        )?;
        writeln!(
            f,
            "gossip bytes per node per second       {:>10.0}  (steady state, sealed)",
            self.gossip_bytes_per_node_per_sec
        )?;
        writeln!(
            f,
            "largest gossip state of one node       {:>10} bytes (target < 4096)",
            self.gossip_state_max
        )?;
        writeln!(
            f,
            "leave: all survivors notice            {:>10.2?}",
            self.leave_detected
        )?;
        writeln!(
            f,
            "leave: placements moved                {:>9.2}%  (target <= {:.2}% = 1.5/N)",
            self.leave_moved * 100.0,
            150.0 / n
        )?;
        writeln!(
            f,
            "join: all see it, it holds the state   {:>10.2?}",
            self.join_converged
        )?;
        writeln!(
            f,
            "join: placements moved                 {:>9.2}%  (target <= {:.2}% = 1.5/N)",
            self.join_moved * 100.0,
            150.0 / n
        )?;
        writeln!(
            f,
            "mean of {} leaves: placements moved   {:>9.2}%  (least possible {:.2}%)",
            self.trials,
            self.mean_leave_moved * 100.0,
            100.0 / n
        )?;
        write!(
            f,
            "mean of {} joins: placements moved    {:>9.2}%  (least possible {:.2}%)",
            self.trials,
            self.mean_join_moved * 100.0,
            100.0 / (n + 1.0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_mesh_converges_and_stays_small() {
        let report = run(SimConfig {
            nodes: 8,
            apps: 80,
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(60),
            window: Duration::from_secs(1),
        })
        .await
        .unwrap();
        eprintln!("{report}");
        assert!(report.gossip_state_max < 4096);
        assert!(report.balance <= 1.25, "{report}");
        assert!(report.peer_bytes > 0);
    }
}
