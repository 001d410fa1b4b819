//! Resolving a destination, connecting to addresses already checked, TLS
//! under the name the guest used, and one HTTP/1.1 exchange with the
//! guest's timeouts.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

/// What `Outbound::send` resolves to: the response head and body, and the
/// future that drives the connection after the head.
pub(crate) type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
);

/// The default bound on connecting and on waiting for the response, as
/// wasmtime's own client has it; a guest may set shorter ones, and its
/// deadline bounds the whole exchange anyway.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Where a request goes, as its URI names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Destination {
    /// The host, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl Destination {
    /// The destination of `uri`, or `None` if it names no host.
    pub(crate) fn of(uri: &http::Uri) -> Option<Destination> {
        let host = uri.host().filter(|h| !h.is_empty())?;
        let tls = uri.scheme() == Some(&Scheme::HTTPS);
        Some(Destination {
            host: host.trim_matches(['[', ']']).to_string(),
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            tls,
        })
    }

    /// The address itself when the host is an IP literal.
    pub(super) fn literal(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.host.parse().ok()?;
        Some(SocketAddr::new(ip, self.port))
    }
}

/// The addresses `dest`'s host resolves to, within `timeout`.
pub(super) async fn resolve(
    dest: &Destination,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, HttpError> {
    let lookup = tokio::net::lookup_host((dest.host.as_str(), dest.port));
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(timeout, lookup).await {
        Err(_) => return Err(HttpError::DnsTimeout),
        Ok(Err(error)) => {
            tracing::debug!(host = %dest.host, %error, "outbound name lookup failed");
            return Err(dns_error());
        }
        Ok(Ok(addrs)) => addrs.collect(),
    };
    if addrs.is_empty() {
        return Err(dns_error());
    }
    Ok(addrs)
}

/// What a guest sees when a name does not resolve (as wasmtime's own
/// client reports it).
fn dns_error() -> HttpError {
    HttpError::DnsError {
        rcode: Some("address not available".to_string()),
        info_code: None,
    }
}

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// Connects to the first of `addrs` that answers, then sends `request`.
pub(super) async fn send(
    dest: &Destination,
    addrs: &[SocketAddr],
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    connect_timeout: Duration,
) -> Result<Sent, HttpError> {
    let tcp = tokio::time::timeout(connect_timeout, first_to_answer(addrs))
        .await
        .map_err(|_| HttpError::ConnectionTimeout)??;
    let stream: Box<dyn Stream> = if dest.tls {
        Box::new(tls(dest, tcp).await?)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    // The request line carries only the path; the authority went into
    // `Host` when the request was made.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = http::Uri::try_from(path).map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let first_byte = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let between_bytes = options
        .and_then(|o| o.between_bytes_timeout)
        .unwrap_or(DEFAULT_TIMEOUT)
        .max(Duration::from_nanos(1));
    let mut conn = Some(Box::pin(conn));
    let exchange = tokio::time::timeout(first_byte, sender.send_request(request));
    let mut exchange = std::pin::pin!(exchange);
    // Drive the connection while waiting for the head; a connection that
    // fails first ends the exchange with its error.
    let response = std::future::poll_fn(|cx| {
        loop {
            if let Poll::Ready(result) = exchange.as_mut().poll(cx) {
                return Poll::Ready(result.map_err(|_| HttpError::ConnectionReadTimeout));
            }
            let Some(running) = conn.as_mut() else {
                return Poll::Pending;
            };
            match running.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Ok(Err(error))),
                // Closed cleanly: the exchange has its answer now.
                Poll::Ready(Ok(())) => conn = None,
            }
        }
    })
    .await??;
    let response = response.map(|incoming| {
        TimedBody {
            incoming,
            between_bytes,
            timer: Box::pin(tokio::time::sleep(between_bytes)),
        }
        .boxed_unsync()
    });
    let io = async move {
        let Some(conn) = conn else { return Ok(()) };
        conn.await.map_err(|error| {
            if error.is_timeout() {
                HttpError::HttpResponseTimeout
            } else {
                HttpError::from(error)
            }
        })
    };
    Ok((response, Box::new(io)))
}

/// Tries each address in order; the error of the last if none answers.
async fn first_to_answer(addrs: &[SocketAddr]) -> Result<TcpStream, HttpError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last = Some(error),
        }
    }
    Err(match last {
        Some(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
            HttpError::ConnectionRefused
        }
        Some(error) => HttpError::Connect(error),
        None => dns_error(),
    })
}

/// The root certificates outbound TLS trusts (the Mozilla set webpki ships).
static TLS_CONFIG: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
});

/// TLS over `tcp`, verifying the certificate against the name the guest
/// used (or its IP literal), not the address connected to.
async fn tls(
    dest: &Destination,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, HttpError> {
    use rustls::pki_types::ServerName;
    let name = match dest.host.parse::<std::net::IpAddr>() {
        Ok(ip) => ServerName::from(ip),
        Err(_) => ServerName::try_from(dest.host.clone()).map_err(|_| {
            HttpError::InternalError(Some(format!("`{}` is not a valid TLS name", dest.host)))
        })?,
    };
    tokio_rustls::TlsConnector::from(TLS_CONFIG.clone())
        .connect(name, tcp)
        .await
        .map_err(HttpError::Tls)
}

/// A response body that fails when the upstream is silent longer than the
/// guest's `between-bytes-timeout`.
struct TimedBody {
    incoming: hyper::body::Incoming,
    between_bytes: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.between_bytes;
                self.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) if error.is_timeout() => {
                Poll::Ready(Some(Err(HttpError::HttpResponseTimeout)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(self.timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_destination_is_read_from_the_uri() {
        let dest = |s: &str| Destination::of(&s.parse().unwrap());
        assert_eq!(
            dest("https://Example.com/x"),
            Some(Destination {
                host: "Example.com".into(),
                port: 443,
                tls: true
            })
        );
        let v6 = dest("http://[::1]:9000/").unwrap();
        assert_eq!((v6.host.as_str(), v6.port, v6.tls), ("::1", 9000, false));
        assert_eq!(v6.literal(), Some("[::1]:9000".parse().unwrap()));
        assert_eq!(dest("http://localhost/").unwrap().literal(), None);
        assert_eq!(dest("/relative"), None);
    }
}
