//! Admission control: how many instances of an app may run at once, how
//! many requests may wait for one, and a host-wide bound on work in flight.
//!
//! Fairness between requests that are admitted comes from the engine: guest
//! code yields to the async executor at every epoch tick, so a guest
//! spinning on a CPU shares it with everyone else instead of holding it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A permit to run one instance; dropping it frees the slot.
pub(crate) struct Permit {
    _app: OwnedSemaphorePermit,
    _host: OwnedSemaphorePermit,
}

/// Why a request was not admitted.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The wait queue is full.
    QueueFull,
    /// It waited for its whole deadline.
    TimedOut,
}

/// Per-app admission: a semaphore of instance slots and a bounded queue in
/// front of it, then the host-wide semaphore.
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    size: usize,
    waiting: AtomicUsize,
    max_queue: usize,
    host: Arc<Semaphore>,
}

/// Decrements the wait count however the wait ends.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    pub(crate) fn new(max_concurrency: usize, max_queue: usize, host: Arc<Semaphore>) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(max_concurrency.max(1))),
            size: max_concurrency.max(1),
            waiting: AtomicUsize::new(0),
            max_queue,
            host,
        }
    }

    /// Waits for a slot, at most `wait`; refuses at once when the queue is full.
    pub(crate) async fn admit(&self, wait: Duration) -> Result<Permit, Refused> {
        if let (Ok(app), Ok(host)) = (
            self.slots.clone().try_acquire_owned(),
            self.host.clone().try_acquire_owned(),
        ) {
            return Ok(Permit {
                _app: app,
                _host: host,
            });
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.max_queue {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::QueueFull);
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(wait, self.acquire()).await {
            Ok(Some(permit)) => Ok(permit),
            _ => Err(Refused::TimedOut),
        }
    }

    /// Waits for an app slot and a host slot, holding neither while it
    /// waits for the other: a request queued behind a full host does not
    /// keep its app's slot (counted as running) from the requests that
    /// could use it, and one waiting for its app holds no host slot that
    /// another app could use. `None` if a semaphore closed.
    async fn acquire(&self) -> Option<Permit> {
        loop {
            let app = self.slots.clone().acquire_owned().await.ok()?;
            if let Ok(host) = self.host.clone().try_acquire_owned() {
                return Some(Permit {
                    _app: app,
                    _host: host,
                });
            }
            drop(app);
            let host = self.host.clone().acquire_owned().await.ok()?;
            if let Ok(app) = self.slots.clone().try_acquire_owned() {
                return Some(Permit {
                    _app: app,
                    _host: host,
                });
            }
        }
    }

    /// Instances running now.
    pub(crate) fn active(&self) -> usize {
        self.size - self.slots.available_permits()
    }

    /// Requests waiting now.
    pub(crate) fn queued(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_queue_is_bounded_and_slots_are_returned() {
        let host = Arc::new(Semaphore::new(10));
        let admission = Arc::new(Admission::new(1, 1, host));
        let first = admission.admit(Duration::from_secs(1)).await.unwrap();
        assert_eq!(admission.active(), 1);
        let waiter = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit(Duration::from_secs(5)).await.is_ok() }
        });
        while admission.queued() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            admission.admit(Duration::from_secs(1)).await,
            Err(Refused::QueueFull)
        ));
        drop(first);
        assert!(waiter.await.unwrap());
        assert_eq!(admission.queued(), 0);
    }

    #[tokio::test]
    async fn a_request_waiting_for_the_host_holds_no_app_slot() {
        let host = Arc::new(Semaphore::new(1));
        let busy = Admission::new(4, 10, host.clone());
        let admission = Arc::new(Admission::new(2, 10, host));
        let held = busy.admit(Duration::from_secs(1)).await.unwrap();
        let waiter = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit(Duration::from_secs(5)).await.is_ok() }
        });
        while admission.queued() == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(admission.active(), 0, "a waiting request holds an app slot");
        drop(held);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn a_wait_ends_at_its_deadline() {
        let host = Arc::new(Semaphore::new(10));
        let admission = Admission::new(1, 10, host);
        let _held = admission.admit(Duration::from_secs(1)).await.unwrap();
        assert!(matches!(
            admission.admit(Duration::from_millis(20)).await,
            Err(Refused::TimedOut)
        ));
    }
}
