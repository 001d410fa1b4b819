//! Recent guest output per app: a bounded ring of lines for `shoal logs`,
//! and a broadcast for `shoal logs --follow`. Lines also go to the host log.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use shoal_runtime::{GuestStream, LogSink, TracingSink};
use tokio::sync::broadcast;

/// Lines kept per app.
const RING: usize = 1000;

#[derive(Default)]
pub(crate) struct LogBook {
    rings: Mutex<HashMap<String, Ring>>,
}

struct Ring {
    lines: VecDeque<Arc<str>>,
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
    /// The recent lines of `app`, and a receiver of the lines that follow.
    pub(crate) fn subscribe(&self, app: &str) -> (Vec<Arc<str>>, broadcast::Receiver<Arc<str>>) {
        let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        let ring = rings.entry(app.to_string()).or_insert_with(Ring::new);
        (ring.lines.iter().cloned().collect(), ring.tx.subscribe())
    }

    /// Drops the lines of a removed app.
    pub(crate) fn forget(&self, app: &str) {
        self.rings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app);
    }
}

impl LogSink for LogBook {
    fn line(&self, app: &str, stream: GuestStream, line: &str) {
        TracingSink.line(app, stream, line);
        let entry: Arc<str> = format!(
            "{} {} {line}",
            humantime::format_rfc3339_millis(SystemTime::now()),
            stream.as_str()
        )
        .into();
        let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        let ring = rings.entry(app.to_string()).or_insert_with(Ring::new);
        if ring.lines.len() == RING {
            ring.lines.pop_front();
        }
        ring.lines.push_back(entry.clone());
        let _ = ring.tx.send(entry);
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
}
