//! An app: a compiled component with its policy and limits, serving each
//! request in a fresh instance in a fresh store.
//!
//! Two drivers serve requests, by the engine the component runs on: a
//! WASIp2 component on the plain engine through `plain.rs` (Shoal's own,
//! one direct call per request), anything on the concurrent engine through
//! `concurrent.rs` (wasmtime-wasi-http's `ProxyHandler`, told never to
//! reuse an instance). Both share what is here: admission, the store every
//! request gets, and how a failure becomes the error a client sees.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap};
use wasmtime_wasi_http::handler::ProxyHandler;

use crate::Body;
use crate::component::{Compiled, HandlerKind, Pre};
use crate::concurrent::Handler;
use crate::deadline::Deadlines;
use crate::engine::{EngineFlavor, Runtime};
use crate::error::RequestError;
use crate::guest_log::LogSink;
use crate::instance::StoreData;
use crate::limits::Limits;
use crate::policy::Policy;
use crate::scheduler::Admission;

/// How long past its deadline a request may take before the host stops
/// waiting for the guest to report it; the guest is stopped at the deadline.
pub(crate) const DEADLINE_GRACE: Duration = Duration::from_millis(500);

/// How long to wait for a failed guest's run to report why it failed.
pub(crate) const OUTCOME_WAIT: Duration = Duration::from_secs(1);

/// What an app is: its name, what it may do, and its limits.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The app's name, used in logs and errors.
    pub name: String,
    /// What the guest is granted.
    pub policy: Policy,
    /// What the guest may use.
    pub limits: Limits,
}

/// Live counters of an app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppStats {
    /// Instances running now.
    pub active: usize,
    /// Requests waiting for an instance now.
    pub queued: usize,
    /// Requests handled since the app was prepared.
    pub requests: u64,
    /// Of those, the ones that failed (any [`RequestError`]).
    pub failures: u64,
    /// Instances created since the app was prepared.
    pub instantiations: u64,
}

/// Counters shared by an app and its requests.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    failures: AtomicU64,
    instantiations: AtomicU64,
}

/// A component ready to serve requests under its policy and limits.
pub struct App {
    shared: Arc<Shared>,
    admission: Admission,
    driver: Driver,
    compiled: Compiled,
}

/// Who runs the guest of each request.
enum Driver {
    Plain(Arc<wasmtime_wasi_http::p2::bindings::ProxyPre<StoreData>>),
    Concurrent(ProxyHandler<Handler>),
}

/// What every request of an app needs, whichever driver serves it.
pub(crate) struct Shared {
    engine: wasmtime::Engine,
    pub(crate) deadlines: Arc<Deadlines>,
    pub(crate) app: Arc<str>,
    policy: Arc<Policy>,
    pub(crate) limits: Limits,
    sink: Arc<dyn LogSink>,
    counters: Counters,
}

impl Runtime {
    /// Makes an app of a compiled component. Cheap: the component was
    /// pre-instantiated by [`Runtime::compile`].
    pub fn prepare(&self, compiled: &Compiled, config: AppConfig, sink: Arc<dyn LogSink>) -> App {
        let limits = Limits {
            memory: config
                .limits
                .memory
                .min(self.config().max_memory_per_instance),
            ..config.limits
        };
        let engine = self
            .engines
            .get(compiled.flavor())
            .expect("the engine a component was compiled on exists")
            .engine
            .clone();
        let shared = Arc::new(Shared {
            engine,
            deadlines: self.deadlines.clone(),
            app: config.name.into(),
            policy: Arc::new(config.policy),
            limits,
            sink,
            counters: Counters::default(),
        });
        let driver = match &compiled.pre {
            Pre::Plain(pre) => Driver::Plain(pre.clone()),
            Pre::Concurrent(pre) => {
                Driver::Concurrent(ProxyHandler::new(Handler::new(shared.clone(), pre.clone())))
            }
        };
        App {
            admission: Admission::new(
                shared.limits.max_concurrency,
                shared.limits.max_queue,
                self.instance_slots.clone(),
            ),
            shared,
            driver,
            compiled: compiled.clone(),
        }
    }
}

impl App {
    /// The app's name.
    pub fn name(&self) -> &str {
        &self.shared.app
    }

    /// The component it runs.
    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// The handler the component exports.
    pub fn kind(&self) -> HandlerKind {
        self.compiled.kind()
    }

    /// The engine it runs on.
    pub fn flavor(&self) -> EngineFlavor {
        self.compiled.flavor()
    }

    /// The limits it runs under.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// Instances running and requests waiting now.
    pub fn stats(&self) -> AppStats {
        let counters = &self.shared.counters;
        AppStats {
            active: self.admission.active(),
            queued: self.admission.queued(),
            requests: counters.requests.load(Ordering::Relaxed),
            failures: counters.failures.load(Ordering::Relaxed),
            instantiations: counters.instantiations.load(Ordering::Relaxed),
        }
    }

    /// Serves one request in a fresh instance. The response body streams
    /// from the guest, which keeps running until it has written it all.
    ///
    /// The request's URI should be absolute (`http://host/path`) so the guest
    /// sees the scheme and authority the client used.
    pub async fn handle(
        &self,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, RequestError> {
        let counters = &self.shared.counters;
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let result = self.serve(request).await;
        if result.is_err() {
            counters.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn serve(
        &self,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, RequestError> {
        let started = Instant::now();
        let permit = self
            .admission
            .admit(self.shared.limits.timeout)
            .await
            .map_err(|_| RequestError::Overloaded {
                app: self.shared.app.to_string(),
            })?;
        let deadline = started + self.shared.limits.timeout;
        match &self.driver {
            Driver::Plain(pre) => {
                crate::plain::serve(&self.shared, pre, permit, request, deadline).await
            }
            Driver::Concurrent(handler) => {
                crate::concurrent::serve(handler, permit, request, deadline).await
            }
        }
    }
}

/// How a guest's run ended, as seen when its store was dropped.
pub(crate) struct Ended {
    pub(crate) error: Option<wasmtime::Error>,
    pub(crate) memory_limit_hit: bool,
}

impl Shared {
    /// A fresh store for one request, granting what the policy says.
    pub(crate) fn new_store(&self) -> Store<StoreData> {
        self.counters.instantiations.fetch_add(1, Ordering::Relaxed);
        let data = StoreData::new(&self.app, &self.policy, self.limits.memory, &self.sink);
        let mut store = Store::new(&self.engine, data);
        store.limiter(|data| &mut data.limiter);
        // Yield to the executor at every epoch tick: this is what keeps a
        // spinning guest from holding a core.
        store.epoch_deadline_async_yield_and_update(1);
        store.set_epoch_deadline(1);
        store
    }

    /// The request missed its deadline.
    pub(crate) fn timed_out(&self) -> RequestError {
        let error = RequestError::Timeout {
            app: self.app.to_string(),
            timeout: self.limits.timeout,
        };
        tracing::warn!(app = %self.app, kind = error.kind(), "request failed: deadline exceeded");
        error
    }

    /// Instantiating the guest failed with `error`.
    pub(crate) fn instantiation_failed(&self, error: &wasmtime::Error) -> RequestError {
        let app = self.app.to_string();
        let result = match describe(error) {
            Failure::Timeout => RequestError::Timeout {
                app,
                timeout: self.limits.timeout,
            },
            Failure::Trap(reason) => RequestError::Trap { app, reason },
            Failure::Other(reason) => RequestError::Instantiation { app, reason },
        };
        tracing::warn!(app = %self.app, kind = result.kind(), detail = format!("{error:?}"), "request failed: {result}");
        result
    }

    /// The guest failed with `error` (as its driver saw it) and its run
    /// ended as `ended`, if that is known: the error a client sees. The
    /// detail, which may include a wasm backtrace, goes to the log.
    pub(crate) fn failed(&self, error: &wasmtime::Error, ended: Option<&Ended>) -> RequestError {
        let app = self.app.to_string();
        let run_error = ended.and_then(|e| e.error.as_ref());
        let result = if ended.is_some_and(|e| e.memory_limit_hit) {
            RequestError::MemoryLimit {
                app,
                limit: self.limits.memory,
            }
        } else {
            let failure = match describe(error) {
                Failure::Other(_) => run_error.map(describe).unwrap_or_else(|| describe(error)),
                known => known,
            };
            match failure {
                Failure::Timeout => RequestError::Timeout {
                    app,
                    timeout: self.limits.timeout,
                },
                Failure::Trap(reason) => RequestError::Trap { app, reason },
                Failure::Other(reason) if reason.contains("response-outparam") => {
                    RequestError::NoResponse { app }
                }
                Failure::Other(reason) => RequestError::Trap { app, reason },
            }
        };
        let detail = format!("{:?}", run_error.unwrap_or(error));
        tracing::warn!(app = %self.app, kind = result.kind(), detail, "request failed: {result}");
        result
    }
}

enum Failure {
    Timeout,
    Trap(String),
    Other(String),
}

/// The short reason of a wasmtime error: the trap if there is one, else the
/// first line of its message.
fn describe(error: &wasmtime::Error) -> Failure {
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => Failure::Timeout,
            Trap::StackOverflow => Failure::Trap("stack overflow".into()),
            Trap::UnreachableCodeReached => {
                Failure::Trap("panic or abort (wasm `unreachable` reached)".into())
            }
            // Rust and C guests keep their stack in linear memory: running off
            // its end is the usual cause.
            Trap::MemoryOutOfBounds => {
                Failure::Trap("out-of-bounds memory access (likely a stack overflow)".into())
            }
            other => Failure::Trap(other.to_string()),
        };
    }
    let message = format!("{error:#}");
    let first = message.lines().next().unwrap_or_default().to_string();
    if first.contains("timed out") {
        Failure::Timeout
    } else {
        Failure::Other(first)
    }
}
