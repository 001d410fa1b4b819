//! The facade over chitchat: who is in the mesh, and what each member
//! advertises. Only this file and the sealed `transport` it runs over
//! touch chitchat, and chitchat's pitfalls are handled here:
//! - every start takes a fresh generation id (see [`next_generation`]), or a
//!   restarted node's new keys would never propagate;
//! - only live nodes count: a dead node's keys stay readable until the
//!   grace period ends, so [`Members::live`] filters on the failure
//!   detector, never on the presence of keys;
//! - every value is small and checked: one value near the 64 KB datagram
//!   limit silently stops a node's gossip, so [`Membership::set`] refuses
//!   values over [`MAX_VALUE`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chitchat::transport::Transport;
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState};
use tokio::sync::watch;

/// Largest value a node gossips; its whole state stays under 4 KB.
pub(crate) const MAX_VALUE: usize = 2048;

/// Keys a node advertises.
pub(crate) mod keys {
    /// Address of the peer (and admin) HTTP API.
    pub const PEER: &str = "peer";
    /// Address of the public ingress.
    pub const INGRESS: &str = "ingress";
    /// The sha256 (hex) of the ingress's TLS certificate; absent when it
    /// serves plain HTTP.
    pub const INGRESS_CERT: &str = "ingress_cert";
    /// Relative weight for placement.
    pub const CAPACITY: &str = "capacity";
    /// Requests in flight.
    pub const LOAD: &str = "load";
    /// Digest of the desired state held.
    pub const STATE: &str = "state";
    /// Apps ready, against the state held (see `readiness`).
    pub const READY: &str = "ready";
}

/// How the mesh's gossip runs.
#[derive(Debug, Clone)]
pub(crate) struct GossipConfig {
    pub name: String,
    pub generation: u64,
    pub listen: SocketAddr,
    pub advertise: SocketAddr,
    pub seeds: Vec<String>,
    pub interval: Duration,
}

impl GossipConfig {
    fn chitchat(&self) -> ChitchatConfig {
        ChitchatConfig {
            chitchat_id: ChitchatId::new(self.name.clone(), self.generation, self.advertise),
            cluster_id: "shoal".into(),
            gossip_interval: self.interval,
            listen_addr: self.listen,
            seed_nodes: self.seeds.clone(),
            // A node is declared dead after 8 mean heartbeat intervals
            // without news (chitchat's phi is elapsed / mean interval). With
            // a 250 ms gossip round that is ~2–3 s on a small mesh.
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: 8.0,
                sampling_window_size: 1000,
                max_interval: Duration::from_secs(10),
                initial_interval: self.interval,
                dead_node_grace_period: Duration::from_secs(600),
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V1,
        }
    }
}

/// One member as its gossip describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub name: String,
    pub generation: u64,
    pub gossip: SocketAddr,
    pub live: bool,
    pub peer: Option<SocketAddr>,
    pub ingress: Option<SocketAddr>,
    pub ingress_cert: Option<String>,
    pub capacity: u32,
    pub load: u32,
    pub state: String,
    pub ready: String,
}

impl Member {
    fn of(id: &ChitchatId, state: &NodeState, live: bool) -> Member {
        let get = |key: &str| state.get(key).unwrap_or_default().to_string();
        Member {
            name: id.node_id.to_string(),
            generation: id.generation_id,
            gossip: id.gossip_advertise_addr,
            live,
            peer: get(keys::PEER).parse().ok(),
            ingress: get(keys::INGRESS).parse().ok(),
            ingress_cert: Some(get(keys::INGRESS_CERT)).filter(|pin| !pin.is_empty()),
            capacity: get(keys::CAPACITY).parse().unwrap_or(1).max(1),
            load: get(keys::LOAD).parse().unwrap_or(0),
            state: get(keys::STATE),
            ready: get(keys::READY),
        }
    }
}

/// Everyone this node knows of, by name; the newest generation of each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Members {
    pub me: String,
    pub all: BTreeMap<String, Member>,
}

impl Members {
    /// Live members, this node included, by name.
    pub(crate) fn live(&self) -> impl Iterator<Item = &Member> {
        self.all.values().filter(|m| m.live)
    }

    /// The other live members, in a random rotation: were every node to
    /// ask the same first peers, state would spread through them alone.
    pub(crate) fn peers_in_random_order(&self) -> Vec<&Member> {
        let mut peers: Vec<&Member> = self.live().filter(|m| m.name != self.me).collect();
        if !peers.is_empty() {
            let start = getrandom::u64().unwrap_or(0) as usize % peers.len();
            peers.rotate_left(start);
        }
        peers
    }
}

/// Many memberships in one process, joined by chitchat's in-memory
/// transport instead of sockets (the mesh simulator).
pub(crate) struct InMemoryNetwork(chitchat::transport::ChannelTransport);

impl InMemoryNetwork {
    /// A network whose messages are at most `mtu` bytes.
    pub(crate) fn new(mtu: usize) -> InMemoryNetwork {
        InMemoryNetwork(chitchat::transport::ChannelTransport::with_mtu(mtu))
    }

    /// The transport memberships on this network start with.
    pub(crate) fn transport(&self) -> &dyn Transport {
        &self.0
    }

    /// Bytes and messages carried so far.
    pub(crate) fn carried(&self) -> (u64, u64) {
        let stats = self.0.statistics();
        (stats.num_bytes_total, stats.num_messages_total)
    }
}

/// A running membership: chitchat, plus a task that turns its state into
/// [`Members`] whenever it changes.
pub(crate) struct Membership {
    handle: ChitchatHandle,
    members: watch::Receiver<Arc<Members>>,
}

impl Membership {
    pub(crate) async fn start(
        config: &GossipConfig,
        initial: Vec<(String, String)>,
        transport: &dyn Transport,
    ) -> anyhow::Result<Membership> {
        let handle = chitchat::spawn_chitchat(config.chitchat(), initial, transport)
            .await
            .with_context(|| {
                format!(
                    "cannot start gossip on {}/udp; choose another address with `--gossip 127.0.0.1:PORT`",
                    config.listen
                )
            })?;
        let chitchat = handle.chitchat();
        let me = config.name.clone();
        let (sender, members) = watch::channel(Arc::new(Members {
            me: me.clone(),
            ..Members::default()
        }));
        let mut changes = chitchat.lock().await.live_nodes_watcher();
        tokio::spawn(async move {
            loop {
                let view = {
                    let chitchat = chitchat.lock().await;
                    let mut all: BTreeMap<String, Member> = BTreeMap::new();
                    let live: Vec<&ChitchatId> = chitchat.live_nodes().collect();
                    for id in chitchat.node_states().keys() {
                        let Some(state) = chitchat.node_state(id) else {
                            continue;
                        };
                        let member = Member::of(id, state, live.contains(&id));
                        let newer = all.get(&member.name).is_none_or(|known| {
                            (member.live, member.generation) > (known.live, known.generation)
                        });
                        if newer {
                            all.insert(member.name.clone(), member);
                        }
                    }
                    Members {
                        me: me.clone(),
                        all,
                    }
                };
                sender.send_if_modified(|current| {
                    let changed = **current != view;
                    if changed {
                        *current = Arc::new(view);
                    }
                    changed
                });
                // Liveness changes without a state change (a node stops
                // heartbeating): look again at least once a gossip round.
                let _ = tokio::time::timeout(Duration::from_millis(250), changes.changed()).await;
                if sender.is_closed() {
                    return;
                }
            }
        });
        Ok(Membership { handle, members })
    }

    /// The latest view of the mesh.
    pub(crate) fn members(&self) -> Arc<Members> {
        self.members.borrow().clone()
    }

    /// A receiver woken on every change of the view.
    pub(crate) fn watch(&self) -> watch::Receiver<Arc<Members>> {
        self.members.clone()
    }

    /// Advertises `key = value` (a no-op if unchanged).
    pub(crate) async fn set(&self, key: &str, value: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            value.len() <= MAX_VALUE,
            "gossip value `{key}` is {} bytes, over the {MAX_VALUE}-byte limit that keeps gossip flowing",
            value.len()
        );
        self.handle
            .with_chitchat(|c| c.self_node_state().set(key, value))
            .await;
        Ok(())
    }

    /// Bytes of this node's own gossip state (keys and values).
    pub(crate) async fn own_state_size(&self) -> usize {
        self.handle
            .with_chitchat(|c| {
                c.self_node_state()
                    .key_values()
                    .map(|(k, v)| k.len() + v.len())
                    .sum()
            })
            .await
    }

    /// Stops gossiping; peers declare this node dead after the failure
    /// detector's timeout.
    pub(crate) fn stop(&self) {
        let _ = self.handle.initiate_shutdown();
    }
}

/// A generation id higher than any this node used before: the time in
/// milliseconds, or one more than the last one recorded in `dir` if the
/// clock went back. Recorded before use.
pub(crate) fn next_generation(dir: &Path) -> anyhow::Result<u64> {
    let path = dir.join("generation");
    let last: u64 = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let next = now.max(last + 1);
    crate::store::write_durably(&path, next.to_string().as_bytes())
        .with_context(|| format!("cannot record the generation id in `{}`", path.display()))?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_always_grow() {
        let dir = tempfile::tempdir().unwrap();
        let first = next_generation(dir.path()).unwrap();
        let second = next_generation(dir.path()).unwrap();
        assert!(second > first);
        std::fs::write(
            dir.path().join("generation"),
            (second + 1_000_000).to_string(),
        )
        .unwrap();
        assert_eq!(next_generation(dir.path()).unwrap(), second + 1_000_001);
    }
}
