//! The accept loop every HTTP listener of a host runs (the ingress and the
//! admin API): accept, back off when the process runs out of descriptors,
//! serve each connection (HTTP/1.1 keep-alive and h2c, or TLS with ALPN
//! when the listener has it) in a task of its own under its listener's
//! limits (`connections`), and on shutdown stop accepting and let open
//! connections finish, for a bounded time.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::{Join, Ready};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::{self, HttpServerConnExec};
use tokio::net::TcpListener;

use crate::connections::{self, Guard, Limits, Table, Tracked, Watched};
use crate::shutdown::Shutdown;
use crate::tls::{self, ServerTls};

/// What a listener is for, as its log lines name it, and its limits.
#[derive(Debug, Clone)]
pub(crate) struct Listener {
    pub name: &'static str,
    /// The flag that sets its connection cap, named when the cap is reached.
    pub cap_flag: &'static str,
    pub limits: Limits,
    /// TLS, if the listener terminates it; every request then carries
    /// [`tls::Encrypted`] in its extensions.
    pub tls: Option<Arc<ServerTls>>,
}

/// Serves connections from `listener` until `shutdown`. `handler_for` is
/// called once per connection with the peer's address and returns the
/// function that answers each of its requests.
pub(crate) async fn serve<H, F, B>(
    listener: TcpListener,
    kind: Listener,
    mut handler_for: impl FnMut(SocketAddr) -> H,
    mut shutdown: Shutdown,
) where
    H: Fn(Request<Incoming>) -> F + Send + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TokioExecutor: HttpServerConnExec<ServiceFuture<F, B>, Tracked<B>>,
{
    let table = Table::new(kind.name, kind.cap_flag, kind.limits);
    tracing::info!(
        listener = kind.name,
        max_connections = kind.limits.max_connections,
        header_read_timeout = ?kind.limits.header_read_timeout,
        idle_timeout = ?kind.limits.idle_timeout,
        "accepting connections"
    );
    let sweeper = tokio::spawn(table.clone().sweeper());
    let builder = builder(&kind.limits);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tokio::time::sleep(table.accept_failed(&error)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        let Some(registration) = table.admit(&stream) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler_for(peer);
        let (builder, tls, name) = (builder.clone(), kind.tls.clone(), kind.name);
        tokio::spawn(async move {
            // The handshake (bounded by its own timeout) runs here, never
            // in the accept loop.
            let stream = match tls::accept(stream, tls.as_deref()).await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(listener = name, %peer, %error, "TLS handshake failed");
                    return;
                }
            };
            let encrypted = stream.encrypted();
            let entry = registration.entry.clone();
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(encrypted);
                let guard = Guard::begin(&entry, request.version());
                let both = futures::future::join(handler(request), futures::future::ready(guard));
                futures::FutureExt::map(both, tracked as fn(_) -> _)
            });
            let io = TokioIo::new(Watched::new(stream, registration.entry.clone()));
            let connection = builder.serve_connection(io, service).into_owned();
            if let Some(Err(error)) = connections::drive(connection, &registration.entry).await {
                tracing::debug!(listener = name, %peer, %error, "connection ended with an error");
            }
        });
        table.settle().await;
    }
    drop(listener);
    table.drain().await;
    sweeper.abort();
}

/// hyper's settings for `limits`. HTTP/1.1's own header-read timer stays
/// off: it runs from the start of the wait for each head, idle time
/// included, so it would cut idle keep-alives at the header-read timeout;
/// the listener's sweeper bounds both apart.
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    let mut http2 = builder.http2();
    http2.timer(TokioTimer::new());
    if let Some(interval) = limits.http2_keep_alive {
        http2
            .keep_alive_interval(interval)
            .keep_alive_timeout(interval);
    }
    builder
}

/// A handler's future as hyper's services answer: never with an error
/// (failures are responses), the response body carrying its request's
/// [`Guard`].
pub(crate) type ServiceFuture<F, B> = futures::future::Map<
    Join<F, Ready<Guard>>,
    fn((Response<B>, Guard)) -> Result<Response<Tracked<B>>, Infallible>,
>;

fn tracked<B>((response, guard): (Response<B>, Guard)) -> Result<Response<Tracked<B>>, Infallible> {
    Ok(response.map(|body| Tracked::new(body, guard)))
}
