//! Random: each request goes to a backend drawn at random, in proportion to its weight.
//!
//! Stateless and cheap; over many requests it spreads load like weighted round robin, without
//! the rotation's lockstep between balancers that share a fleet. Choose it when several
//! independent balancers front the same backends. HAProxy's `balance random` without draws.

use std::sync::Arc;

use super::rng::Rng;
use super::walk::around;
use super::{AlgoConfig, Configure, Pick};
use crate::balance::Endpoint;

/// Weighted random picker. See the [module docs](self).
#[derive(Debug)]
pub struct Random {
    rng: Rng,
}

impl Random {
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

impl Default for Random {
    fn default() -> Self {
        Self::new()
    }
}

/// Prefix sums of the weights, present only when weights differ.
#[derive(Debug)]
pub struct RandomTable {
    cumulative: Option<Box<[u64]>>,
}

impl Configure for Random {
    fn configure(config: &AlgoConfig) -> Self {
        config.seed.map_or_else(Self::new, Self::from_seed)
    }
}

impl<K: Send + Sync + 'static> Pick<K> for Random {
    type Table = RandomTable;

    fn build(&self, endpoints: &[Arc<Endpoint<K>>]) -> RandomTable {
        let uniform = endpoints.windows(2).all(|w| w[0].weight() == w[1].weight());
        let cumulative = (!uniform).then(|| {
            endpoints
                .iter()
                .scan(0u64, |sum, e| {
                    *sum += u64::from(e.weight());
                    Some(*sum)
                })
                .collect()
        });
        RandomTable { cumulative }
    }

    #[inline]
    fn pick<B>(
        &self,
        table: &RandomTable,
        endpoints: &[Arc<Endpoint<K>>],
        _: &http::Request<B>,
        ready: &mut impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        let draw = || match &table.cumulative {
            None => self.rng.below(n),
            Some(cumulative) => {
                let total = *cumulative.last().expect("non-empty");
                let x = ((u128::from(self.rng.next_u64()) * u128::from(total)) >> 64) as u64;
                cumulative.partition_point(|&c| c <= x)
            }
        };
        // A few fresh draws keep the choice unbiased when a backend is not ready; if they all
        // miss, walk on from the last one so a mostly-down set still finds its ready backends.
        let mut i = draw();
        for _ in 0..3 {
            if ready(i) {
                return Some(i);
            }
            i = draw();
        }
        around(i, n).find(|&i| ready(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::test_support::{endpoints, pick_n};

    #[test]
    fn follows_weights() {
        let eps = endpoints(&[3, 1]);
        let picks = pick_n(&Random::from_seed(42), &eps, 40_000, |_| true);
        let a = picks.iter().filter(|&&i| i == 0).count();
        assert!((29_000..31_000).contains(&a), "{a}");
    }

    #[test]
    fn uniform_weights_spread_evenly_and_skip_unready() {
        let eps = endpoints(&[1, 1, 1, 1]);
        let picks = pick_n(&Random::from_seed(3), &eps, 30_000, |i| i != 2);
        let mut counts = [0; 4];
        for i in picks {
            counts[i] += 1;
        }
        assert_eq!(counts[2], 0);
        assert!(
            counts[0] > 8_000 && counts[1] > 8_000 && counts[3] > 8_000,
            "{counts:?}"
        );
    }
}
