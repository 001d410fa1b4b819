//! Forwarding: a request for an app this node does not serve goes to a
//! node that advertises it ready, picked by the power of two choices on
//! load (advertised load plus what this node has in flight to it). A
//! forwarded request carries [`HOP_HEADER`], the nodes it passed through;
//! it is forwarded at most [`MAX_HOPS`] times and never to a node it
//! passed, so requests cannot loop. The second hop only happens when
//! gossip lags: the first holder handed the app over a moment ago. An
//! ingress with TLS is reached over TLS, trusted by the certificate
//! fingerprint its member gossips (`pinned`).
//!
//! A forwarded request has the app's deadline plus a grace to finish,
//! head and body: a holder that stops answering (frozen, overloaded)
//! costs its requests 504 at that bound and is passed over for a while,
//! never a request hung for good. A holder the mesh declares dead (the
//! failure detector, ~2 s) costs the requests waiting on its answer a 504
//! at once, not at the app's deadline. Every failure to reach a holder
//! says `Retry-After`: another node may serve the next try. A request
//! with no body and an idempotent method whose connection failed (refused,
//! reset, closed before the answer) is sent once more, to another holder
//! if there is one, as a reverse proxy does (nginx's
//! `proxy_next_upstream error`): a pooled connection a holder closed, or a
//! holder that just let the app go, costs the client nothing.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Either, Empty};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use shoal_runtime::{Body, BodyError};
use tokio::sync::watch;

use crate::respond::{plain, retry_later};

use super::pinned::{self, Pins};
use super::readiness::{Holder, ReadyTable};

/// Marks a forwarded request: the nodes that forwarded it, comma-separated.
pub(crate) const HOP_HEADER: &str = "x-shoal-hop";
/// Forwards one request may take.
pub(crate) const MAX_HOPS: usize = 2;
/// How long a node that refused a connection, or let a request run out of
/// time, is passed over.
const SUSPECT_FOR: Duration = Duration::from_secs(3);
/// How long a request whose holder was declared dead still waits for an
/// answer already on its way.
const AFTER_DEATH: Duration = Duration::from_millis(250);

/// Counts kept for `/metrics`.
#[derive(Default)]
pub(crate) struct ForwardStats {
    pub forwarded: AtomicU64,
    pub failed: AtomicU64,
    pub no_holder: AtomicU64,
    /// Requests sent once more after their connection failed.
    pub retried: AtomicU64,
}

/// A forwarded request's bound: the app's deadline plus the grace.
#[derive(Debug, Clone, Copy)]
struct Bound {
    deadline: Duration,
    grace: Duration,
}

pub(crate) struct Forwarder {
    me: String,
    client: Client<HttpsConnector<HttpConnector>, Either<Incoming, Empty<Bytes>>>,
    /// The ingress certificates the client trusts, from the table.
    pins: Arc<Pins>,
    /// Who is ready for what; requests in flight watch it for their
    /// holder's death.
    table: watch::Sender<Arc<ReadyTable>>,
    /// Requests this node has in flight to each node.
    in_flight: Mutex<HashMap<String, Arc<AtomicU32>>>,
    /// Nodes that refused a connection, and when.
    suspects: Mutex<HashMap<String, Instant>>,
    /// State of the picker's random sequence.
    seed: AtomicU64,
    /// How much longer than the app's deadline a forwarded request may take.
    grace: Duration,
    pub stats: ForwardStats,
}

impl Forwarder {
    /// A forwarder for node `me`; `joining`: it is joining a mesh whose
    /// apps it may not know yet (see [`Forwarder::catching_up`]).
    pub(crate) fn new(me: String, grace: Duration, joining: bool) -> Forwarder {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.enforce_http(false);
        let pins = Arc::new(Pins::default());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(pinned::client_config(pins.clone()))
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        // xorshift must not start at zero.
        let seed = getrandom::u64().unwrap_or(0x9e37_79b9_7f4a_7c15) | 1;
        Forwarder {
            me,
            client,
            pins,
            table: watch::Sender::new(Arc::new(ReadyTable::empty(joining))),
            in_flight: Mutex::new(HashMap::new()),
            suspects: Mutex::new(HashMap::new()),
            seed: AtomicU64::new(seed),
            grace,
            stats: ForwardStats::default(),
        }
    }

    pub(crate) fn table(&self) -> Arc<ReadyTable> {
        self.table.borrow().clone()
    }

    /// Whether this node may not know every app of the mesh yet: a route
    /// it does not know then answers 503 with `Retry-After`, not 404.
    pub(crate) fn catching_up(&self) -> bool {
        self.table.borrow().catching_up()
    }

    pub(crate) fn set_table(&self, table: ReadyTable) {
        self.table.send_if_modified(|current| {
            if **current == table {
                return false;
            }
            self.pins.set(table.certs());
            *current = Arc::new(table);
            true
        });
    }

    fn random(&self) -> u64 {
        // xorshift64*: the picker needs spread, not secrecy.
        let mut x = self.seed.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.seed.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The counter of requests in flight to `node` (made on first use).
    fn in_flight(&self, node: &str) -> Arc<AtomicU32> {
        let mut counters = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(counter) = counters.get(node) {
            return counter.clone();
        }
        counters.entry(node.to_string()).or_default().clone()
    }

    /// Two random holders that are not suspect and were not passed
    /// through; the less loaded wins.
    fn pick(&self, app: &str, passed: &[&str]) -> Option<Holder> {
        let table = self.table();
        let suspects = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
        let holders: Vec<&Holder> = table
            .candidates(app)
            .iter()
            .filter(|h| {
                suspects
                    .get(&h.node)
                    .is_none_or(|t| t.elapsed() > SUSPECT_FOR)
            })
            .filter(|h| !passed.contains(&h.node.as_str()))
            .collect();
        drop(suspects);
        let counters = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let load = |h: &Holder| {
            h.load
                + counters
                    .get(&h.node)
                    .map_or(0, |c| c.load(Ordering::Relaxed))
        };
        match holders.len() {
            0 => None,
            1 => Some(holders[0].clone()),
            n => {
                let a = (self.random() % n as u64) as usize;
                let b = (a + 1 + (self.random() % (n as u64 - 1)) as usize) % n;
                let pick = if load(holders[a]) <= load(holders[b]) {
                    a
                } else {
                    b
                };
                Some(holders[pick].clone())
            }
        }
    }

    /// Sends `request` (for `app`, whose deadline is `deadline`) to a ready
    /// node and streams its answer back; without one, 503 with
    /// `Retry-After`; past the deadline and the grace, 504.
    pub(crate) async fn forward(
        &self,
        app: &str,
        deadline: Duration,
        request: Request<Incoming>,
    ) -> Response<Body> {
        let hops = request
            .headers()
            .get(HOP_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let passed: Vec<&str> = hops.split(',').filter(|h| !h.is_empty()).collect();
        if passed.len() >= MAX_HOPS || passed.contains(&self.me.as_str()) {
            self.stats.no_holder.fetch_add(1, Ordering::Relaxed);
            return retry_later(format!(
                "app `{app}` moved while this request was forwarded ({hops}); retry shortly\n"
            ));
        }
        let Some(holder) = self.pick(app, &passed) else {
            self.stats.no_holder.fetch_add(1, Ordering::Relaxed);
            return retry_later(format!(
                "app `{app}` has no ready instance in the mesh yet; retry shortly (`shoal ls` shows where it is placed)\n"
            ));
        };
        let chain = if passed.is_empty() {
            self.me.clone()
        } else {
            format!("{hops},{}", self.me)
        };
        let again = Replay::of(&request);
        let Some(request) = addressed_to(&holder, request.map(Either::Left), &chain) else {
            return plain(StatusCode::BAD_REQUEST, "invalid request target\n");
        };
        let bound = Bound {
            deadline,
            grace: self.grace,
        };
        let error = match self.send(app, &holder, request, bound).await {
            Ok(response) => return response,
            Err(error) => error,
        };
        let Some(again) = again else {
            return self.bad_gateway(app, &holder, &error);
        };
        // Once more: another holder if one is not suspect, else the same
        // one on a new connection (unless it refused one).
        let mut not = passed.clone();
        not.push(&holder.node);
        let retry = self
            .pick(app, &not)
            .or_else(|| (!error.is_connect()).then(|| holder.clone()));
        let Some(retry) = retry else {
            return self.bad_gateway(app, &holder, &error);
        };
        let Some(request) = addressed_to(&retry, again.request(), &chain) else {
            return self.bad_gateway(app, &holder, &error);
        };
        tracing::debug!(app, failed = %holder.node, to = %retry.node, error = %error, "forwarding failed; sent once more");
        self.stats.retried.fetch_add(1, Ordering::Relaxed);
        match self.send(app, &retry, request, bound).await {
            Ok(response) => response,
            Err(error) => self.bad_gateway(app, &retry, &error),
        }
    }

    fn suspect(&self, node: &str) {
        self.suspects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.to_string(), Instant::now());
    }

    /// Sends a request addressed to `holder`, counting it in flight: its
    /// answer, or 504 if it ran out of time or the holder died; `Err` if
    /// the connection failed (see [`Forwarder::bad_gateway`]).
    async fn send(
        &self,
        app: &str,
        holder: &Holder,
        request: Request<Either<Incoming, Empty<Bytes>>>,
        bound: Bound,
    ) -> Result<Response<Body>, hyper_util::client::legacy::Error> {
        let until = tokio::time::Instant::now() + bound.deadline + bound.grace;
        let in_flight = self.in_flight(&holder.node);
        in_flight.fetch_add(1, Ordering::Relaxed);
        let tables = self.table.subscribe();
        let request = self.client.request(request);
        let result = answer_or_death(request, until, tables, &holder.node).await;
        in_flight.fetch_sub(1, Ordering::Relaxed);
        let error = match result {
            Some(Ok(Ok(response))) => {
                self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                let until = Box::pin(tokio::time::sleep_until(until));
                return Ok(response.map(|body| Bounded { body, until }.boxed_unsync()));
            }
            Some(Ok(Err(error))) => error,
            Some(Err(_)) => return Ok(self.timed_out(app, holder, bound)),
            None => return Ok(self.lost(app, holder)),
        };
        if error.is_connect() {
            self.suspect(&holder.node);
        }
        Err(error)
    }

    /// 502 with `Retry-After` for a request whose connection to `holder`
    /// failed.
    fn bad_gateway(
        &self,
        app: &str,
        holder: &Holder,
        error: &hyper_util::client::legacy::Error,
    ) -> Response<Body> {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(app, node = %holder.node, error = %error, "forwarding failed");
        let mut response = plain(
            StatusCode::BAD_GATEWAY,
            format!(
                "app `{app}` is served by node `{}`, which did not answer ({error}); retry\n",
                holder.node
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(1));
        response
    }

    /// 504 for a request `holder` did not answer in time; the holder is
    /// passed over for a while (a node whose own deadline fired would have
    /// answered 504 itself, so this one is frozen or swamped).
    fn timed_out(&self, app: &str, holder: &Holder, bound: Bound) -> Response<Body> {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        self.suspect(&holder.node);
        tracing::warn!(app, node = %holder.node, deadline = ?bound.deadline, grace = ?bound.grace, "forwarded request timed out");
        gateway_timeout(format!(
            "app `{app}` is served by node `{}`, which did not answer within the app's {:?} deadline and {:?} of grace; retry\n",
            holder.node, bound.deadline, bound.grace
        ))
    }

    /// 504 for a request whose holder the mesh declared dead before it
    /// answered (frozen, cut off or gone); it may still have run there.
    fn lost(&self, app: &str, holder: &Holder) -> Response<Body> {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        self.suspect(&holder.node);
        tracing::warn!(app, node = %holder.node, "the holder of a forwarded request was declared dead before it answered");
        gateway_timeout(format!(
            "app `{app}` is served by node `{}`, which stopped answering and was declared dead while this request waited (it may have run there); retry\n",
            holder.node
        ))
    }
}

/// 504 with `Retry-After: 1`: the next try goes to another node.
fn gateway_timeout(text: String) -> Response<Body> {
    let mut response = plain(StatusCode::GATEWAY_TIMEOUT, text);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(1));
    response
}

/// The answer to `request` by `until` (`Err` past it), or `None` if the
/// mesh declares `node` dead first and no answer follows within
/// [`AFTER_DEATH`]: an answer already on its way still counts (a node
/// thawed from a freeze counts its peers dead for a moment).
async fn answer_or_death<T>(
    request: impl Future<Output = T>,
    until: tokio::time::Instant,
    mut tables: watch::Receiver<Arc<ReadyTable>>,
    node: &str,
) -> Option<Result<T, tokio::time::error::Elapsed>> {
    let mut request = std::pin::pin!(request);
    tokio::select! {
        biased;
        result = tokio::time::timeout_at(until, &mut request) => return Some(result),
        () = declared_dead(&mut tables, node) => {}
    }
    let after = until.min(tokio::time::Instant::now() + AFTER_DEATH);
    tokio::time::timeout_at(after, request).await.ok().map(Ok)
}

/// Resolves once `tables` no longer count `node` live: the failure
/// detector declared it dead. Never, if the tables stop coming.
async fn declared_dead(tables: &mut watch::Receiver<Arc<ReadyTable>>, node: &str) {
    loop {
        if !tables.borrow_and_update().is_live(node) {
            return;
        }
        if tables.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// A forwarded response body that fails once its request's time is up, so
/// a holder that stops mid-body cannot hold the client's connection.
struct Bounded {
    body: Incoming,
    until: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Bounded {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::from)));
        }
        match self.until.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::HttpResponseTimeout))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// What it takes to send a request again: its head, kept only for a
/// request with no body and an idempotent method (RFC 9110, 9.2.2).
struct Replay {
    method: http::Method,
    uri: Uri,
    version: http::Version,
    headers: http::HeaderMap,
}

impl Replay {
    fn of(request: &Request<Incoming>) -> Option<Replay> {
        let idempotent = request.method().is_idempotent();
        (idempotent && http_body::Body::is_end_stream(request.body())).then(|| Replay {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers: request.headers().clone(),
        })
    }

    fn request(self) -> Request<Either<Incoming, Empty<Bytes>>> {
        let mut request = Request::new(Either::Right(Empty::new()));
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers;
        request
    }
}

/// `request` rewritten for `holder`'s ingress: its address in the URI, the
/// client's authority kept as `Host` (routes may use it), HTTP/1.1, and
/// `chain` as the hop header. `None` if the target cannot be rebuilt.
fn addressed_to<B>(holder: &Holder, request: Request<B>, chain: &str) -> Option<Request<B>> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = Uri::builder()
        .scheme(if holder.cert.is_some() {
            "https"
        } else {
            "http"
        })
        .authority(holder.ingress.to_string())
        .path_and_query(path)
        .build()
        .ok()?;
    if !parts.headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(header::HOST, value);
    }
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    if let Ok(chain) = HeaderValue::from_str(chain) {
        parts.headers.insert(HOP_HEADER, chain);
    }
    Some(Request::from_parts(parts, body))
}
