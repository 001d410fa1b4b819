//! Guest stdout and stderr, captured line by line and handed to a
//! [`LogSink`] tagged with the app, at most [`LINES_PER_SECOND`] lines a
//! second per app (bursts of [`BURST`]); what is over is counted and
//! reported in one `[shoal] N lines dropped` line.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Lines longer than this are cut into pieces, so a guest that never writes
/// a newline cannot grow host memory.
const MAX_LINE: usize = 16 * 1024;

/// Lines a second the guests of one app may log, and how many more a
/// burst may take: a guest logging in a loop cannot flood the host's log,
/// its disk or `shoal logs`.
pub(crate) const LINES_PER_SECOND: u32 = 100;
/// See [`LINES_PER_SECOND`].
pub(crate) const BURST: u32 = 200;

/// How often at most the count of dropped lines is reported.
const NOTICE_EVERY: Duration = Duration::from_secs(1);

/// The lines the guests of one app may still log now: a token bucket
/// shared by all its instances, and the count of lines it refused and has
/// not reported yet (reported at most once every [`NOTICE_EVERY`], so the
/// notices cannot flood the log either).
pub(crate) struct LineBudget {
    bucket: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
    dropped: u64,
    noticed: Option<Instant>,
}

impl Bucket {
    /// The lines dropped since the last notice, if one is due now.
    fn notice(&mut self, now: Instant) -> u64 {
        let due = self
            .noticed
            .is_none_or(|at| now.saturating_duration_since(at) >= NOTICE_EVERY);
        if self.dropped == 0 || !due {
            return 0;
        }
        self.noticed = Some(now);
        std::mem::take(&mut self.dropped)
    }
}

/// What the budget says of one line.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    /// Over budget: the line is dropped (and counted).
    Refused,
    /// The line goes out, after a notice when `dropped` lines went before it.
    Line { dropped: u64 },
}

impl LineBudget {
    pub(crate) fn new() -> LineBudget {
        LineBudget {
            bucket: Mutex::new(Bucket {
                tokens: f64::from(BURST),
                at: Instant::now(),
                dropped: 0,
                noticed: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admit(&self, now: Instant) -> Admit {
        let mut bucket = self.lock();
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens =
            (bucket.tokens + elapsed * f64::from(LINES_PER_SECOND)).min(f64::from(BURST));
        bucket.at = now;
        if bucket.tokens < 1.0 {
            bucket.dropped += 1;
            return Admit::Refused;
        }
        bucket.tokens -= 1.0;
        Admit::Line {
            dropped: bucket.notice(now),
        }
    }

    /// Lines dropped and not reported yet, if a notice is due.
    fn take_dropped(&self, now: Instant) -> Option<u64> {
        Some(self.lock().notice(now)).filter(|&dropped| dropped > 0)
    }
}

/// The line that says how many lines the budget dropped.
fn dropped_notice(dropped: u64) -> String {
    format!(
        "[shoal] {dropped} lines dropped (guest output is limited to {LINES_PER_SECOND} lines a second per app)"
    )
}

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
    /// Lines over the app's budget never come here; a `[shoal] N lines
    /// dropped` line, in the same stream, says how many went.
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
    budget: Arc<LineBudget>,
    buf: Vec<u8>,
}

impl LineBuffer {
    fn emit(&mut self, end: usize) {
        let Admit::Line { dropped } = self.budget.admit(Instant::now()) else {
            return;
        };
        if dropped > 0 {
            self.sink
                .line(&self.app, self.stream, &dropped_notice(dropped));
        }
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
        // An instance that ends over budget reports its drops as soon as the
        // budget allows, not at the next line some later instance logs.
        if let Some(dropped) = self.budget.take_dropped(Instant::now()) {
            self.sink
                .line(&self.app, self.stream, &dropped_notice(dropped));
        }
    }
}

impl GuestOutput {
    pub(crate) fn new(
        app: Arc<str>,
        stream: GuestStream,
        sink: Arc<dyn LogSink>,
        budget: Arc<LineBudget>,
    ) -> Self {
        GuestOutput {
            inner: Arc::new(Mutex::new(LineBuffer {
                app,
                stream,
                sink,
                budget,
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
        let budget = Arc::new(LineBudget::new());
        let out = GuestOutput::new("a".into(), GuestStream::Stderr, sink.clone(), budget);
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
        let budget = Arc::new(LineBudget::new());
        let out = GuestOutput::new("a".into(), GuestStream::Stdout, sink.clone(), budget);
        out.write(&vec![b'x'; MAX_LINE * 2 + 1]);
        assert_eq!(sink.0.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_burst_passes_then_lines_are_dropped_and_counted_once() {
        let budget = LineBudget::new();
        let start = Instant::now();
        for _ in 0..BURST {
            assert_eq!(budget.admit(start), Admit::Line { dropped: 0 });
        }
        for _ in 0..50 {
            assert_eq!(budget.admit(start), Admit::Refused);
        }
        // A tenth of a second refills ten lines; the first says what went.
        let later = start + Duration::from_millis(100);
        assert_eq!(budget.admit(later), Admit::Line { dropped: 50 });
        assert_eq!(budget.admit(later), Admit::Line { dropped: 0 });
        assert_eq!(budget.take_dropped(later), None);
        // Drops are reported at most once a second, however the lines come.
        let mut now = later;
        for _ in 0..19 {
            now += Duration::from_millis(50);
            while budget.admit(now) != Admit::Refused {}
            assert_eq!(budget.take_dropped(now), None);
        }
        let second = later + NOTICE_EVERY;
        assert_eq!(budget.take_dropped(second), Some(19));
        assert_eq!(budget.take_dropped(second), None);
    }

    #[test]
    fn an_instance_ending_over_budget_reports_its_drops() {
        let sink = Arc::new(Collect::default());
        let budget = Arc::new(LineBudget::new());
        let out = GuestOutput::new(
            "a".into(),
            GuestStream::Stdout,
            sink.clone(),
            budget.clone(),
        );
        for i in 0..BURST + 30 {
            out.write(format!("line {i}\n").as_bytes());
        }
        assert_eq!(sink.0.lock().unwrap().len(), BURST as usize);
        drop(out);
        let lines = sink.0.lock().unwrap().clone();
        assert_eq!(lines.len(), BURST as usize + 1);
        assert!(
            lines.last().unwrap().contains("[shoal] 30 lines dropped"),
            "{lines:?}"
        );
    }
}
