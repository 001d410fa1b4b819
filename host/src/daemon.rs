//! The assembly of `shoal host`: binds the listeners, starts gossip,
//! restores the node, starts its loops and the servers, and wires the
//! shutdown. The only place that knows all of them.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use shoal_runtime::OutboundRule;
use tokio::net::TcpListener;

use crate::admin::{self, AdminConfig};
use crate::connections::Limits;
use crate::ingress::{self, IngressConfig};
use crate::mesh::metrics::MeshCollector;
use crate::mesh::{Mesh, MeshConfig};
use crate::metrics::Metrics;
use crate::node::{self, Node, NodeConfig};
use crate::shutdown::Shutdown;

/// Everything `shoal host` is configured with.
#[derive(Debug, Clone)]
pub(crate) struct HostConfig {
    pub node: NodeConfig,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// Required on every admin call but health when set.
    pub token: Option<String>,
    pub max_upload: u64,
    pub max_request_body: u64,
    pub mesh: MeshConfig,
    pub ingress_limits: Limits,
    pub admin_limits: Limits,
}

/// `shoal host`: restore, bind, join, serve until shutdown.
pub(crate) async fn run(config: HostConfig, shutdown: Shutdown) -> anyhow::Result<()> {
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
            config.node.max_instances,
        )
        .await?,
    );
    let node = Arc::new(restore(&config, admin_addr, mesh.clone()).await?);
    eprintln!(
        "gossip on {} as node `{}` (cluster key {})",
        mesh.gossip,
        mesh.me,
        mesh.key.fingerprint()
    );
    eprintln!("serving HTTP on http://{ingress_addr}/");
    eprintln!("admin API on http://{admin_addr}/");
    let control = tokio::spawn(node::control::run(node.clone(), shutdown.clone()));
    let sync = tokio::spawn(node::sync::run(node.clone(), shutdown.clone()));
    let ingress = ingress::serve(
        ingress_listener,
        node.apps.clone(),
        IngressConfig {
            max_request_body: config.max_request_body,
            metrics: Some(node.metrics.clone()),
            forward: Some(mesh.forwarder.clone()),
            limits: config.ingress_limits,
        },
        shutdown.clone(),
    );
    let admin_config = AdminConfig {
        token: config.token.clone(),
        max_upload: config.max_upload,
        ingress: ingress_addr,
        limits: config.admin_limits,
    };
    let admin = admin::serve(admin_listener, node.clone(), admin_config, shutdown);
    tokio::join!(ingress, admin);
    control.abort();
    sync.abort();
    mesh.membership.stop();
    Ok(())
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
        let node = Node::open(node_config, deny, mesh, metrics)?;
        let restored = node.restore()?;
        tracing::info!(apps = restored, data_dir = %node.config.data_dir.display(), "state restored");
        Ok(node)
    })
    .await?
}
