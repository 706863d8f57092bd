//! The backends that refused a request during one pick, shared by the algorithms that walk on
//! past backends that are not ready ([`WeightedRoundRobin`](super::WeightedRoundRobin)'s
//! sequence, [`SourceIpHash`](super::SourceIpHash)'s ring).

/// The backends that refused a request during one pick, so that each is asked only once: a
/// few inline, then a bitset over all `n`.
#[derive(Debug)]
pub(crate) struct Refused {
    n: usize,
    count: usize,
    inline: [usize; 8],
    bits: Vec<u64>,
}

impl Refused {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            n,
            count: 0,
            inline: [usize::MAX; 8],
            bits: Vec::new(),
        }
    }

    #[inline]
    pub(crate) fn contains(&self, i: usize) -> bool {
        if self.bits.is_empty() {
            self.inline[..self.count].contains(&i)
        } else {
            self.bits[i / 64] & (1 << (i % 64)) != 0
        }
    }

    /// Records `i`, which is not yet recorded.
    pub(crate) fn insert(&mut self, i: usize) {
        if self.bits.is_empty() && self.count < self.inline.len() {
            self.inline[self.count] = i;
        } else {
            if self.bits.is_empty() {
                self.bits = vec![0; self.n.div_ceil(64)];
                for &j in &self.inline {
                    self.bits[j / 64] |= 1 << (j % 64);
                }
            }
            self.bits[i / 64] |= 1 << (i % 64);
        }
        self.count += 1;
    }

    /// Whether every backend has refused.
    #[inline]
    pub(crate) fn all(&self) -> bool {
        self.count >= self.n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_set_switches_from_inline_to_bits() {
        let mut refused = Refused::new(100);
        for i in (0..100).step_by(3) {
            assert!(!refused.contains(i));
            refused.insert(i);
            assert!(refused.contains(i));
        }
        assert!((0..100).all(|i| refused.contains(i) == (i % 3 == 0)));
        assert!(!refused.all());
        let mut small = Refused::new(2);
        small.insert(1);
        small.insert(0);
        assert!(small.all() && small.contains(0) && small.contains(1));
    }
}
