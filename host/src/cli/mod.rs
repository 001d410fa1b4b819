//! The command line: one file per verb, each a clap struct with `execute`.

mod app_flags;
mod run;

use clap::{Parser, Subcommand};

pub(crate) use app_flags::AppFlags;

/// Shoal serves WebAssembly HTTP components: one binary on a laptop, the same
/// binary as a mesh.
#[derive(Parser)]
#[command(name = "shoal", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Run(run::Run),
}

impl Cli {
    /// Runs the chosen verb.
    pub fn execute(self) -> anyhow::Result<()> {
        match self.command {
            Command::Run(run) => run.execute(),
        }
    }
}
