//! The tokio runtime every server of the host runs on.

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
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(1)
        .global_queue_interval(2)
        .build()
}
