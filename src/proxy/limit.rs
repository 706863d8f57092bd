//! The per-backend concurrency cap: at most `max` requests (or upgraded tunnels) in flight to
//! one backend, like HAProxy's `maxconn` on a `server` line.
//!
//! A [`Limit`] is a counter shared by the clones of one [`HttpBackend`](super::HttpBackend).
//! `poll_ready` takes a [`Slot`] (a compare-and-swap, no lock) and keeps it in the clone; `call`
//! moves it into the response, whose body holds it until it ends, so the slot is freed when
//! the response is over, not when its head arrives. A clone dropped without being called
//! frees its slot.
//!
//! At the cap `poll_ready` is `Pending`. The balancer asks with a no-op waker and skips the
//! backend; any other caller's waker is kept and woken when a slot frees. A freed slot also
//! wakes the requests waiting for *any* backend ([`Freed`]), which the standalone server's
//! queue uses.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

/// Wakes the requests waiting for a backend slot; shared by every backend of one
/// [`ProxyClient`](super::ProxyClient).
#[derive(Debug, Default)]
pub(crate) struct Freed {
    notify: Arc<Notify>,
    /// Requests waiting; releases skip the notification while it is zero.
    waiting: AtomicUsize,
}

impl Freed {
    /// Registers a waiter: while the returned guard lives, freed slots notify.
    ///
    /// Register, then create the [`notified`](Self::notified) future, then look for a free
    /// backend, then await it: no release in between is missed.
    pub(crate) fn wait(self: &Arc<Self>) -> Waiting {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting {
            freed: Arc::clone(self),
        }
    }

    /// The next notification (any slot freed after this call).
    pub(crate) fn notified(&self) -> OwnedNotified {
        Arc::clone(&self.notify).notified_owned()
    }

    /// Wakes the waiters: a slot was freed.
    pub(crate) fn notify(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }
}

/// A request waiting for a slot; see [`Freed::wait`].
#[derive(Debug)]
pub(crate) struct Waiting {
    freed: Arc<Freed>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.freed.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The cap of one backend, shared by its clones.
pub(crate) struct Limit {
    max: usize,
    in_use: AtomicUsize,
    /// Wakers of callers (other than the balancer) that found the backend at its cap.
    wakers: Mutex<Vec<Waker>>,
    has_wakers: AtomicBool,
    freed: Arc<Freed>,
}

impl Limit {
    pub(crate) fn new(max: usize, freed: Arc<Freed>) -> Arc<Self> {
        Arc::new(Self {
            max,
            in_use: AtomicUsize::new(0),
            wakers: Mutex::new(Vec::new()),
            has_wakers: AtomicBool::new(false),
            freed,
        })
    }

    /// The cap.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Slots taken now.
    pub(crate) fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Acquire)
    }

    /// A slot, if one is free.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        self.in_use
            .fetch_update(Ordering::SeqCst, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot {
                limit: Arc::clone(self),
            })
    }

    /// A slot, even over the cap (for a `call` without `poll_ready`), so the count stays
    /// right.
    pub(crate) fn acquire_over(self: &Arc<Self>) -> Slot {
        self.in_use.fetch_add(1, Ordering::SeqCst);
        Slot {
            limit: Arc::clone(self),
        }
    }

    /// A slot if one is free; otherwise `waker` is woken when one frees (unless it is the
    /// no-op waker of the balancer, which only asks).
    pub(crate) fn poll_acquire(self: &Arc<Self>, waker: &Waker) -> Option<Slot> {
        if let Some(slot) = self.try_acquire() {
            return Some(slot);
        }
        if waker.will_wake(Waker::noop()) {
            return None;
        }
        {
            let mut wakers = self.lock_wakers();
            if !wakers.iter().any(|w| w.will_wake(waker)) {
                wakers.push(waker.clone());
            }
            self.has_wakers.store(true, Ordering::SeqCst);
        }
        // A slot freed before the waker was in the list would not wake it.
        self.try_acquire()
    }

    fn release(&self) {
        self.in_use.fetch_sub(1, Ordering::SeqCst);
        if self.has_wakers.load(Ordering::SeqCst) {
            let wakers = {
                let mut wakers = self.lock_wakers();
                self.has_wakers.store(false, Ordering::SeqCst);
                std::mem::take(&mut *wakers)
            };
            wakers.into_iter().for_each(Waker::wake);
        }
        self.freed.notify();
    }

    fn lock_wakers(&self) -> MutexGuard<'_, Vec<Waker>> {
        self.wakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limit")
            .field("max", &self.max)
            .field("in_use", &self.in_use())
            .finish()
    }
}

/// One request's (or tunnel's) place under a backend's cap; freed on drop.
pub(crate) struct Slot {
    limit: Arc<Limit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limit.release();
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Slot")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll};

    #[test]
    fn slots_are_capped_and_freed_on_drop() {
        let limit = Limit::new(2, Arc::default());
        let a = limit.try_acquire().unwrap();
        let b = limit.try_acquire().unwrap();
        assert!(limit.try_acquire().is_none());
        assert_eq!(limit.in_use(), 2);
        drop(a);
        assert_eq!(limit.in_use(), 1);
        let c = limit.try_acquire().unwrap();
        let over = limit.acquire_over();
        assert_eq!(limit.in_use(), 3);
        drop((b, c, over));
        assert_eq!(limit.in_use(), 0);
    }

    #[test]
    fn a_real_waker_is_woken_when_a_slot_frees_and_the_noop_one_is_not_kept() {
        let limit = Limit::new(1, Arc::default());
        let held = limit.try_acquire().unwrap();
        assert!(limit.poll_acquire(Waker::noop()).is_none());
        assert!(limit.lock_wakers().is_empty());

        let (waker, count) = counting_waker();
        assert!(limit.poll_acquire(&waker).is_none());
        assert!(limit.poll_acquire(&waker).is_none());
        assert_eq!(limit.lock_wakers().len(), 1, "the same waker is kept once");
        drop(held);
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert!(limit.poll_acquire(&waker).is_some());
    }

    #[tokio::test]
    async fn a_freed_slot_notifies_waiters_only_while_someone_waits() {
        let freed = Arc::new(Freed::default());
        let limit = Limit::new(1, Arc::clone(&freed));
        // Nobody waits: releasing does not store a notification.
        drop(limit.try_acquire().unwrap());

        let held = limit.try_acquire().unwrap();
        let waiting = freed.wait();
        let mut notified = pin!(freed.notified());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(notified.as_mut().poll(&mut cx).is_pending());
        drop(held);
        assert_eq!(notified.as_mut().poll(&mut cx), Poll::Ready(()));
        drop(waiting);
        assert_eq!(freed.waiting.load(Ordering::SeqCst), 0);

        let mut later = pin!(freed.notified());
        drop(limit.try_acquire().unwrap());
        assert!(later.as_mut().poll(&mut cx).is_pending());
    }

    /// A waker that counts its wake-ups.
    fn counting_waker() -> (Waker, Arc<AtomicUsize>) {
        struct Count(Arc<AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(AtomicUsize::new(0));
        (Waker::from(Arc::new(Count(Arc::clone(&count)))), count)
    }
}
