//! The driver for WASIp2 components on the plain engine: a fresh store, one
//! instantiation and one call of `wasi:http/incoming-handler.handle` per
//! request, with nothing of component-model concurrency in between.
//!
//! The guest runs in the task that asked for the response, not in one of
//! its own: it is driven until it sets the response head, and from then on
//! by the response body, each time the connection asks for the next piece
//! (the guest writes the body as it runs). This spares a task spawn and two
//! cross-task wake-ups per request. Should the connection stop reading
//! (client gone) or the body end while the guest still runs, the rest of
//! the run moves to a task of its own, so a guest is never cut short by its
//! client. The request's deadline covers instantiation, the handler and the
//! body; at the deadline the store is dropped, which stops the guest
//! wherever it is (a spinning guest yields at every epoch tick).
//!
//! `serve` runs the steps in order: `instantiate`, `start` (hand the
//! request to the guest and begin its run), `await_head`, `respond`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use wasmtime::Store;
use wasmtime::component::Resource;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

use super::shared::{DEADLINE_GRACE, Ended, OUTCOME_WAIT, Shared};
use crate::body::{Body, BodyError};
use crate::deadline::within;
use crate::error::RequestError;
use crate::instance::StoreData;
use crate::scheduler::Permit;

/// The guest's run: the call of its handler, then its store and its slot
/// given back. It completes with how the run ended.
type Run = Pin<Box<dyn Future<Output = Ended> + Send>>;

/// The response head as the guest set it.
type Head = Result<http::Response<Body>, ErrorCode>;

/// Where the guest's run stands.
enum Guest {
    /// Still running: whoever holds it drives it.
    Running(Run),
    /// Over, as it ended.
    Ended(Ended),
}

/// Serves one request in a fresh instance of `pre`, holding `permit` until
/// the instance is gone; the guest must be done by `deadline`.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    pre: &ProxyPre<StoreData>,
    permit: Permit,
    request: http::Request<Body>,
    deadline: Instant,
) -> Result<http::Response<Body>, RequestError> {
    let mut store = shared.new_store();
    let proxy = instantiate(shared, pre, &mut store, deadline).await?;
    let (run, head) = start(shared, store, proxy, request, permit, deadline)?;
    let (head, guest) = await_head(shared, run, head, deadline).await?;
    respond(shared, head, guest).await
}

/// A fresh instance of `pre` in `store`, made by the request's deadline.
async fn instantiate(
    shared: &Shared,
    pre: &ProxyPre<StoreData>,
    store: &mut Store<StoreData>,
    deadline: Instant,
) -> Result<Proxy, RequestError> {
    let instantiated = within(
        shared.deadlines.at(deadline),
        pre.instantiate_async(&mut *store),
    )
    .await;
    match instantiated {
        Some(Ok(proxy)) => Ok(proxy),
        Some(Err(error)) => Err(shared.instantiation_failed(&error)),
        None => Err(shared.timed_out()),
    }
}

/// Hands `request` to the guest and starts its run, which the caller
/// drives: the run, and where the response head will come from.
fn start(
    shared: &Arc<Shared>,
    mut store: Store<StoreData>,
    proxy: Proxy,
    request: http::Request<Body>,
    permit: Permit,
    deadline: Instant,
) -> Result<(Run, oneshot::Receiver<Head>), RequestError> {
    let (head_tx, head_rx) = oneshot::channel::<Head>();
    let answered = Arc::new(AtomicBool::new(false));
    let (request, outparam) = match hand_over(&mut store, request, head_tx, answered.clone()) {
        Ok(resources) => resources,
        Err(error) => {
            // The store (and so the pool slot) goes before the permit.
            drop(store);
            drop(permit);
            return Err(shared.instantiation_failed(&error));
        }
    };
    let shared = shared.clone();
    let run = async move {
        let call = proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, request, outparam);
        let result = within(shared.deadlines.at(deadline), call)
            .await
            .unwrap_or_else(|| Err(wasmtime::format_err!("guest timed out")));
        let memory_limit_hit = store.data().limiter.hit;
        // Drop the store (and so free the pool slot) before the permit.
        drop(store);
        drop(permit);
        if let Err(error) = &result
            && answered.load(Ordering::Relaxed)
        {
            // The request's error was decided by its head: this one
            // goes to the log only.
            tracing::warn!(app = %shared.app, detail = format!("{error:?}"), "guest failed after setting its response");
        }
        Ended {
            error: result.err(),
            memory_limit_hit,
        }
    };
    Ok((Box::pin(run), head_rx))
}

/// The guest's side of `request`: the incoming request, and the
/// response-outparam that sends the head the guest sets to `head` and
/// marks the request `answered`.
fn hand_over(
    store: &mut Store<StoreData>,
    request: http::Request<Body>,
    head: oneshot::Sender<Head>,
    answered: Arc<AtomicBool>,
) -> wasmtime::Result<(
    Resource<HostIncomingRequest>,
    Resource<HostResponseOutparam>,
)> {
    let scheme = match request.uri().scheme_str() {
        Some("https") => Scheme::Https,
        _ => Scheme::Http,
    };
    let mut http = store.data_mut().http();
    let request = http.new_incoming_request(scheme, request)?;
    let outparam = http.new_response_outparam_from_callback(move |response| {
        answered.store(true, Ordering::Relaxed);
        let _ = head.send(response);
    })?;
    Ok((request, outparam))
}

/// Drives the guest until it sets the response head (`Some`) or ends
/// without one (`None`), and gives up at the deadline and its grace.
async fn await_head(
    shared: &Shared,
    run: Run,
    mut head: oneshot::Receiver<Head>,
    deadline: Instant,
) -> Result<(Option<Head>, Guest), RequestError> {
    let mut guest = Guest::Running(run);
    let first = std::future::poll_fn(|cx| {
        if let Guest::Running(run) = &mut guest
            && let Poll::Ready(ended) = run.as_mut().poll(cx)
        {
            guest = Guest::Ended(ended);
        }
        match Pin::new(&mut head).poll(cx) {
            Poll::Ready(head) => Poll::Ready(head.ok()),
            Poll::Pending if matches!(guest, Guest::Ended(_)) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    });
    match within(shared.deadlines.at(deadline + DEADLINE_GRACE), first).await {
        Some(head) => Ok((head, guest)),
        None => Err(shared.timed_out()),
    }
}

/// What the client gets, given the head the guest set (if any) and where
/// its run stands: the response, its body driving the rest of the run, or
/// the error.
async fn respond(
    shared: &Shared,
    head: Option<Head>,
    guest: Guest,
) -> Result<http::Response<Body>, RequestError> {
    match head {
        Some(Ok(response)) => Ok(match guest {
            Guest::Running(run) => response.map(|body| GuestBody::new(body, run).boxed_unsync()),
            Guest::Ended(ended) if ended.error.is_some() => {
                response.map(|body| GuestBody::failed(body).boxed_unsync())
            }
            Guest::Ended(_) => response,
        }),
        Some(Err(code)) => {
            if let Guest::Running(run) = guest {
                detach(run);
            }
            Err(shared.failed(&code.into(), None))
        }
        None => Err(unanswered(shared, guest).await),
    }
}

/// The guest dropped its response-outparam, returned or trapped without
/// answering: its run says which.
async fn unanswered(shared: &Shared, guest: Guest) -> RequestError {
    let ended = match guest {
        Guest::Ended(ended) => Some(ended),
        Guest::Running(mut run) => {
            let wait = shared.deadlines.at(Instant::now() + OUTCOME_WAIT);
            let ended = within(wait, &mut run).await;
            if ended.is_none() {
                detach(run);
            }
            ended
        }
    };
    let unanswered = wasmtime::format_err!("guest never invoked `response-outparam::set`");
    let error = ended.as_ref().and_then(|e| e.error.as_ref());
    shared.failed(error.unwrap_or(&unanswered), ended.as_ref())
}

/// Lets the rest of a guest's run go on in a task of its own.
fn detach(run: Run) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(run);
    }
}

/// A response body that drives its guest's run as it is read.
struct GuestBody {
    body: Body,
    run: Option<Run>,
    /// The run ended with an error: the body is cut short, and ends in an
    /// error (the client sees an aborted response, not a truncated one).
    failed: bool,
}

impl GuestBody {
    fn new(body: Body, run: Run) -> GuestBody {
        GuestBody {
            body,
            run: Some(run),
            failed: false,
        }
    }

    fn failed(body: Body) -> GuestBody {
        GuestBody {
            body,
            run: None,
            failed: true,
        }
    }
}

impl http_body::Body for GuestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Some(run) = &mut this.run
            && let Poll::Ready(ended) = run.as_mut().poll(cx)
        {
            this.run = None;
            this.failed = ended.error.is_some();
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(None) if this.failed => Poll::Ready(Some(Err(BodyError::InternalError(
                Some("the guest failed while writing the response body".into()),
            )))),
            Poll::Ready(None) => {
                // The body is finished; the guest may still have work to do.
                if let Some(run) = this.run.take() {
                    detach(run);
                }
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream() && !self.failed
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for GuestBody {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            detach(run);
        }
    }
}
