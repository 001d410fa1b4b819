//! The executor behind `async fn` handlers: a single-threaded loop that
//! polls the handler's future and, whenever it cannot make progress, blocks
//! in `wasi:io/poll` on what the SDK's futures are waiting for (a body
//! chunk, an outbound response, a timer). A component instance serves one
//! request at a time, so nothing more is needed.

use std::cell::RefCell;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use wasip2::io::poll::{Pollable, poll};

thread_local! {
    /// The pollables futures are waiting on, each with the waker to call
    /// when it is ready.
    static WAITING: RefCell<Vec<(Rc<Pollable>, Waker)>> = const { RefCell::new(Vec::new()) };
}

/// Completes when `pollable` is ready.
pub(crate) struct Wait {
    pollable: Rc<Pollable>,
}

impl Wait {
    pub(crate) fn new(pollable: Pollable) -> Wait {
        Wait {
            pollable: Rc::new(pollable),
        }
    }
}

impl Future for Wait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.pollable.ready() {
            return Poll::Ready(());
        }
        WAITING.with_borrow_mut(|waiting| {
            match waiting
                .iter_mut()
                .find(|(pollable, _)| Rc::ptr_eq(pollable, &self.pollable))
            {
                Some((_, waker)) => waker.clone_from(cx.waker()),
                None => waiting.push((self.pollable.clone(), cx.waker().clone())),
            }
        });
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        // A pollable must go before the stream or response it watches; a
        // future dropped early (e.g. the loser of a select) takes its
        // registration with it.
        let _ = WAITING.try_with(|waiting| {
            waiting
                .borrow_mut()
                .retain(|(pollable, _)| !Rc::ptr_eq(pollable, &self.pollable))
        });
    }
}

/// Waits for `duration` without holding up the handler's other futures
/// (e.g. a timeout raced against an outbound request, `fetch_async`).
pub async fn sleep(duration: Duration) {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    Wait::new(wasip2::clocks::monotonic_clock::subscribe_duration(nanos)).await
}

/// Set when the handler's future (or a future inside it) is woken.
struct Woken(AtomicBool);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `future` to completion; `None` if it waits on something that can
/// never happen (a future of another runtime, a channel nobody sends on).
pub fn block_on<F: Future>(future: F) -> Option<F::Output> {
    let woken = Arc::new(Woken(AtomicBool::new(true)));
    let waker = Waker::from(woken.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if woken.0.swap(false, Ordering::Relaxed) {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return Some(output);
            }
            continue;
        }
        let ready = WAITING.with_borrow_mut(|waiting| {
            if waiting.is_empty() {
                return None;
            }
            let pollables: Vec<&Pollable> = waiting.iter().map(|(p, _)| &**p).collect();
            let mut ready = poll(&pollables);
            ready.sort_unstable();
            // Take the ready ones out, highest index first so that the
            // others keep theirs.
            let wakers: Vec<Waker> = ready
                .iter()
                .rev()
                .map(|&i| waiting.swap_remove(i as usize).1)
                .collect();
            Some(wakers)
        });
        match ready {
            // Woken outside the borrow: a waker may run anything.
            Some(wakers) => wakers.into_iter().for_each(Waker::wake),
            None => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_futures_complete_and_stuck_ones_give_up() {
        assert_eq!(block_on(async { 7 }), Some(7));
        assert_eq!(block_on(std::future::pending::<()>()), None);
        // A future that wakes itself is polled again.
        let mut polled = 0;
        let yielding = std::future::poll_fn(|cx| {
            polled += 1;
            if polled < 3 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(polled)
            }
        });
        assert_eq!(block_on(yielding), Some(3));
    }
}
