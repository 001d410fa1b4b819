//! Running one request of an app in a fresh instance, by the engine its
//! component runs on: a WASIp2 component on the plain engine through
//! `plain.rs` (Shoal's own, one direct call per request), anything on the
//! concurrent engine through `concurrent.rs` (wasmtime-wasi-http's
//! `ProxyHandler`, told never to reuse an instance). What both share (the
//! store every request gets, and how a failure becomes the error a client
//! sees) is in `shared.rs`, below them.

mod concurrent;
mod plain;
pub(crate) mod shared;

use std::sync::Arc;
use std::time::Instant;

use wasmtime_wasi_http::handler::ProxyHandler;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use self::concurrent::Handler;
use self::shared::Shared;
use crate::body::Body;
use crate::component::Pre;
use crate::error::RequestError;
use crate::instance::StoreData;
use crate::scheduler::Permit;

/// Who runs the guest of each request of an app.
pub(crate) enum Driver {
    /// A WASIp2 component on the plain engine.
    Plain(Arc<ProxyPre<StoreData>>),
    /// A component on the concurrent engine.
    Concurrent(ProxyHandler<Handler>),
}

impl Driver {
    /// The driver of a component pre-instantiated as `pre`, for the
    /// requests that share `shared`.
    pub(crate) fn new(pre: &Pre, shared: &Arc<Shared>) -> Driver {
        match pre {
            Pre::Plain(pre) => Driver::Plain(pre.clone()),
            Pre::Concurrent(pre) => {
                Driver::Concurrent(ProxyHandler::new(Handler::new(shared.clone(), pre.clone())))
            }
        }
    }

    /// Serves one admitted request, holding `permit` until its instance is
    /// gone; the guest must be done by `deadline`.
    pub(crate) async fn serve(
        &self,
        shared: &Arc<Shared>,
        permit: Permit,
        request: http::Request<Body>,
        deadline: Instant,
    ) -> Result<http::Response<Body>, RequestError> {
        match self {
            Driver::Plain(pre) => plain::serve(shared, pre, permit, request, deadline).await,
            Driver::Concurrent(handler) => {
                concurrent::serve(handler, permit, request, deadline).await
            }
        }
    }
}
