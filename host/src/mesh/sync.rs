//! Anti-entropy: every node advertises the digest of its desired state;
//! when a live peer's differs, this node pulls the peer's records over the
//! peer API and merges them (see `desired` for the rule). Both sides of a
//! difference pull, so after a deploy on any node every node holds it
//! within a gossip round or two plus one HTTP round trip.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::node::Node;
use crate::shutdown::Shutdown;

/// How often digests are compared with no change in view.
const TICK: Duration = Duration::from_millis(500);
/// Pulls started per round, so a node that joins a big mesh does not ask
/// everyone at once.
const PULLS_PER_ROUND: usize = 2;
/// How often old removals are collected.
const COLLECT_EVERY: Duration = Duration::from_secs(3600);

pub(crate) async fn run(node: Arc<Node>, mut shutdown: Shutdown) {
    let mut members = node.mesh.membership.watch();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // (their digest, ours) at the last pull from each peer that brought
    // nothing new: no use asking again until one of them changes.
    let mut settled: HashMap<String, (String, String)> = HashMap::new();
    let mut warned: HashMap<String, Instant> = HashMap::new();
    let mut collected = Instant::now();
    loop {
        let view = node.mesh.membership.members();
        let mut pulls = 0;
        for member in view.peers_in_random_order() {
            // Cached until the state changes (a merge below changes it).
            let ours = node.desired().snapshot().digest.clone();
            if member.state.is_empty() || member.state == ours {
                continue;
            }
            let pair = (member.state.clone(), ours);
            if settled.get(&member.name) == Some(&pair) {
                continue;
            }
            let Some(peer) = member.peer else { continue };
            if pulls == PULLS_PER_ROUND {
                break;
            }
            pulls += 1;
            match node.mesh.peer.records(peer).await {
                Ok(records) => match node.merge(records).await {
                    Ok(0) => {
                        settled.insert(member.name.clone(), pair);
                    }
                    Ok(_) => {
                        settled.remove(&member.name);
                    }
                    Err(error) => {
                        tracing::error!(peer = %member.name, error = format!("{error:#}"), "cannot save what a peer sent")
                    }
                },
                Err(error) => {
                    // One warning per peer per minute: a dead peer stays
                    // in view until the failure detector notices.
                    if warned
                        .get(&member.name)
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
                    {
                        tracing::warn!(peer = %member.name, error = format!("{error:#}"), "cannot pull desired state");
                        warned.insert(member.name.clone(), Instant::now());
                    }
                }
            }
        }
        if collected.elapsed() > COLLECT_EVERY {
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
