//! The public HTTP server: accepts connections (HTTP/1.1 keep-alive and
//! h2c), resolves each request to an app, and streams bodies both ways.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use shoal_runtime::{Body, BodyError};
use tokio::net::TcpListener;

use crate::accept::{self, Listener};
use crate::connections::Limits;
use crate::mesh::forward::{Forwarder, HOP_HEADER};
use crate::metrics::Metrics;
use crate::respond::{plain, retry_later};
use crate::routes::{Resolve, Target};
use crate::shutdown::Shutdown;
use crate::tls::ServerTls;

/// Settings of the ingress.
#[derive(Clone)]
pub(crate) struct IngressConfig {
    /// Largest request body accepted, in bytes.
    pub max_request_body: u64,
    /// Where requests are counted, if anywhere.
    pub metrics: Option<Arc<Metrics>>,
    /// Where requests for apps served elsewhere go, in a mesh.
    pub forward: Option<Arc<Forwarder>>,
    /// TLS, if the ingress terminates it.
    pub tls: Option<Arc<ServerTls>>,
    /// Timeouts and the connection cap.
    pub limits: Limits,
}

/// Serves until `shutdown`, then stops accepting and waits for open
/// connections to finish their requests in flight (up to the drain limit).
pub(crate) async fn serve(
    listener: TcpListener,
    routes: Arc<dyn Resolve>,
    config: IngressConfig,
    shutdown: Shutdown,
) {
    let local = listener.local_addr().ok();
    let kind = Listener {
        name: "ingress",
        cap_flag: "--max-connections",
        limits: config.limits,
        tls: config.tls.clone(),
    };
    let config = Arc::new(config);
    let handler_for = move |_peer| {
        let routes = routes.clone();
        let config = config.clone();
        let served = std::cell::Cell::new(0u32);
        move |request| {
            let routes = routes.clone();
            let config = config.clone();
            served.set(served.get().wrapping_add(1));
            let turn_over = served.get().is_multiple_of(REQUESTS_PER_TURN);
            async move {
                if turn_over {
                    to_the_back_of_the_queue().await;
                }
                handle(request, &*routes, &config, local).await
            }
        }
    };
    accept::serve(listener, kind, handler_for, shutdown).await;
}

/// How many requests a connection is served back to back before its task
/// lets the others of its worker go first.
///
/// The executor checks for I/O after every poll (see `executor.rs`), and
/// tokio runs the task woken last before the ones queued earlier (its LIFO
/// slot). Under load, a keep-alive connection whose client answers fast is
/// woken, served and woken again while the rest wait: throughput is high,
/// but a few requests wait milliseconds. Yielding every 16th request bounds
/// that wait and keeps most of the throughput the LIFO slot gives
/// (bench/RESULTS.md has the trade-off as measured).
const REQUESTS_PER_TURN: u32 = 16;

/// Puts the current task at the back of its worker's run queue: a task that
/// wakes itself while polled is requeued as a yield, never into the LIFO
/// slot (`tokio::task::yield_now` defers the wake-up and lands there).
async fn to_the_back_of_the_queue() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}

/// No app is routed at the request's path. If a peer forwarded it here
/// (it carries the hop header), the peer believes this node serves it: this
/// node has not learned the app yet (it was just restarted or replaced at
/// the holder's address) or the peer has not learned its removal. If this
/// node may not know every app of the mesh yet (`forward` says it is
/// catching up), the app may exist elsewhere. Either settles within a
/// pull, so 503 + `Retry-After`; a 404 would tell the client the app does
/// not exist.
fn unrouted(request: &Request<Incoming>, forward: Option<&Forwarder>) -> Response<Body> {
    let path = request.uri().path();
    if request.headers().contains_key(HOP_HEADER) {
        return retry_later(format!(
            "no app is routed at {path} on this node yet, though a peer forwarded the request here; retry shortly\n"
        ));
    }
    if forward.is_some_and(Forwarder::catching_up) {
        return retry_later(format!(
            "no app is routed at {path} on this node yet, which is still learning the mesh's apps; retry shortly\n"
        ));
    }
    plain(
        StatusCode::NOT_FOUND,
        format!("no app is routed at {path}\n"),
    )
}

async fn handle(
    request: Request<Incoming>,
    routes: &dyn Resolve,
    config: &IngressConfig,
    local: Option<SocketAddr>,
) -> Response<Body> {
    let host = request_host(&request, local);
    let Some(resolved) = routes.resolve(host.as_deref(), request.uri().path()) else {
        return unrouted(&request, config.forward.as_deref());
    };
    if let Some(length) = content_length(&request)
        && length > config.max_request_body
    {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body of {length} bytes is over the limit of {} bytes\n",
                config.max_request_body
            ),
        );
    }
    let app = match resolved.target {
        Target::Local(app) => app,
        Target::Elsewhere {
            app: name,
            deadline,
        } => {
            let started = std::time::Instant::now();
            let response = match &config.forward {
                Some(forwarder) => forwarder.forward(&name, deadline, request).await,
                None => plain(
                    StatusCode::NOT_FOUND,
                    format!("app `{name}` is not served here\n"),
                ),
            };
            if let Some(metrics) = &config.metrics {
                metrics.forwarded(&name, response.status().as_u16(), started.elapsed());
            }
            return response;
        }
    };
    let request = match to_guest_request(
        request,
        host.as_deref(),
        resolved.strip_prefix.as_deref(),
        config.max_request_body,
    ) {
        Ok(request) => request,
        Err(reason) => return plain(StatusCode::BAD_REQUEST, format!("{reason}\n")),
    };
    let started = std::time::Instant::now();
    let response = match app.handle(request).await {
        Ok(response) => response,
        Err(error) => {
            let status =
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = plain(status, format!("{error}\n"));
            if let Some(secs) = error.retry_after() {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
    };
    if let Some(metrics) = &config.metrics {
        metrics.request(app.name(), response.status().as_u16(), started.elapsed());
    }
    response
}

/// The authority the client addressed: the URI's (HTTP/2), else the Host
/// header, else the address it connected to.
fn request_host<B>(request: &Request<B>, local: Option<SocketAddr>) -> Option<String> {
    request
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .or_else(|| local.map(|a| a.to_string()))
}

fn content_length<B>(request: &Request<B>) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Gives the guest an absolute URI with the scheme and authority the client
/// used, the route prefix stripped (and kept in `x-forwarded-prefix`), and a
/// body that fails once it passes the size limit.
fn to_guest_request(
    request: Request<Incoming>,
    host: Option<&str>,
    strip_prefix: Option<&str>,
    max_body: u64,
) -> Result<Request<Body>, String> {
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let path_and_query = match strip_prefix {
        Some(prefix) => {
            parts.headers.insert(
                "x-forwarded-prefix",
                HeaderValue::from_str(prefix).map_err(|e| e.to_string())?,
            );
            let rest = path_and_query
                .strip_prefix(prefix)
                .unwrap_or(path_and_query);
            if rest.starts_with('/') {
                rest.to_string()
            } else {
                format!("/{rest}")
            }
        }
        None => path_and_query.to_string(),
    };
    let mut uri = Uri::builder().scheme(parts.uri.scheme_str().unwrap_or("http"));
    if let Some(host) = host {
        uri = uri.authority(host);
    }
    parts.uri = uri
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| format!("invalid request target: {e}"))?;
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    let body = Limited::new(body, limit)
        .map_err(move |error| {
            if error.is::<LengthLimitError>() {
                BodyError::HttpRequestBodySize(Some(max_body))
            } else {
                match error.downcast::<hyper::Error>() {
                    Ok(error) => BodyError::from(*error),
                    Err(error) => BodyError::InternalError(Some(error.to_string())),
                }
            }
        })
        .boxed_unsync();
    Ok(Request::from_parts(parts, body))
}
