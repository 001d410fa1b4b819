//! What the admin API answers with: the JSON views of apps, nodes, health
//! and uploads, made from the node's state. Env, config and secret values
//! never appear (they may be secrets): views name them only.

use std::net::SocketAddr;

use serde::Serialize;

use crate::desired::Record;
use crate::mesh::placement::Placement;
use crate::node::Node;
use crate::spec::AppSpec;

/// What an upload answers.
#[derive(Debug, Serialize)]
pub(crate) struct Uploaded {
    pub sha256: String,
    pub size: usize,
    pub kind: &'static str,
}

/// How an app looks from the admin API.
#[derive(Debug, Serialize)]
pub(crate) struct AppView {
    pub name: String,
    pub version: u64,
    pub component: String,
    pub kind: &'static str,
    pub route: Option<String>,
    pub hostname: Option<String>,
    /// `ready` (this node serves it), `forwarded` (other nodes do) or
    /// `pending` (nobody is ready yet).
    pub status: &'static str,
    pub replicas: String,
    /// Where placement puts it, most preferred first.
    pub nodes: Vec<String>,
    /// Nodes ready to serve its current version (this one included).
    pub ready_on: Vec<String>,
    /// The node that accepted the deploy.
    pub origin: String,
    pub requests: u64,
    pub failures: u64,
    pub active: usize,
    pub queued: usize,
    pub deployed_at: u64,
    /// Names only: values may be secrets.
    pub env: Vec<String>,
    pub timeout_ms: u64,
    pub memory: u64,
    pub max_concurrency: u32,
    pub max_queue: u32,
    pub allow_outbound: Vec<String>,
    /// Key-value stores it may open.
    pub kv: Vec<String>,
    /// Bytes it may keep over all its stores.
    pub kv_quota: u64,
    /// What it keeps now (over all its stores, as this node has them).
    pub kv_bytes: u64,
    pub kv_keys: u64,
    /// Names only.
    pub config: Vec<String>,
    /// Names only: never a value.
    pub secrets: Vec<String>,
}

impl AppView {
    pub(crate) fn of(
        node: &Node,
        record: &Record,
        spec: &AppSpec,
        placement: &Placement,
    ) -> AppView {
        let local = node.apps.get(&spec.name);
        let stats = local.as_ref().map(|d| d.app.stats()).unwrap_or_default();
        let nodes = placement.holders(&spec.name).to_vec();
        let mut ready_on = node.mesh.ready_nodes(&spec.name);
        let here = local.as_ref().is_some_and(|d| d.version == record.version);
        if here {
            ready_on.push(node.mesh.me.clone());
            ready_on.sort();
        }
        let usage = node.kv.usage(&spec.name);
        let status = if local.is_some() {
            "ready"
        } else if !ready_on.is_empty() {
            "forwarded"
        } else {
            "pending"
        };
        AppView {
            name: spec.name.clone(),
            version: record.version,
            component: spec.component.clone(),
            kind: local.as_ref().map_or("-", |d| d.app.kind().as_str()),
            route: spec.prefix(),
            hostname: spec.hostname.clone(),
            status,
            replicas: spec.replicas.to_string(),
            nodes,
            ready_on,
            origin: record.origin.clone(),
            requests: stats.requests,
            failures: stats.failures,
            active: stats.active,
            queued: stats.queued,
            deployed_at: record.at,
            env: spec.env.keys().cloned().collect(),
            timeout_ms: spec.timeout_ms,
            memory: spec.memory,
            max_concurrency: spec.max_concurrency,
            max_queue: spec.max_queue,
            allow_outbound: spec.allow_outbound.clone(),
            kv: spec.kv.clone(),
            kv_quota: spec.limits().kv.quota,
            kv_bytes: usage.bytes,
            kv_keys: usage.keys,
            config: spec.config.keys().cloned().collect(),
            secrets: spec.secrets.keys().cloned().collect(),
        }
    }
}

/// Every deployed app as the admin API shows it.
pub(crate) fn apps(node: &Node) -> Vec<AppView> {
    let desired = node.desired();
    let placement = node.mesh.placement();
    desired
        .apps()
        .map(|(record, spec)| AppView::of(node, record, spec, &placement))
        .collect()
}

pub(crate) fn app(node: &Node, name: &str) -> Option<AppView> {
    let desired = node.desired();
    let (record, spec) = desired.live(name)?;
    Some(AppView::of(node, record, spec, &node.mesh.placement()))
}

/// A member as `GET /v1/nodes` shows it.
#[derive(Serialize)]
pub(crate) struct NodeView {
    name: String,
    gossip: String,
    ingress: Option<String>,
    peer: Option<String>,
    live: bool,
    me: bool,
    capacity: u32,
    load: u32,
    /// Apps it serves at their current version.
    apps: Vec<String>,
    /// Apps placement puts on it.
    placed: Vec<String>,
}

pub(crate) fn nodes(node: &Node) -> Vec<NodeView> {
    let members = node.mesh.membership.members();
    let placement = node.mesh.placement();
    let mut held = node.mesh.held();
    let desired = node.desired();
    let mine: Vec<String> = node
        .apps
        .list()
        .into_iter()
        .filter(|d| {
            desired
                .live(&d.spec.name)
                .is_some_and(|(r, _)| r.version == d.version)
        })
        .map(|d| d.spec.name.clone())
        .collect();
    held.insert(members.me.clone(), mine);
    members
        .all
        .values()
        .map(|m| NodeView {
            name: m.name.clone(),
            gossip: m.gossip.to_string(),
            ingress: m.ingress.map(|a| a.to_string()),
            peer: m.peer.map(|a| a.to_string()),
            live: m.live,
            me: m.name == members.me,
            capacity: m.capacity,
            load: m.load,
            apps: if m.live {
                held.remove(&m.name).unwrap_or_default()
            } else {
                Vec::new()
            },
            placed: placement
                .apps_on(&m.name)
                .into_iter()
                .map(str::to_string)
                .collect(),
        })
        .collect()
}

#[derive(Serialize)]
pub(crate) struct Health {
    status: &'static str,
    version: &'static str,
    uptime_secs: u64,
    apps: usize,
    node: String,
    gossip: String,
    /// Live members of the mesh, this node included.
    members: usize,
    ingress: String,
    data_dir: String,
    max_upload: u64,
}

pub(crate) fn health(node: &Node, ingress: SocketAddr, max_upload: u64) -> Health {
    Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: node.started.elapsed().as_secs(),
        apps: node.desired().apps().count(),
        node: node.mesh.me.clone(),
        gossip: node.mesh.gossip.to_string(),
        members: node.mesh.membership.members().live().count(),
        ingress: format!("http://{ingress}"),
        data_dir: node.config.data_dir.display().to_string(),
        max_upload,
    }
}

/// What a removal answers: the name, and the stamp of the removal this
/// node just recorded, so a client can order it against concurrent
/// deploys. A change merged from a peer in between may already have
/// superseded it: then `version` and `origin` are `null`.
pub(crate) fn removed(node: &Node, name: &str) -> serde_json::Value {
    let desired = node.desired();
    let ours = desired
        .get(name)
        .filter(|r| r.spec.is_none() && r.origin == node.mesh.me);
    serde_json::json!({
        "removed": name,
        "version": ours.map(|r| r.version),
        "origin": ours.map(|r| r.origin.as_str()),
    })
}
