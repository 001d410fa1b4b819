//! Anti-entropy: every node advertises the digest of its desired state;
//! when a live peer's differs, this node pulls the peer's records over the
//! peer API and merges them (see `desired` for the rule). Both sides of a
//! difference pull, so after a deploy on any node every node holds it
//! within a gossip round or two plus one HTTP round trip.
//!
//! Pulls run in tasks of their own, several at once, each bounded by the
//! replica (the peer client's pull timeout): a round starts them and never
//! waits for one, so a frozen peer holds one pull until it times out and
//! delays nobody else's state.
//!
//! [`round`] is one such round over any [`Replica`]: the node's loop
//! ([`run`]) and the mesh simulator run the same code.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::Node;
use crate::desired::pull::Pulled;
use crate::mesh::membership::{Member, Members};
use crate::shutdown::Shutdown;

/// How often digests are compared with no change in view.
const TICK: Duration = Duration::from_millis(500);
/// Pulls in flight at once, so a node that joins a big mesh does not ask
/// everyone at once.
pub(crate) const PULLS_IN_FLIGHT: usize = 4;
/// How long a peer whose pull failed is left alone.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often old removals are collected (more often for a tombstone
/// lifetime under two hours).
const COLLECT_EVERY: Duration = Duration::from_secs(3600);
/// One warning per peer per this interval: a dead peer stays in view
/// until the failure detector notices.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What a round of anti-entropy needs of a node. Pulls run in tasks of
/// their own, so a replica is a cheap handle; each pull must end in
/// bounded time.
pub(crate) trait Replica: Clone + Send + Sync + 'static {
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

/// A finished pull: from whom, the (their digest, ours) it started from,
/// and how it went.
struct Finished {
    peer: String,
    pair: (String, String),
    outcome: Outcome,
}

enum Outcome {
    Merged(usize),
    PullFailed(anyhow::Error),
    MergeFailed(anyhow::Error),
}

/// What rounds remember between them, and the pulls in flight.
pub(crate) struct Rounds {
    /// (their digest, ours) at the last pull from each peer that brought
    /// nothing new: no use asking again until one of them changes.
    settled: HashMap<String, (String, String)>,
    warned: HashMap<String, Instant>,
    /// Peers a pull is in flight from.
    pulling: HashSet<String>,
    /// Peers whose last pull failed, and when.
    failed: HashMap<String, Instant>,
    finished_tx: mpsc::UnboundedSender<Finished>,
    finished: mpsc::UnboundedReceiver<Finished>,
}

impl Default for Rounds {
    fn default() -> Rounds {
        let (finished_tx, finished) = mpsc::unbounded_channel();
        Rounds {
            settled: HashMap::new(),
            warned: HashMap::new(),
            pulling: HashSet::new(),
            failed: HashMap::new(),
            finished_tx,
            finished,
        }
    }
}

impl Rounds {
    /// Waits for a pull in flight to finish and takes note of it (safe to
    /// cancel: nothing is lost).
    pub(crate) async fn pulled(&mut self) {
        if let Some(finished) = self.finished.recv().await {
            self.note(finished);
        }
    }

    fn note(&mut self, finished: Finished) {
        let Finished {
            peer,
            pair,
            outcome,
        } = finished;
        self.pulling.remove(&peer);
        match outcome {
            Outcome::Merged(0) => {
                self.failed.remove(&peer);
                self.settled.insert(peer, pair);
            }
            Outcome::Merged(_) => {
                self.failed.remove(&peer);
                self.settled.remove(&peer);
            }
            Outcome::MergeFailed(error) => {
                tracing::error!(peer = %peer, error = format!("{error:#}"), "cannot save what a peer sent");
            }
            Outcome::PullFailed(error) => {
                let warned = self.warned.get(&peer);
                if warned.is_none_or(|t| t.elapsed() > WARN_EVERY) {
                    tracing::warn!(peer = %peer, error = format!("{error:#}"), "cannot pull desired state");
                    self.warned.insert(peer.clone(), Instant::now());
                }
                self.failed.insert(peer, Instant::now());
            }
        }
    }

    /// Whether `peer` may be pulled from now, given the digests `pair`.
    fn may_pull(&self, peer: &str, pair: &(String, String)) -> bool {
        self.settled.get(peer) != Some(pair)
            && !self.pulling.contains(peer)
            && self
                .failed
                .get(peer)
                .is_none_or(|t| t.elapsed() >= RETRY_AFTER)
    }
}

/// Takes note of the pulls that finished, then starts pulls (in random
/// rotation, up to [`PULLS_IN_FLIGHT`] in flight) from live peers whose
/// digest differs from ours; each merges what it brings. Returns how many
/// pulls it started.
pub(crate) fn round(replica: &impl Replica, view: &Members, rounds: &mut Rounds) -> usize {
    while let Ok(finished) = rounds.finished.try_recv() {
        rounds.note(finished);
    }
    let mut started = 0;
    for member in view.peers_in_random_order() {
        if rounds.pulling.len() >= PULLS_IN_FLIGHT {
            break;
        }
        let ours = replica.digest();
        if member.state.is_empty() || member.state == ours || member.peer.is_none() {
            continue;
        }
        let pair = (member.state.clone(), ours);
        if !rounds.may_pull(&member.name, &pair) {
            continue;
        }
        rounds.pulling.insert(member.name.clone());
        let (replica, member, finished) =
            (replica.clone(), member.clone(), rounds.finished_tx.clone());
        tokio::spawn(async move {
            let outcome = match replica.pull(&member).await {
                Ok(pulled) => match replica.merge(&member.name, pulled).await {
                    Ok(changed) => Outcome::Merged(changed),
                    Err(error) => Outcome::MergeFailed(error),
                },
                Err(error) => Outcome::PullFailed(error),
            };
            let peer = member.name;
            let _ = finished.send(Finished {
                peer,
                pair,
                outcome,
            });
        });
        started += 1;
    }
    started
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

/// The node's anti-entropy loop: a round on every change of view, every
/// finished pull and every [`TICK`]; old removals collected every
/// [`COLLECT_EVERY`].
pub(crate) async fn run(node: Arc<Node>, mut shutdown: Shutdown) {
    let mut members = node.mesh.membership.watch();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rounds = Rounds::default();
    let mut collected = Instant::now();
    let collect_every = COLLECT_EVERY.min(node.config.tombstone_lifetime / 2);
    loop {
        let view = node.mesh.membership.members();
        round(&node, &view, &mut rounds);
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
            () = rounds.pulled() => {}
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests;
