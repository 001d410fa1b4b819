//! The connection a listener serves: plain TCP, or TLS over it once the
//! handshake is done. A listener with TLS that also takes plaintext tells
//! the two apart by the first byte (a TLS record of a handshake is 0x16;
//! an HTTP request starts with a method's letter).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::server::ServerTls;

/// How long a client may take to send its first byte and finish the TLS
/// handshake; a stalled handshake holds no more than a socket this long.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Whether a request came over TLS: put in every request's extensions by
/// the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Encrypted(pub bool);

/// A connection, plain or with TLS.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    pub(crate) fn encrypted(&self) -> Encrypted {
        Encrypted(matches!(self, Stream::Tls(_)))
    }
}

/// Turns an accepted connection into the stream to serve: as it is
/// without `tls`, else after the handshake (or as it is, if the listener
/// takes plaintext too and the client did not start one).
pub(crate) async fn accept(stream: TcpStream, tls: Option<&ServerTls>) -> io::Result<Stream> {
    let Some(tls) = tls else {
        return Ok(Stream::Plain(stream));
    };
    let handshake = async {
        if tls.plaintext_too {
            let mut first = [0u8; 1];
            let read = stream.peek(&mut first).await?;
            if read == 0 || first[0] != TLS_HANDSHAKE {
                return Ok(Stream::Plain(stream));
            }
        }
        let stream = tls.acceptor.accept(stream).await?;
        Ok(Stream::Tls(Box::new(stream)))
    };
    tokio::time::timeout(HANDSHAKE, handshake)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the TLS handshake took too long"))?
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
