//! A running host: store, runtime, apps, guest logs, metrics, and the
//! operations the admin API offers on them (upload, deploy, remove). Also
//! `serve`, which assembles it all and runs the ingress and admin servers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use shoal_runtime::{AppConfig, Compiled, OutboundRule, Runtime, RuntimeConfig};
use tokio::net::TcpListener;

use crate::apps::{Apps, Deployed};
use crate::guest_logs::LogBook;
use crate::ingress::{self, IngressConfig};
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

    fn internal(error: impl std::fmt::Display) -> ApiError {
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
    pub status: &'static str,
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

impl AppView {
    pub(crate) fn of(d: &Deployed) -> AppView {
        let stats = d.app.stats();
        AppView {
            name: d.spec.name.clone(),
            version: d.version,
            component: d.spec.component.clone(),
            kind: d.app.kind().as_str(),
            route: d.spec.prefix(),
            hostname: d.spec.hostname.clone(),
            status: "ready",
            requests: stats.requests,
            failures: stats.failures,
            active: stats.active,
            queued: stats.queued,
            deployed_at: d.deployed_at,
            env: d.spec.env.keys().cloned().collect(),
            timeout_ms: d.spec.timeout_ms,
            memory: d.spec.memory,
            max_concurrency: d.spec.max_concurrency,
            max_queue: d.spec.max_queue,
            allow_outbound: d.spec.allow_outbound.clone(),
        }
    }
}

pub(crate) struct Node {
    pub config: NodeConfig,
    pub runtime: Arc<Runtime>,
    pub store: Arc<Store>,
    pub apps: Arc<Apps>,
    pub logs: Arc<LogBook>,
    pub metrics: Arc<Metrics>,
    pub started: Instant,
    /// Guests may never reach these (the admin API).
    deny: Vec<OutboundRule>,
    /// Deploys and removals run one at a time, so versions and route checks
    /// are decided against a state nobody else is changing.
    changes: tokio::sync::Mutex<()>,
}

impl Node {
    pub(crate) fn open(config: NodeConfig, admin_addr: SocketAddr) -> anyhow::Result<Node> {
        let store = Store::open(&config.data_dir)?;
        let runtime = Runtime::new(RuntimeConfig {
            max_instances: config.max_instances,
            max_memory_per_instance: config.max_memory,
            cache_dir: Some(config.data_dir.join("compiled")),
            ..RuntimeConfig::default()
        })?;
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
            metrics: Arc::new(Metrics::new()),
            started: Instant::now(),
            deny,
            changes: tokio::sync::Mutex::new(()),
        })
    }

    async fn compile(&self, bytes: Arc<Vec<u8>>) -> Result<Compiled, ApiError> {
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

    /// Deploys (or redeploys) an app: compile first, persist, then swap.
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
        if let Some(conflict) = self.apps.conflict(&spec) {
            return Err(ApiError::new(StatusCode::CONFLICT, conflict));
        }
        let bytes = self
            .store
            .read_component(&spec.component)
            .map_err(ApiError::internal)?;
        let started = Instant::now();
        let compiled = self.compile(Arc::new(bytes)).await?;
        self.metrics.compiled(&spec.name, started.elapsed());
        let app = self.prepare(&compiled, &spec);
        let store = self.store.clone();
        let stored = spec.clone();
        let (version, deployed_at) = tokio::task::spawn_blocking(move || {
            let version = store.version_of(&stored.name)?.unwrap_or(0) + 1;
            let at = store.put_app(&stored, version)?;
            anyhow::Ok((version, at))
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
        let deployed = Deployed {
            spec,
            version,
            deployed_at,
            app: Arc::new(app),
        };
        self.apps.install(deployed.clone());
        tracing::info!(app = %deployed.spec.name, version, sha256 = %deployed.spec.component, "deployed");
        Ok(AppView::of(&deployed))
    }

    fn prepare(&self, compiled: &Compiled, spec: &AppSpec) -> shoal_runtime::App {
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

    pub(crate) async fn remove(&self, name: &str) -> Result<(), ApiError> {
        let _changes = self.changes.lock().await;
        let store = self.store.clone();
        let key = name.to_string();
        let existed = tokio::task::spawn_blocking(move || store.remove_app(&key))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        self.apps.remove(name);
        self.logs.forget(name);
        if existed {
            tracing::info!(app = name, "removed");
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no app named `{name}`; `shoal ls` lists the apps"),
            ))
        }
    }

    /// Brings back every stored deployment. An app that fails to load is
    /// logged and kept in the store, never dropped.
    fn restore(&self) -> anyhow::Result<usize> {
        let stored = self.store.apps()?;
        let removed = self.store.sweep()?;
        if removed > 0 {
            tracing::info!(
                files = removed,
                "swept component files no deployment refers to"
            );
        }
        let mut restored = 0;
        for entry in stored {
            let name = entry.spec.name.clone();
            let loaded = self
                .store
                .read_component(&entry.spec.component)
                .and_then(|bytes| Ok(self.runtime.compile(&bytes)?));
            match loaded {
                Ok(compiled) => {
                    let app = self.prepare(&compiled, &entry.spec);
                    self.apps.install(Deployed {
                        spec: entry.spec,
                        version: entry.version,
                        deployed_at: entry.deployed_at,
                        app: Arc::new(app),
                    });
                    restored += 1;
                }
                Err(error) => {
                    tracing::error!(app = %name, error = format!("{error:#}"), "stored app could not be loaded")
                }
            }
        }
        Ok(restored)
    }
}

/// `shoal host`: restore, bind, serve until shutdown.
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
    let node = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Node> {
            let node = Node::open(config, admin_addr)?;
            let restored = node.restore()?;
            tracing::info!(apps = restored, data_dir = %node.config.data_dir.display(), "state restored");
            Ok(node)
        })
        .await??
    };
    let node = Arc::new(node);
    eprintln!("serving HTTP on http://{ingress_addr}/");
    eprintln!("admin API on http://{admin_addr}/");
    let ingress = ingress::serve(
        ingress_listener,
        node.apps.clone(),
        IngressConfig {
            max_request_body: config.max_request_body,
            metrics: Some(node.metrics.clone()),
        },
        shutdown.clone(),
    );
    let admin = crate::admin::server::serve(admin_listener, node.clone(), ingress_addr, shutdown);
    tokio::join!(ingress, admin);
    Ok(())
}
