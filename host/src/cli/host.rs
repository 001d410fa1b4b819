//! `shoal host`: a long-lived host with embedded state, serving every
//! deployed app and the admin API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use std::time::Duration;

use crate::admin::guard::TokenSource;
use crate::cli::ServerFlags;
use crate::cli::tls_flags::TlsFlags;
use crate::daemon::{self, HostConfig};
use crate::mesh::MeshConfig;
use crate::mesh::key::ClusterKey;
use crate::mesh::keyring::{KeySet, Keyring};
use crate::node::NodeConfig;
use crate::units::{parse_duration, parse_listen, parse_size};

/// Run a host: deployed apps survive restarts; manage it with `shoal deploy`.
#[derive(Args, Debug)]
pub(crate) struct Host {
    /// Where state lives (default `$XDG_DATA_HOME/shoal`, else `~/.local/share/shoal`).
    #[arg(long, value_name = "DIR", env = "SHOAL_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Address of the public HTTP ingress (`:0` picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080", env = "SHOAL_LISTEN", value_parser = parse_listen)]
    listen: SocketAddr,

    /// Address of the admin API; anything but loopback requires TLS
    /// (`--tls-self-signed` or `--tls-cert`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070", env = "SHOAL_ADMIN_LISTEN", value_parser = parse_listen)]
    admin: SocketAddr,

    /// The admin token, required on every admin call but health
    /// (default: generated into DATA_DIR/token, where the CLI finds it).
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

    /// Instances one app may have alive at once (default: three quarters
    /// of `--max-instances`); a deploy asking for more is refused.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_app_concurrency: Option<u32>,

    /// This node's name in the mesh (default: kept in DATA_DIR/node-name,
    /// made from the hostname on first start).
    #[arg(long, env = "SHOAL_NAME")]
    name: Option<String>,

    /// Where gossip listens (UDP; `:0` picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7946", env = "SHOAL_GOSSIP", value_parser = parse_listen)]
    gossip: SocketAddr,

    /// The gossip address peers should use, if not the one it listens on.
    #[arg(long, value_name = "ADDR")]
    advertise: Option<SocketAddr>,

    /// Join the mesh through this member's gossip address (repeatable).
    #[arg(long, value_name = "ADDR")]
    join: Vec<String>,

    /// The mesh's cluster key (default: DATA_DIR/cluster.key, made on the
    /// first start of a host that joins nobody). Every member needs the same.
    /// A keyring: one key per line, the first seals, all open; SIGHUP
    /// reads it again (to roll keys, see docs/key-rotation.md).
    #[arg(long, value_name = "FILE", env = "SHOAL_CLUSTER_KEY_FILE")]
    cluster_key_file: Option<PathBuf>,

    /// Time between gossip rounds; a silent node is declared dead after
    /// about eight rounds.
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = parse_duration)]
    gossip_interval: Duration,

    /// This node's weight in placement (default: `--max-instances`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    capacity: Option<u32>,

    /// How long a removal is remembered so that a node that missed it
    /// learns it; a node away longer cannot bring removed apps back. For
    /// tests: every member of a mesh needs the same value.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration, hide = true)]
    tombstone_lifetime: Duration,

    #[command(flatten)]
    tls: TlsFlags,

    /// How much longer than an app's deadline a request forwarded to the
    /// node that serves it may take; past that it fails with 504.
    #[arg(long, value_name = "DURATION", default_value = "2s", env = "SHOAL_FORWARD_GRACE", value_parser = parse_duration)]
    forward_grace: Duration,

    /// How long pulling the desired state from a peer may take; a peer
    /// that does not answer costs this once, never a stalled mesh.
    #[arg(long, value_name = "DURATION", default_value = "5s", env = "SHOAL_PULL_TIMEOUT", value_parser = parse_duration)]
    pull_timeout: Duration,

    /// Connections the admin API keeps open at once (default: 1/8 of the
    /// open-file limit above 64, at most 1024).
    #[arg(long, value_name = "N", env = "SHOAL_MAX_ADMIN_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    max_admin_connections: Option<u32>,

    #[command(flatten)]
    server: ServerFlags,
}

impl Host {
    /// The data dir, made private (0700) if it is new.
    fn data_dir(&self) -> anyhow::Result<PathBuf> {
        let data_dir = match self.data_dir.clone().or_else(crate::dirs::data_dir) {
            Some(dir) => dir,
            None => anyhow::bail!(
                "no data directory: set `--data-dir` or `SHOAL_DATA_DIR` (HOME is not set)"
            ),
        };
        crate::dirs::create_private_dir(&data_dir).with_context(|| {
            format!(
                "cannot create data directory `{}`; choose another with `--data-dir`",
                data_dir.display()
            )
        })?;
        Ok(data_dir)
    }

    /// The admin token, given or kept in the data dir, and where it is.
    fn token(&self, data_dir: &Path) -> anyhow::Result<(String, TokenSource)> {
        let (token, token_source) = match self.token.clone() {
            Some(token) => (token, TokenSource::Given),
            None => (
                load_or_create_token(data_dir)?,
                TokenSource::File(data_dir.join("token")),
            ),
        };
        anyhow::ensure!(
            !token.trim().is_empty(),
            "the admin token is empty: give `--token` (or `SHOAL_TOKEN`) a value, or leave it out to use DATA_DIR/token"
        );
        Ok((token, token_source))
    }

    pub(crate) fn execute(self) -> anyhow::Result<()> {
        let data_dir = self.data_dir()?;
        let (token, token_source) = self.token(&data_dir)?;
        let addresses: Vec<_> = [self.admin, self.listen]
            .iter()
            .chain(self.advertise.as_ref())
            .map(|a| a.ip())
            .collect();
        let tls = self.tls.load(&data_dir, self.admin, &addresses)?;
        if let TokenSource::File(path) = &token_source
            && !self.admin.ip().is_loopback()
        {
            eprintln!(
                "admin API on {} requires a token: clients pass `--token` or `SHOAL_TOKEN` (it is in {})",
                self.admin,
                path.display()
            );
        }
        let mesh = MeshConfig {
            name: node_name(self.name.clone(), &data_dir)?,
            gossip: self.gossip,
            advertise: self.advertise,
            join: self.join.clone(),
            key: cluster_key(
                self.cluster_key_file.as_deref(),
                &data_dir,
                !self.join.is_empty(),
                self.gossip,
            )?,
            interval: self.gossip_interval,
            capacity: self.capacity,
            forward_grace: self.forward_grace,
            pull_timeout: self.pull_timeout,
        };
        if let Some(cap) = self.max_app_concurrency {
            anyhow::ensure!(
                cap <= self.max_instances,
                "`--max-app-concurrency {cap}` is over `--max-instances {}`; lower it, or raise `--max-instances`",
                self.max_instances
            );
        }
        let config = HostConfig {
            node: NodeConfig {
                data_dir,
                max_memory: self.max_memory,
                max_instances: self.max_instances,
                tombstone_lifetime: self.tombstone_lifetime,
                max_app_concurrency: self.max_app_concurrency,
            },
            listen: self.listen,
            admin: self.admin,
            token,
            token_source,
            tls,
            max_upload: self.max_upload,
            max_request_body: self.max_request_body,
            mesh,
            ingress_limits: self.server.ingress(),
            admin_limits: self.server.admin(self.max_admin_connections),
        };
        let tokio = crate::executor::build()?;
        tokio.block_on(async move {
            let shutdown = crate::shutdown::on_signals();
            daemon::run(config, shutdown).await
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

/// The cluster keyring: from `--cluster-key-file`, else `SHOAL_CLUSTER_KEY`
/// (one key, hex), else DATA_DIR/cluster.key. A host that founds a mesh on
/// loopback makes one; one that joins, or gossips beyond loopback, must be
/// given it. Keys from a file are read again on SIGHUP.
fn cluster_key(
    file: Option<&Path>,
    data_dir: &Path,
    joining: bool,
    gossip: SocketAddr,
) -> anyhow::Result<Keyring> {
    if let Some(file) = file {
        return Ok(Keyring::new(KeySet::load(file)?, Some(file.to_path_buf())));
    }
    if let Ok(hex) = std::env::var("SHOAL_CLUSTER_KEY") {
        let key = ClusterKey::from_hex(&hex).context("SHOAL_CLUSTER_KEY is not a cluster key")?;
        return Ok(Keyring::single(key));
    }
    let path = data_dir.join("cluster.key");
    if path.exists() {
        return Ok(Keyring::new(KeySet::load(&path)?, Some(path)));
    }
    if joining {
        anyhow::bail!(
            "joining a mesh needs its cluster key: copy DATA_DIR/cluster.key from a member and pass `--cluster-key-file FILE` (or set SHOAL_CLUSTER_KEY)"
        );
    }
    if !gossip.ip().is_loopback() {
        anyhow::bail!(
            "gossip on {gossip} would be open to the network without a cluster key: make one with `shoal keygen cluster.key`, then start every member with `--cluster-key-file cluster.key`"
        );
    }
    let key = ClusterKey::create(&path)?;
    eprintln!(
        "made a new cluster key in {}; hosts that join this one need it (`--cluster-key-file`)",
        path.display()
    );
    Ok(Keyring::new(KeySet::single(key), Some(path)))
}

/// `--name`, else the name kept in DATA_DIR/node-name, else a new one
/// (hostname and four random hex digits) kept there.
fn node_name(given: Option<String>, data_dir: &Path) -> anyhow::Result<String> {
    let valid = |name: &str| {
        !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    };
    if let Some(name) = given {
        anyhow::ensure!(
            valid(&name),
            "invalid node name `{name}`: use 1 to 63 letters, digits, `-`, `.` or `_`"
        );
        return Ok(name);
    }
    let path = data_dir.join("node-name");
    if let Ok(name) = std::fs::read_to_string(&path) {
        let name = name.trim().to_string();
        if valid(&name) {
            return Ok(name);
        }
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| valid(h) && h.len() <= 50)
        .unwrap_or_else(|| "shoal".into());
    let mut suffix = [0u8; 2];
    getrandom::fill(&mut suffix).map_err(|e| anyhow::anyhow!("cannot name this node: {e}"))?;
    let name = format!("{host}-{}", hex::encode(suffix));
    crate::store::write_durably(&path, name.as_bytes())
        .with_context(|| format!("cannot record the node name in `{}`", path.display()))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_only_for_a_mesh_founded_on_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let loopback: SocketAddr = "127.0.0.1:7946".parse().unwrap();
        let open: SocketAddr = "10.1.2.3:7946".parse().unwrap();
        let refused = cluster_key(None, dir.path(), false, open)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("shoal keygen"), "{refused}");
        let refused = cluster_key(None, dir.path(), true, loopback)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("--cluster-key-file"), "{refused}");
        assert!(!dir.path().join("cluster.key").exists());
        let made = cluster_key(None, dir.path(), false, loopback).unwrap();
        // Made once, then reused, on any address.
        let again = cluster_key(None, dir.path(), true, open).unwrap();
        let hex = |ring: &Keyring| ring.current().primary().to_hex();
        assert_eq!(hex(&made), hex(&again));
    }

    #[test]
    fn node_names_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = node_name(None, dir.path()).unwrap();
        assert_eq!(node_name(None, dir.path()).unwrap(), first);
        assert_eq!(node_name(Some("n1".into()), dir.path()).unwrap(), "n1");
        assert!(node_name(Some("a b".into()), dir.path()).is_err());
    }
}
