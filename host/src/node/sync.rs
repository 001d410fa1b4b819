//! Anti-entropy: every node advertises the digest of its desired state;
//! when a live peer's differs, this node pulls the peer's records over the
//! peer API and merges them (see `desired` for the rule). Both sides of a
//! difference pull, so after a deploy on any node every node holds it
//! within a gossip round or two plus one HTTP round trip.
//!
//! [`round`] is one such round over any [`Replica`]: the node's loop
//! ([`run`]) and the mesh simulator run the same code.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Node;
use crate::desired::pull::Pulled;
use crate::mesh::membership::{Member, Members};
use crate::shutdown::Shutdown;

/// How often digests are compared with no change in view.
const TICK: Duration = Duration::from_millis(500);
/// Pulls started per round, so a node that joins a big mesh does not ask
/// everyone at once.
pub(crate) const PULLS_PER_ROUND: usize = 2;
/// How often old removals are collected (more often for a tombstone
/// lifetime under two hours).
const COLLECT_EVERY: Duration = Duration::from_secs(3600);
/// One warning per peer per this interval: a dead peer stays in view
/// until the failure detector notices.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What a round of anti-entropy needs of a node.
pub(crate) trait Replica {
    /// The digest of the desired state held now.
    fn digest(&self) -> String;
    /// Every record `peer` holds, removals included, and its horizon.
    fn pull(&self, peer: &Member) -> impl Future<Output = anyhow::Result<Pulled>> + Send;
    /// Merges what `peer` sent; returns how many apps it changed.
    fn merge(
        &self,
        peer: &str,
        pulled: Pulled,
    ) -> impl Future<Output = anyhow::Result<usize>> + Send;
}

/// What rounds remember between them.
#[derive(Default)]
pub(crate) struct Rounds {
    /// (their digest, ours) at the last pull from each peer that brought
    /// nothing new: no use asking again until one of them changes.
    settled: HashMap<String, (String, String)>,
    warned: HashMap<String, Instant>,
}

/// Pulls from up to [`PULLS_PER_ROUND`] live peers (in random rotation)
/// whose digest differs from ours, and merges what they hold. Returns how
/// many pulls it made.
pub(crate) async fn round(replica: &impl Replica, view: &Members, rounds: &mut Rounds) -> usize {
    let mut pulls = 0;
    for member in view.peers_in_random_order() {
        let ours = replica.digest();
        if member.state.is_empty() || member.state == ours {
            continue;
        }
        let pair = (member.state.clone(), ours);
        if rounds.settled.get(&member.name) == Some(&pair) || member.peer.is_none() {
            continue;
        }
        if pulls == PULLS_PER_ROUND {
            break;
        }
        pulls += 1;
        match replica.pull(member).await {
            Ok(pulled) => match replica.merge(&member.name, pulled).await {
                Ok(0) => {
                    rounds.settled.insert(member.name.clone(), pair);
                }
                Ok(_) => {
                    rounds.settled.remove(&member.name);
                }
                Err(error) => {
                    tracing::error!(peer = %member.name, error = format!("{error:#}"), "cannot save what a peer sent")
                }
            },
            Err(error) => {
                let warned = rounds.warned.get(&member.name);
                if warned.is_none_or(|t| t.elapsed() > WARN_EVERY) {
                    tracing::warn!(peer = %member.name, error = format!("{error:#}"), "cannot pull desired state");
                    rounds.warned.insert(member.name.clone(), Instant::now());
                }
            }
        }
    }
    pulls
}

impl Replica for Arc<Node> {
    fn digest(&self) -> String {
        // Cached until the state changes (a merge changes it).
        self.desired().snapshot().digest.clone()
    }

    async fn pull(&self, peer: &Member) -> anyhow::Result<Pulled> {
        let addr = peer
            .peer
            .ok_or_else(|| anyhow::anyhow!("peer `{}` advertises no peer API", peer.name))?;
        self.mesh.peer.state(addr).await
    }

    async fn merge(&self, peer: &str, pulled: Pulled) -> anyhow::Result<usize> {
        Node::merge(self, peer, pulled).await
    }
}

/// The node's anti-entropy loop: a round on every change of view and
/// every [`TICK`]; old removals collected every [`COLLECT_EVERY`].
pub(crate) async fn run(node: Arc<Node>, mut shutdown: Shutdown) {
    let mut members = node.mesh.membership.watch();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rounds = Rounds::default();
    let mut collected = Instant::now();
    let collect_every = COLLECT_EVERY.min(node.config.tombstone_lifetime / 2);
    loop {
        let view = node.mesh.membership.members();
        round(&node, &view, &mut rounds).await;
        if collected.elapsed() > collect_every {
            collected = Instant::now();
            if let Err(error) = node.collect_tombstones().await {
                tracing::warn!(error = format!("{error:#}"), "cannot collect old removals");
            }
        }
        tokio::select! {
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
