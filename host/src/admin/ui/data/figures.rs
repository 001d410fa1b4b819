//! This node's own figures: what `GET /v1/peer/figures` answers other
//! nodes' dashboards, and what this node's gatherer reads of itself.

use std::sync::Arc;
use std::time::Instant;

use crate::clock::unix_now_ms;
use crate::guest_logs::LogBook;
use crate::mesh::Mesh;
use crate::mesh::peer::Figures;
use crate::metrics::Metrics;
use crate::node::Node;

/// Guest lines of one app sent in one answer, at most (the dashboard shows
/// the last 200 of an app).
pub(crate) const LINES_PER_APP: usize = 200;

/// What the figures are read from: the parts of a node the gatherer keeps
/// while it runs.
#[derive(Clone)]
pub(crate) struct Sources {
    pub mesh: Arc<Mesh>,
    pub metrics: Arc<Metrics>,
    pub logs: Arc<LogBook>,
    pub started: Instant,
}

impl Sources {
    pub(crate) fn of(node: &Node) -> Sources {
        Sources {
            mesh: node.mesh.clone(),
            metrics: node.metrics.clone(),
            logs: node.logs.clone(),
            started: node.started,
        }
    }

    /// The figures now, with the guest lines numbered after `after`.
    pub(crate) fn figures(&self, after: u64) -> Figures {
        let members = self.mesh.membership.members();
        let load = members.all.get(&self.mesh.me).map_or(0, |m| m.load);
        Figures {
            node: self.mesh.me.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            load,
            at_ms: unix_now_ms(),
            apps: self.metrics.figures(),
            log_seq: self.logs.last_seq(),
            logs: self.logs.after(after, LINES_PER_APP),
        }
    }
}

/// This node's figures, as the peer API answers them.
pub(crate) fn local(node: &Node, after: u64) -> Figures {
    Sources::of(node).figures(after)
}
