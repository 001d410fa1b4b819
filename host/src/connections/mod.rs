//! The open connections of one listener, and the limits on them: a cap on
//! how many are open at once, how long a client may take to send a request
//! head, how long a connection may sit idle, and how long shutdown waits
//! for them to finish.
//!
//! Every connection has an [`Entry`] in its listener's [`Table`]; the
//! connection reports to it as it runs (`io`), and one sweeper task per
//! listener closes what has outstayed its limit, every quarter of the
//! shortest timeout. So no connection arms a timer of its own: tokio keeps
//! every timer of a runtime behind one lock, and re-arming one per request
//! would contend. At the cap, a new connection evicts the oldest one that
//! has no request in flight (half-sent heads first), so a flood of idle or
//! half-sent connections cannot lock out a client that sends a request; only
//! when every connection is busy is the new one refused with 503.

mod entry;
mod io;

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hyper_util::server::graceful::GracefulConnection;
use slab::Slab;
use tokio::sync::Notify;

pub(crate) use entry::Entry;
use entry::{Clock, Close, Seen};
pub(crate) use io::{Guard, Tracked, Watched};

/// The limits of one listener's connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// From accept (or from the first byte after a response) to a complete
    /// request head.
    pub header_read_timeout: Duration,
    /// How long a connection with no request in flight stays open; also how
    /// long a write may wait on a client that does not read.
    pub idle_timeout: Duration,
    /// Interval of HTTP/2 pings (a peer that does not answer one within the
    /// interval is gone); `None` sends none.
    pub http2_keep_alive: Option<Duration>,
    /// Connections open at once.
    pub max_connections: usize,
    /// How long open connections may take to finish once shutdown begins.
    pub drain: Duration,
}

/// Why the sweeper closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// No complete request head within the header-read timeout.
    Head,
    /// Nothing in flight for the idle timeout.
    Idle,
    /// A write waited the idle timeout on a client that does not read.
    Stalled,
}

/// Whether a connection seen as `seen` at `now` has outstayed a limit.
fn verdict(seen: &Seen, now: u64, header_ms: u64, idle_ms: u64) -> Option<(Close, Reason)> {
    let past = |since: u64, limit: u64| since != 0 && now.saturating_sub(since) >= limit;
    if seen.in_flight > 0 {
        return past(seen.write_blocked, idle_ms).then_some((Close::Now, Reason::Stalled));
    }
    if !seen.served {
        return past(seen.since, header_ms).then_some((Close::Now, Reason::Head));
    }
    if !seen.h2 && seen.head_since != 0 {
        return past(seen.head_since, header_ms).then_some((Close::Now, Reason::Head));
    }
    past(seen.since, idle_ms).then_some((Close::Gently, Reason::Idle))
}

/// How willingly a connection gives way to a new one at the cap: `None`
/// while a request is in flight; half-sent heads before idle keep-alives,
/// the oldest first.
fn victim_rank(seen: &Seen) -> Option<(u8, u64)> {
    if seen.in_flight > 0 {
        return None;
    }
    let half_sent = !seen.served || (!seen.h2 && seen.head_since != 0);
    Some((u8::from(!half_sent), seen.since))
}

/// Evictions and refusals since the cap was reached.
#[derive(Default)]
struct Burst {
    since: Option<Instant>,
    evicted: u64,
    refused: u64,
}

/// Failed accepts in a row (the process out of descriptors, most often).
#[derive(Default)]
struct Failing {
    since: Option<Instant>,
    count: u64,
}

struct Inner {
    entries: Slab<Arc<Entry>>,
    /// Connections that may be evicted, best first, as of the last sweep.
    victims: VecDeque<Arc<Entry>>,
    /// A rescan since the last sweep found no victim: do not rescan.
    exhausted: bool,
    burst: Burst,
    failing: Failing,
}

/// The open connections of one listener.
pub(crate) struct Table {
    name: &'static str,
    /// The flag that raises the cap, for the log line.
    cap_flag: &'static str,
    limits: Limits,
    clock: Arc<Clock>,
    inner: Mutex<Inner>,
    /// Notified whenever a connection goes.
    gone: Notify,
}

/// A connection's place in its table, given up on drop.
pub(crate) struct Registration {
    table: Arc<Table>,
    key: usize,
    pub entry: Arc<Entry>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Gone: a stale list of victims must not count it as evictable.
        self.entry.close.store(Close::Now as u8, Ordering::Release);
        let mut inner = self.table.lock();
        inner.entries.try_remove(self.key);
        drop(inner);
        self.table.gone.notify_waiters();
    }
}

/// The answer to a connection refused at the cap.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 40\r\n\r\ntoo many connections; retry in a moment\n";
/// Longest wait between accepts that fail.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long connections told to close at once may take to go.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// How long the accept loop waits for an evicted connection to go.
const SETTLE: Duration = Duration::from_millis(100);

impl Table {
    pub(crate) fn new(name: &'static str, cap_flag: &'static str, limits: Limits) -> Arc<Table> {
        let clock = Arc::new(Clock {
            epoch: Instant::now(),
            now: AtomicU64::new(1),
        });
        Arc::new(Table {
            name,
            cap_flag,
            limits,
            clock,
            inner: Mutex::new(Inner {
                entries: Slab::new(),
                victims: VecDeque::new(),
                exhausted: false,
                burst: Burst::default(),
                failing: Failing::default(),
            }),
            gone: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open connections.
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Registers a connection just accepted; at the cap, evicts one with
    /// nothing in flight, or refuses (answering 503) when all are busy.
    pub(crate) fn admit(self: &Arc<Self>, stream: &tokio::net::TcpStream) -> Option<Registration> {
        self.clock.tick();
        let mut inner = self.lock();
        end_failing(self.name, &mut inner.failing);
        if inner.entries.len() >= self.limits.max_connections {
            let evicted = self.evict(&mut inner);
            self.note_cap(&mut inner, evicted);
            if !evicted {
                drop(inner);
                let _ = stream.try_write(REFUSED);
                return None;
            }
        }
        let entry = Arc::new(Entry::new(self.clock.clone()));
        let key = inner.entries.insert(entry.clone());
        Some(Registration {
            table: self.clone(),
            key,
            entry,
        })
    }

    /// An accept failed: frees a descriptor if the process ran out (by
    /// evicting an idle connection), logs once per streak, and returns how
    /// long to wait before the next accept (doubling, up to a second).
    pub(crate) fn accept_failed(&self, error: &std::io::Error) -> Duration {
        let mut inner = self.lock();
        let out_of_files = matches!(error.raw_os_error(), Some(23 | 24)); // ENFILE, EMFILE
        if out_of_files {
            self.evict(&mut inner);
        }
        let open = inner.entries.len();
        let failing = &mut inner.failing;
        if failing.since.is_none() {
            failing.since = Some(Instant::now());
            tracing::warn!(
                listener = self.name,
                %error,
                open,
                "cannot accept connections; backing off (if out of files, raise `ulimit -n` or lower `{}`)",
                self.cap_flag
            );
        }
        failing.count += 1;
        let backoff = Duration::from_millis(10) * 2u32.saturating_pow(failing.count.min(16) as u32);
        backoff.min(MAX_BACKOFF)
    }

    /// Tells the best victim to close now; false if there is none.
    fn evict(&self, inner: &mut Inner) -> bool {
        loop {
            if inner.victims.is_empty() && !inner.exhausted {
                inner.victims = victims(&inner.entries);
                inner.exhausted = inner.victims.is_empty();
            }
            let Some(victim) = inner.victims.pop_front() else {
                return false;
            };
            if victim.closing() == Close::Open && victim_rank(&victim.seen()).is_some() {
                victim.close(Close::Now);
                return true;
            }
        }
    }

    fn note_cap(&self, inner: &mut Inner, evicted: bool) {
        let open = inner.entries.len();
        let burst = &mut inner.burst;
        if burst.since.is_none() {
            burst.since = Some(Instant::now());
            tracing::warn!(
                listener = self.name,
                open,
                cap = self.limits.max_connections,
                "connection cap reached: closing the oldest idle or half-sent connections to admit new ones, refusing new ones while all are busy; raise it with `{}`",
                self.cap_flag
            );
        }
        if evicted {
            burst.evicted += 1;
        } else {
            burst.refused += 1;
        }
    }

    /// Closes every connection that has outstayed a limit, and readies the
    /// victims for the next connections past the cap.
    fn sweep(&self) {
        let now = self.clock.tick();
        let header_ms = self.limits.header_read_timeout.as_millis() as u64;
        let idle_ms = self.limits.idle_timeout.as_millis() as u64;
        let mut closed = [0u32; 3];
        let mut inner = self.lock();
        for (_, entry) in &inner.entries {
            if entry.closing() != Close::Open {
                continue;
            }
            if let Some((how, reason)) = verdict(&entry.seen(), now, header_ms, idle_ms) {
                entry.close(how);
                closed[reason as usize] += 1;
            }
        }
        let open = inner.entries.len();
        let cap = self.limits.max_connections;
        // Ranked ahead only near the cap; past it, `evict` ranks on demand.
        inner.victims = if open >= cap - cap / 10 {
            victims(&inner.entries)
        } else {
            VecDeque::new()
        };
        inner.exhausted = false;
        let burst = &mut inner.burst;
        if let Some(since) = burst.since
            && open < cap - cap / 10
        {
            tracing::info!(
                listener = self.name,
                open,
                evicted = burst.evicted,
                refused = burst.refused,
                lasted_ms = since.elapsed().as_millis() as u64,
                "connections back under the cap"
            );
            *burst = Burst::default();
        }
        if closed.iter().any(|&n| n > 0) {
            tracing::debug!(
                listener = self.name,
                no_head = closed[Reason::Head as usize],
                idle = closed[Reason::Idle as usize],
                stalled = closed[Reason::Stalled as usize],
                "closed connections past their limits"
            );
        }
    }

    /// Sweeps until dropped (run it in a task that is aborted with the
    /// listener).
    pub(crate) async fn sweeper(self: Arc<Self>) {
        let shortest = self
            .limits
            .header_read_timeout
            .min(self.limits.idle_timeout);
        let every = (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sweep();
        }
    }

    fn close_all(&self, how: Close) {
        for (_, entry) in &self.lock().entries {
            entry.close(how);
        }
    }

    /// Waits until at most `open` connections are open.
    async fn down_to(&self, open: usize) {
        loop {
            let mut notified = pin!(self.gone.notified());
            notified.as_mut().enable();
            if self.len() <= open {
                return;
            }
            notified.await;
        }
    }

    async fn emptied(&self) {
        self.down_to(0).await;
    }

    /// Past the cap (a connection was just admitted in place of one told to
    /// close), waits a moment for the evicted to go, so a burst of accepts
    /// cannot outrun the evictions and run the process out of descriptors.
    pub(crate) async fn settle(&self) {
        let cap = self.limits.max_connections;
        if self.len() > cap {
            let _ = tokio::time::timeout(SETTLE, self.down_to(cap)).await;
        }
    }

    /// Shutdown: every connection finishes what it has in flight and
    /// closes; those still open after the drain limit are dropped.
    pub(crate) async fn drain(&self) {
        self.close_all(Close::Gently);
        let limit = self.limits.drain;
        if tokio::time::timeout(limit, self.emptied()).await.is_err() {
            tracing::info!(
                listener = self.name,
                open = self.len(),
                ?limit,
                "connections still open after the drain limit; closing them"
            );
            self.close_all(Close::Now);
            let _ = tokio::time::timeout(CLOSE_WAIT, self.emptied()).await;
        }
    }
}

/// The connections that may be evicted, best victim first.
fn victims(entries: &Slab<Arc<Entry>>) -> VecDeque<Arc<Entry>> {
    let mut ranked: Vec<((u8, u64), &Arc<Entry>)> = entries
        .iter()
        .filter(|(_, e)| e.closing() == Close::Open)
        .filter_map(|(_, e)| Some((victim_rank(&e.seen())?, e)))
        .collect();
    ranked.sort_by_key(|(rank, _)| *rank);
    ranked.into_iter().map(|(_, e)| e.clone()).collect()
}

fn end_failing(name: &str, failing: &mut Failing) {
    if let Some(since) = failing.since.take() {
        tracing::info!(
            listener = name,
            failed = failing.count,
            lasted_ms = since.elapsed().as_millis() as u64,
            "accepting connections again"
        );
        failing.count = 0;
    }
}

/// Runs `connection` until it ends or its entry asks it to: gently (it
/// finishes what is in flight) or now (it is dropped, closing the socket).
/// `None` when it was dropped.
pub(crate) async fn drive<C: GracefulConnection>(
    connection: C,
    entry: &Entry,
) -> Option<Result<(), C::Error>> {
    let mut connection = pin!(connection);
    let mut gentle = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => return Some(result),
            () = entry.wake.notified() => {}
        }
        match entry.closing() {
            Close::Now => return None,
            Close::Gently if !gentle => {
                gentle = true;
                connection.as_mut().graceful_shutdown();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
