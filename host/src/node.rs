//! A running host: store, runtime, apps, guest logs, metrics, and the
//! operations the admin API offers on them (upload, deploy, remove). Also
//! `serve`, which assembles it all and runs the ingress and admin servers.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use shoal_runtime::{AppConfig, Compiled, OutboundRule, Runtime, RuntimeConfig};
use tokio::net::TcpListener;

use crate::apps::{Apps, Deployed};
use crate::compiler::ChildCompiler;
use crate::guest_logs::LogBook;
use crate::ingress::{self, IngressConfig};
use crate::mesh::desired::{Desired, Record, Snapshot};
use crate::mesh::{Mesh, MeshConfig};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::spec::AppSpec;
use crate::store::Store;

/// Everything `shoal host` is configured with.
#[derive(Debug, Clone)]
pub(crate) struct NodeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// Required on every admin call but health when set.
    pub token: Option<String>,
    pub max_upload: u64,
    pub max_request_body: u64,
    pub max_memory: u64,
    pub max_instances: u32,
    pub mesh: MeshConfig,
}

/// An error an admin call answers with: a status and a message that names
/// the problem and the fix.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn internal(error: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}"))
    }
}

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
}

/// Desired states remembered to decode other nodes' readiness against.
const SNAPSHOTS_KEPT: usize = 16;

/// How long a removal is remembered, so a node that missed it learns it.
pub(crate) const TOMBSTONE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

pub(crate) struct Node {
    pub config: NodeConfig,
    pub runtime: Arc<Runtime>,
    pub store: Arc<Store>,
    pub apps: Arc<Apps>,
    pub logs: Arc<LogBook>,
    pub metrics: Arc<Metrics>,
    pub mesh: Arc<Mesh>,
    pub started: Instant,
    /// What every node should serve, as this node knows it. Replaced
    /// whole (copy on write) under `changes`.
    desired: RwLock<Arc<Desired>>,
    /// The latest desired states, newest last.
    snapshots: Mutex<VecDeque<Arc<Snapshot>>>,
    /// Guests may never reach these (the admin API).
    deny: Vec<OutboundRule>,
    /// Deploys, removals and merges run one at a time, so versions and
    /// route checks are decided against a state nobody else is changing.
    changes: tokio::sync::Mutex<()>,
    /// Wakes the controller: desired state or local apps changed.
    pub changed: tokio::sync::Notify,
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AppView {
    pub(crate) fn of(node: &Node, record: &Record, spec: &AppSpec) -> AppView {
        let local = node.apps.get(&spec.name);
        let stats = local.as_ref().map(|d| d.app.stats()).unwrap_or_default();
        let placement = node.mesh.placement();
        let nodes = placement.holders(&spec.name).to_vec();
        let mut ready_on = node.mesh.ready_nodes(&spec.name);
        let here = local.as_ref().is_some_and(|d| d.version == record.version);
        if here {
            ready_on.push(node.mesh.me.clone());
            ready_on.sort();
        }
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
        }
    }
}

impl Node {
    pub(crate) fn open(
        config: NodeConfig,
        admin_addr: SocketAddr,
        mesh: Arc<Mesh>,
    ) -> anyhow::Result<Node> {
        let store = Store::open(&config.data_dir)?;
        let mut runtime_config = RuntimeConfig {
            max_instances: config.max_instances,
            max_memory_per_instance: config.max_memory,
            cache_dir: Some(config.data_dir.join("compiled")),
            ..RuntimeConfig::default()
        };
        runtime_config.precompiler = ChildCompiler::for_engine(&runtime_config);
        let runtime = Runtime::new(runtime_config)?;
        // Guests may not call the admin API, whichever address they use for it.
        let deny = vec![
            format!("*:{}", admin_addr.port())
                .parse()
                .map_err(|e: String| anyhow::anyhow!(e))?,
        ];
        Ok(Node {
            config,
            runtime: Arc::new(runtime),
            store: Arc::new(store),
            apps: Arc::new(Apps::default()),
            logs: Arc::new(LogBook::default()),
            metrics: Arc::new(Metrics::new(Some(Box::new(
                crate::mesh::metrics::MeshCollector(mesh.clone()),
            )))),
            mesh,
            started: Instant::now(),
            desired: RwLock::new(Arc::default()),
            snapshots: Mutex::new(VecDeque::new()),
            deny,
            changes: tokio::sync::Mutex::new(()),
            changed: tokio::sync::Notify::new(),
        })
    }

    /// The desired state as this node knows it now.
    pub(crate) fn desired(&self) -> Arc<Desired> {
        self.desired
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The newest desired state's snapshot, and the ones before it.
    pub(crate) fn snapshots(&self) -> Vec<Arc<Snapshot>> {
        self.snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    /// Swaps in a new desired state and remembers its snapshot.
    fn set_desired(&self, desired: Desired) {
        let snapshot = desired.snapshot();
        {
            let mut snapshots = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
            if snapshots.back().is_none_or(|s| s.digest != snapshot.digest) {
                snapshots.push_back(snapshot);
                if snapshots.len() > SNAPSHOTS_KEPT {
                    snapshots.pop_front();
                }
            }
        }
        *self.desired.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(desired);
        self.changed.notify_one();
    }

    pub(crate) async fn compile(&self, bytes: Arc<Vec<u8>>) -> Result<Compiled, ApiError> {
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || runtime.compile(&bytes))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
    }

    /// Validates and compiles uploaded bytes, then stores them. Nothing is
    /// stored for bytes that do not compile to an HTTP component.
    pub(crate) async fn upload(&self, bytes: Bytes) -> Result<Uploaded, ApiError> {
        let bytes = Arc::new(bytes.to_vec());
        let compiled = self.compile(bytes.clone()).await?;
        let sha256 = compiled.sha256().to_string();
        let store = self.store.clone();
        let key = sha256.clone();
        let stored = bytes.clone();
        tokio::task::spawn_blocking(move || store.put_component(&key, &stored))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        Ok(Uploaded {
            sha256,
            size: bytes.len(),
            kind: compiled.kind().as_str(),
        })
    }

    /// Another app already serving the route or hostname `spec` asks for.
    fn conflict(&self, spec: &AppSpec) -> Option<String> {
        let desired = self.desired();
        desired
            .apps()
            .map(|(_, other)| other)
            .filter(|other| other.name != spec.name)
            .find_map(|other| {
                if spec.prefix().is_some() && spec.prefix() == other.prefix() {
                    Some(format!(
                        "route `{}` is already taken by app `{}`; choose another with `--route`, or remove it with `shoal rm {}`",
                        spec.prefix().unwrap_or_default(),
                        other.name,
                        other.name
                    ))
                } else if spec.hostname.is_some() && spec.hostname == other.hostname {
                    Some(format!(
                        "hostname `{}` is already taken by app `{}`; choose another with `--hostname`",
                        spec.hostname.clone().unwrap_or_default(),
                        other.name
                    ))
                } else {
                    None
                }
            })
    }

    /// Deploys (or redeploys) an app: compile first, persist, then swap in
    /// here if placement puts it here; the mesh learns it by anti-entropy.
    pub(crate) async fn deploy(&self, spec: AppSpec) -> Result<AppView, ApiError> {
        spec.validate(self.config.max_memory)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.0))?;
        let _changes = self.changes.lock().await;
        if !self.store.has_component(&spec.component) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "component `{}` was never uploaded; upload it first (`shoal deploy FILE.wasm` does both)",
                    spec.component
                ),
            ));
        }
        if let Some(conflict) = self.conflict(&spec) {
            return Err(ApiError::new(StatusCode::CONFLICT, conflict));
        }
        let bytes = self
            .store
            .read_component(&spec.component)
            .map_err(ApiError::internal)?;
        let started = Instant::now();
        let compiled = self.compile(Arc::new(bytes)).await?;
        self.metrics.compiled(&spec.name, started.elapsed());
        let mut desired = (*self.desired()).clone();
        let record = Record {
            name: spec.name.clone(),
            version: desired.next_version(&spec.name),
            origin: self.mesh.me.clone(),
            at: unix_now(),
            spec: Some(spec.clone()),
        };
        self.persist(&record).await?;
        desired.merge(record.clone());
        // Serve it here at once if placement says so (always, for a mesh
        // of one): a deploy is then ready when it is acknowledged.
        let placement = Arc::new(self.mesh.place(&desired));
        self.mesh.set_placement(placement.clone());
        if placement.holders(&spec.name).contains(&self.mesh.me) {
            self.install(&compiled, &spec, record.version);
        }
        self.set_desired(desired);
        tracing::info!(app = %spec.name, version = record.version, sha256 = %spec.component, "deployed");
        let mut view = AppView::of(self, &record, &spec);
        view.kind = compiled.kind().as_str();
        Ok(view)
    }

    async fn persist(&self, record: &Record) -> Result<(), ApiError> {
        let store = self.store.clone();
        let record = record.clone();
        tokio::task::spawn_blocking(move || store.put_record(&record))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        Ok(())
    }

    pub(crate) fn prepare(&self, compiled: &Compiled, spec: &AppSpec) -> shoal_runtime::App {
        self.runtime.prepare(
            compiled,
            AppConfig {
                name: spec.name.clone(),
                policy: spec.policy(&self.deny),
                limits: spec.limits(),
            },
            self.logs.clone(),
        )
    }

    /// Starts serving `spec` here (replacing any older version).
    pub(crate) fn install(&self, compiled: &Compiled, spec: &AppSpec, version: u64) {
        let app = self.prepare(compiled, spec);
        self.apps.install(Deployed {
            spec: spec.clone(),
            version,
            app: Arc::new(app),
        });
        self.changed.notify_one();
    }

    pub(crate) async fn remove(&self, name: &str) -> Result<(), ApiError> {
        let _changes = self.changes.lock().await;
        let mut desired = (*self.desired()).clone();
        if desired.live(name).is_none() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no app named `{name}`; `shoal ls` lists the apps"),
            ));
        }
        let record = Record {
            name: name.to_string(),
            version: desired.next_version(name),
            origin: self.mesh.me.clone(),
            at: unix_now(),
            spec: None,
        };
        self.persist(&record).await?;
        desired.merge(record);
        self.apps.remove(name);
        self.logs.forget(name);
        self.set_desired(desired);
        tracing::info!(app = name, "removed");
        Ok(())
    }

    /// Merges records learned from a peer: each is persisted before it is
    /// believed. Returns how many changed the desired state.
    pub(crate) async fn merge(&self, records: Vec<Record>) -> anyhow::Result<usize> {
        let _changes = self.changes.lock().await;
        let mut desired = (*self.desired()).clone();
        let horizon = unix_now().saturating_sub(TOMBSTONE_TTL.as_secs());
        let news: Vec<Record> = records
            .into_iter()
            .filter(|r| r.spec.is_some() || r.at >= horizon)
            .filter(|r| desired.get(&r.name).is_none_or(|known| r.supersedes(known)))
            .collect();
        if news.is_empty() {
            return Ok(0);
        }
        let store = self.store.clone();
        let saved = news.clone();
        tokio::task::spawn_blocking(move || store.put_records(&saved)).await??;
        let count = news.len();
        for record in news {
            tracing::info!(app = %record.name, version = record.version, origin = %record.origin, removed = record.spec.is_none(), "learned from the mesh");
            desired.merge(record);
        }
        self.set_desired(desired);
        Ok(count)
    }

    /// Forgets removals past their time, here and in the store.
    pub(crate) async fn collect_tombstones(&self) -> anyhow::Result<()> {
        let _changes = self.changes.lock().await;
        let horizon = unix_now().saturating_sub(TOMBSTONE_TTL.as_secs());
        let mut desired = (*self.desired()).clone();
        if desired.collect_tombstones(horizon) == 0 {
            return Ok(());
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.collect_tombstones(horizon)).await??;
        self.set_desired(desired);
        Ok(())
    }

    /// Brings back every stored record, and serves at once every app this
    /// node compiled before (its code is cached, so it loads in
    /// milliseconds). The controller installs whatever else placement puts
    /// here (for a mesh of one, everything) and trims what it puts
    /// elsewhere once the other holders are ready. An app that fails to
    /// load is logged and kept in the store, never dropped.
    fn restore(&self) -> anyhow::Result<usize> {
        let records = self.store.records()?;
        let removed = self.store.sweep()?;
        if removed > 0 {
            tracing::info!(
                files = removed,
                "swept component files no deployment refers to"
            );
        }
        let desired = Desired::new(records);
        let mut restored = 0;
        for (record, spec) in desired.apps() {
            if !self.store.has_component(&spec.component) {
                continue;
            }
            let loaded = self
                .store
                .read_component(&spec.component)
                .and_then(|bytes| Ok(self.runtime.compile_cached(&bytes)?));
            match loaded {
                Ok(Some(compiled)) => {
                    self.install(&compiled, spec, record.version);
                    restored += 1;
                }
                // Not compiled here before: the controller compiles it.
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(app = %spec.name, error = format!("{error:#}"), "stored app could not be loaded")
                }
            }
        }
        self.set_desired(desired);
        Ok(restored)
    }

    /// Every deployed app as the admin API shows it.
    pub(crate) fn views(&self) -> Vec<AppView> {
        let desired = self.desired();
        desired
            .apps()
            .map(|(record, spec)| AppView::of(self, record, spec))
            .collect()
    }

    pub(crate) fn view(&self, name: &str) -> Option<AppView> {
        let desired = self.desired();
        let (record, spec) = desired.live(name)?;
        Some(AppView::of(self, record, spec))
    }
}

/// `shoal host`: restore, bind, join, serve until shutdown.
pub(crate) async fn serve(config: NodeConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    let admin_listener = TcpListener::bind(config.admin).await.with_context(|| {
        format!(
            "cannot listen for the admin API on {}; choose another address with `--admin 127.0.0.1:PORT`",
            config.admin
        )
    })?;
    let admin_addr = admin_listener.local_addr()?;
    let ingress_listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "cannot listen on {}; choose another address with `--listen 127.0.0.1:PORT` (or `:0` for any free port)",
            config.listen
        )
    })?;
    let ingress_addr = ingress_listener.local_addr()?;
    let mesh = Arc::new(
        Mesh::start(
            &config.mesh,
            &config.data_dir,
            admin_addr,
            ingress_addr,
            config.max_instances,
        )
        .await?,
    );
    let node = {
        let config = config.clone();
        let mesh = mesh.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Node> {
            let node = Node::open(config, admin_addr, mesh)?;
            let restored = node.restore()?;
            tracing::info!(apps = restored, data_dir = %node.config.data_dir.display(), "state restored");
            Ok(node)
        })
        .await??
    };
    let node = Arc::new(node);
    eprintln!(
        "gossip on {} as node `{}` (cluster key {})",
        mesh.gossip,
        mesh.me,
        mesh.key.fingerprint()
    );
    eprintln!("serving HTTP on http://{ingress_addr}/");
    eprintln!("admin API on http://{admin_addr}/");
    let control = tokio::spawn(crate::mesh::control::run(node.clone(), shutdown.clone()));
    let sync = tokio::spawn(crate::mesh::sync::run(node.clone(), shutdown.clone()));
    let ingress = ingress::serve(
        ingress_listener,
        node.apps.clone(),
        IngressConfig {
            max_request_body: config.max_request_body,
            metrics: Some(node.metrics.clone()),
            forward: Some(mesh.forwarder.clone()),
        },
        shutdown.clone(),
    );
    let admin = crate::admin::server::serve(admin_listener, node.clone(), ingress_addr, shutdown);
    tokio::join!(ingress, admin);
    control.abort();
    sync.abort();
    mesh.membership.stop();
    Ok(())
}
