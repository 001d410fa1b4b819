//! An app: a compiled component with its policy and limits, serving each
//! request in a fresh instance in a fresh store.
//!
//! [`Runtime::prepare`] makes one; [`App::handle`] counts a request, admits
//! it (per-app slots and queue, then the host's pool), and hands it to the
//! app's driver (`driver/`), which runs the guest and turns its failures
//! into the errors a client sees.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::body::Body;
use crate::component::{Compiled, HandlerKind};
use crate::driver::Driver;
use crate::driver::shared::Shared;
use crate::engine::{EngineFlavor, Runtime};
use crate::error::RequestError;
use crate::guest_log::LogSink;
use crate::limits::Limits;
use crate::policy::Policy;
use crate::scheduler::Admission;
use crate::state::KvBackend;

/// What an app is: its name, what it may do, and its limits.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The app's name, used in logs and errors.
    pub name: String,
    /// What the guest is granted.
    pub policy: Policy,
    /// What the guest may use.
    pub limits: Limits,
    /// The key-value engine the app's granted stores live in; `None`
    /// makes every open an access-denied error.
    pub state: Option<Arc<dyn KvBackend>>,
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

/// A component ready to serve requests under its policy and limits.
pub struct App {
    shared: Arc<Shared>,
    admission: Admission,
    driver: Driver,
    compiled: Compiled,
}

impl Runtime {
    /// Makes an app of a compiled component. Cheap: the component was
    /// pre-instantiated by [`Runtime::compile`].
    pub fn prepare(&self, compiled: &Compiled, config: AppConfig, sink: Arc<dyn LogSink>) -> App {
        let cap = self.config().app_concurrency_cap() as usize;
        if config.limits.max_concurrency > cap {
            tracing::warn!(
                app = %config.name,
                asked = config.limits.max_concurrency,
                cap,
                "app asks for more instances than this host gives one app; clamped (raise the host's `--max-app-concurrency` to give it more)"
            );
        }
        let limits = Limits {
            memory: config
                .limits
                .memory
                .min(self.config().max_memory_per_instance),
            max_concurrency: config.limits.max_concurrency.min(cap),
            ..config.limits
        };
        let engine = self
            .engines
            .get(compiled.flavor())
            .expect("the engine a component was compiled on exists")
            .engine
            .clone();
        let shared = Arc::new(Shared::new(
            engine,
            self.deadlines.clone(),
            config.name.into(),
            config.policy,
            limits,
            config.state,
            sink,
        ));
        let driver = Driver::new(&compiled.pre, &shared);
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
        self.driver
            .serve(&self.shared, permit, request, deadline)
            .await
    }
}
