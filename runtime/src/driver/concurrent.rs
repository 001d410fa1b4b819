//! The driver for components on the concurrent engine (WASIp3, and WASIp2
//! components that need component-model concurrency): wasmtime-wasi-http's
//! `ProxyHandler`, with a worker state that accepts exactly one request per
//! instance, so per-request isolation holds as on the plain engine.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, InstantiationError, ProxyHandler, ProxyPre,
    ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};

use super::shared::{DEADLINE_GRACE, Ended, OUTCOME_WAIT, Shared};
use crate::body::Body;
use crate::deadline::{Deadline, within};
use crate::error::RequestError;
use crate::instance::StoreData;
use crate::scheduler::Permit;

/// Serves one request through `handler`, holding `permit` until the
/// instance is gone; the guest must answer by `deadline`.
pub(crate) async fn serve(
    handler: &ProxyHandler<Handler>,
    permit: Permit,
    request: http::Request<Body>,
    deadline: Instant,
) -> Result<http::Response<Body>, RequestError> {
    let shared = &handler.state().shared;
    let (outcome_tx, outcome_rx) = oneshot::channel();
    let ticket = Ticket {
        outcome: outcome_tx,
        _permit: permit,
    };
    let give_up = shared.deadlines.at(deadline + DEADLINE_GRACE);
    match within(give_up, handler.handle(ticket, request)).await {
        Some(Ok(response)) => Ok(response),
        Some(Err(error)) => Err(classify(shared, error, outcome_rx).await),
        None => Err(shared.timed_out()),
    }
}

/// Turns a failed request into the error a client sees.
async fn classify(
    shared: &Shared,
    error: wasmtime::Error,
    outcome: oneshot::Receiver<Ended>,
) -> RequestError {
    if error.is::<ExpirationError>() {
        return shared.timed_out();
    }
    if let Some(failed) = error.downcast_ref::<InstantiationError<Ticket>>() {
        return shared.instantiation_failed(&failed.error);
    }
    let wait = shared.deadlines.at(Instant::now() + OUTCOME_WAIT);
    let ended = within(wait, outcome).await.and_then(Result::ok);
    shared.failed(&error, ended.as_ref())
}

/// Travels with a request into its worker: the slot it holds, and where the
/// worker reports how it ended.
pub(crate) struct Ticket {
    outcome: oneshot::Sender<Ended>,
    _permit: Permit,
}

/// The `HandlerState` of one app: how to make a fresh instance.
pub(crate) struct Handler {
    shared: Arc<Shared>,
    pre: Arc<ProxyPre<StoreData>>,
}

impl Handler {
    pub(crate) fn new(shared: Arc<Shared>, pre: Arc<ProxyPre<StoreData>>) -> Handler {
        Handler { shared, pre }
    }
}

impl HandlerState for Handler {
    type StoreData = StoreData;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<StoreData, Expiration, Worker>> {
        let shared = &self.shared;
        let timeout = shared.limits.timeout;
        let mut store = shared.new_store();
        let deadline = shared.deadlines.at(Instant::now() + timeout);
        let proxy = within(deadline, self.pre.instantiate_async(&mut store))
            .await
            .ok_or_else(|| wasmtime::format_err!("guest timed out during instantiation"))??;
        Ok(Instance {
            store,
            proxy,
            view: WasiHttpView::http,
            expiration: Expiration {
                timeout,
                deadline: shared.deadlines.at(Instant::now() + timeout),
            },
            state: Worker {
                shared: shared.clone(),
                ticket: Mutex::new(None),
            },
        })
    }
}

/// Tells the worker when its instance has outlived the request deadline.
/// It is polled from outside the store's event loop, so it fires even while
/// a guest spins.
pub(crate) struct Expiration {
    timeout: Duration,
    deadline: Deadline,
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
        self.deadline.reset(deadline);
        Pin::new(&mut self.deadline).poll(cx)
    }
}

/// One instance, one request: the worker accepts its first request and no
/// other.
pub(crate) struct Worker {
    shared: Arc<Shared>,
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
        let timeout = self.shared.limits.timeout;
        Box::pin(self.shared.deadlines.at(Instant::now() + timeout))
    }

    fn drop(&self, store: Store<StoreData>, result: wasmtime::Result<()>) {
        let memory_limit_hit = store.data().limiter.hit;
        // Drop the store (and so free the pool slot) before the permit.
        drop(store);
        if let Some(ticket) = self.ticket.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = ticket.outcome.send(Ended {
                error: result.err(),
                memory_limit_hit,
            });
        }
    }
}
