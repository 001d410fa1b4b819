//! Guest stdout and stderr, captured line by line and handed to a
//! [`LogSink`] tagged with the app.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Lines longer than this are cut into pieces, so a guest that never writes
/// a newline cannot grow host memory.
const MAX_LINE: usize = 16 * 1024;

/// Which guest stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestStream {
    /// `wasi:cli/stdout`.
    Stdout,
    /// `wasi:cli/stderr`.
    Stderr,
}

impl GuestStream {
    /// `"stdout"` or `"stderr"`.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestStream::Stdout => "stdout",
            GuestStream::Stderr => "stderr",
        }
    }
}

/// Where guest output lines go. The host implements it to keep a ring of
/// recent lines per app; [`TracingSink`] logs them.
pub trait LogSink: Send + Sync + 'static {
    /// One complete line (without its newline) written by a guest of `app`.
    fn line(&self, app: &str, stream: GuestStream, line: &str);
}

/// A [`LogSink`] that emits each line as a `tracing` event.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingSink;

impl LogSink for TracingSink {
    fn line(&self, app: &str, stream: GuestStream, line: &str) {
        tracing::info!(target: "shoal::guest", app, stream = stream.as_str(), "{line}");
    }
}

/// One instance's stdout or stderr: bytes are buffered until a newline.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    inner: Arc<Mutex<LineBuffer>>,
}

struct LineBuffer {
    app: Arc<str>,
    stream: GuestStream,
    sink: Arc<dyn LogSink>,
    buf: Vec<u8>,
}

impl LineBuffer {
    fn emit(&mut self, end: usize) {
        let line = String::from_utf8_lossy(&self.buf[..end]);
        let line = line.strip_suffix('\r').unwrap_or(&line);
        self.sink.line(&self.app, self.stream, line);
    }

    fn write(&mut self, mut bytes: &[u8]) {
        while let Some(i) = bytes.iter().position(|b| *b == b'\n') {
            self.buf.extend_from_slice(&bytes[..i]);
            self.emit(self.buf.len());
            self.buf.clear();
            bytes = &bytes[i + 1..];
        }
        self.buf.extend_from_slice(bytes);
        while self.buf.len() >= MAX_LINE {
            self.emit(MAX_LINE);
            self.buf.drain(..MAX_LINE);
        }
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.emit(self.buf.len());
        }
    }
}

impl GuestOutput {
    pub(crate) fn new(app: Arc<str>, stream: GuestStream, sink: Arc<dyn LogSink>) -> Self {
        GuestOutput {
            inner: Arc::new(Mutex::new(LineBuffer {
                app,
                stream,
                sink,
                buf: Vec::new(),
            })),
        }
    }

    fn write(&self, bytes: &[u8]) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(bytes);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);

    impl LogSink for Collect {
        fn line(&self, app: &str, stream: GuestStream, line: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{app} {} {line}", stream.as_str()));
        }
    }

    #[test]
    fn lines_are_split_buffered_and_flushed_on_drop() {
        let sink = Arc::new(Collect::default());
        let out = GuestOutput::new("a".into(), GuestStream::Stderr, sink.clone());
        out.write(b"hel");
        out.write(b"lo\r\nwor");
        out.write(b"ld\ntail");
        drop(out);
        let lines = sink.0.lock().unwrap().clone();
        assert_eq!(lines, ["a stderr hello", "a stderr world", "a stderr tail"]);
    }

    #[test]
    fn endless_lines_are_cut() {
        let sink = Arc::new(Collect::default());
        let out = GuestOutput::new("a".into(), GuestStream::Stdout, sink.clone());
        out.write(&vec![b'x'; MAX_LINE * 2 + 1]);
        assert_eq!(sink.0.lock().unwrap().len(), 2);
    }
}
