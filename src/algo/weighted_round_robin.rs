//! Smooth weighted round robin: rotation in proportion to weight, spread out, never in bursts.
//!
//! This is nginx's algorithm (`ngx_http_upstream_get_peer`, 2012; also LVS's and Envoy's
//! default for weighted round robin): every backend has a *current* weight; for each request
//! every current weight grows by the backend's weight, the backend with the largest current
//! weight (the first one on a tie) is chosen, and the total of the weights is taken off its
//! current weight. With weights 5, 1, 1 the order is `a a b a c a a`, repeating: each backend
//! gets its share of every period and the heavy one never takes a run of five.
//!
//! Choose it for backends of different capacity and short, uniform requests.
//!
//! # How it stays lock-free
//!
//! The sequence is a pure function of the weights, so [`build`](super::Pick::build) runs the
//! algorithm once, off the request path, for one full period (the sum of the weights after
//! dividing them by their greatest common divisor) and stores it; a request takes the next
//! entry with one atomic increment. Backends of equal weight move in lockstep in nginx's
//! algorithm (they take turns in index order), so the precomputation works on groups of equal
//! weight and costs *period × distinct weights* steps.
//!
//! The period is capped at [`MAX_PERIOD`] entries (4 MiB), and *period × distinct weights* at
//! [`MAX_BUILD_STEPS`]. When the weights would exceed either, they are scaled down in proportion
//! (rounded, each kept at least 1) until they fit. Shares then stay the requested ones to within
//! that rounding, except that a weight below *total / period* is raised to the smallest share,
//! one entry per period. Ordinary weights (up to a few hundred, a few distinct values) are
//! never scaled.
//!
//! A backend that is not ready is skipped: the request takes the next entry of the sequence
//! whose backend is ready, so the others keep their relative order. After one period without a
//! ready backend the pick gives up.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::{AlgoConfig, Configure, Pick};
use super::refused::Refused;
use crate::balance::Endpoint;

/// The most entries a precomputed period holds.
pub const MAX_PERIOD: usize = 1 << 20;

/// The most steps (period × distinct weights) a table build may take.
pub const MAX_BUILD_STEPS: usize = 1 << 25;

/// Smooth weighted round robin picker. See the [module docs](self).
#[derive(Debug, Default, Clone, Copy)]
pub struct WeightedRoundRobin {
    _priv: (),
}

impl WeightedRoundRobin {
    /// Creates the picker; its position in the sequence lives in each set's table.
    pub const fn new() -> Self {
        Self { _priv: () }
    }
}

/// One period of the smooth weighted sequence, and the position in it.
#[derive(Debug)]
pub struct WeightedRoundRobinTable {
    sequence: Box<[u32]>,
    next: AtomicUsize,
}

impl WeightedRoundRobinTable {
    /// The precomputed period: backend indices in the order they are picked.
    pub fn sequence(&self) -> &[u32] {
        &self.sequence
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn distinct(weights: &[u64]) -> usize {
    let mut sorted = weights.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.len()
}

/// Divides `weights` by their gcd, then scales them down in proportion while the period or the
/// build cost would exceed the caps. Weights are at least 1 and `weights` is not empty.
pub(crate) fn reduce(weights: &[u64]) -> Vec<u64> {
    let divide = |ws: &[u64]| {
        let g = ws.iter().fold(0, |g, &w| gcd(g, w)).max(1);
        ws.iter().map(|w| w / g).collect::<Vec<_>>()
    };
    let original = divide(weights);
    let total: u64 = original.iter().sum();
    let fits = |ws: &[u64]| {
        let period: u64 = ws.iter().sum();
        period <= MAX_PERIOD as u64
            && (period as u128) * (distinct(ws) as u128) <= MAX_BUILD_STEPS as u128
    };
    if fits(&original) {
        return original;
    }
    let n = original.len() as u64;
    let mut target = (MAX_PERIOD as u64).min(total);
    loop {
        let scaled = divide(
            &original
                .iter()
                .map(|&w| {
                    let x = (u128::from(w) * u128::from(target) + u128::from(total) / 2)
                        / u128::from(total);
                    (x as u64).max(1)
                })
                .collect::<Vec<_>>(),
        );
        if fits(&scaled) || target <= n {
            return scaled;
        }
        target = (target / 2).max(n);
    }
}

/// nginx's smooth weighted round robin over `weights`, for one period.
///
/// Backends of equal weight take turns in index order, so each group of equal weight acts as
/// one candidate: its representative is the member whose turn it is, with the group's current
/// weight `t·w − total·(picks / members)`. Ties go to the lower backend index, as in nginx.
pub(crate) fn smooth_sequence(weights: &[u64]) -> Vec<u32> {
    struct Group {
        weight: i64,
        members: Vec<u32>,
        picks: usize,
    }
    let mut by_weight: Vec<(u64, u32)> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| (w, i as u32))
        .collect();
    by_weight.sort_unstable();
    let mut groups: Vec<Group> = Vec::new();
    for (w, i) in by_weight {
        match groups.last_mut() {
            Some(g) if g.weight == w as i64 => g.members.push(i),
            _ => groups.push(Group {
                weight: w as i64,
                members: vec![i],
                picks: 0,
            }),
        }
    }
    let total: u64 = weights.iter().sum();
    // Fits: the period is capped at about 2^20, so t·w stays below 2^42.
    let total_i = total as i64;
    let mut sequence = Vec::with_capacity(total as usize);
    for t in 1..=total_i {
        let mut best: Option<(usize, i64, u32)> = None;
        for (g, group) in groups.iter().enumerate() {
            let len = group.members.len();
            let rep = group.members[group.picks % len];
            let current = t * group.weight - total_i * (group.picks / len) as i64;
            let better = match best {
                None => true,
                Some((_, c, r)) => current > c || (current == c && rep < r),
            };
            if better {
                best = Some((g, current, rep));
            }
        }
        let (g, _, rep) = best.expect("at least one backend");
        groups[g].picks += 1;
        sequence.push(rep);
    }
    sequence
}

impl Configure for WeightedRoundRobin {
    fn configure(_: &AlgoConfig) -> Self {
        Self::new()
    }
}

impl<K: Send + Sync + 'static> Pick<K> for WeightedRoundRobin {
    type Table = WeightedRoundRobinTable;

    fn build(&self, endpoints: &[Arc<Endpoint<K>>]) -> WeightedRoundRobinTable {
        let sequence = if endpoints.is_empty() {
            Vec::new()
        } else {
            let weights: Vec<u64> = endpoints.iter().map(|e| u64::from(e.weight())).collect();
            smooth_sequence(&reduce(&weights))
        };
        WeightedRoundRobinTable {
            sequence: sequence.into_boxed_slice(),
            next: AtomicUsize::new(0),
        }
    }

    #[inline]
    fn pick<B>(
        &self,
        table: &WeightedRoundRobinTable,
        endpoints: &[Arc<Endpoint<K>>],
        _: &http::Request<B>,
        ready: &mut impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let sequence = &table.sequence;
        let period = sequence.len();
        if period == 0 {
            return None;
        }
        let start = table.next.fetch_add(1, Relaxed) % period;
        let first = sequence[start] as usize;
        if ready(first) {
            return Some(first);
        }
        skip_unready(table, endpoints.len(), start, first, ready)
    }
}

/// Walks on along the sequence past backends that are not ready, asking each backend once.
#[cold]
fn skip_unready(
    table: &WeightedRoundRobinTable,
    n: usize,
    start: usize,
    first: usize,
    ready: &mut impl FnMut(usize) -> bool,
) -> Option<usize> {
    let sequence = &table.sequence;
    let period = sequence.len();
    let mut refused = Refused::new(n);
    refused.insert(first);
    for step in 1..period {
        if refused.all() {
            return None;
        }
        let i = sequence[(start + step) % period] as usize;
        if refused.contains(i) {
            continue;
        }
        if ready(i) {
            // Continue the sequence after the entry taken, not after the skipped ones.
            table.next.store(start + step + 1, Relaxed);
            return Some(i);
        }
        refused.insert(i);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::test_support::{endpoints, pick_n};

    /// nginx's loop, literally: O(backends) per pick.
    fn nginx(weights: &[u64], n: usize) -> Vec<u32> {
        let total: i64 = weights.iter().map(|&w| w as i64).sum();
        let mut current = vec![0i64; weights.len()];
        (0..n)
            .map(|_| {
                let mut best = 0;
                for (i, &w) in weights.iter().enumerate() {
                    current[i] += w as i64;
                    if current[i] > current[best] {
                        best = i;
                    }
                }
                current[best] -= total;
                best as u32
            })
            .collect()
    }

    fn letters(picks: &[usize]) -> String {
        picks.iter().map(|&i| (b'a' + i as u8) as char).collect()
    }

    #[test]
    fn five_one_one_is_nginx_smooth_order() {
        let eps = endpoints(&[5, 1, 1]);
        let picks = pick_n(&WeightedRoundRobin::new(), &eps, 21, |_| true);
        assert_eq!(letters(&picks), "aabacaa".repeat(3));
    }

    #[test]
    fn three_two_sequence() {
        let eps = endpoints(&[3, 2]);
        let picks = pick_n(&WeightedRoundRobin::new(), &eps, 10, |_| true);
        assert_eq!(letters(&picks), "ababaababa");
    }

    #[test]
    fn equal_weights_rotate_strictly() {
        let eps = endpoints(&[2, 2, 2]);
        let picks = pick_n(&WeightedRoundRobin::new(), &eps, 7, |_| true);
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn matches_nginx_for_many_weight_vectors() {
        let rng = crate::algo::rng::Rng::from_seed(11);
        for round in 0..300 {
            let n = 1 + rng.below(9);
            let max = if round % 2 == 0 { 4 } else { 40 };
            let weights: Vec<u64> = (0..n).map(|_| 1 + rng.below(max) as u64).collect();
            let reduced = reduce(&weights);
            let period: u64 = reduced.iter().sum();
            assert_eq!(
                smooth_sequence(&reduced),
                nginx(&reduced, period as usize),
                "{weights:?}"
            );
            // Reducing by the gcd changes nothing but the length of the period.
            assert_eq!(
                nginx(&weights, 3 * period as usize),
                nginx(&reduced, 3 * period as usize),
                "{weights:?}"
            );
        }
    }

    #[test]
    fn period_is_reduced_by_the_gcd() {
        let eps = endpoints(&[10, 20, 30]);
        let table = Pick::<usize>::build(&WeightedRoundRobin::new(), &eps);
        assert_eq!(table.sequence().len(), 6);
        assert_eq!(reduce(&[10, 20, 30]), [1, 2, 3]);
        let eps = endpoints(&[7]);
        let table = Pick::<usize>::build(&WeightedRoundRobin::new(), &eps);
        assert_eq!(table.sequence(), [0]);
    }

    #[test]
    fn proportions_follow_larger_weights() {
        let weights = [100, 37, 13, 1];
        let eps = endpoints(&weights);
        let period = 151;
        let picks = pick_n(&WeightedRoundRobin::new(), &eps, 4 * period, |_| true);
        let mut counts = [0; 4];
        for &i in &picks {
            counts[i] += 1;
        }
        assert_eq!(counts, weights.map(|w| 4 * w as usize));
        // Smooth: within any window of one period no backend takes more than its share + 1.
        for window in picks.windows(period) {
            let heavy = window.iter().filter(|&&i| i == 0).count();
            assert!((99..=101).contains(&heavy), "{heavy}");
        }
        // The heaviest never runs more than ceil(100 / 51) + 1 times in a row.
        let longest = picks
            .chunk_by(|a, b| a == b)
            .filter(|run| run[0] == 0)
            .map(<[usize]>::len)
            .max();
        assert!(longest <= Some(3), "{longest:?}");
    }

    #[test]
    fn huge_weights_are_scaled_down_in_proportion() {
        let weights = [3_000_000_000, 1_000_000_001, 2];
        let reduced = reduce(&weights);
        let period: u64 = reduced.iter().sum();
        assert!(period <= MAX_PERIOD as u64 + 3, "{period}");
        let share = reduced[0] as f64 / period as f64;
        assert!((share - 0.75).abs() < 1e-4, "{share}");
        assert!(reduced[2] >= 1);

        // Many distinct weights: the build cost cap also applies, shares stay close.
        let weights: Vec<u64> = (1..=3000).collect();
        let reduced = reduce(&weights);
        let period: u64 = reduced.iter().sum();
        assert!(
            period as u128 * distinct(&reduced) as u128 <= MAX_BUILD_STEPS as u128,
            "{period}"
        );
        let total: u64 = weights.iter().sum();
        let share = |ws: &[u64], t: u64, i: usize| ws[i] as f64 / t as f64;
        assert!((share(&reduced, period, 2999) / share(&weights, total, 2999) - 1.0).abs() < 0.05);
    }

    #[test]
    fn skipping_an_unready_backend_keeps_the_others_order() {
        let eps = endpoints(&[5, 1, 1]);
        let picks = pick_n(&WeightedRoundRobin::new(), &eps, 8, |i| i != 0);
        assert_eq!(letters(&picks), "bcbcbcbc");

        let eps = endpoints(&[1, 3, 2]);
        let full = pick_n(&WeightedRoundRobin::new(), &eps, 12, |_| true);
        let without_b: Vec<usize> = full.iter().copied().filter(|&i| i != 1).collect();
        let picks = pick_n(&WeightedRoundRobin::new(), &eps, 6, |i| i != 1);
        assert_eq!(picks, without_b);
    }

    #[test]
    fn many_unready_backends_are_skipped() {
        let weights: Vec<u32> = (0..40).map(|i| 1 + i % 3).collect();
        let eps = endpoints(&weights);
        let mut asked = vec![0; 40];
        let picks = pick_n(&WeightedRoundRobin::new(), &eps, 10, |i| {
            asked[i] += 1;
            i >= 30
        });
        assert_eq!(picks.len(), 10);
        assert!(picks.iter().all(|&i| i >= 30));
        assert!(asked[..30].iter().all(|&a| a <= 10), "{asked:?}");
    }

    #[test]
    fn none_when_nothing_is_ready_asking_each_backend_once() {
        let eps = endpoints(&[5, 3, 1]);
        let mut asked = Vec::new();
        let picks = pick_n(&WeightedRoundRobin::new(), &eps, 3, |i| {
            asked.push(i);
            false
        });
        assert!(picks.is_empty());
        asked.sort_unstable();
        assert_eq!(asked, [0, 1, 2]);
        let picks = pick_n(&WeightedRoundRobin::new(), &endpoints(&[]), 3, |_| true);
        assert!(picks.is_empty());
    }
}
