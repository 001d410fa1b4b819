//! What a listener knows of one open connection ([`Entry`]), kept up to
//! date by the connection as it runs and read by the sweeper, and the
//! coarse [`Clock`] both read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::Notify;

/// How a connection is to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(super) enum Close {
    Open = 0,
    /// Finish what is in flight, then close (HTTP/2: GOAWAY).
    Gently = 1,
    /// Drop it now.
    Now = 2,
}

/// A coarse clock in milliseconds (never 0), advanced by the sweeper and
/// at each accept: reading it on the request path is one atomic load.
pub(super) struct Clock {
    pub(super) epoch: Instant,
    pub(super) now: AtomicU64,
}

impl Clock {
    pub(super) fn now(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }

    pub(super) fn tick(&self) -> u64 {
        let ms = self.epoch.elapsed().as_millis() as u64 + 1;
        self.now.fetch_max(ms, Ordering::Relaxed).max(ms)
    }
}

/// What a listener knows of one open connection. Times are [`Clock`]
/// milliseconds; 0 means "not set".
pub(crate) struct Entry {
    pub(super) clock: Arc<Clock>,
    /// Requests whose response body is not done.
    pub(super) in_flight: AtomicU32,
    /// When the connection was accepted or last fell idle.
    pub(super) since: AtomicU64,
    /// When the first byte arrived since it fell idle (HTTP/1.1: the next
    /// request head has begun).
    pub(super) head_since: AtomicU64,
    /// Whether a request head ever arrived, and whether it was HTTP/2.
    pub(super) served: AtomicBool,
    pub(super) h2: AtomicBool,
    /// Since when a write has waited on the client.
    pub(super) write_blocked: AtomicU64,
    pub(super) close: AtomicU8,
    pub(super) wake: Notify,
}

/// An entry as the sweeper reads it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Seen {
    pub(super) in_flight: u32,
    pub(super) since: u64,
    pub(super) head_since: u64,
    pub(super) served: bool,
    pub(super) h2: bool,
    pub(super) write_blocked: u64,
}

impl Entry {
    pub(super) fn new(clock: Arc<Clock>) -> Entry {
        let now = clock.now();
        Entry {
            clock,
            in_flight: AtomicU32::new(0),
            since: AtomicU64::new(now),
            head_since: AtomicU64::new(0),
            served: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            write_blocked: AtomicU64::new(0),
            close: AtomicU8::new(Close::Open as u8),
            wake: Notify::new(),
        }
    }

    pub(super) fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == 0
        {
            self.head_since.store(self.clock.now(), Ordering::Relaxed);
        }
    }

    pub(super) fn write_polled(&self, pending: bool) {
        let blocked = self.write_blocked.load(Ordering::Relaxed);
        if pending && blocked == 0 {
            self.write_blocked
                .store(self.clock.now(), Ordering::Relaxed);
        } else if !pending && blocked != 0 {
            self.write_blocked.store(0, Ordering::Relaxed);
        }
    }

    pub(super) fn request_done(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.head_since.store(0, Ordering::Relaxed);
            self.since.store(self.clock.now(), Ordering::Relaxed);
        }
    }

    /// Asks the connection to end (never less firmly than asked before).
    pub(super) fn close(&self, how: Close) {
        if self.close.fetch_max(how as u8, Ordering::AcqRel) < how as u8 {
            self.wake.notify_one();
        }
    }

    pub(super) fn closing(&self) -> Close {
        match self.close.load(Ordering::Acquire) {
            0 => Close::Open,
            1 => Close::Gently,
            _ => Close::Now,
        }
    }

    pub(super) fn seen(&self) -> Seen {
        Seen {
            in_flight: self.in_flight.load(Ordering::Acquire),
            since: self.since.load(Ordering::Relaxed),
            head_since: self.head_since.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
            h2: self.h2.load(Ordering::Relaxed),
            write_blocked: self.write_blocked.load(Ordering::Relaxed),
        }
    }
}
