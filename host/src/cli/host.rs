//! `shoal host`: a long-lived host with embedded state, serving every
//! deployed app and the admin API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::node::{self, NodeConfig};
use crate::units::{parse_listen, parse_size};

/// Run a host: deployed apps survive restarts; manage it with `shoal deploy`.
#[derive(Args, Debug)]
pub(crate) struct Host {
    /// Where state lives (default `$XDG_DATA_HOME/shoal`, else `~/.local/share/shoal`).
    #[arg(long, value_name = "DIR", env = "SHOAL_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Address of the public HTTP ingress (`:0` picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080", env = "SHOAL_LISTEN", value_parser = parse_listen)]
    listen: SocketAddr,

    /// Address of the admin API; anything but loopback requires a token.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070", env = "SHOAL_ADMIN_LISTEN", value_parser = parse_listen)]
    admin: SocketAddr,

    /// The admin token (default: generated into DATA_DIR/token, and
    /// required only when the admin API is not on loopback).
    #[arg(long, env = "SHOAL_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// Largest component upload accepted.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    max_upload: u64,

    /// Largest request body accepted by the ingress.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    max_request_body: u64,

    /// The most linear memory any app may ask for, per instance.
    #[arg(long, value_name = "SIZE", default_value = "512MiB", value_parser = parse_size)]
    max_memory: u64,

    /// Instances alive at once across all apps.
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_instances: u32,
}

impl Host {
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        let data_dir = match self.data_dir.clone().or_else(crate::dirs::data_dir) {
            Some(dir) => dir,
            None => anyhow::bail!(
                "no data directory: set `--data-dir` or `SHOAL_DATA_DIR` (HOME is not set)"
            ),
        };
        std::fs::create_dir_all(&data_dir).with_context(|| {
            format!(
                "cannot create data directory `{}`; choose another with `--data-dir`",
                data_dir.display()
            )
        })?;
        let token = match self.token.clone() {
            Some(token) => Some(token),
            None => {
                let token = load_or_create_token(&data_dir)?;
                (!self.admin.ip().is_loopback()).then_some(token)
            }
        };
        if token.is_some() && !self.admin.ip().is_loopback() {
            eprintln!(
                "admin API on {} requires a token: clients pass `--token` or `SHOAL_TOKEN` (it is in {})",
                self.admin,
                data_dir.join("token").display()
            );
        }
        let config = NodeConfig {
            data_dir,
            listen: self.listen,
            admin: self.admin,
            token,
            max_upload: self.max_upload,
            max_request_body: self.max_request_body,
            max_memory: self.max_memory,
            max_instances: self.max_instances,
        };
        let tokio = crate::executor::build()?;
        tokio.block_on(async move {
            let shutdown = crate::shutdown::on_signals();
            node::serve(config, shutdown).await
        })?;
        eprintln!("stopped");
        Ok(())
    }
}

/// The token in `DIR/token`, made (32 random bytes, hex, mode 0600) on
/// first start.
fn load_or_create_token(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        return Ok(token.trim().to_string());
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("cannot make a token: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write the admin token to `{}`", path.display()))?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    Ok(token)
}
