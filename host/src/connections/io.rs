//! What a connection reports to its [`Entry`] as it runs: the socket
//! ([`Watched`]: bytes of a new request head arriving, writes blocked on a
//! client that does not read) and each request ([`Guard`], carried by the
//! response body as [`Tracked`] until the body is done). Each report is a
//! relaxed atomic store or less: no timer and no lock on the request path.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::entry::Entry;

/// A socket whose reads and writes are reported to its entry.
pub(crate) struct Watched<T> {
    io: T,
    entry: Arc<Entry>,
}

impl<T> Watched<T> {
    pub(crate) fn new(io: T, entry: Arc<Entry>) -> Watched<T> {
        Watched { io, entry }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.entry.bytes_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.entry.write_polled(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.entry.write_polled(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// One request in flight on a connection, from its head until its
/// response body is done (or dropped).
pub(crate) struct Guard(Arc<Entry>);

impl Guard {
    /// Counts a request whose head has arrived.
    pub(crate) fn begin(entry: &Arc<Entry>, version: http::Version) -> Guard {
        entry.served.store(true, Ordering::Relaxed);
        if version == http::Version::HTTP_2 {
            entry.h2.store(true, Ordering::Relaxed);
        }
        entry.in_flight.fetch_add(1, Ordering::Relaxed);
        Guard(entry.clone())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.request_done();
    }
}

/// A response body that keeps its request counted until it is done.
pub(crate) struct Tracked<B> {
    body: B,
    _guard: Guard,
}

impl<B> Tracked<B> {
    pub(crate) fn new(body: B, guard: Guard) -> Tracked<B> {
        Tracked {
            body,
            _guard: guard,
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
