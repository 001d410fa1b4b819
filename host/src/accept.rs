//! The accept loop every HTTP listener of a host runs (the ingress and the
//! admin API): accept, back off when the process runs out of descriptors,
//! serve each connection (HTTP/1.1 keep-alive and h2c, or TLS with ALPN
//! when the listener has it) in a task of its own, and on shutdown stop
//! accepting and let open connections finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::{self, HttpServerConnExec};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;
use crate::tls::{self, ServerTls};

/// How long a failed accept (out of file descriptors and the like) waits
/// before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// What a listener is for, as its log lines name it.
#[derive(Debug, Clone)]
pub(crate) struct Listener {
    pub name: &'static str,
    /// How long open connections may take to finish after shutdown
    /// begins; `None` waits for all of them.
    pub drain: Option<Duration>,
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
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TokioExecutor: HttpServerConnExec<ServiceFuture<F, B>, B>,
{
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(listener = kind.name, %error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler_for(peer);
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), kind.tls.clone());
        let name = kind.name;
        tokio::spawn(async move {
            // The handshake runs here, never in the accept loop.
            let stream = match tls::accept(stream, tls.as_deref()).await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(listener = name, %peer, %error, "TLS handshake failed");
                    return;
                }
            };
            let encrypted = stream.encrypted();
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(encrypted);
                futures::FutureExt::map(handler(request), infallible as fn(_) -> _)
            });
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(listener = name, %peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    match kind.drain {
        Some(limit) => {
            if tokio::time::timeout(limit, graceful.shutdown())
                .await
                .is_err()
            {
                tracing::info!(
                    listener = kind.name,
                    ?limit,
                    "connections still open after the drain limit; closing them"
                );
            }
        }
        None => graceful.shutdown().await,
    }
}

/// A handler's future as hyper's services answer: never with an error
/// (failures are responses).
pub(crate) type ServiceFuture<F, B> =
    futures::future::Map<F, fn(Response<B>) -> Result<Response<B>, Infallible>>;

fn infallible<B>(response: Response<B>) -> Result<Response<B>, Infallible> {
    Ok(response)
}
