//! What both drivers share: `Shared`, what every request of an app needs
//! (its engine, deadlines, policy, limits, log sink and counters), the
//! fresh store each request gets, and how a failure becomes the error a
//! client sees.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::component::ResourceTableError;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use crate::deadline::Deadlines;
use crate::error::RequestError;
use crate::guest_log::{LineBudget, LogSink};
use crate::host_memory::MAX_TABLE_ENTRIES;
use crate::instance::StoreData;
use crate::limits::Limits;
use crate::policy::Policy;
use crate::state::{KvBackend, StateGrant};

/// How long past its deadline a request may take before the host stops
/// waiting for the guest to report it; the guest is stopped at the deadline.
pub(crate) const DEADLINE_GRACE: Duration = Duration::from_millis(500);

/// How long to wait for a failed guest's run to report why it failed.
pub(crate) const OUTCOME_WAIT: Duration = Duration::from_secs(1);

/// Counters shared by an app and its requests.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) instantiations: AtomicU64,
}

/// What every request of an app needs, whichever driver serves it.
pub(crate) struct Shared {
    engine: Engine,
    pub(crate) deadlines: Arc<Deadlines>,
    pub(crate) app: Arc<str>,
    policy: Arc<Policy>,
    /// The stores, engine and configuration its guests were granted.
    grant: Arc<StateGrant>,
    pub(crate) limits: Limits,
    sink: Arc<dyn LogSink>,
    /// The lines its guests may still log, shared by all its instances.
    budget: Arc<LineBudget>,
    pub(crate) counters: Counters,
}

/// How a guest's run ended, as seen when its store was dropped.
pub(crate) struct Ended {
    pub(crate) error: Option<wasmtime::Error>,
    pub(crate) memory_limit_hit: bool,
}

impl Shared {
    /// What the requests of app `app` share: stores of `engine`, granted
    /// `policy` (its key-value stores in `state`) and held to `limits`,
    /// with guest output going to `sink`.
    pub(crate) fn new(
        engine: Engine,
        deadlines: Arc<Deadlines>,
        app: Arc<str>,
        policy: Policy,
        limits: Limits,
        state: Option<Arc<dyn KvBackend>>,
        sink: Arc<dyn LogSink>,
    ) -> Shared {
        let grant = StateGrant::new(&app, &policy, &limits.kv, state);
        Shared {
            grant,
            engine,
            deadlines,
            app,
            policy: Arc::new(policy),
            limits,
            sink,
            budget: Arc::new(LineBudget::new()),
            counters: Counters::default(),
        }
    }

    /// A fresh store for one request, granting what the policy says.
    pub(crate) fn new_store(&self) -> Store<StoreData> {
        self.counters.instantiations.fetch_add(1, Ordering::Relaxed);
        let data = StoreData::new(
            &self.app,
            &self.policy,
            &self.grant,
            self.limits.memory,
            &self.sink,
            &self.budget,
        );
        let mut store = Store::new(&self.engine, data);
        store.limiter(|data| &mut data.limiter);
        // At every epoch tick, charge what the guest's resources hold on the
        // host to its memory limit (trapping it when over), and yield to the
        // executor: this is what keeps a spinning guest from holding a core.
        store.epoch_deadline_callback(|mut store| {
            if store.data_mut().charge_host_memory() {
                Ok(UpdateDeadline::Yield(1))
            } else {
                Err(wasmtime::format_err!(
                    "the guest's resources hold more host memory than its memory limit allows"
                ))
            }
        });
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
    let table_full = error.chain().any(|e| {
        matches!(
            e.downcast_ref::<ResourceTableError>(),
            Some(ResourceTableError::Full)
        )
    });
    if table_full {
        return Failure::Trap(format!(
            "it holds more than {MAX_TABLE_ENTRIES} resources at once"
        ));
    }
    let message = format!("{error:#}");
    let mut first = message.lines().next().unwrap_or_default().to_string();
    // A host call that failed inside the guest: its cause says what failed.
    if first.starts_with("error while executing at wasm backtrace") {
        first = error.root_cause().to_string();
    }
    if first.contains("timed out") {
        Failure::Timeout
    } else {
        Failure::Other(first)
    }
}
