//! A mesh of many nodes in one process, to measure what a laptop cannot
//! run for real: `shoal mesh-sim` (a benchmark, hidden from help).
//!
//! Each simulated node runs the shipped code of a node's loops over
//! in-memory wiring: the real membership facade (chitchat over an
//! in-memory network instead of sealed UDP), a real [`Desired`] state,
//! anti-entropy by `node::sync::round` (an in-memory call stands for the
//! peer HTTP request, whose body size is counted), placement by
//! `mesh::place`, and readiness by `readiness::served` and `advertise`.
//! What it leaves out: compiling and serving (a node counts as ready for
//! what it is placed on once its desired state has held still for two
//! rounds), and the sealing of datagrams (its bytes are added to the
//! counts).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::unix_now;
use crate::desired::pull::Pulled;
use crate::desired::{Desired, Record, Snapshot, TOMBSTONE_LIFETIME};
use crate::mesh::key::SEAL_OVERHEAD;
use crate::mesh::membership::{GossipConfig, InMemoryNetwork, Member, Members, Membership, keys};
use crate::mesh::placement::Placement;
use crate::mesh::transport::DATAGRAM_OVERHEAD;
use crate::mesh::{self, readiness};
use crate::node::sync::{self, Replica, Rounds};
use crate::spec::AppSpec;

mod report;

pub(crate) use report::SimReport;

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

    /// The digest of the state held; cached until the state changes, as
    /// a node's is (cloning the state to read it cost every round O(apps)
    /// per peer, which alone kept a 100-node simulation from converging).
    fn digest(&self) -> String {
        let desired = self.desired.lock().unwrap_or_else(|e| e.into_inner());
        desired.snapshot().digest.clone()
    }

    /// The snapshot of the state held, and the state itself.
    fn state(&self) -> (Arc<Snapshot>, Desired) {
        let desired = self.desired.lock().unwrap_or_else(|e| e.into_inner());
        (desired.snapshot(), desired.clone())
    }
}

/// A simulated node as anti-entropy sees it: pulls are calls into the
/// peer's memory, counted as the peer API's bytes.
#[derive(Clone)]
struct SimReplica {
    sim: Arc<Sim>,
    node: Arc<SimNode>,
}

impl Replica for SimReplica {
    fn digest(&self) -> String {
        self.node.digest()
    }

    async fn pull(&self, peer: &Member) -> anyhow::Result<Pulled> {
        let peer = self
            .sim
            .node(&peer.name)
            .ok_or_else(|| anyhow::anyhow!("no simulated node `{}`", peer.name))?;
        let (records, bytes) = peer.answer();
        self.sim
            .peer_bytes
            .fetch_add(bytes + SEAL_OVERHEAD as u64, Ordering::Relaxed);
        Ok(Pulled {
            horizon: peer
                .desired
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .horizon(),
            records: records.to_vec(),
            unread: Vec::new(),
        })
    }

    async fn merge(&self, _peer: &str, pulled: Pulled) -> anyhow::Result<usize> {
        let mut desired = self.node.desired.lock().unwrap_or_else(|e| e.into_inner());
        let changes = desired.changes(pulled, unix_now(), TOMBSTONE_LIFETIME);
        desired.apply(&changes);
        Ok(changes.news.len() + changes.forget.len())
    }
}

struct Sim {
    config: SimConfig,
    network: InMemoryNetwork,
    nodes: Mutex<Vec<Arc<SimNode>>>,
    peer_bytes: AtomicU64,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 20_000 + i as u16))
}

fn app_spec(name: &str) -> AppSpec {
    let mut spec = AppSpec::named(name);
    spec.component = format!("{:064x}", name.len());
    // Valid as a user would deploy it: peers vet what they merge.
    spec.timeout_ms = 30_000;
    spec.memory = 128 << 20;
    spec.max_concurrency = 10;
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
        let membership = Membership::start(&gossip, initial, self.network.transport()).await?;
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

/// A placement and what it was computed from (state digest, live members).
type Placed = ((String, Vec<String>), Arc<Placement>);

/// One node's loop: `node::sync`'s round, then readiness as `node::control`
/// advertises it, once the state has held still (standing in for compiling
/// what placement gives it).
async fn agent(sim: Arc<Sim>, node: Arc<SimNode>) {
    let mut rounds = Rounds::default();
    let replica = SimReplica {
        sim: sim.clone(),
        node: node.clone(),
    };
    let mut stable: Option<(String, Instant)> = None;
    // Placement is recomputed only when its inputs change (the state digest
    // and the live members), as a node's controller would see them.
    let mut placed: Option<Placed> = None;
    loop {
        tokio::time::sleep(sim.config.interval * 2).await;
        let members = node.membership.members();
        sync::round(&replica, &members, &mut rounds);
        let (snapshot, desired) = node.state();
        let settled = match &stable {
            Some((digest, since)) if *digest == snapshot.digest => {
                since.elapsed() >= sim.config.interval * 2
            }
            _ => {
                stable = Some((snapshot.digest.clone(), Instant::now()));
                false
            }
        };
        if !settled {
            let _ = node.membership.set(keys::STATE, &snapshot.digest).await;
            continue;
        }
        let live: Vec<String> = members.live().map(|m| m.name.clone()).collect();
        let inputs = (snapshot.digest.clone(), live);
        if placed.as_ref().is_none_or(|(known, _)| *known != inputs) {
            placed = Some((inputs, Arc::new(mesh::place(&members, &desired))));
        }
        let placement = placed
            .as_ref()
            .map(|(_, p)| p.clone())
            .expect("placed above");
        let (ready, load) = readiness::served(&snapshot, |app| {
            let (record, _) = desired.live(app)?;
            placement
                .holders(app)
                .contains(&node.name)
                .then_some((record.version, 0))
        });
        let _ = readiness::advertise(&node.membership, &snapshot, &ready, load).await;
    }
}

fn placement_of(members: &Members, node: &SimNode) -> Placement {
    mesh::place(members, &node.state().1)
}

/// What the first phases measured, carried to the report.
struct Formed {
    membership_converged: Duration,
    state_converged: Duration,
    ready_converged: Duration,
    target: Arc<Snapshot>,
}

/// Runs the whole scenario: form, deploy, measure, lose a node, add one.
pub(crate) async fn run(config: SimConfig) -> anyhow::Result<SimReport> {
    let sim = Arc::new(Sim {
        config: config.clone(),
        network: InMemoryNetwork::new(MTU),
        nodes: Mutex::new(Vec::new()),
        peer_bytes: AtomicU64::new(0),
    });
    let n = config.nodes;
    let formed = form(&sim).await?;
    let nodes = sim.nodes();

    // Balance, as node 0 computes it.
    let members = nodes[0].membership.members();
    let before = placement_of(&members, &nodes[0]);
    anyhow::ensure!(!before.is_empty(), "nothing was placed");
    let (mean_leave_moved, mean_join_moved, trials) = mean_movement(&members, &nodes[0]);
    let max_per_node = before.loads().values().copied().max().unwrap_or(0);
    let mean_per_node = before.len() as f64 / n as f64;
    let (gossip_bytes_per_node_per_sec, gossip_state_max) = steady_gossip(&sim, &nodes).await;
    let change = leave_and_join(&sim, &nodes, &before, &formed.target).await?;
    for node in sim.nodes() {
        node.membership.stop();
    }
    Ok(SimReport {
        nodes: n,
        apps: config.apps,
        membership_converged: formed.membership_converged,
        state_converged: formed.state_converged,
        ready_converged: formed.ready_converged,
        peer_bytes: sim.peer_bytes.load(Ordering::Relaxed),
        balance: max_per_node as f64 / mean_per_node,
        mean_per_node,
        max_per_node,
        gossip_bytes_per_node_per_sec,
        gossip_state_max,
        leave_detected: change.leave_detected,
        leave_moved: change.leave_moved,
        join_converged: change.join_converged,
        join_moved: change.join_moved,
        mean_leave_moved,
        mean_join_moved,
        trials,
    })
}

/// Starts the nodes, deploys every app on some node all at once, and waits
/// for membership, desired state and readiness to converge.
async fn form(sim: &Arc<Sim>) -> anyhow::Result<Formed> {
    let n = sim.config.nodes;
    let started = Instant::now();
    for i in 0..n {
        sim.start_node(i).await?;
    }
    let nodes = sim.nodes();
    sim.wait("membership", || sim.all_see(&nodes, n)).await?;
    let membership_converged = started.elapsed();

    let started = Instant::now();
    let mut everything = Desired::default();
    for a in 0..sim.config.apps {
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

    // Every node ready, and every node reading every other's readiness.
    sim.wait("readiness", || {
        nodes.iter().all(|node| {
            node.membership
                .members()
                .live()
                .all(|m| readiness::decode(&target, &m.ready).is_some())
        })
    })
    .await?;
    Ok(Formed {
        membership_converged,
        state_converged,
        ready_converged: started.elapsed(),
        target,
    })
}

/// Gossip bytes per node per second over the window, sealed, and the
/// largest gossip state of one node.
async fn steady_gossip(sim: &Sim, nodes: &[Arc<SimNode>]) -> (f64, usize) {
    let (bytes_before, messages_before) = sim.network.carried();
    tokio::time::sleep(sim.config.window).await;
    let (bytes_after, messages_after) = sim.network.carried();
    let wire = (bytes_after - bytes_before)
        + DATAGRAM_OVERHEAD as u64 * (messages_after - messages_before);
    let per_node = wire as f64 / nodes.len() as f64 / sim.config.window.as_secs_f64();
    let mut largest = 0;
    for node in nodes {
        largest = largest.max(node.membership.own_state_size().await);
    }
    (per_node, largest)
}

/// What a leave and a join cost.
struct Change {
    leave_detected: Duration,
    leave_moved: f64,
    join_converged: Duration,
    join_moved: f64,
}

/// One node leaves (stops gossiping, as after kill -9), then a new one
/// joins.
async fn leave_and_join(
    sim: &Arc<Sim>,
    nodes: &[Arc<SimNode>],
    before: &Placement,
    target: &Snapshot,
) -> anyhow::Result<Change> {
    let n = nodes.len();
    let leaving = nodes[n / 2].clone();
    leaving.membership.stop();
    let rest: Vec<Arc<SimNode>> = nodes
        .iter()
        .filter(|node| node.name != leaving.name)
        .cloned()
        .collect();
    let leave_detected = sim.wait("a leave", || sim.all_see(&rest, n - 1)).await?;
    let after_leave = placement_of(&rest[0].membership.members(), &rest[0]);
    let leave_moved = after_leave.moved_from(before);

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
    Ok(Change {
        leave_detected,
        leave_moved,
        join_converged,
        join_moved: after_join.moved_from(&after_leave),
    })
}

/// Mean share of placements moved by removing each of some members, and by
/// adding as many new ones, one at a time.
fn mean_movement(members: &Members, node: &SimNode) -> (f64, f64, usize) {
    let desired = node.state().1;
    let base = mesh::place(members, &desired);
    let names: Vec<String> = members.live().map(|m| m.name.clone()).collect();
    let trials = names.len().min(20);
    let (mut leave, mut join) = (0.0, 0.0);
    for t in 0..trials {
        let mut fewer = members.clone();
        fewer.all.remove(&names[t * names.len() / trials]);
        leave += mesh::place(&fewer, &desired).moved_from(&base);
        let mut more = members.clone();
        let mut joiner = more.all.values().next().cloned().expect("a member");
        joiner.name = format!("joiner-{t}");
        more.all.insert(joiner.name.clone(), joiner);
        join += mesh::place(&more, &desired).moved_from(&base);
    }
    (leave / trials as f64, join / trials as f64, trials)
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
