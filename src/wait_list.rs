//! The wakers waiting for one shared thing to change: a backend coming back
//! ([`BackendHealth`](crate::health::BackendHealth)), a slot freed under a backend's cap, a new
//! backend set in a balancer.
//!
//! A [`WaitList`] is shared by everyone who may wait on the thing; each waiter (a service
//! clone, a future) holds a [`Waiter`], its place in the list. `poll_ready` registers the
//! waker it is given, every time, as the `poll_ready` contract asks; the change calls
//! [`WaitList::wake_all`]. It is the shape of tokio's `Notify` with `notify_waiters`, but
//! without a boxed, pinned future per waiter:
//!
//! - registering the same waker again (`will_wake`) takes no lock;
//! - a waiter dropped (a clone a balancer asked and did not choose) leaves the list;
//! - `wake_all` is one atomic load while nobody waits, so the release of a slot stays cheap.
//!
//! The lock is per list (per backend, per balancer), held for a push or a removal, never
//! while waking.
//!
//! A waiter checks the condition, registers, then checks it again before returning
//! `Pending`: a change between the first check and the registration is then seen by the
//! second check, and one after it wakes the waker.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

/// Wakers waiting for the next change of one thing. See the [module docs](self).
#[derive(Default)]
pub(crate) struct WaitList {
    /// Bumped by every [`wake_all`](Self::wake_all) that took the list, under the lock: a
    /// [`Waiter`] registered in an older epoch is no longer in the list.
    epoch: AtomicU64,
    /// Whether the list may hold wakers; `wake_all` skips the lock while it is `false`.
    waiting: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    wakers: Vec<(u64, Waker)>,
    next_id: u64,
    /// The list taken by the last `wake_all`, emptied, kept for its capacity.
    spare: Vec<(u64, Waker)>,
}

impl WaitList {
    /// An empty list.
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Wakes every waker registered now. Call it after making the change visible.
    pub(crate) fn wake_all(&self) {
        // Pairs with the fence in `Waiter::register`: either this load sees its flag, or its
        // check of the condition sees the change made before this call.
        fence(Ordering::SeqCst);
        if !self.waiting.load(Ordering::SeqCst) {
            return;
        }
        let mut wakers = {
            let mut inner = self.lock();
            self.epoch.fetch_add(1, Ordering::AcqRel);
            self.waiting.store(false, Ordering::SeqCst);
            let spare = std::mem::take(&mut inner.spare);
            std::mem::replace(&mut inner.wakers, spare)
        };
        for (_, waker) in wakers.drain(..) {
            waker.wake();
        }
        let mut inner = self.lock();
        if inner.spare.capacity() < wakers.capacity() {
            inner.spare = wakers;
        }
    }

    /// Wakers registered now; for tests.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().wakers.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every write leaves the list consistent, so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for WaitList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitList")
            .field("waiting", &self.waiting.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// One waiter's place in a [`WaitList`]; leaves it when dropped.
pub(crate) struct Waiter {
    list: Arc<WaitList>,
    entry: Option<Entry>,
}

/// Where this waiter stands in the list: its id, the epoch it was added in and a copy of its
/// waker, to tell without the lock whether the same waker is registered already.
struct Entry {
    id: u64,
    epoch: u64,
    waker: Waker,
}

impl Waiter {
    /// A waiter on `list`, not registered yet.
    pub(crate) fn new(list: Arc<WaitList>) -> Self {
        Self { list, entry: None }
    }

    /// Makes the next [`wake_all`](WaitList::wake_all) wake `waker`. Check the condition
    /// again after this, before returning `Pending`.
    pub(crate) fn register(&mut self, waker: &Waker) {
        if let Some(entry) = &self.entry {
            if entry.epoch == self.list.epoch.load(Ordering::Acquire)
                && entry.waker.will_wake(waker)
            {
                // Still in the list, with a waker that wakes the same task.
                return;
            }
        }
        {
            let mut inner = self.list.lock();
            let epoch = self.list.epoch.load(Ordering::Acquire);
            match &mut self.entry {
                Some(entry) if entry.epoch == epoch => {
                    if let Some((_, listed)) =
                        inner.wakers.iter_mut().find(|(id, _)| *id == entry.id)
                    {
                        listed.clone_from(waker);
                    }
                    entry.waker.clone_from(waker);
                }
                _ => {
                    let id = inner.next_id;
                    inner.next_id += 1;
                    inner.wakers.push((id, waker.clone()));
                    self.entry = Some(Entry {
                        id,
                        epoch,
                        waker: waker.clone(),
                    });
                }
            }
            self.list.waiting.store(true, Ordering::SeqCst);
        }
        // Pairs with the fence in `wake_all`.
        fence(Ordering::SeqCst);
    }

    /// Leaves the list, if in it.
    pub(crate) fn cancel(&mut self) {
        let Some(entry) = self.entry.take() else {
            return;
        };
        if entry.epoch != self.list.epoch.load(Ordering::Acquire) {
            // Taken by a `wake_all` already.
            return;
        }
        let mut inner = self.list.lock();
        if entry.epoch == self.list.epoch.load(Ordering::Acquire) {
            if let Some(at) = inner.wakers.iter().position(|(id, _)| *id == entry.id) {
                inner.wakers.swap_remove(at);
            }
            if inner.wakers.is_empty() {
                self.list.waiting.store(false, Ordering::SeqCst);
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.cancel();
    }
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("registered", &self.entry.is_some())
            .finish()
    }
}

/// A count of changes of one thing (a backend set, the results of health checks), with the
/// waiters for the next one.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    version: AtomicU64,
    waiters: Arc<WaitList>,
}

impl Changes {
    /// The version published last.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// Publishes `version` and wakes the waiters.
    pub(crate) fn publish(&self, version: u64) {
        self.version.store(version, Ordering::SeqCst);
        self.waiters.wake_all();
    }

    /// Publishes the next version and wakes the waiters.
    pub(crate) fn bump(&self) {
        self.version.fetch_add(1, Ordering::SeqCst);
        self.waiters.wake_all();
    }

    /// Resolves once a version after the current one is published.
    pub(crate) fn next(self: &Arc<Self>) -> Changed {
        Changed {
            seen: self.version(),
            waiting: Waiter::new(Arc::clone(&self.waiters)),
            changes: Arc::clone(self),
        }
    }
}

/// Resolves once the thing it watches has changed after the future was made: a balancer's
/// backend set ([`Balance::changed`](crate::Balance::changed)), or the health checks' results
/// (`HealthMonitor::checked`).
#[must_use = "futures do nothing unless polled"]
pub struct Changed {
    changes: Arc<Changes>,
    seen: u64,
    waiting: Waiter,
}

impl fmt::Debug for Changed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changed")
            .field("seen", &self.seen)
            .field("current", &self.changes.version())
            .finish()
    }
}

impl std::future::Future for Changed {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let this = &mut *self;
        if this.changes.version() == this.seen {
            this.waiting.register(cx.waker());
            // A change just before the registration would not wake it: look again.
            if this.changes.version() == this.seen {
                return std::task::Poll::Pending;
            }
        }
        this.waiting.cancel();
        std::task::Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::AtomicUsize;
    use std::task::Context;

    use super::*;

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

    #[test]
    fn a_registered_waker_is_woken_once_and_kept_once() {
        let list = WaitList::new();
        let (waker, count) = counting_waker();
        let mut waiter = Waiter::new(Arc::clone(&list));
        waiter.register(&waker);
        waiter.register(&waker);
        assert_eq!(list.len(), 1, "the same waker is kept once");
        list.wake_all();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(list.len(), 0);
        list.wake_all();
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "woken by the next change only"
        );
        // Registered again after the wake-up.
        waiter.register(&waker);
        assert_eq!(list.len(), 1);
        list.wake_all();
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn another_waker_replaces_the_waiters_own() {
        let list = WaitList::new();
        let (first, first_count) = counting_waker();
        let (second, second_count) = counting_waker();
        let mut waiter = Waiter::new(Arc::clone(&list));
        waiter.register(&first);
        waiter.register(&second);
        assert_eq!(list.len(), 1);
        list.wake_all();
        assert_eq!(first_count.load(Ordering::SeqCst), 0);
        assert_eq!(second_count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_next_change_resolves_once_a_later_version_is_published() {
        let changes = Arc::new(Changes::default());
        let (waker, count) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut next = changes.next();
        assert!(Pin::new(&mut next).poll(&mut cx).is_pending());
        changes.bump();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert!(Pin::new(&mut next).poll(&mut cx).is_ready());

        // One made after a change waits for the next.
        let mut later = changes.next();
        assert!(Pin::new(&mut later).poll(&mut cx).is_pending());
        // A change published between its creation and its first poll is not missed.
        let mut unpolled = changes.next();
        changes.publish(7);
        assert!(Pin::new(&mut unpolled).poll(&mut cx).is_ready());
        assert!(Pin::new(&mut later).poll(&mut cx).is_ready());
        drop(later);
        assert_eq!(changes.waiters.len(), 0, "no registration left");
    }

    #[test]
    fn a_dropped_waiter_leaves_the_list() {
        let list = WaitList::new();
        let (waker, count) = counting_waker();
        let mut kept = Waiter::new(Arc::clone(&list));
        kept.register(&waker);
        let mut dropped = Waiter::new(Arc::clone(&list));
        dropped.register(&waker);
        assert_eq!(list.len(), 2);
        drop(dropped);
        assert_eq!(list.len(), 1);
        drop(kept);
        assert_eq!(list.len(), 0);
        assert!(!list.waiting.load(Ordering::SeqCst));
        list.wake_all();
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }
}
