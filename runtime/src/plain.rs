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

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};

use crate::app::{DEADLINE_GRACE, Ended, OUTCOME_WAIT, Shared};
use crate::deadline::within;
use crate::error::RequestError;
use crate::instance::StoreData;
use crate::scheduler::Permit;
use crate::{Body, BodyError};

/// The guest's run: the call of its handler, then its store and its slot
/// given back. It completes with how the run ended.
type Run = Pin<Box<dyn Future<Output = Ended> + Send>>;

/// The response head as the guest set it.
type Head = Result<http::Response<Body>, ErrorCode>;

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
    let instantiated = within(
        shared.deadlines.at(deadline),
        pre.instantiate_async(&mut store),
    )
    .await;
    let proxy = match instantiated {
        Some(Ok(proxy)) => proxy,
        Some(Err(error)) => return Err(shared.instantiation_failed(&error)),
        None => return Err(shared.timed_out()),
    };
    let scheme = match request.uri().scheme_str() {
        Some("https") => Scheme::Https,
        _ => Scheme::Http,
    };
    let (head_tx, mut head_rx) = oneshot::channel::<Head>();
    let answered = Arc::new(AtomicBool::new(false));
    let resources = {
        let mut http = store.data_mut().http();
        let answered = answered.clone();
        http.new_incoming_request(scheme, request)
            .and_then(|request| {
                let outparam = http.new_response_outparam_from_callback(move |head| {
                    answered.store(true, Ordering::Relaxed);
                    let _ = head_tx.send(head);
                })?;
                Ok((request, outparam))
            })
    };
    let (request, outparam) = match resources {
        Ok(resources) => resources,
        Err(error) => return Err(shared.instantiation_failed(&error)),
    };
    let mut run: Option<Run> = Some(Box::pin({
        let shared = shared.clone();
        async move {
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
        }
    }));

    // Drive the guest until it sets the head or ends.
    let mut ended = None;
    let first = std::future::poll_fn(|cx| {
        if let Some(pending) = &mut run
            && let Poll::Ready(end) = pending.as_mut().poll(cx)
        {
            run = None;
            ended = Some(end);
        }
        match Pin::new(&mut head_rx).poll(cx) {
            Poll::Ready(head) => Poll::Ready(head.ok()),
            Poll::Pending if ended.is_some() => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    });
    let head = match within(shared.deadlines.at(deadline + DEADLINE_GRACE), first).await {
        Some(head) => head,
        None => return Err(shared.timed_out()),
    };
    match head {
        Some(Ok(response)) => Ok(match run {
            Some(run) => response.map(|body| GuestBody::new(body, run).boxed_unsync()),
            None if ended.is_some_and(|e| e.error.is_some()) => {
                response.map(|body| GuestBody::failed(body).boxed_unsync())
            }
            None => response,
        }),
        Some(Err(code)) => {
            detach(run);
            Err(shared.failed(&code.into(), None))
        }
        // The guest dropped its response-outparam, returned or trapped
        // without answering: its run says which.
        None => {
            let ended = match (ended, run) {
                (Some(ended), _) => Some(ended),
                (None, Some(mut run)) => {
                    let wait = shared.deadlines.at(Instant::now() + OUTCOME_WAIT);
                    let ended = within(wait, &mut run).await;
                    if ended.is_none() {
                        detach(Some(run));
                    }
                    ended
                }
                (None, None) => None,
            };
            let unanswered = wasmtime::format_err!("guest never invoked `response-outparam::set`");
            let error = ended.as_ref().and_then(|e| e.error.as_ref());
            Err(shared.failed(error.unwrap_or(&unanswered), ended.as_ref()))
        }
    }
}

/// Lets the rest of a guest's run go on in a task of its own.
fn detach(run: Option<Run>) {
    if let Some(run) = run
        && let Ok(runtime) = tokio::runtime::Handle::try_current()
    {
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
                detach(this.run.take());
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
        detach(self.run.take());
    }
}
