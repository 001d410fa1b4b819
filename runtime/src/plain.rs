//! The driver for WASIp2 components on the plain engine: a fresh store, one
//! instantiation and one call of `wasi:http/incoming-handler.handle` per
//! request, with nothing of component-model concurrency in between.
//!
//! The guest runs in a task of its own: it sets the response head and then
//! keeps running while it writes the body, which streams to the client as
//! it comes. The request's deadline covers instantiation, the handler and
//! the body; at the deadline the task drops the store, which stops the
//! guest wherever it is (a spinning guest yields at every epoch tick).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::Body;
use crate::app::{DEADLINE_GRACE, Ended, OUTCOME_WAIT, Shared};
use crate::deadline::within;
use crate::error::RequestError;
use crate::instance::StoreData;
use crate::scheduler::Permit;

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
    let (head_tx, head_rx) = oneshot::channel();
    let resources = {
        let mut http = store.data_mut().http();
        http.new_incoming_request(scheme, request)
            .and_then(|request| Ok((request, http.new_response_outparam(head_tx)?)))
    };
    let (request, outparam) = match resources {
        Ok(resources) => resources,
        Err(error) => return Err(shared.instantiation_failed(&error)),
    };
    let (ended_tx, ended_rx) = oneshot::channel();
    let run = {
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
                && ended_tx.is_closed()
            {
                // The head was sent (or the client left): nobody else hears of it.
                tracing::warn!(app = %shared.app, detail = format!("{error:?}"), "guest failed after its response head was sent");
            }
            let _ = ended_tx.send(Ended {
                error: result.err(),
                memory_limit_hit,
            });
        }
    };
    tokio::spawn(run);
    match within(shared.deadlines.at(deadline + DEADLINE_GRACE), head_rx).await {
        Some(Ok(Ok(response))) => Ok(response),
        Some(Ok(Err(code))) => Err(shared.failed(&code.into(), None)),
        // The guest dropped its response-outparam, returned or trapped
        // without answering: its run says which.
        Some(Err(_)) => {
            let wait = shared.deadlines.at(Instant::now() + OUTCOME_WAIT);
            match within(wait, ended_rx).await.and_then(Result::ok) {
                Some(ended) => match &ended.error {
                    Some(error) => Err(shared.failed(error, Some(&ended))),
                    None => Err(shared.failed(
                        &wasmtime::format_err!("guest never invoked `response-outparam::set`"),
                        None,
                    )),
                },
                None => Err(shared.failed(
                    &wasmtime::format_err!("guest dropped its response-outparam unset"),
                    None,
                )),
            }
        }
        None => Err(shared.timed_out()),
    }
}
