//! Power of two choices: of two distinct random ready backends, the less loaded wins.
//!
//! Load is requests in flight divided by weight. Sampling two instead of scanning all keeps the
//! pick O(1) and avoids the herd effect of least-connections when many balancers share stale
//! load information, while the maximum load stays exponentially better than random (Mitzenmacher,
//! "The Power of Two Choices in Randomized Load Balancing", 2001). tower's `balance::p2c` and
//! Envoy's `LEAST_REQUEST` use it. Choose it as a robust default for many backends.

use std::sync::Arc;

use super::rng::Rng;
use super::walk::around;
use super::{AlgoConfig, Configure, Pick};
use crate::balance::Endpoint;

/// Power of two choices picker. See the [module docs](self).
#[derive(Debug)]
pub struct PowerOfTwoChoices {
    rng: Rng,
}

impl PowerOfTwoChoices {
    /// A picker seeded from the operating system.
    pub fn new() -> Self {
        Self {
            rng: Rng::from_entropy(),
        }
    }

    /// A picker with a fixed seed, for reproducible tests and benchmarks.
    pub fn from_seed(seed: u64) -> Self {
        Self {
            rng: Rng::from_seed(seed),
        }
    }
}

impl Default for PowerOfTwoChoices {
    fn default() -> Self {
        Self::new()
    }
}

/// Draws two distinct indices in `0..n`, tries the cheaper then the other; if neither is ready,
/// falls back to the first ready one after a random start. `cheaper(a, b)` tells whether `b`
/// is cheaper than `a` (a tie keeps `a` first): costs compare more cheaply as a pair than one
/// by one (cross-multiplied rather than divided).
#[inline]
pub(crate) fn two_choices_by(
    rng: &Rng,
    n: usize,
    ready: &mut impl FnMut(usize) -> bool,
    cheaper: impl FnOnce(usize, usize) -> bool,
) -> Option<usize> {
    match n {
        0 => None,
        1 => ready(0).then_some(0),
        _ => {
            let (a, skip) = rng.two_below(n, n - 1);
            // `a + 1 + skip < 2n - 1`: wrapped by comparison, not by a division.
            let b = a + 1 + skip;
            let b = if b >= n { b - n } else { b };
            let (first, second) = if cheaper(a, b) { (b, a) } else { (a, b) };
            if ready(first) {
                return Some(first);
            }
            if ready(second) {
                return Some(second);
            }
            around(second, n)
                .skip(1)
                .find(|&i| i != first && ready(i))
        }
    }
}

impl Configure for PowerOfTwoChoices {
    fn configure(config: &AlgoConfig) -> Self {
        config.seed.map_or_else(Self::new, Self::from_seed)
    }
}

impl<K: Send + Sync + 'static> Pick<K> for PowerOfTwoChoices {
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
        two_choices_by(&self.rng, endpoints.len(), ready, |a, b| {
            // in_flight / weight, compared cross-multiplied instead of divided.
            let (a, b) = (&endpoints[a], &endpoints[b]);
            let load = |e: &Endpoint<K>, other: &Endpoint<K>| {
                (e.in_flight() as u64).saturating_mul(u64::from(other.weight()))
            };
            load(b, a) < load(a, b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::test_support::{endpoints, pick_n};

    #[test]
    fn prefers_the_less_loaded_of_two() {
        let eps = endpoints(&[1, 1]);
        for _ in 0..5 {
            eps[0].stats().start();
        }
        assert_eq!(
            pick_n(&PowerOfTwoChoices::from_seed(1), &eps, 20, |_| true),
            [1; 20]
        );
    }

    #[test]
    fn never_picks_the_most_loaded_of_three() {
        let eps = endpoints(&[1, 1, 1]);
        eps[2].stats().start();
        let picks = pick_n(&PowerOfTwoChoices::from_seed(5), &eps, 3000, |_| true);
        assert!(!picks.contains(&2));
        assert!(picks.contains(&0) && picks.contains(&1));
    }

    #[test]
    fn weight_scales_load_and_unready_are_skipped() {
        let eps = endpoints(&[4, 1]);
        for _ in 0..3 {
            eps[0].stats().start();
        }
        eps[1].stats().start();
        // 3/4 < 1/1: the heavier backend wins despite more requests in flight.
        assert_eq!(
            pick_n(&PowerOfTwoChoices::from_seed(2), &eps, 10, |_| true),
            [0; 10]
        );
        assert_eq!(
            pick_n(&PowerOfTwoChoices::from_seed(2), &eps, 10, |i| i == 1),
            [1; 10]
        );
        assert_eq!(
            pick_n(&PowerOfTwoChoices::from_seed(2), &eps, 3, |_| false),
            Vec::<usize>::new()
        );
    }
}
