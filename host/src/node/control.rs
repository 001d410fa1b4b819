//! The controller: one loop that makes this node serve what placement
//! gives it, and tells the mesh what it serves.
//!
//! Each pass (on a change of desired state, of membership or of a local
//! app, and every 500 ms):
//! 1. places the desired apps over the live members;
//! 2. starts serving every app placed here at its current version,
//!    fetching the bytes from a peer first if they are missing (checked
//!    against the sha256), compiling, and only then installing;
//! 3. stops serving an app placed elsewhere only once every node it is
//!    placed on advertises it ready (make before break), in two steps:
//!    it first stops advertising the app, and drops it only when every
//!    peer has had time to see that (so no forwarder still picks it);
//!    an app that was removed stops at once;
//! 4. copies the bytes of every app into the local store, so the mesh
//!    keeps a deployment as long as any node that learned it lives;
//! 5. advertises its readiness, state digest and load, and rebuilds the
//!    forwarding table and the routes of apps served elsewhere.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::task::JoinHandle;

use super::Node;
use crate::desired::{Desired, Record};
use crate::mesh;
use crate::mesh::placement::Placement;
use crate::mesh::readiness::{self, ReadyTable, Seen};
use crate::shutdown::Shutdown;
use crate::spec::AppSpec;
use crate::store::Corrupt;

/// How often a pass runs with no change.
const TICK: Duration = Duration::from_millis(500);
/// How long a failed install or fetch waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(3);
/// Components copied from peers at once (beyond those placed here).
const COPIES_AT_ONCE: usize = 4;
/// How long a node that joins counts as catching up while it has met no
/// live peer (seeds all down, it starts alone at last).
const MEET_WITHIN: Duration = Duration::from_secs(10);
/// How long an app placed elsewhere stays advertised here after its new
/// holders are all ready, counted while every live peer holds this node's
/// desired state: every peer sees those holders before this one stops
/// offering it.
const LINGER: Duration = Duration::from_secs(1);
/// How long an app this node stopped advertising is still served here,
/// counted while every live peer holds this node's desired state (so each
/// can decode the withdrawal): forwarders whose table still names this
/// node keep being answered.
const DRAIN: Duration = Duration::from_secs(3);

/// Installs and fetches in flight, and recent failures.
#[derive(Default)]
struct Jobs {
    running: HashMap<String, JoinHandle<anyhow::Result<()>>>,
    failed: HashMap<String, Instant>,
    /// Apps placed elsewhere whose holders are all ready.
    handing_over: HashMap<String, HandOver>,
}

/// An app on its way out of this node (see [`converge`]).
struct HandOver {
    /// Since when its new holders are all ready.
    ready_since: Instant,
    /// Since when it is no longer advertised here, and every peer can
    /// read that.
    withdrawn_since: Option<Instant>,
}

impl Jobs {
    /// Apps served here but no longer advertised.
    fn withdrawn(&self) -> HashSet<String> {
        self.handing_over
            .iter()
            .filter(|(_, h)| h.withdrawn_since.is_some())
            .map(|(name, _)| name.clone())
            .collect()
    }
}

impl Jobs {
    /// Starts `job` under `key` unless one runs or failed recently.
    fn start(
        &mut self,
        key: String,
        job: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        if self.running.contains_key(&key)
            || self
                .failed
                .get(&key)
                .is_some_and(|t| t.elapsed() < RETRY_AFTER)
        {
            return;
        }
        self.running.insert(key, tokio::spawn(job));
    }

    /// Reaps finished jobs, logging failures.
    fn reap(&mut self) {
        let done: Vec<String> = self
            .running
            .iter()
            .filter(|(_, handle)| handle.is_finished())
            .map(|(key, _)| key.clone())
            .collect();
        for key in done {
            let Some(handle) = self.running.remove(&key) else {
                continue;
            };
            let result = futures::FutureExt::now_or_never(handle)
                .unwrap_or_else(|| Ok(Err(anyhow::anyhow!("job vanished"))));
            match result {
                Ok(Ok(())) => {
                    self.failed.remove(&key);
                }
                Ok(Err(error)) => {
                    tracing::warn!(job = %key, error = format!("{error:#}"), "mesh job failed; will retry");
                    self.failed.insert(key, Instant::now());
                }
                Err(error) => {
                    tracing::error!(job = %key, %error, "mesh job panicked; will retry");
                    self.failed.insert(key, Instant::now());
                }
            }
        }
    }
}

pub(crate) async fn run(node: Arc<Node>, mut shutdown: Shutdown) {
    let mut members = node.mesh.membership.watch();
    let mut jobs = Jobs::default();
    let mut seen = Seen::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        jobs.reap();
        if let Err(error) = pass(&node, &mut jobs, &mut seen).await {
            tracing::warn!(error = format!("{error:#}"), "mesh pass failed");
        }
        tokio::select! {
            _ = node.changed.notified() => {}
            changed = members.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// One pass: place, converge what is served here, keep copies, route the
/// rest elsewhere, and advertise. The controller is the only writer of
/// placement, the forwarding table and this node's gossip keys; `seen`
/// is what the last tables decoded of each member (see [`Seen`]).
async fn pass(node: &Arc<Node>, jobs: &mut Jobs, seen: &mut Seen) -> anyhow::Result<()> {
    let desired = node.desired();
    let members = node.mesh.membership.members();
    let placement = Arc::new(mesh::place(&members, &desired));
    node.mesh.set_placement(placement.clone());
    let mut table = ReadyTable::build(&members, &node.snapshots(), &desired, seen, Instant::now());
    if node.mesh.joins && table.alone() && node.started.elapsed() < MEET_WITHIN {
        table.set_catching_up();
    }
    for (record, spec) in desired.apps() {
        converge(node, jobs, record, spec, &placement, &table);
        keep_a_copy(node, jobs, record, spec, &placement);
    }
    jobs.handing_over
        .retain(|name, _| desired.live(name).is_some());
    drop_removed(node, &desired);
    route_elsewhere(node, &desired);
    node.mesh.set_table(table);
    advertise(node, &desired, &jobs.withdrawn()).await
}

/// Serves `spec` here if placement puts it here (installing its current
/// version), and hands it over once its holders elsewhere are all ready
/// (make before break) if it does not.
fn converge(
    node: &Arc<Node>,
    jobs: &mut Jobs,
    record: &Record,
    spec: &AppSpec,
    placement: &Placement,
    table: &ReadyTable,
) {
    let holders = placement.holders(&spec.name);
    let local = node.apps.get(&spec.name);
    if holders.contains(&node.mesh.me) || local.is_none() {
        // Placed back here (or gone): advertised again if it was withdrawn.
        jobs.handing_over.remove(&spec.name);
    }
    if holders.contains(&node.mesh.me) {
        if local.is_none_or(|d| d.version != record.version) {
            let (node, record, spec) = (node.clone(), record.clone(), spec.clone());
            jobs.start(
                format!("install {}@{}", spec.name, record.version),
                async move { install(&node, &record, &spec).await },
            );
        }
        return;
    }
    if local.is_none() {
        return;
    }
    let ready = table.ready_nodes(&spec.name);
    if holders.is_empty() || !holders.iter().all(|h| ready.contains(h)) {
        if jobs
            .handing_over
            .remove(&spec.name)
            .is_some_and(|h| h.withdrawn_since.is_some())
        {
            tracing::info!(app = %spec.name, "hand-over called off: a new holder is no longer ready; advertised here again");
        }
        return;
    }
    let now = Instant::now();
    let step = jobs
        .handing_over
        .entry(spec.name.clone())
        .or_insert(HandOver {
            ready_since: now,
            withdrawn_since: None,
        });
    match step.withdrawn_since {
        // A peer on another desired state may not decode the new holders'
        // readiness yet: the linger counts from when every peer can.
        None if table.catching_up() => step.ready_since = now,
        None if step.ready_since.elapsed() >= LINGER => {
            step.withdrawn_since = Some(now);
            tracing::debug!(app = %spec.name, to = ?holders, "no longer advertised here; draining");
        }
        None => {}
        // A peer behind this node's desired state cannot decode the
        // withdrawal yet: the drain counts from when all can.
        Some(_) if table.catching_up() => step.withdrawn_since = Some(now),
        Some(since) if since.elapsed() >= DRAIN => {
            jobs.handing_over.remove(&spec.name);
            node.apps.hand_over(&spec.name);
            tracing::info!(app = %spec.name, to = ?holders, "handed over");
        }
        Some(_) => {}
    }
}

/// Copies the bytes of an app placed elsewhere into the local store, so a
/// deployment lives as long as any node that learned it.
fn keep_a_copy(
    node: &Arc<Node>,
    jobs: &mut Jobs,
    record: &Record,
    spec: &AppSpec,
    placement: &Placement,
) {
    let copying = jobs
        .running
        .keys()
        .filter(|k| k.starts_with("copy "))
        .count();
    if node.store.has_component(&spec.component)
        || placement.holders(&spec.name).contains(&node.mesh.me)
        || copying >= COPIES_AT_ONCE
    {
        return;
    }
    let (node, sha256, origin) = (node.clone(), spec.component.clone(), record.origin.clone());
    jobs.start(format!("copy {sha256}"), async move {
        fetch(&node, &sha256, &origin).await
    });
}

/// Stops serving apps that were removed, at once.
fn drop_removed(node: &Node, desired: &Desired) {
    for deployed in node.apps.list() {
        if desired.live(&deployed.spec.name).is_none() {
            node.apps.remove(&deployed.spec.name);
        }
    }
}

/// Routes every app not served here to forwarding.
fn route_elsewhere(node: &Node, desired: &Desired) {
    node.apps.set_elsewhere(
        desired
            .apps()
            .filter(|(_, spec)| node.apps.get(&spec.name).is_none())
            .map(|(_, spec)| spec.clone())
            .collect(),
    );
}

/// Gossips what this node serves, but the `withdrawn` apps it is
/// handing over, and its load: against the current desired state, or an
/// older one while a new version installs here (see
/// `readiness::to_advertise`).
async fn advertise(
    node: &Node,
    desired: &Desired,
    withdrawn: &HashSet<String>,
) -> anyhow::Result<()> {
    let snapshot = desired.snapshot();
    let (against, ready, load) = readiness::to_advertise(&snapshot, &node.snapshots(), |name| {
        if withdrawn.contains(name) {
            return None;
        }
        let local = node.apps.get(name)?;
        let stats = local.app.stats();
        Some((local.version, stats.active + stats.queued))
    });
    let membership = &node.mesh.membership;
    readiness::advertise_against(membership, &snapshot.digest, &against, &ready, load).await
}

/// Serves `spec` here: bytes (from a peer if they are missing or no
/// longer match their sha256), compile, install.
async fn install(node: &Arc<Node>, record: &Record, spec: &AppSpec) -> anyhow::Result<()> {
    if !node.store.has_component(&spec.component) {
        fetch(node, &spec.component, &record.origin).await?;
    }
    let bytes = match read(node, &spec.component).await {
        Err(error) if error.is::<Corrupt>() => {
            tracing::error!(app = %spec.name, error = %error, "a component file no longer matches its sha256; fetching it again from a peer");
            fetch(node, &spec.component, &record.origin)
                .await
                .with_context(|| format!("app `{}`: {error}", spec.name))?;
            read(node, &spec.component).await?
        }
        bytes => bytes?,
    };
    let started = Instant::now();
    let compiled = node
        .compile(Arc::new(bytes))
        .await
        .map_err(anyhow::Error::from)
        .with_context(|| format!("compiling app `{}`", spec.name))?;
    node.metrics.compiled(&spec.name, started.elapsed());
    // Deployed again or removed meanwhile: the next pass decides.
    let still = node
        .desired()
        .live(&spec.name)
        .is_some_and(|(r, _)| r.version == record.version);
    if still {
        node.install(&compiled, spec, record.version);
        tracing::info!(app = %spec.name, version = record.version, "serving here");
    }
    Ok(())
}

/// The stored bytes of `sha256`, checked, read on a blocking thread.
async fn read(node: &Node, sha256: &str) -> anyhow::Result<Vec<u8>> {
    let (store, sha256) = (node.store.clone(), sha256.to_string());
    tokio::task::spawn_blocking(move || store.read_component(&sha256)).await?
}

/// Copies component `sha256` from a live peer (the node that accepted it
/// first), checking the bytes against the hash before storing them.
async fn fetch(node: &Arc<Node>, sha256: &str, origin: &str) -> anyhow::Result<()> {
    let members = node.mesh.membership.members();
    let mut peers: Vec<_> = members
        .live()
        .filter(|m| m.name != members.me)
        .filter_map(|m| Some((m.name.clone(), m.peer?)))
        .collect();
    peers.sort_by_key(|(name, _)| name != origin);
    let mut last_error = None;
    for (name, addr) in peers {
        match node.mesh.peer.component(addr, sha256).await {
            Ok(Some(bytes)) => {
                let actual = shoal_runtime::sha256_hex(&bytes);
                if actual != sha256 {
                    tracing::warn!(peer = %name, expected = sha256, %actual, "peer sent bytes that do not match their hash; ignored");
                    continue;
                }
                let store = node.store.clone();
                let key = sha256.to_string();
                tokio::task::spawn_blocking(move || store.put_component(&key, &bytes)).await??;
                tracing::info!(component = sha256, from = %name, "component copied from a peer");
                node.changed.notify_one();
                return Ok(());
            }
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
    }
    match last_error {
        Some(error) => Err(error.context(format!("no live peer could send component {sha256}"))),
        None if members.live().all(|m| m.name == members.me) => anyhow::bail!(
            "component {sha256} is not stored here and this node has no live peer to fetch it from; deploy the app again with `shoal deploy FILE.wasm`"
        ),
        None => anyhow::bail!("no live peer has component {sha256} yet"),
    }
}
