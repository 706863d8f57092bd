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

    /// Two uniform numbers, in `0..n` and `0..m` (both `> 0`), from one draw when both fit in
    /// 32 bits: each half of the 64 random bits is scaled by multiply-shift (bias below
    /// `n / 2³²`). One atomic step instead of two, for power of two choices.
    #[inline]
    pub(crate) fn two_below(&self, n: usize, m: usize) -> (usize, usize) {
        match (u32::try_from(n), u32::try_from(m)) {
            (Ok(n), Ok(m)) => {
                let x = self.next_u64();
                let scale = |half: u64, k: u32| ((half * u64::from(k)) >> 32) as usize;
                (scale(x >> 32, n), scale(x & 0xFFFF_FFFF, m))
            }
            _ => (self.below(n), self.below(m)),
        }
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
    fn two_below_is_in_range_roughly_uniform_and_independent() {
        let rng = Rng::from_seed(3);
        let mut counts = [[0u32; 3]; 4];
        for _ in 0..120_000 {
            let (a, b) = rng.two_below(4, 3);
            counts[a][b] += 1;
        }
        for c in counts.iter().flatten() {
            assert!((9_000..11_000).contains(c), "{counts:?}");
        }
        let big = usize::MAX / 2;
        let (a, b) = rng.two_below(big, 7);
        assert!(a < big && b < 7);
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
