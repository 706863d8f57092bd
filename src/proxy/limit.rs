//! The per-backend concurrency cap: at most `max` requests (or upgraded tunnels) in flight to
//! one backend, like HAProxy's `maxconn` on a `server` line.
//!
//! A [`Limit`] is a counter shared by the clones of one [`HttpBackend`](super::HttpBackend);
//! the cap it is held to is the client's (which a reload may change), passed in at each
//! acquire, so a new cap applies to the next request that asks.
//! `poll_ready` takes a [`Slot`] (a compare-and-swap, no lock) and keeps it in the clone; `call`
//! moves it into the response, whose body holds it until it ends, so the slot is freed when
//! the response is over, not when its head arrives. A clone dropped without being called
//! frees its slot.
//!
//! At the cap `poll_ready` is `Pending`, and the waker it was given is woken when a slot
//! frees: a balancer skips the backend, and a caller that waits for it (a
//! [`Queue`](crate::queue::Queue) holding the clone) is woken. The wakers wait in a list of
//! the backend's own, which a clone dropped while waiting leaves.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use crate::wait_list::{WaitList, Waiter};

/// The count under the cap of one backend, shared by its clones.
pub(crate) struct Limit {
    in_use: AtomicUsize,
    /// Callers that found the backend at its cap.
    freed: Arc<WaitList>,
}

impl Limit {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            in_use: AtomicUsize::new(0),
            freed: WaitList::new(),
        })
    }

    /// Slots taken now.
    pub(crate) fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Acquire)
    }

    /// A slot, if fewer than `max` are taken.
    pub(crate) fn try_acquire(self: &Arc<Self>, max: usize) -> Option<Slot> {
        self.in_use
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
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

    fn release(&self) {
        self.in_use.fetch_sub(1, Ordering::SeqCst);
        self.freed.wake_all();
    }

    /// Wakes the callers waiting for a slot (the cap changed).
    pub(crate) fn wake_waiters(&self) {
        self.freed.wake_all();
    }
}

/// One clone's claim on a backend's cap: the slot `poll_ready` took for the next `call`, or
/// its place among the callers waiting for one.
#[derive(Debug, Default)]
pub(crate) struct Claim {
    slot: Option<Slot>,
    waiting: Option<Waiter>,
}

impl Claim {
    /// `Ready` with a slot held for the next [`take`](Self::take); at the cap `max`, `Pending`,
    /// and `cx`'s waker is woken when a slot frees.
    pub(crate) fn poll_acquire(
        &mut self,
        limit: &Arc<Limit>,
        max: usize,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if self.slot.is_none() {
            self.slot = limit.try_acquire(max);
        }
        if self.slot.is_none() {
            self.waiting
                .get_or_insert_with(|| Waiter::new(Arc::clone(&limit.freed)))
                .register(cx.waker());
            // A slot freed before the waker was in the list would not wake it.
            self.slot = limit.try_acquire(max);
            if self.slot.is_none() {
                return Poll::Pending;
            }
        }
        if let Some(waiting) = &mut self.waiting {
            waiting.cancel();
        }
        Poll::Ready(())
    }

    /// The slot `poll_acquire` took; without one, one over the cap for a `call` without
    /// `poll_ready` if the backend is `capped`, else none.
    pub(crate) fn take(&mut self, limit: &Arc<Limit>, capped: bool) -> Option<Slot> {
        self.slot
            .take()
            .or_else(|| capped.then(|| limit.acquire_over()))
    }
}

impl fmt::Debug for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limit")
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
    use std::task::Waker;

    use super::*;

    #[test]
    fn slots_are_capped_and_freed_on_drop() {
        let limit = Limit::new();
        let a = limit.try_acquire(2).unwrap();
        let b = limit.try_acquire(2).unwrap();
        assert!(limit.try_acquire(2).is_none());
        assert_eq!(limit.in_use(), 2);
        drop(a);
        assert_eq!(limit.in_use(), 1);
        let c = limit.try_acquire(2).unwrap();
        let over = limit.acquire_over();
        assert_eq!(limit.in_use(), 3);
        drop((b, c, over));
        assert_eq!(limit.in_use(), 0);
    }

    #[test]
    fn a_waiting_claim_is_woken_when_a_slot_frees_and_leaves_when_dropped() {
        let limit = Limit::new();
        let held = limit.try_acquire(1).unwrap();
        let (waker, count) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut claim = Claim::default();
        assert!(claim.poll_acquire(&limit, 1, &mut cx).is_pending());
        assert!(claim.poll_acquire(&limit, 1, &mut cx).is_pending());
        assert_eq!(limit.freed.len(), 1, "the same waker is kept once");

        // Another clone asked, found the cap and was dropped: it leaves the list.
        let mut asked = Claim::default();
        assert!(asked.poll_acquire(&limit, 1, &mut cx).is_pending());
        assert_eq!(limit.freed.len(), 2);
        drop(asked);
        assert_eq!(limit.freed.len(), 1);

        drop(held);
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert!(claim.poll_acquire(&limit, 1, &mut cx).is_ready());
        assert_eq!(limit.in_use(), 1);
        drop(claim.take(&limit, true));
        assert_eq!(limit.in_use(), 0);
        assert_eq!(count.load(Ordering::SeqCst), 1, "nobody waits any more");
    }

    #[test]
    fn a_changed_cap_applies_to_the_next_acquire_and_slots_held_stay() {
        let limit = Limit::new();
        let held: Vec<Slot> = (0..3).map(|_| limit.try_acquire(3).unwrap()).collect();
        // Lowered below what is in use: nothing more until enough have ended.
        assert!(limit.try_acquire(2).is_none());
        let (waker, count) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut claim = Claim::default();
        assert!(claim.poll_acquire(&limit, 2, &mut cx).is_pending());
        let mut held = held.into_iter();
        drop(held.next());
        assert_eq!(count.load(Ordering::SeqCst), 1, "woken by the slot freed");
        assert!(
            claim.poll_acquire(&limit, 2, &mut cx).is_pending(),
            "2 still in use"
        );
        // Raised: the next ask gets a slot at once.
        assert!(claim.poll_acquire(&limit, 4, &mut cx).is_ready());
        assert_eq!(limit.in_use(), 3);
        let slot = claim.take(&limit, false);
        assert!(
            slot.is_some(),
            "a slot taken under the cap is kept if the cap goes"
        );
        // No cap and no slot held: the request is not counted.
        assert!(Claim::default().take(&limit, false).is_none());
        assert_eq!(limit.in_use(), 3);
        drop((held, slot));
        assert_eq!(limit.in_use(), 0);
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
