//! The public HTTP server: accepts connections (HTTP/1.1 keep-alive and
//! h2c), resolves each request to an app, and streams bodies both ways.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use shoal_runtime::{App, Body, BodyError};
use tokio::net::TcpListener;

use crate::mesh::forward::Forwarder;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Who serves a route.
#[derive(Clone)]
pub(crate) enum Target {
    /// This node, with this app.
    Local(Arc<App>),
    /// Another node of the mesh: the app of this name.
    Elsewhere(Arc<str>),
}

/// Where a request goes.
pub(crate) struct Resolved {
    pub target: Target,
    /// A route prefix to strip from the path the guest sees.
    pub strip_prefix: Option<String>,
}

/// Maps a request's host and path to an app.
pub(crate) trait Resolve: Send + Sync + 'static {
    fn resolve(&self, host: Option<&str>, path: &str) -> Option<Resolved>;
}

/// Every request goes to one app, path unchanged (`shoal run`).
pub(crate) struct SingleApp(pub Arc<App>);

impl Resolve for SingleApp {
    fn resolve(&self, _host: Option<&str>, _path: &str) -> Option<Resolved> {
        Some(Resolved {
            target: Target::Local(self.0.clone()),
            strip_prefix: None,
        })
    }
}

/// Settings of the ingress.
#[derive(Clone)]
pub(crate) struct IngressConfig {
    /// Largest request body accepted, in bytes.
    pub max_request_body: u64,
    /// Where requests are counted, if anywhere.
    pub metrics: Option<Arc<Metrics>>,
    /// Where requests for apps served elsewhere go, in a mesh.
    pub forward: Option<Arc<Forwarder>>,
}

/// Serves until `shutdown`, then stops accepting and waits for every open
/// connection to finish its requests in flight.
pub(crate) async fn serve(
    listener: TcpListener,
    routes: Arc<dyn Resolve>,
    config: IngressConfig,
    mut shutdown: Shutdown,
) {
    let local = listener.local_addr().ok();
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let config = Arc::new(config);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        let config = config.clone();
        let served = std::cell::Cell::new(0u32);
        let service = hyper::service::service_fn(move |request| {
            let routes = routes.clone();
            let config = config.clone();
            served.set(served.get().wrapping_add(1));
            let turn_over = served.get().is_multiple_of(REQUESTS_PER_TURN);
            async move {
                if turn_over {
                    to_the_back_of_the_queue().await;
                }
                Ok::<_, Infallible>(handle(request, &*routes, &config, local).await)
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// How many requests a connection is served back to back before its task
/// lets the others of its worker go first.
///
/// The executor checks for I/O after every poll (see `executor.rs`), and
/// tokio runs the task woken last before the ones queued earlier (its LIFO
/// slot). Under load, a keep-alive connection whose client answers fast is
/// woken, served and woken again while the rest wait: throughput is high,
/// but a few requests wait milliseconds. Measured with `wrk -t2` on 2 cores
/// (hello, medians of 2 runs): never yielding, 51k req/s with p99 3.3 ms at
/// 8 connections and 14 ms at 64; yielding every request, 43k with 0.9 and
/// 4.0 ms; every 16th, 54k with 1.5 ms and 49k with 7.8 ms.
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

async fn handle(
    request: Request<Incoming>,
    routes: &dyn Resolve,
    config: &IngressConfig,
    local: Option<SocketAddr>,
) -> Response<Body> {
    let host = request_host(&request, local);
    let Some(resolved) = routes.resolve(host.as_deref(), request.uri().path()) else {
        return plain(
            StatusCode::NOT_FOUND,
            format!("no app is routed at {}\n", request.uri().path()),
        );
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
        Target::Elsewhere(name) => {
            let started = std::time::Instant::now();
            let response = match &config.forward {
                Some(forwarder) => forwarder.forward(&name, request).await,
                None => plain(
                    StatusCode::NOT_FOUND,
                    format!("app `{name}` is not served here\n"),
                ),
            };
            if let Some(metrics) = &config.metrics {
                metrics.request(&name, response.status().as_u16(), started.elapsed());
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

/// A short plain-text response, with whatever body error type the server
/// at hand uses.
pub(crate) fn plain<E: 'static>(
    status: StatusCode,
    text: impl Into<Bytes>,
) -> Response<http_body_util::combinators::UnsyncBoxBody<Bytes, E>> {
    let mut response = Response::new(
        Full::new(text.into())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
