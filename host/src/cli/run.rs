//! `shoal run`: serve one component on one address, nothing stored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use shoal_runtime::{AppConfig, Compiled, DeniedAddrs, Runtime, RuntimeConfig, TracingSink};

use crate::cli::{AppFlags, ServerFlags};
use crate::compiler::ChildCompiler;
use crate::ingress::{self, IngressConfig};
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

    #[command(flatten)]
    app: AppFlags,

    #[command(flatten)]
    server: ServerFlags,
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
        let app = runtime.prepare(
            &compiled,
            AppConfig {
                name: name.clone(),
                policy: self.app.policy(&denied),
                limits: self.app.limits(),
                state: None,
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
        // Drop the runtime (and its engine) only after every request is done.
        drop(runtime);
        Ok(())
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
