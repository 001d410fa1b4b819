//! `shoal mesh-sim`: the mesh benchmark, a simulated mesh of many nodes in
//! one process (see `mesh::sim`). Hidden from help: it is for measuring.

use std::time::Duration;

use clap::Args;

use crate::sim::{self, SimConfig};
use crate::units::parse_duration;

/// Simulate a mesh in one process and print what it measured.
#[derive(Args, Debug)]
pub(crate) struct MeshSim {
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    #[arg(long, default_value_t = 1000)]
    apps: usize,
    /// Gossip interval, as `shoal host --gossip-interval`.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    gossip_interval: Duration,
    /// How long gossip traffic is measured in steady state.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    window: Duration,
    /// Bound on every phase.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    timeout: Duration,
}

impl MeshSim {
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        anyhow::ensure!(self.nodes >= 2, "a mesh needs at least two nodes");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let report = runtime.block_on(sim::run(SimConfig {
            nodes: self.nodes,
            apps: self.apps,
            interval: self.gossip_interval,
            timeout: self.timeout,
            window: self.window,
        }))?;
        println!("{report}");
        Ok(())
    }
}
