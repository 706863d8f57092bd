//! Round robin: strict rotation over the ready backends.
//!
//! Each request takes the next backend in order, skipping any that is not ready. Choose it
//! for a fleet of equal backends and short, uniform requests; it ignores weights and load.
//! nginx's and HAProxy's default (`roundrobin` without weights).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::walk::around;
use super::{AlgoConfig, Configure, Pick};
use crate::balance::Endpoint;

/// Round robin picker. See the [module docs](self).
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// Creates a round robin picker that starts at the first backend.
    pub const fn new() -> Self {
        Self {
            next: AtomicUsize::new(0),
        }
    }

    /// The next index in rotation among `n` backends, skipping those `ready` refuses.
    #[inline]
    pub(crate) fn rotate(&self, n: usize, ready: &mut impl FnMut(usize) -> bool) -> Option<usize> {
        if n == 0 {
            return None;
        }
        // One division per pick; the walk past refusing backends wraps by comparison.
        let start = self.next.fetch_add(1, Relaxed) % n;
        for (step, i) in around(start, n).enumerate() {
            if ready(i) {
                if step > 0 {
                    // Continue the rotation after the backend taken, not after the skipped one.
                    self.next.store(start + step + 1, Relaxed);
                }
                return Some(i);
            }
        }
        None
    }
}

impl Configure for RoundRobin {
    fn configure(_: &AlgoConfig) -> Self {
        Self::new()
    }
}

impl<K: Send + Sync + 'static> Pick<K> for RoundRobin {
    type Table = ();

    fn build(&self, _: &[Arc<Endpoint<K>>]) -> Self::Table {}

    #[inline]
    fn pick<B>(
        &self,
        _: &(),
        endpoints: &[Arc<Endpoint<K>>],
        _: &http::Request<B>,
        ready: &mut impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        self.rotate(endpoints.len(), ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::test_support::{endpoints, pick_n};

    #[test]
    fn rotates_strictly() {
        let eps = endpoints(&[1, 1, 1]);
        assert_eq!(
            pick_n(&RoundRobin::new(), &eps, 7, |_| true),
            [0, 1, 2, 0, 1, 2, 0]
        );
    }

    #[test]
    fn skips_backends_that_are_not_ready() {
        let eps = endpoints(&[1, 1, 1, 1]);
        assert_eq!(
            pick_n(&RoundRobin::new(), &eps, 6, |i| i != 1),
            [0, 2, 3, 0, 2, 3]
        );
        assert_eq!(
            pick_n(&RoundRobin::new(), &eps, 2, |_| false),
            Vec::<usize>::new()
        );
    }
}
