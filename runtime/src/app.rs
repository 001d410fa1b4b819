//! An app: a compiled component with its policy and limits, serving each
//! request in a fresh instance in a fresh store.
//!
//! Requests go through `wasmtime-wasi-http`'s `ProxyHandler`, which drives
//! both WASIp2 and WASIp3 guests; Shoal's worker state tells it never to
//! reuse an instance, so per-request isolation holds for both.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut, Trap};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, InstantiationError, ProxyHandler, ProxyPre,
    ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};

use crate::Body;
use crate::component::{Compiled, HandlerKind};
use crate::engine::Runtime;
use crate::error::RequestError;
use crate::guest_log::LogSink;
use crate::instance::StoreData;
use crate::limits::Limits;
use crate::policy::Policy;
use crate::scheduler::{Admission, Permit};

/// How long past its deadline a request may take before the host stops
/// waiting for the worker to report it; the worker kills the instance itself.
const DEADLINE_GRACE: Duration = Duration::from_millis(500);

/// How long to wait for a failed worker to report why it failed.
const OUTCOME_WAIT: Duration = Duration::from_secs(1);

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

/// Counters shared by an app and its workers.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    failures: AtomicU64,
    instantiations: AtomicU64,
}

/// A component ready to serve requests under its policy and limits.
pub struct App {
    handler: ProxyHandler<Handler>,
    admission: Admission,
    compiled: Compiled,
}

impl Runtime {
    /// Makes an app of a compiled component. Cheap: the component was
    /// pre-instantiated by [`Runtime::compile`].
    pub fn prepare(&self, compiled: &Compiled, config: AppConfig, sink: Arc<dyn LogSink>) -> App {
        let limits = Limits {
            memory: config
                .limits
                .memory
                .min(self.config.max_memory_per_instance),
            ..config.limits
        };
        App {
            admission: Admission::new(
                limits.max_concurrency,
                limits.max_queue,
                self.instance_slots.clone(),
            ),
            handler: ProxyHandler::new(Handler {
                pre: compiled.pre.clone(),
                engine: self.engine.clone(),
                app: config.name.into(),
                policy: Arc::new(config.policy),
                limits,
                sink,
                counters: Counters::default(),
            }),
            compiled: compiled.clone(),
        }
    }
}

impl App {
    /// The app's name.
    pub fn name(&self) -> &str {
        &self.handler.state().app
    }

    /// The component it runs.
    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// The handler the component exports.
    pub fn kind(&self) -> HandlerKind {
        self.compiled.kind()
    }

    /// The limits it runs under.
    pub fn limits(&self) -> &Limits {
        &self.handler.state().limits
    }

    /// Instances running and requests waiting now.
    pub fn stats(&self) -> AppStats {
        AppStats {
            active: self.admission.active(),
            queued: self.admission.queued(),
            requests: self
                .handler
                .state()
                .counters
                .requests
                .load(Ordering::Relaxed),
            failures: self
                .handler
                .state()
                .counters
                .failures
                .load(Ordering::Relaxed),
            instantiations: self
                .handler
                .state()
                .counters
                .instantiations
                .load(Ordering::Relaxed),
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
        let counters = &self.handler.state().counters;
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
        let state = self.handler.state();
        let timeout = state.limits.timeout;
        let permit = self
            .admission
            .admit(timeout)
            .await
            .map_err(|_| RequestError::Overloaded {
                app: state.app.to_string(),
            })?;
        let (outcome_tx, outcome_rx) = oneshot::channel();
        let ticket = Ticket {
            outcome: outcome_tx,
            _permit: permit,
        };
        let remaining = timeout.saturating_sub(started.elapsed()) + DEADLINE_GRACE;
        match tokio::time::timeout(remaining, self.handler.handle(ticket, request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(state.classify(error, outcome_rx).await),
            Err(_) => {
                let error = RequestError::Timeout {
                    app: state.app.to_string(),
                    timeout,
                };
                tracing::warn!(app = %state.app, kind = error.kind(), "request failed: deadline exceeded");
                Err(error)
            }
        }
    }
}

/// Travels with a request into its worker: the slot it holds, and where the
/// worker reports how it ended.
struct Ticket {
    outcome: oneshot::Sender<Outcome>,
    _permit: Permit,
}

/// How a worker ended, reported when its store is dropped.
struct Outcome {
    error: Option<wasmtime::Error>,
    memory_limit_hit: bool,
}

/// The `HandlerState` of one app: how to make a fresh instance.
struct Handler {
    pre: Arc<ProxyPre<StoreData>>,
    engine: wasmtime::Engine,
    app: Arc<str>,
    policy: Arc<Policy>,
    limits: Limits,
    sink: Arc<dyn LogSink>,
    counters: Counters,
}

impl HandlerState for Handler {
    type StoreData = StoreData;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<StoreData, Expiration, Worker>> {
        self.counters.instantiations.fetch_add(1, Ordering::Relaxed);
        let data = StoreData::new(&self.app, &self.policy, self.limits.memory, &self.sink);
        let mut store = Store::new(&self.engine, data);
        store.limiter(|data| &mut data.limiter);
        // Yield to the executor at every epoch tick: this is what keeps a
        // spinning guest from holding a core, and what lets deadlines fire.
        store.epoch_deadline_async_yield_and_update(1);
        store.set_epoch_deadline(1);
        let proxy =
            tokio::time::timeout(self.limits.timeout, self.pre.instantiate_async(&mut store))
                .await
                .map_err(|_| wasmtime::format_err!("guest timed out during instantiation"))??;
        Ok(Instance {
            store,
            proxy,
            view: WasiHttpView::http,
            expiration: Expiration {
                timeout: self.limits.timeout,
                sleep: Box::pin(tokio::time::sleep(self.limits.timeout)),
            },
            state: Worker {
                timeout: self.limits.timeout,
                ticket: Mutex::new(None),
            },
        })
    }
}

impl Handler {
    /// Turns a failed request into the error a client sees, and logs the
    /// detail (which may include a wasm backtrace) for the operator.
    async fn classify(
        &self,
        error: wasmtime::Error,
        outcome: oneshot::Receiver<Outcome>,
    ) -> RequestError {
        let app = self.app.to_string();
        let timeout = self.limits.timeout;
        let mut detail = None;
        let result = if error.is::<ExpirationError>() {
            RequestError::Timeout { app, timeout }
        } else if let Some(failed) = error.downcast_ref::<InstantiationError<Ticket>>() {
            match describe(&failed.error) {
                Failure::Timeout => RequestError::Timeout { app, timeout },
                Failure::Trap(reason) => RequestError::Trap { app, reason },
                Failure::Other(reason) => RequestError::Instantiation { app, reason },
            }
        } else {
            let outcome = tokio::time::timeout(OUTCOME_WAIT, outcome)
                .await
                .ok()
                .and_then(Result::ok);
            let worker_error = outcome.as_ref().and_then(|o| o.error.as_ref());
            detail = worker_error.map(|e| format!("{e:?}"));
            if outcome.as_ref().is_some_and(|o| o.memory_limit_hit) {
                RequestError::MemoryLimit {
                    app,
                    limit: self.limits.memory,
                }
            } else {
                let failure = match describe(&error) {
                    Failure::Other(_) => worker_error
                        .map(describe)
                        .unwrap_or_else(|| describe(&error)),
                    known => known,
                };
                match failure {
                    Failure::Timeout => RequestError::Timeout { app, timeout },
                    Failure::Trap(reason) => RequestError::Trap { app, reason },
                    Failure::Other(reason) if reason.contains("response-outparam") => {
                        RequestError::NoResponse { app }
                    }
                    Failure::Other(reason) => RequestError::Trap { app, reason },
                }
            }
        };
        let detail = detail.unwrap_or_else(|| format!("{error:?}"));
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

/// Tells the worker when its instance has outlived the request deadline.
/// It is polled from outside the store's event loop, so it fires even while
/// a guest spins.
struct Expiration {
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for Expiration {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        _status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let Some(deadline) = start.checked_add(self.timeout) else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

/// One instance, one request: the worker accepts its first request and no
/// other.
struct Worker {
    timeout: Duration,
    ticket: Mutex<Option<Ticket>>,
}

impl WorkerState for Worker {
    type StoreData = StoreData;
    type RequestData = Ticket;

    fn should_accept_request(&self, _concurrent: usize, total: usize) -> ShouldAccept {
        if total == 0 {
            ShouldAccept::Yes
        } else {
            ShouldAccept::Never
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, StoreData>,
        ticket: Ticket,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        *self.ticket.lock().unwrap_or_else(|e| e.into_inner()) = Some(ticket);
        Box::pin(tokio::time::sleep(self.timeout))
    }

    fn drop(&self, store: Store<StoreData>, result: wasmtime::Result<()>) {
        let memory_limit_hit = store.data().limiter.hit;
        // Drop the store (and so free the pool slot) before the permit.
        drop(store);
        if let Some(ticket) = self.ticket.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = ticket.outcome.send(Outcome {
                error: result.err(),
                memory_limit_hit,
            });
        }
    }
}
