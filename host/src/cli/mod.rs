//! The command line: one file per verb, each a clap struct with `execute`.

mod admin_flags;
pub(crate) mod app_flags;
mod deploy;
pub(crate) mod host;
mod keygen;
mod kv;
mod logs;
mod ls;
mod manifest;
mod mesh_sim;
mod new;
mod nodes;
mod rm;
mod run;
mod server_flags;
mod status;
mod tls_flags;
mod ui;

use clap::{Parser, Subcommand};

pub(crate) use admin_flags::AdminFlags;
pub(crate) use app_flags::AppFlags;
pub(crate) use server_flags::ServerFlags;

/// Shoal serves WebAssembly HTTP components: one binary on a laptop, the same
/// binary as a mesh.
#[derive(Parser)]
#[command(name = "shoal", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest verb's flags costs
// nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    Run(run::Run),
    Host(host::Host),
    Deploy(deploy::Deploy),
    Ls(ls::Ls),
    Nodes(nodes::Nodes),
    Keygen(keygen::Keygen),
    #[command(hide = true)]
    MeshSim(mesh_sim::MeshSim),
    #[command(hide = true)]
    CompileWorker(crate::compiler::CompileWorker),
    Rm(rm::Rm),
    Kv(kv::Kv),
    Logs(logs::Logs),
    Status(status::Status),
    New(new::New),
    Ui(ui::Ui),
}

impl Cli {
    /// Runs the chosen verb.
    pub fn execute(self) -> anyhow::Result<()> {
        match self.command {
            Command::Run(verb) => verb.execute(),
            Command::Host(verb) => verb.execute(),
            Command::Deploy(verb) => verb.execute(),
            Command::Ls(verb) => verb.execute(),
            Command::Nodes(verb) => verb.execute(),
            Command::Keygen(verb) => verb.execute(),
            Command::MeshSim(verb) => verb.execute(),
            Command::CompileWorker(verb) => verb.execute(),
            Command::Rm(verb) => verb.execute(),
            Command::Kv(verb) => verb.execute(),
            Command::Logs(verb) => verb.execute(),
            Command::Status(verb) => verb.execute(),
            Command::New(verb) => verb.execute(),
            Command::Ui(verb) => verb.execute(),
        }
    }
}
