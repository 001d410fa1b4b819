//! `shoal run`: serve one component on one address. Nothing is stored but
//! the key-value stores the app is granted (`--kv`), kept under the data
//! dir by app name (or `--state-dir`) like `spin up` keeps them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use shoal_runtime::state::{KvBackend, MemoryKv};
use shoal_runtime::{AppConfig, Compiled, DeniedAddrs, Runtime, RuntimeConfig, TracingSink};

use crate::cli::{AppFlags, ServerFlags};
use crate::compiler::ChildCompiler;
use crate::ingress::{self, IngressConfig};
use crate::kv::SqliteKv;
use crate::metrics::KvMetrics;
use crate::progress::Progress;
use crate::routes::SingleApp;
use crate::tls::ServerTls;
use crate::units::{parse_listen, parse_size};

/// Serve one component over HTTP until interrupted.
#[derive(Args, Debug)]
pub(crate) struct Run {
    /// The component to serve (a `.wasm` file exporting a `wasi:http` handler).
    #[arg(value_name = "COMPONENT.wasm")]
    component: PathBuf,

    /// Address to listen on (`:0` picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080", env = "SHOAL_LISTEN", value_parser = parse_listen)]
    listen: SocketAddr,

    /// Name of the app in logs and errors (default: the file name).
    #[arg(long)]
    name: Option<String>,

    /// Largest request body accepted.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    max_request_body: u64,

    /// Where compiled code is cached (default: `$XDG_CACHE_HOME/shoal`).
    #[arg(long, value_name = "DIR", env = "SHOAL_CACHE_DIR")]
    cache_dir: Option<PathBuf>,

    /// Do not read or write the compile cache.
    #[arg(long)]
    no_cache: bool,

    /// Serve over TLS (HTTP/1.1 and HTTP/2 by ALPN) with this certificate
    /// chain (PEM, leaf first); needs `--tls-key`.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The private key of `--tls-cert` (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Where the app's key-value stores are kept (`kv.db`), when it has
    /// any (`--kv`); `:memory:` keeps nothing past this process (default:
    /// `$XDG_DATA_HOME/shoal/run/NAME`).
    #[arg(long, value_name = "DIR|:memory:")]
    state_dir: Option<PathBuf>,

    #[command(flatten)]
    app: AppFlags,

    #[command(flatten)]
    server: ServerFlags,
}

/// The key-value engine of a run, and the lock that keeps a second run of
/// the same app off its files.
struct State {
    backend: Option<Arc<dyn KvBackend>>,
    _lock: Option<std::fs::File>,
}

impl Run {
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        let tls = self.tls()?;
        let bytes = read_component(&self.component)?;
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| app_name_from(&self.component));
        let cache_dir = if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(crate::dirs::cache_dir)
        };
        let mut runtime_config = RuntimeConfig {
            max_instances: self.app.max_concurrency,
            // The only app here may use every slot.
            max_concurrency_per_app: Some(self.app.max_concurrency),
            max_memory_per_instance: self.app.memory,
            cache_dir,
            ..RuntimeConfig::default()
        };
        runtime_config.precompiler = ChildCompiler::for_engine(&runtime_config);
        let runtime = Runtime::new(runtime_config)?;
        let compiled = compile(&runtime, &bytes, &self.component)?;
        tracing::info!(
            app = %name,
            sha256 = compiled.sha256(),
            kind = compiled.kind().as_str(),
            cached = compiled.from_cache(),
            ms = compiled.compile_time().as_millis() as u64,
            "component ready"
        );
        // The guest never reaches the listener it is served on.
        let denied = DeniedAddrs::new();
        let policy = self.app.policy(&name, &denied)?;
        let state = self.state(&name)?;
        let app = runtime.prepare(
            &compiled,
            AppConfig {
                name: name.clone(),
                policy,
                limits: self.app.limits(),
                state: state.backend.clone(),
            },
            Arc::new(TracingSink),
        );

        let tokio = crate::executor::build()?;
        tokio.block_on(async move {
            let listener = tokio::net::TcpListener::bind(self.listen).await.with_context(|| {
                format!(
                    "cannot listen on {}; choose another address with `--listen 127.0.0.1:PORT` (or `:0` for any free port)",
                    self.listen
                )
            })?;
            let addr = listener.local_addr()?;
            denied.extend([addr]);
            let shutdown = crate::shutdown::on_signals();
            eprintln!(
                "serving `{name}` ({}, sha256 {}) on {}://{addr}/",
                compiled.kind().as_str(),
                &compiled.sha256()[..12],
                if tls.is_some() { "https" } else { "http" }
            );
            let config = IngressConfig {
                forward: None,
                max_request_body: self.max_request_body,
                metrics: None,
                tls,
                limits: self.server.ingress(),
            };
            ingress::serve(listener, Arc::new(SingleApp(Arc::new(app))), config, shutdown).await;
            eprintln!("stopped");
            anyhow::Ok(())
        })?;
        // Drop the runtime (and its engine) only after every request is
        // done, and the stores (their writer finishes) after the app.
        drop(runtime);
        drop(state);
        Ok(())
    }

    /// Opens the app's stores if it is granted any: SQLite in the state
    /// dir (locked, so a second run of the app fails clearly), or memory.
    fn state(&self, name: &str) -> anyhow::Result<State> {
        if self.app.kv.is_empty() {
            return Ok(State {
                backend: None,
                _lock: None,
            });
        }
        if self.state_dir.as_deref() == Some(Path::new(":memory:")) {
            eprintln!(
                "state: in memory (lost when this process stops; `--state-dir DIR` keeps it)"
            );
            return Ok(State {
                backend: Some(Arc::new(MemoryKv::new())),
                _lock: None,
            });
        }
        let dir = match &self.state_dir {
            Some(dir) => dir.clone(),
            None => default_state_dir(name)?,
        };
        crate::dirs::create_private_dir(&dir).with_context(|| {
            format!(
                "cannot create the state directory `{}`; choose another with `--state-dir DIR`",
                dir.display()
            )
        })?;
        let lock = lock(&dir, name)?;
        let kv = SqliteKv::open(&dir.join("kv.db"), KvMetrics::default())?;
        eprintln!(
            "state: {} (kept across restarts; `--state-dir :memory:` keeps nothing)",
            kv.path().display()
        );
        Ok(State {
            backend: Some(Arc::new(kv)),
            _lock: Some(lock),
        })
    }
}

/// `$XDG_DATA_HOME/shoal/run/NAME`.
fn default_state_dir(name: &str) -> anyhow::Result<PathBuf> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        bail!(
            "the app name `{name}` cannot name a state directory; give `--name NAME` or `--state-dir DIR`"
        );
    }
    let Some(data) = crate::dirs::data_dir() else {
        bail!("no data directory (neither XDG_DATA_HOME nor HOME is set); give `--state-dir DIR`");
    };
    Ok(data.join("run").join(name))
}

/// Takes `DIR/lock` for this process, or says who holds it.
fn lock(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    let path = dir.join("lock");
    crate::dirs::create_private_file(&path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open `{}`", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another `shoal run` of `{name}` is using the state in `{}`; stop it first, or give this one another `--state-dir DIR` (or `--state-dir :memory:`)",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("cannot lock `{}`", path.display()))
        }
    }
}

impl Run {
    /// The ingress's TLS, if `--tls-cert` and `--tls-key` are given.
    fn tls(&self) -> anyhow::Result<Option<Arc<ServerTls>>> {
        Ok(match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(ServerTls::from_pem(
                cert,
                key,
                "`--tls-cert`, `--tls-key`",
            )?)),
            _ => None,
        })
    }
}

fn read_component(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.is_dir() {
        bail!(
            "`{}` is a directory; pass the component file, e.g. `{}/target/wasm32-wasip2/release/NAME.wasm`",
            path.display(),
            path.display()
        );
    }
    std::fs::read(path).with_context(|| {
        format!(
            "cannot read component `{}`; pass the path of a `.wasm` file built for `wasm32-wasip2`",
            path.display()
        )
    })
}

/// Compiles with a progress line on a terminal (a 20 MB component takes a
/// minute on two cores).
fn compile(runtime: &Runtime, bytes: &[u8], path: &Path) -> anyhow::Result<Compiled> {
    let _progress = Progress::start(format!(
        "compiling {} ({:.1} MB)",
        path.display(),
        bytes.len() as f64 / 1e6
    ));
    runtime
        .compile(bytes)
        .with_context(|| format!("cannot serve `{}`", path.display()))
}

fn app_name_from(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "app".into())
}
