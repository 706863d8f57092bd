//! What one layer knows about all its backends at once: how many there are, how many are
//! available, ramping up or ejected. Ejection limits and slow start read it.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use crate::algo::rng::Rng;
use crate::wait_list::Changes;

/// Bits of a backend's status word; it takes requests at full rate only when none is set.
pub(crate) const DOWN: u8 = 1;
/// Ejected by outlier detection.
pub(crate) const EJECTED: u8 = 2;
/// Available, but in its slow-start ramp: admits only part of the requests.
pub(crate) const RAMPING: u8 = 4;
/// Either bit keeps a backend out of rotation.
pub(crate) const UNAVAILABLE: u8 = DOWN | EJECTED;

/// The layer-wide counts, changed only under [`Pool::lock`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Backends the layer checks.
    pub(crate) members: usize,
    /// Members neither down nor ejected.
    pub(crate) available: usize,
    /// Available members not ramping up.
    pub(crate) steady: usize,
    /// Members with the ejected bit (down or not).
    pub(crate) ejected: usize,
}

impl Counts {
    /// Counts a member with `status` in (`add`) or out.
    fn apply(&mut self, status: u8, add: bool) {
        let change = |n: &mut usize| {
            if add {
                *n += 1;
            } else {
                *n -= 1;
            }
        };
        change(&mut self.members);
        if status & UNAVAILABLE == 0 {
            change(&mut self.available);
            if status & RAMPING == 0 {
                change(&mut self.steady);
            }
        }
        if status & EJECTED != 0 {
            change(&mut self.ejected);
        }
    }
}

/// Shared by the backends of one layer (a standalone backend has its own).
#[derive(Debug)]
pub(crate) struct Pool {
    /// Serializes every change of a member's status word with the counts.
    counts: Mutex<Counts>,
    /// `counts.steady`, readable without the lock on the request path.
    steady: AtomicUsize,
    /// Time origin of the per-backend timestamps kept as nanoseconds in atomics.
    epoch: Instant,
    /// Draws slow-start admissions.
    pub(crate) rng: Rng,
    /// Counts the checks recorded, for [`HealthMonitor::checked`](super::HealthMonitor::checked).
    pub(crate) checks: Arc<Changes>,
}

impl Pool {
    pub(crate) fn new() -> Self {
        Self {
            counts: Mutex::new(Counts::default()),
            steady: AtomicUsize::new(0),
            epoch: Instant::now(),
            rng: Rng::from_entropy(),
            checks: Arc::default(),
        }
    }

    pub(crate) fn lock(&self) -> PoolGuard<'_> {
        PoolGuard {
            // Every write leaves the counts consistent, so a poisoned lock is still usable.
            counts: self
                .counts
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            steady: &self.steady,
        }
    }

    /// Available members not ramping up, read without the lock.
    #[inline]
    pub(crate) fn steady(&self) -> usize {
        self.steady.load(Relaxed)
    }

    /// Nanoseconds from the pool's creation to `at` (0 before it).
    #[inline]
    pub(crate) fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant `nanos` after the pool's creation.
    pub(crate) fn instant(&self, nanos: u64) -> Instant {
        self.epoch + std::time::Duration::from_nanos(nanos)
    }
}

/// The pool's lock, held while a member's status changes.
pub(crate) struct PoolGuard<'a> {
    counts: MutexGuard<'a, Counts>,
    steady: &'a AtomicUsize,
}

impl PoolGuard<'_> {
    pub(crate) fn counts(&self) -> Counts {
        *self.counts
    }

    /// Counts a member with `status` in.
    pub(crate) fn join(&mut self, status: u8) {
        self.counts.apply(status, true);
        self.steady.store(self.counts.steady, Relaxed);
    }

    /// Counts a member with `status` out.
    pub(crate) fn leave(&mut self, status: u8) {
        self.counts.apply(status, false);
        self.steady.store(self.counts.steady, Relaxed);
    }

    /// A member went from status `old` to `new`.
    pub(crate) fn update(&mut self, old: u8, new: u8) {
        if old != new {
            self.leave(old);
            self.join(new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_status_changes() {
        let pool = Pool::new();
        let mut guard = pool.lock();
        guard.join(0);
        guard.join(RAMPING);
        guard.join(DOWN);
        assert_eq!(
            guard.counts(),
            Counts {
                members: 3,
                available: 2,
                steady: 1,
                ejected: 0
            }
        );
        guard.update(0, EJECTED);
        guard.update(DOWN, DOWN | EJECTED);
        guard.update(RAMPING, 0);
        assert_eq!(
            guard.counts(),
            Counts {
                members: 3,
                available: 1,
                steady: 1,
                ejected: 2
            }
        );
        drop(guard);
        assert_eq!(pool.steady(), 1);
    }
}
