//! A host's state and the operations on it: the store, the runtime, the
//! apps served here, guest logs, metrics and the mesh handle, with upload,
//! deploy, remove, merge and restore. The loops that drive it live beside
//! it: [`control`] (serve what placement gives this node) and [`sync`]
//! (anti-entropy with peers). Nothing here knows HTTP: operations return
//! [`NodeError`], which the admin API maps to statuses.

pub(crate) mod control;
mod error;
pub(crate) mod history;
mod restore;
pub(crate) mod sync;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use shoal_runtime::{AppConfig, Compiled, DeniedAddrs, OutboundRule, Runtime, RuntimeConfig};

pub(crate) use self::error::NodeError;
use crate::apps::{Apps, Deployed};
use crate::clock::unix_now;
use crate::compiler::ChildCompiler;
use crate::desired::pull::Pulled;
use crate::desired::{Desired, Record, Snapshot};
use crate::guest_logs::LogBook;
use crate::kv::SqliteKv;
use crate::mesh::Mesh;
use crate::mesh::placement::Placement;
use crate::metrics::Metrics;
use crate::spec::AppSpec;
use crate::store::history::Kind;
use crate::store::{Corrupt, Store};

/// What a node's state is made with.
#[derive(Debug, Clone)]
pub(crate) struct NodeConfig {
    pub data_dir: PathBuf,
    /// Largest memory an app may ask for.
    pub max_memory: u64,
    /// Instances running at once, host-wide (the pool's size).
    pub max_instances: u32,
    /// How long a removal is remembered (`--tombstone-lifetime`).
    pub tombstone_lifetime: Duration,
    /// Instances one app may run at once (`None`: the runtime's default,
    /// three quarters of `max_instances`).
    pub max_app_concurrency: Option<u32>,
}

/// Desired states remembered to decode other nodes' readiness against.
const SNAPSHOTS_KEPT: usize = 16;

pub(crate) struct Node {
    pub config: NodeConfig,
    pub runtime: Arc<Runtime>,
    pub store: Arc<Store>,
    /// The apps' key-value stores (`<data-dir>/kv.db`), handed to every app.
    pub kv: Arc<SqliteKv>,
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
    /// Nor these: the listeners of this host and of every mesh member
    /// (kept current by `mesh::listeners`).
    denied: DeniedAddrs,
    /// Deploys, removals and merges run one at a time, so versions and
    /// route checks are decided against a state nobody else is changing.
    changes: tokio::sync::Mutex<()>,
    /// Wakes the controller: desired state or local apps changed.
    pub changed: tokio::sync::Notify,
}

/// What a deploy settled: the record committed, the placement it was
/// installed against, and the kind of component.
pub(crate) struct Deployment {
    pub record: Record,
    pub spec: AppSpec,
    pub placement: Arc<Placement>,
    pub kind: &'static str,
}

impl Node {
    /// Opens the store and makes the runtime. `deny` lists what guests may
    /// never reach (the admin API's port), `denied` the addresses they may
    /// never connect to.
    pub(crate) fn open(
        config: NodeConfig,
        deny: Vec<OutboundRule>,
        denied: DeniedAddrs,
        mesh: Arc<Mesh>,
        metrics: Metrics,
    ) -> anyhow::Result<Node> {
        let store = Store::open(&config.data_dir)?;
        let kv = SqliteKv::open(&config.data_dir.join("kv.db"), metrics.kv())?;
        let mut runtime_config = RuntimeConfig {
            max_instances: config.max_instances,
            max_concurrency_per_app: config.max_app_concurrency,
            max_memory_per_instance: config.max_memory,
            cache_dir: Some(config.data_dir.join("compiled")),
            ..RuntimeConfig::default()
        };
        runtime_config.precompiler = ChildCompiler::for_engine(&runtime_config);
        let runtime = Runtime::new(runtime_config)?;
        Ok(Node {
            config,
            runtime: Arc::new(runtime),
            store: Arc::new(store),
            kv: Arc::new(kv),
            apps: Arc::new(Apps::default()),
            logs: Arc::new(LogBook::default()),
            metrics: Arc::new(metrics),
            mesh,
            started: Instant::now(),
            desired: RwLock::new(Arc::default()),
            snapshots: Mutex::new(VecDeque::new()),
            deny,
            denied,
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

    /// Compiles on a blocking thread (a cache hit if compiled before).
    pub(crate) async fn compile(&self, bytes: Arc<Vec<u8>>) -> Result<Compiled, NodeError> {
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || runtime.compile(&bytes))
            .await
            .map_err(|e| NodeError::Internal(e.into()))?
            .map_err(|e| NodeError::Uncompilable(e.to_string()))
    }

    /// Validates and compiles uploaded bytes, then stores them. Nothing is
    /// stored for bytes that do not compile to an HTTP component.
    pub(crate) async fn upload(&self, bytes: Bytes) -> Result<Compiled, NodeError> {
        let bytes = Arc::new(bytes.to_vec());
        let compiled = self.compile(bytes.clone()).await?;
        let store = self.store.clone();
        let key = compiled.sha256().to_string();
        blocking(move || store.put_component(&key, &bytes)).await?;
        Ok(compiled)
    }

    /// Another app already serving the route or hostname `spec` asks for.
    fn conflict(&self, spec: &AppSpec) -> Option<String> {
        let desired = self.desired();
        let mut others = desired
            .apps()
            .map(|(_, other)| other)
            .filter(|other| other.name != spec.name);
        others.find_map(|other| {
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

    /// Deploys (or redeploys) an app: compile first, persist, then serve it
    /// here at once if placement puts it here (always, for a mesh of one),
    /// so the deploy is ready when it is acknowledged. The mesh learns it by
    /// anti-entropy; the controller places it for good.
    pub(crate) async fn deploy(&self, spec: AppSpec) -> Result<Deployment, NodeError> {
        self.deploy_as(spec, Kind::Deploy).await
    }

    /// [`Node::deploy`], kept in the history as `kind`.
    async fn deploy_as(&self, spec: AppSpec, kind: Kind) -> Result<Deployment, NodeError> {
        spec.validate(self.config.max_memory)
            .and_then(|()| spec.check_concurrency(self.runtime.config().app_concurrency_cap()))
            .map_err(|e| NodeError::InvalidSpec(e.0))?;
        let _changes = self.changes.lock().await;
        if !self.store.has_component(&spec.component) {
            return Err(NodeError::NotUploaded(spec.component.clone()));
        }
        if let Some(conflict) = self.conflict(&spec) {
            return Err(NodeError::Taken(conflict));
        }
        let store = self.store.clone();
        let sha256 = spec.component.clone();
        let bytes = tokio::task::spawn_blocking(move || store.read_component(&sha256))
            .await
            .map_err(|e| NodeError::Internal(e.into()))?
            .map_err(|error| match error.downcast::<Corrupt>() {
                Ok(corrupt) => NodeError::Corrupt(corrupt.to_string()),
                Err(error) => NodeError::Internal(error),
            })?;
        let started = Instant::now();
        let compiled = self.compile(Arc::new(bytes)).await?;
        self.metrics.compiled(&spec.name, started.elapsed());
        let mut desired = (*self.desired()).clone();
        let record = self.record(&desired, &spec.name, Some(spec.clone()));
        self.persist(&record, kind).await?;
        desired.merge(record.clone());
        let placement = Arc::new(self.mesh.place(&desired));
        if placement.holders(&spec.name).contains(&self.mesh.me) {
            self.install(&compiled, &spec, record.version);
        }
        self.set_desired(desired);
        tracing::info!(app = %spec.name, version = record.version, sha256 = %spec.component, "deployed");
        Ok(Deployment {
            record,
            spec,
            placement,
            kind: compiled.kind().as_str(),
        })
    }

    /// A new record for `name`, made here now.
    fn record(&self, desired: &Desired, name: &str, spec: Option<AppSpec>) -> Record {
        Record {
            name: name.to_string(),
            version: desired.next_version(name),
            origin: self.mesh.me.clone(),
            at: unix_now(),
            spec,
        }
    }

    async fn persist(&self, record: &Record, kind: Kind) -> Result<(), NodeError> {
        let store = self.store.clone();
        let record = record.clone();
        let saved = blocking(move || store.put_record_as(&record, kind)).await?;
        if saved {
            Ok(())
        } else {
            // The store holds a record this version could not read (a newer
            // one wrote it): what it holds wins, so nothing was saved.
            Err(NodeError::Internal(anyhow::anyhow!(
                "the store holds a newer record of this app than this node knows (written by a newer version of shoal?); nothing was changed"
            )))
        }
    }

    /// Starts serving `spec` here (replacing any older version).
    pub(crate) fn install(&self, compiled: &Compiled, spec: &AppSpec, version: u64) {
        let app = self.runtime.prepare(
            compiled,
            AppConfig {
                name: spec.name.clone(),
                policy: spec.policy(&self.deny, &self.denied),
                limits: spec.limits(),
                state: Some(self.kv.clone()),
            },
            self.logs.clone(),
        );
        self.apps.install(Deployed {
            spec: spec.clone(),
            version,
            app: Arc::new(app),
        });
        self.changed.notify_one();
    }

    /// Removes an app mesh-wide: a tombstone record, persisted first.
    /// Returns the tombstone (its version and origin order it against
    /// every other record of the name).
    pub(crate) async fn remove(&self, name: &str) -> Result<Record, NodeError> {
        let _changes = self.changes.lock().await;
        let mut desired = (*self.desired()).clone();
        if desired.live(name).is_none() {
            return Err(NodeError::NoApp(name.to_string()));
        }
        let record = self.record(&desired, name, None);
        self.persist(&record, Kind::Remove).await?;
        desired.merge(record.clone());
        self.apps.remove(name);
        self.logs.forget(name);
        self.set_desired(desired);
        tracing::info!(app = name, version = record.version, "removed");
        Ok(record)
    }

    /// Merges what a pull from `peer` brought ([`Desired::changes`]): what
    /// changes is persisted before it is believed. Returns how many apps
    /// changed.
    pub(crate) async fn merge(&self, peer: &str, pulled: Pulled) -> anyhow::Result<usize> {
        let _changes = self.changes.lock().await;
        let mut desired = (*self.desired()).clone();
        let changes = desired.changes(pulled, unix_now(), self.config.tombstone_lifetime);
        for (app, why) in &changes.refused {
            tracing::warn!(%peer, app = %app.escape_debug(), why = %why, "refused a record from a peer");
        }
        if let Some(horizon) = changes.ignored_horizon {
            tracing::warn!(%peer, horizon, "ignored a peer's tombstone horizon that lies in the future; keep members' clocks in sync (NTP)");
        }
        if changes.is_empty(&desired) {
            return Ok(0);
        }
        let store = self.store.clone();
        let changes =
            tokio::task::spawn_blocking(move || store.apply(&changes).map(|_| changes)).await??;
        for record in &changes.news {
            tracing::info!(app = %record.name, version = record.version, origin = %record.origin, removed = record.spec.is_none(), "learned from the mesh");
        }
        for record in &changes.forget {
            tracing::warn!(app = %record.name, version = record.version, %peer, "forgot an app the mesh removed while this node was away longer than the tombstone lifetime");
        }
        desired.apply(&changes);
        self.set_desired(desired);
        Ok(changes.news.len() + changes.forget.len())
    }

    /// Forgets removals past their time, here and in the store.
    pub(crate) async fn collect_tombstones(&self) -> anyhow::Result<()> {
        let _changes = self.changes.lock().await;
        let lifetime = self.config.tombstone_lifetime.as_secs();
        let before = unix_now().saturating_sub(lifetime);
        let mut desired = (*self.desired()).clone();
        let collected = desired.collect_tombstones(before);
        if collected == 0 {
            return Ok(());
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.collect_tombstones(before)).await??;
        let horizon = desired.horizon();
        self.set_desired(desired);
        tracing::info!(
            removals = collected,
            lifetime_secs = lifetime,
            horizon,
            "collected old removals"
        );
        Ok(())
    }
}

/// Runs blocking store work on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| NodeError::Internal(e.into()))?
        .map_err(NodeError::Internal)
}
