//! The assembly of `shoal host`: binds the listeners, starts gossip,
//! restores the node, starts its loops and the servers, and wires the
//! shutdown. The only place that knows all of them.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use shoal_runtime::{DeniedAddrs, OutboundRule};
use tokio::net::TcpListener;

use crate::admin::guard::{Guard, TokenSource};
use crate::admin::{self, AdminConfig};
use crate::connections::Limits;
use crate::ingress::{self, IngressConfig};
use crate::mesh::metrics::MeshCollector;
use crate::mesh::{Mesh, MeshConfig};
use crate::metrics::Metrics;
use crate::node::{self, Node, NodeConfig};
use crate::shutdown::Shutdown;
use crate::tls::ListenerTls;

/// Everything `shoal host` is configured with.
#[derive(Debug, Clone)]
pub(crate) struct HostConfig {
    pub node: NodeConfig,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// Required on every admin call but health.
    pub token: String,
    pub token_source: TokenSource,
    pub tls: ListenerTls,
    pub max_upload: u64,
    pub max_request_body: u64,
    pub mesh: MeshConfig,
    pub ingress_limits: Limits,
    pub admin_limits: Limits,
}

/// `shoal host`: restore, bind, join, serve until shutdown.
pub(crate) async fn run(config: HostConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    crate::mesh::keyring::reload_on_hangup(config.mesh.key.clone())
        .context("cannot listen for SIGHUP, which reloads the cluster keys")?;
    let admin_listener = bind(
        config.admin,
        "for the admin API",
        "`--admin 127.0.0.1:PORT`",
    )
    .await?;
    let admin_addr = admin_listener.local_addr()?;
    let ingress_listener = bind(
        config.listen,
        "",
        "`--listen 127.0.0.1:PORT` (or `:0` for any free port)",
    )
    .await?;
    let ingress_addr = ingress_listener.local_addr()?;
    let mesh = Arc::new(
        Mesh::start(
            &config.mesh,
            &config.node.data_dir,
            admin_addr,
            ingress_addr,
            config
                .tls
                .ingress
                .as_ref()
                .map(|tls| crate::mesh::pinned::fingerprint(tls.leaf())),
            config.node.max_instances,
        )
        .await?,
    );
    // Guests never reach this host's listeners nor any member's.
    let denied = DeniedAddrs::new();
    denied.extend([admin_addr, ingress_addr]);
    tokio::spawn(crate::mesh::listeners::deny_to_guests(
        mesh.membership.watch(),
        denied.clone(),
    ));
    let node = Arc::new(restore(&config, admin_addr, denied, mesh.clone()).await?);
    announce(&config, &mesh, admin_addr, ingress_addr)?;
    let control = tokio::spawn(node::control::run(node.clone(), shutdown.clone()));
    let sync = tokio::spawn(node::sync::run(node.clone(), shutdown.clone()));
    // Guests run on their own runtime, so that however hard they spin,
    // gossip, the admin API and sync (on this one) keep their turns.
    let guests = crate::executor::Guests::start().context("cannot start the guests' runtime")?;
    let ingress_config = IngressConfig {
        max_request_body: config.max_request_body,
        metrics: Some(node.metrics.clone()),
        forward: Some(mesh.forwarder.clone()),
        tls: config.tls.ingress.clone(),
        limits: config.ingress_limits,
    };
    let (apps, ingress_shutdown) = (node.apps.clone(), shutdown.clone());
    let ingress_listener = ingress_listener.into_std()?;
    let ingress = guests.spawn(async move {
        // Registered with the guests' runtime, which then owns its sockets.
        let listener = TcpListener::from_std(ingress_listener)?;
        ingress::serve(listener, apps, ingress_config, ingress_shutdown).await;
        std::io::Result::Ok(())
    });
    let admin_config = admin_config(&config, admin_addr, ingress_addr);
    let admin = admin::serve(admin_listener, node.clone(), admin_config, shutdown);
    let (ingress, ()) = tokio::join!(ingress, admin);
    match ingress {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "the ingress could not serve"),
        Err(error) => tracing::error!(%error, "the ingress stopped abnormally"),
    }
    drop(guests);
    control.abort();
    sync.abort();
    mesh.membership.stop();
    Ok(())
}

/// Records the admin URL for the CLI and prints the lines a user reads.
fn announce(
    config: &HostConfig,
    mesh: &Mesh,
    admin_addr: SocketAddr,
    ingress_addr: SocketAddr,
) -> anyhow::Result<()> {
    eprintln!(
        "gossip on {} as node `{}` (cluster key {})",
        mesh.gossip,
        mesh.me,
        mesh.key.fingerprint()
    );
    let admin_url = admin::local::url_for(admin_addr, config.tls.admin.is_some());
    admin::local::record(&config.node.data_dir, &admin_url)?;
    match config.tls.ingress {
        Some(_) => eprintln!("serving HTTPS on https://{ingress_addr}/"),
        None => eprintln!("serving HTTP on http://{ingress_addr}/"),
    }
    let scheme = if config.tls.admin.is_some() {
        "https"
    } else {
        "http"
    };
    eprintln!("admin API on {scheme}://{admin_addr}/");
    Ok(())
}

/// The admin API's configuration: its guard, its limits and the
/// ingress's address (for health).
fn admin_config(
    config: &HostConfig,
    admin_addr: SocketAddr,
    ingress_addr: SocketAddr,
) -> AdminConfig {
    AdminConfig {
        guard: Guard {
            token: config.token.clone(),
            source: config.token_source.clone(),
            bound: admin_addr.ip(),
            tls: config.tls.admin.clone(),
        },
        max_upload: config.max_upload,
        ingress: ingress_addr,
        limits: config.admin_limits,
    }
}

/// Binds `addr`, or says which flag picks another.
async fn bind(addr: SocketAddr, what: &str, flag: &str) -> anyhow::Result<TcpListener> {
    let space = if what.is_empty() { "" } else { " " };
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen{space}{what} on {addr}; choose another address with {flag}")
    })
}

/// Opens the node and brings back its state, on a blocking thread.
async fn restore(
    config: &HostConfig,
    admin_addr: SocketAddr,
    denied: DeniedAddrs,
    mesh: Arc<Mesh>,
) -> anyhow::Result<Node> {
    // Guests may not call the admin API, whichever address they use for it.
    let deny: Vec<OutboundRule> = vec![
        format!("*:{}", admin_addr.port())
            .parse()
            .map_err(|e: String| anyhow::anyhow!(e))?,
    ];
    let node_config = config.node.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Node> {
        let metrics = Metrics::new(Some(Box::new(MeshCollector(mesh.clone()))));
        let node = Node::open(node_config, deny, denied, mesh, metrics)?;
        let restored = node.restore()?;
        tracing::info!(apps = restored, data_dir = %node.config.data_dir.display(), "state restored");
        Ok(node)
    })
    .await?
}
