//! `shoal`: serve WebAssembly HTTP components, alone or as a mesh.

mod accept;
mod admin;
mod apps;
mod cli;
mod clock;
mod compiler;
mod connections;
mod daemon;
mod desired;
mod dirs;
mod executor;
mod guest_logs;
mod ingress;
mod kv;
mod mesh;
mod metrics;
mod node;
mod nofile;
mod progress;
mod replicas;
mod respond;
mod routes;
mod shutdown;
mod sim;
mod spec;
mod store;
mod telemetry;
mod tls;
mod units;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    telemetry::init();
    match cli.execute() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
