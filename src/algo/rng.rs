use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A lock-free, seedable random source shared by every clone of a balancer.
///
/// SplitMix64 over an atomic counter: each draw is one `fetch_add`, and the same seed gives
/// the same sequence on one thread, so tests and benches are deterministic.
#[derive(Debug)]
pub(crate) struct Rng {
    state: AtomicU64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl Rng {
    pub(crate) fn from_seed(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    pub(crate) fn from_entropy() -> Self {
        Self::from_seed(rand::random())
    }

    #[inline]
    pub(crate) fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GOLDEN_GAMMA, Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `0..n` (`n > 0`), by Lemire's multiply-shift.
    #[inline]
    pub(crate) fn below(&self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_in_range() {
        let (a, b) = (Rng::from_seed(7), Rng::from_seed(7));
        for _ in 0..1000 {
            let x = a.below(13);
            assert_eq!(x, b.below(13));
            assert!(x < 13);
        }
    }

    #[test]
    fn below_is_roughly_uniform() {
        let rng = Rng::from_seed(1);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[rng.below(4)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
