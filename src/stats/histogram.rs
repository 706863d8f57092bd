//! Response-time histograms: fixed buckets of atomic counters, and their snapshot.
//!
//! A [`LatencyHistogram`] has 30 buckets whose upper bounds grow by half an octave (× 1.5,
//! then × 4/3), from 0.5 ms to 12.288 s, and one for anything slower (`+Inf`):
//!
//! ```text
//! 0.5 0.75 1 1.5 2 3 4 6 8 12 16 24 32 48 64 96 128 192 256 384 512 768 1024 1536 2048 3072
//! 4096 6144 8192 12288 ms, +Inf
//! ```
//!
//! So each bucket is at most 1.5 times as wide as its lower bound, and a quantile read from
//! them is within that factor (within a quarter or so, with the linear interpolation of
//! [`HistogramSnapshot::quantile`]). This is the layout of HdrHistogram's and DDSketch's
//! log-linear buckets, with one linear step per half octave; the bounds are the upper bounds
//! of Prometheus' `le` buckets (a sample equal to a bound falls in its bucket).
//!
//! Recording a sample costs two relaxed `fetch_add` (its bucket and the sum), no lock, no
//! allocation and no search: the bucket index comes from the position of the sample's
//! highest bit and the bit after it ([`bucket_index`]).

use std::fmt;
use std::ops::AddAssign;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The number of buckets: [`BOUNDS`] finite ones, and `+Inf`.
pub const BUCKETS: usize = 31;

/// The unit the bounds are integer multiples of: a quarter of a millisecond, in nanoseconds.
const QUARTER_MS: u64 = 250_000;

/// The upper bound of each finite bucket, in quarter milliseconds: `2, 3, 4, 6, 8, 12, …`,
/// `2^(k+1)` and `3 × 2^k`.
const QUARTERS: [u64; BUCKETS - 1] = {
    let mut bounds = [0; BUCKETS - 1];
    let mut i = 0;
    while i < BUCKETS - 1 {
        let k = (i / 2) as u32;
        bounds[i] = if i % 2 == 0 { 2 << k } else { 3 << k };
        i += 1;
    }
    bounds
};

/// The upper bound of each finite bucket (the last, `+Inf`, has none): 0.5 ms to 12.288 s.
pub const BOUNDS: [Duration; BUCKETS - 1] = {
    let mut bounds = [Duration::ZERO; BUCKETS - 1];
    let mut i = 0;
    while i < BUCKETS - 1 {
        bounds[i] = Duration::from_nanos(QUARTERS[i] * QUARTER_MS);
        i += 1;
    }
    bounds
};

/// The bucket a sample of `ns` nanoseconds falls in: the first whose bound is at least `ns`.
///
/// With `t = ⌈ns / ¼ ms⌉ - 1`, `t`'s highest bit `e` and the bit below it `m`, the bucket is
/// `2e - 1 + m` (and `0` for `t < 2`): `t` lies in `[2^e, 1.5 × 2^e)` or in
/// `[1.5 × 2^e, 2^(e+1))`. A division by a constant (a multiplication), a leading-zero count
/// and a few shifts.
#[inline]
pub(crate) const fn bucket_index(ns: u64) -> usize {
    let t = ns.saturating_sub(1) / QUARTER_MS;
    if t < 2 {
        return 0;
    }
    let e = 63 - t.leading_zeros();
    let m = (t >> (e - 1)) & 1;
    let i = (2 * e - 1) as usize + m as usize;
    if i < BUCKETS { i } else { BUCKETS - 1 }
}

/// A live response-time histogram: one relaxed atomic counter per bucket and the sum of the
/// samples. See the [module docs](self).
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
    /// Nanoseconds, wrapping after 584 years of samples.
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    /// Empty.
    pub const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Counts one sample: two relaxed atomic adds.
    #[inline]
    pub fn record(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_index(ns)].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// The counts now. Each is read once; samples recorded meanwhile may be in the buckets
    /// and not yet in the sum, or the other way round.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self.buckets.each_ref().map(|n| n.load(Relaxed)),
            sum: Duration::from_nanos(self.sum_ns.load(Relaxed)),
        }
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.snapshot(), f)
    }
}

/// A response-time histogram at one moment, from [`LatencyHistogram::snapshot`]: the count of
/// samples per bucket and their sum. See the [module docs](self) for the buckets.
///
/// Prometheus' `_bucket{le=…}`, `_sum` and `_count` series are [`cumulative`](Self::cumulative),
/// [`sum`](Self::sum) and [`count`](Self::count).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HistogramSnapshot {
    counts: [u64; BUCKETS],
    sum: Duration,
}

impl HistogramSnapshot {
    /// No samples.
    pub const EMPTY: Self = Self {
        counts: [0; BUCKETS],
        sum: Duration::ZERO,
    };

    /// The upper bound of each bucket but the last (`+Inf`); see [`BOUNDS`].
    pub const BOUNDS: [Duration; BUCKETS - 1] = BOUNDS;

    /// The samples in each bucket (not cumulative): `counts()[i]` were at most
    /// [`BOUNDS`](Self::BOUNDS)`[i]` and above the bound before; the last, above every bound.
    pub const fn counts(&self) -> &[u64; BUCKETS] {
        &self.counts
    }

    /// Each bucket's upper bound (`None` for `+Inf`) with the samples at most that long, as
    /// Prometheus' `le` buckets count them.
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        let bounds = BOUNDS.iter().copied().map(Some).chain([None]);
        bounds.zip(self.counts.iter().scan(0, |total, &n| {
            *total += n;
            Some(*total)
        }))
    }

    /// The number of samples.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of the samples.
    pub const fn sum(&self) -> Duration {
        self.sum
    }

    /// The mean sample; `None` without samples.
    pub fn mean(&self) -> Option<Duration> {
        let count = self.count();
        (count > 0).then(|| self.sum / u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// An estimate of the `q`-quantile (`0.5` for the median, `0.99` for p99), as Prometheus'
    /// `histogram_quantile` computes it: the bucket holding the rank `q × count`, and a linear
    /// interpolation between its bounds (from 0 in the first bucket). A rank in the `+Inf`
    /// bucket gives the highest finite bound. `None` without samples; `q` is clamped to
    /// `0..=1`.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut below = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            if n == 0 || ((below + n) as f64) < rank {
                below += n;
                continue;
            }
            let Some(&upper) = BOUNDS.get(i) else {
                break;
            };
            let lower = if i == 0 {
                Duration::ZERO
            } else {
                BOUNDS[i - 1]
            };
            let fraction = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            return Some(lower + (upper - lower).mul_f64(fraction));
        }
        Some(BOUNDS[BUCKETS - 2])
    }
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl AddAssign for HistogramSnapshot {
    /// Merges another backend's (or another moment's) samples in.
    fn add_assign(&mut self, rhs: Self) {
        for (count, n) in self.counts.iter_mut().zip(rhs.counts) {
            *count += n;
        }
        self.sum += rhs.sum;
    }
}

impl fmt::Debug for HistogramSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistogramSnapshot")
            .field("count", &self.count())
            .field("sum", &self.sum)
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// The index the bounds define, by a linear search: what `bucket_index` must agree with.
    fn by_search(ns: u64) -> usize {
        BOUNDS
            .iter()
            .position(|b| ns <= b.as_nanos() as u64)
            .unwrap_or(BUCKETS - 1)
    }

    #[test]
    fn bounds_run_from_half_a_millisecond_past_ten_seconds_by_half_octaves() {
        assert_eq!(BOUNDS[0], Duration::from_micros(500));
        assert_eq!(BOUNDS[1], Duration::from_micros(750));
        assert_eq!(BOUNDS[2], Duration::from_millis(1));
        assert_eq!(BOUNDS[3], Duration::from_micros(1500));
        assert_eq!(BOUNDS[29], Duration::from_millis(12_288));
        assert!(BOUNDS.iter().any(|b| *b == Duration::from_millis(8_192)));
        for pair in BOUNDS.windows(2) {
            assert!(pair[1] > pair[0]);
            assert!(pair[1].as_nanos() * 2 <= pair[0].as_nanos() * 3);
        }
    }

    #[test]
    fn index_agrees_with_a_search_of_the_bounds() {
        for bound in BOUNDS {
            let ns = bound.as_nanos() as u64;
            for sample in [ns - 1, ns, ns + 1] {
                assert_eq!(bucket_index(sample), by_search(sample), "{sample} ns");
            }
        }
        for sample in [
            0,
            1,
            249_999,
            250_000,
            250_001,
            499_999,
            20_000 * MS,
            u64::MAX,
        ] {
            assert_eq!(bucket_index(sample), by_search(sample), "{sample} ns");
        }
        // And everywhere in between, on a pseudo-random walk.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let sample = x % (15_000 * MS);
            assert_eq!(bucket_index(sample), by_search(sample), "{sample} ns");
        }
    }

    #[test]
    fn a_sample_on_a_bound_falls_in_that_bucket() {
        let histogram = LatencyHistogram::new();
        histogram.record(Duration::from_millis(1));
        histogram.record(Duration::from_micros(1001));
        histogram.record(Duration::from_secs(60));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.counts()[2], 1);
        assert_eq!(snapshot.counts()[3], 1);
        assert_eq!(snapshot.counts()[BUCKETS - 1], 1);
        assert_eq!(snapshot.count(), 3);
        assert_eq!(snapshot.sum(), Duration::from_micros(60_002_001));
    }

    #[test]
    fn cumulative_counts_end_with_the_total() {
        let histogram = LatencyHistogram::new();
        for ms in [0, 1, 2, 3, 100, 100, 20_000] {
            histogram.record(Duration::from_millis(ms));
        }
        let snapshot = histogram.snapshot();
        let cumulative: Vec<_> = snapshot.cumulative().collect();
        assert_eq!(cumulative.len(), BUCKETS);
        assert_eq!(cumulative[0], (Some(Duration::from_micros(500)), 1));
        assert_eq!(cumulative[2], (Some(Duration::from_millis(1)), 2));
        assert_eq!(cumulative[BUCKETS - 2].1, 6);
        assert_eq!(cumulative[BUCKETS - 1], (None, 7));
        assert!(cumulative.windows(2).all(|w| w[0].1 <= w[1].1));
        assert_eq!(snapshot.mean(), Some(Duration::from_millis(20_206) / 7));
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let histogram = LatencyHistogram::new();
        assert_eq!(histogram.snapshot().quantile(0.5), None);
        // 100 samples spread evenly over (64 ms, 96 ms]: the bucket of bound 96 ms.
        for i in 1..=100 {
            histogram.record(Duration::from_micros(64_000 + 320 * i));
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.quantile(0.5), Some(Duration::from_millis(80)));
        assert_eq!(snapshot.quantile(1.0), Some(Duration::from_millis(96)));
        assert_eq!(snapshot.quantile(0.0), Some(Duration::from_millis(64)));
        let p99 = snapshot.quantile(0.99).unwrap();
        assert!(p99 > Duration::from_millis(95) && p99 < Duration::from_millis(96));
    }

    #[test]
    fn quantiles_of_a_spread_are_within_the_bucket_width() {
        let histogram = LatencyHistogram::new();
        // 1 ms … 1000 ms, one sample each.
        for ms in 1..=1000 {
            histogram.record(Duration::from_millis(ms));
        }
        let snapshot = histogram.snapshot();
        for (q, exact) in [(0.5, 500.0), (0.9, 900.0), (0.99, 990.0)] {
            let estimate = snapshot.quantile(q).unwrap().as_secs_f64() * 1000.0;
            assert!(
                (estimate / exact - 1.0).abs() < 0.25,
                "p{q}: {estimate} ms for {exact} ms"
            );
        }
    }

    #[test]
    fn ranks_beyond_the_last_bound_give_the_last_bound() {
        let histogram = LatencyHistogram::new();
        histogram.record(Duration::from_secs(30));
        assert_eq!(
            histogram.snapshot().quantile(0.5),
            Some(Duration::from_millis(12_288))
        );
    }

    #[test]
    fn snapshots_merge() {
        let (a, b) = (LatencyHistogram::new(), LatencyHistogram::new());
        a.record(Duration::from_millis(1));
        b.record(Duration::from_millis(5));
        b.record(Duration::from_millis(5));
        let mut merged = a.snapshot();
        merged += b.snapshot();
        assert_eq!(merged.count(), 3);
        assert_eq!(merged.sum(), Duration::from_millis(11));
        assert_eq!(merged.counts()[7], 2, "(4 ms, 6 ms]");
    }
}
