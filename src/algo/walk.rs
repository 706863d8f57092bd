//! Walking `0..n` from a starting index and around, as the pickers do past a backend that is
//! not ready.

/// `start, start + 1, …, n - 1, 0, …, start - 1` (`start < n`), wrapped by comparison: a pick
/// path pays no division per step.
#[inline]
pub(crate) fn around(start: usize, n: usize) -> impl Iterator<Item = usize> {
    debug_assert!(start < n, "start {start} out of 0..{n}");
    (start..n).chain(0..start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_once_from_the_start() {
        assert_eq!(around(2, 5).collect::<Vec<_>>(), [2, 3, 4, 0, 1]);
        assert_eq!(around(0, 3).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(around(0, 1).collect::<Vec<_>>(), [0]);
    }
}
