//! What a simulation run measured, and how `shoal mesh-sim` prints it.

use std::time::Duration;

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
