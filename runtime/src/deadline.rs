//! Coarse deadlines: futures that complete once an instant has passed,
//! fired by the epoch ticker's thread (see `engine.rs`).
//!
//! Why not `tokio::time`: a tokio runtime keeps all its timers in one wheel
//! behind one mutex, and creating, resetting or dropping any timer takes
//! it. A request arms up to four deadlines (the response deadline, the
//! instantiation deadline, the worker's expiration and the guest's
//! deadline), so with tokio's timers the worker threads would contend for
//! that lock on every request, each contention a cross-core wake-up
//! (`futex`, an eventfd `write`). Here a deadline is registered in a shard
//! that only its own thread and the ticker lock, and nothing is registered
//! for a deadline polled once and dropped. Deadlines fire within one epoch tick (10 ms) of
//! their instant: plenty for request deadlines counted in seconds.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use slab::Slab;

/// Every pending deadline of a runtime, in shards.
pub(crate) struct Deadlines {
    shards: Box<[Mutex<Shard>]>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Shard {
    entries: Slab<Entry>,
}

struct Entry {
    at: Instant,
    /// Tells a reused slab slot from the entry a [`Deadline`] registered.
    id: u64,
    waker: Waker,
}

/// Which shard the current thread registers in, assigned round-robin.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
}

impl Deadlines {
    /// Deadlines in `shards` shards (more shards than threads that poll
    /// deadlines keeps each shard's lock uncontended).
    pub(crate) fn new(shards: usize) -> Arc<Deadlines> {
        Arc::new(Deadlines {
            shards: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
            next_id: AtomicU64::new(0),
        })
    }

    /// A future that completes once `at` has passed.
    pub(crate) fn at(self: &Arc<Self>, at: Instant) -> Deadline {
        Deadline {
            at,
            deadlines: self.clone(),
            registered: None,
        }
    }

    /// Wakes every deadline whose instant is not after `now`.
    pub(crate) fn fire(&self, now: Instant) {
        let mut due = Vec::new();
        for shard in self.shards.iter() {
            lock(shard).entries.retain(|_, entry| {
                let passed = entry.at <= now;
                if passed {
                    due.push(entry.waker.clone());
                }
                !passed
            });
        }
        // Woken outside the locks: a woken task may poll its deadline at once.
        due.into_iter().for_each(Waker::wake);
    }

    /// Deadlines registered and not yet fired or dropped.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.shards.iter().map(|s| lock(s).entries.len()).sum()
    }

    fn shard_of_this_thread(&self) -> usize {
        THREAD_SHARD.with(|index| *index) % self.shards.len()
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding a shard leaves its entries consistent (every
    // operation is a single slab insert or remove).
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

/// Completes once its instant has passed; see [`Deadlines::at`].
pub(crate) struct Deadline {
    at: Instant,
    deadlines: Arc<Deadlines>,
    registered: Option<Registration>,
}

struct Registration {
    shard: usize,
    key: usize,
    id: u64,
    /// The waker stored in the entry, to skip the lock when it is unchanged.
    waker: Waker,
}

impl Deadline {
    /// Moves the deadline to `at`.
    pub(crate) fn reset(&mut self, at: Instant) {
        if at != self.at {
            self.unregister();
            self.at = at;
        }
    }

    fn unregister(&mut self) {
        if let Some(r) = self.registered.take() {
            let mut shard = lock(&self.deadlines.shards[r.shard]);
            if shard.entries.get(r.key).is_some_and(|e| e.id == r.id) {
                shard.entries.remove(r.key);
            }
        }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.at {
            this.unregister();
            return Poll::Ready(());
        }
        match &mut this.registered {
            Some(r) if r.waker.will_wake(cx.waker()) => {}
            Some(r) => {
                let mut shard = lock(&this.deadlines.shards[r.shard]);
                match shard.entries.get_mut(r.key) {
                    Some(entry) if entry.id == r.id => {
                        entry.waker = cx.waker().clone();
                        r.waker = cx.waker().clone();
                    }
                    // The ticker fired it since the clock was read above.
                    _ => {
                        drop(shard);
                        this.registered = None;
                        return Poll::Ready(());
                    }
                }
            }
            None => {
                let shard = this.deadlines.shard_of_this_thread();
                let id = this.deadlines.next_id.fetch_add(1, Ordering::Relaxed);
                let key = lock(&this.deadlines.shards[shard]).entries.insert(Entry {
                    at: this.at,
                    id,
                    waker: cx.waker().clone(),
                });
                this.registered = Some(Registration {
                    shard,
                    key,
                    id,
                    waker: cx.waker().clone(),
                });
            }
        }
        Poll::Pending
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// Runs `future` until it completes (`Some`) or `deadline` passes (`None`),
/// whichever comes first; `future` is polled first.
pub(crate) async fn within<F: Future>(mut deadline: Deadline, future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        Pin::new(&mut deadline).poll(cx).map(|()| None)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Fires `deadlines` every millisecond until dropped.
    struct Ticker(Arc<std::sync::atomic::AtomicBool>);

    impl Ticker {
        fn start(deadlines: &Arc<Deadlines>) -> Ticker {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (deadlines, flag) = (deadlines.clone(), stop.clone());
            std::thread::spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(1));
                    deadlines.fire(Instant::now());
                }
            });
            Ticker(stop)
        }
    }

    impl Drop for Ticker {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn a_deadline_fires_after_its_instant_and_not_before() {
        let deadlines = Deadlines::new(4);
        let _ticker = Ticker::start(&deadlines);
        let start = Instant::now();
        deadlines.at(start + Duration::from_millis(30)).await;
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert_eq!(deadlines.pending(), 0);
    }

    #[tokio::test]
    async fn within_gives_the_output_or_none_at_the_deadline() {
        let deadlines = Deadlines::new(4);
        let _ticker = Ticker::start(&deadlines);
        let soon = deadlines.at(Instant::now() + Duration::from_secs(10));
        assert_eq!(within(soon, async { 7 }).await, Some(7));
        let short = deadlines.at(Instant::now() + Duration::from_millis(20));
        assert_eq!(within(short, std::future::pending::<()>()).await, None);
        assert_eq!(deadlines.pending(), 0);
    }

    #[tokio::test]
    async fn a_dropped_or_reset_deadline_leaves_nothing_registered() {
        let deadlines = Deadlines::new(2);
        let mut deadline = deadlines.at(Instant::now() + Duration::from_secs(60));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut deadline).poll(&mut cx).is_pending());
        assert_eq!(deadlines.pending(), 1);
        deadline.reset(Instant::now() + Duration::from_secs(30));
        assert_eq!(deadlines.pending(), 0);
        assert!(Pin::new(&mut deadline).poll(&mut cx).is_pending());
        drop(deadline);
        assert_eq!(deadlines.pending(), 0);
        // A past instant completes at once, registering nothing.
        let past = deadlines.at(Instant::now());
        assert_eq!(within(past, std::future::pending::<()>()).await, None);
        assert_eq!(deadlines.pending(), 0);
    }
}
