//! The tokio runtimes of the host: the main one (gossip, the admin API,
//! peer sync, the controller; and all of `shoal run`), and [`Guests`],
//! where `shoal host` serves the ingress and so runs every guest.

/// A multi-threaded runtime tuned for guests that run for whole epoch ticks.
///
/// Guest code yields to the executor at every epoch tick (10 ms), so a
/// worker thread may poll only ~100 tasks a second while guests burn CPU. By
/// default tokio checks for I/O only every 61 task polls, which would leave
/// a new connection unnoticed for over half a second; checking after every
/// poll keeps a cheap request fast while guests spin (see
/// `tests/hostile.rs`); the check is a non-blocking `epoll_wait`. Likewise
/// the queue of tasks woken from outside a worker is checked every other
/// poll instead of every 31st (bench/RESULTS.md: a cheap request's worst
/// latency while guests spin).
pub(crate) fn build() -> std::io::Result<tokio::runtime::Runtime> {
    tuned(&mut tokio::runtime::Builder::new_multi_thread()).build()
}

fn tuned(builder: &mut tokio::runtime::Builder) -> &mut tokio::runtime::Builder {
    builder
        .enable_all()
        .event_interval(1)
        .global_queue_interval(2)
}

/// The runtime guests run on, apart from the one gossip, the admin API and
/// peer sync run on.
///
/// A guest yields only at epoch ticks, so a worker busy with guests polls
/// each of its tasks once per round of them: with a few hundred guests
/// spinning on two cores, a task sharing their workers waits a second or
/// more for its turn. Were gossip such a task, a busy node would miss its
/// heartbeats and be declared dead by its peers. On threads of their own
/// (`shoal-guest`), guests compete for CPU with the rest of the host only
/// through the kernel's scheduler, which runs a thread that wakes rarely
/// (a heartbeat, an admin call) ahead of threads that spin.
pub(crate) struct Guests {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Guests {
    pub(crate) fn start() -> std::io::Result<Guests> {
        let runtime = tuned(&mut tokio::runtime::Builder::new_multi_thread())
            .thread_name("shoal-guest")
            .build()?;
        Ok(Guests {
            runtime: Some(runtime),
        })
    }

    /// Runs `future` (a server whose requests run guests) on the guests'
    /// runtime.
    pub(crate) fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .as_ref()
            .expect("the guests' runtime runs until dropped")
            .spawn(future)
    }
}

impl Drop for Guests {
    fn drop(&mut self) {
        // Dropped from async code, where a runtime may not block to stop:
        // whatever guests still run (detached after their client left) are
        // dropped on their own threads.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
