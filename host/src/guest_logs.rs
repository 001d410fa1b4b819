//! Recent guest output per app: a bounded ring of lines for `shoal logs`,
//! and a broadcast for `shoal logs --follow`. Lines also go to the host log.
//! Every line gets a sequence number, growing over the whole book for the
//! life of the process, so a reader (the dashboard's gatherer) asks for the
//! lines after the last one it saw ([`LogBook::after`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use shoal_runtime::{GuestStream, LogSink, TracingSink};
use tokio::sync::broadcast;

/// Lines kept per app.
const RING: usize = 1000;

/// One guest line as the dashboard reads it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct LogLine {
    pub app: String,
    pub seq: u64,
    pub at_ms: u64,
    /// The stream (`stdout`, `stderr`) and the line, as `shoal logs` shows it.
    pub text: String,
}

#[derive(Default)]
pub(crate) struct LogBook {
    rings: Mutex<Rings>,
}

#[derive(Default)]
struct Rings {
    by_app: HashMap<String, Ring>,
    /// The sequence number of the last line written.
    seq: u64,
}

struct Entry {
    seq: u64,
    at_ms: u64,
    /// As `shoal logs` prints it: time, stream, line.
    shown: Arc<str>,
    /// Stream and line, without the time.
    text: Arc<str>,
}

struct Ring {
    lines: VecDeque<Entry>,
    tx: broadcast::Sender<Arc<str>>,
}

impl Ring {
    fn new() -> Ring {
        Ring {
            lines: VecDeque::new(),
            tx: broadcast::channel(256).0,
        }
    }
}

impl LogBook {
    fn rings(&self) -> std::sync::MutexGuard<'_, Rings> {
        self.rings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The recent lines of `app`, and a receiver of the lines that follow.
    pub(crate) fn subscribe(&self, app: &str) -> (Vec<Arc<str>>, broadcast::Receiver<Arc<str>>) {
        let mut rings = self.rings();
        let ring = rings
            .by_app
            .entry(app.to_string())
            .or_insert_with(Ring::new);
        (
            ring.lines.iter().map(|e| e.shown.clone()).collect(),
            ring.tx.subscribe(),
        )
    }

    /// The sequence number of the last line written (0: none yet).
    pub(crate) fn last_seq(&self) -> u64 {
        self.rings().seq
    }

    /// Every app's lines numbered after `seq`, at most `per_app` of each
    /// (its newest), oldest first.
    pub(crate) fn after(&self, seq: u64, per_app: usize) -> Vec<LogLine> {
        let rings = self.rings();
        let mut lines = Vec::new();
        for (app, ring) in &rings.by_app {
            let newer = ring.lines.iter().rev().take_while(|e| e.seq > seq);
            let mut mine: Vec<LogLine> = newer
                .take(per_app)
                .map(|e| LogLine {
                    app: app.clone(),
                    seq: e.seq,
                    at_ms: e.at_ms,
                    text: e.text.to_string(),
                })
                .collect();
            mine.reverse();
            lines.extend(mine);
        }
        lines.sort_by_key(|l| l.seq);
        lines
    }

    /// Drops the lines of a removed app.
    pub(crate) fn forget(&self, app: &str) {
        self.rings().by_app.remove(app);
    }
}

impl LogSink for LogBook {
    fn line(&self, app: &str, stream: GuestStream, line: &str) {
        TracingSink.line(app, stream, line);
        let now = SystemTime::now();
        let at_ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let text: Arc<str> = format!("{} {line}", stream.as_str()).into();
        let shown: Arc<str> = format!("{} {text}", humantime::format_rfc3339_millis(now)).into();
        let mut rings = self.rings();
        rings.seq += 1;
        let seq = rings.seq;
        let ring = rings
            .by_app
            .entry(app.to_string())
            .or_insert_with(Ring::new);
        if ring.lines.len() == RING {
            ring.lines.pop_front();
        }
        ring.lines.push_back(Entry {
            seq,
            at_ms,
            shown: shown.clone(),
            text,
        });
        let _ = ring.tx.send(shown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_is_bounded_and_followers_see_new_lines() {
        let book = LogBook::default();
        for i in 0..RING + 5 {
            book.line("a", GuestStream::Stdout, &format!("line {i}"));
        }
        let (recent, mut rx) = book.subscribe("a");
        assert_eq!(recent.len(), RING);
        assert!(recent[0].ends_with("stdout line 5"));
        book.line("a", GuestStream::Stderr, "next");
        assert!(rx.try_recv().unwrap().ends_with("stderr next"));
    }

    #[test]
    fn lines_are_numbered_across_apps_and_read_after_a_number() {
        let book = LogBook::default();
        book.line("a", GuestStream::Stdout, "one");
        book.line("b", GuestStream::Stderr, "two");
        book.line("a", GuestStream::Stdout, "three");
        assert_eq!(book.last_seq(), 3);
        let all = book.after(0, 10);
        let seqs: Vec<(u64, &str, &str)> = all
            .iter()
            .map(|l| (l.seq, l.app.as_str(), l.text.as_str()))
            .collect();
        assert_eq!(
            seqs,
            [
                (1, "a", "stdout one"),
                (2, "b", "stderr two"),
                (3, "a", "stdout three")
            ]
        );
        let later = book.after(1, 10);
        assert_eq!(later.iter().map(|l| l.seq).collect::<Vec<_>>(), [2, 3]);
        let newest = book.after(0, 1);
        assert_eq!(newest.iter().map(|l| l.seq).collect::<Vec<_>>(), [2, 3]);
        assert!(book.after(3, 10).is_empty());
    }
}
