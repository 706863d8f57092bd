//! Least response time: Peak-EWMA latency × (in-flight + 1), chosen by power of two choices.
//!
//! Each backend keeps an exponentially weighted moving average of its response time that jumps
//! to any slower sample at once (the *peak*) and decays back over `decay` (10 s by default). Its
//! cost is that estimate times its requests in flight plus one, divided by its weight; each
//! request compares the costs of two random ready backends and takes the cheaper. A backend
//! without samples starts from a conservative `default_rtt` (30 ms) so it is not flooded before
//! it has shown how fast it is.
//!
//! Choose it when backends differ in speed or slow down under load: it moves traffic off a
//! degrading backend within a few requests. This is Finagle's and linkerd's balancer
//! (`P2CPeakEwma`, described in "Beyond Round Robin: Load Balancing for Latency", Buoyant 2016)
//! and tower's `PeakEwma` load; response time is measured to the response headers.
//!
//! # Cost per request
//!
//! A pick reads no clock: both candidates' estimates are decayed to the later of their two
//! update times, and since from there on both decay by the same factor, the comparison comes
//! out as it would at any later instant (this is exact, not an approximation). A decay shorter
//! than 1/64 of `decay` (156 ms of the default 10 s), the usual case under load, is computed by
//! a fifth-degree Taylor polynomial instead of `exp()`, with a relative error below 3e-14.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::{AlgoConfig, Configure, Pick};
use super::clock::now_ns;
use super::p2c::two_choices_by;
use super::rng::Rng;
use crate::balance::{Endpoint, Stats};

const NEVER: u64 = u64::MAX;

/// A backend's Peak-EWMA response-time estimate, lock-free.
///
/// Updates race benignly: two responses finishing at once may each overwrite the other's
/// sample, which an average tolerates.
#[derive(Debug)]
pub(crate) struct Rtt {
    cost_ns: AtomicU64,
    stamp_ns: AtomicU64,
}

impl Rtt {
    pub(crate) fn new() -> Self {
        Self {
            cost_ns: AtomicU64::new(NEVER),
            stamp_ns: AtomicU64::new(now_ns()),
        }
    }

    /// The estimate as last stored, with `default` standing in before the first sample, and
    /// when it was stored.
    #[inline]
    fn sample(&self, default_ns: f64) -> (f64, u64) {
        let bits = self.cost_ns.load(Relaxed);
        let cost = if bits == NEVER {
            default_ns
        } else {
            f64::from_bits(bits)
        };
        (cost, self.stamp_ns.load(Relaxed))
    }

    /// The estimate decayed to `now`, with `default` standing in before the first sample.
    #[inline]
    pub(crate) fn cost_at(&self, now: u64, default_ns: f64, decay_ns: f64) -> f64 {
        let (cost, stamp) = self.sample(default_ns);
        cost * decay_weight(now.saturating_sub(stamp), decay_ns)
    }

    /// Feeds one response time in.
    pub(crate) fn observe(&self, rtt_ns: u64, now: u64, default_ns: f64, decay_ns: f64) {
        let (cost, stamp) = self.sample(default_ns);
        let rtt = rtt_ns as f64;
        // As Finagle's `PeakEwma` and tower's `RttEstimate::update` do: a sample slower than
        // the estimate replaces it at once (the peak); a faster one is averaged in, weighted by
        // the time since the last update.
        let next = if rtt > cost {
            rtt
        } else {
            let w = decay_weight(now.saturating_sub(stamp), decay_ns);
            cost * w + rtt * (1.0 - w)
        };
        self.stamp_ns.store(now, Relaxed);
        self.cost_ns.store(next.to_bits(), Relaxed);
    }

    /// The estimate without a default, decayed to now.
    pub(crate) fn estimate_ns(&self) -> Option<f64> {
        (self.cost_ns.load(Relaxed) != NEVER)
            .then(|| self.cost_at(now_ns(), 0.0, DEFAULT_DECAY.as_nanos() as f64))
    }
}

/// `exp(-elapsed / decay)`, the weight an estimate `elapsed` old keeps.
///
/// Below 1/64 of `decay` by the Taylor polynomial of degree 5 (relative error under
/// x⁶/720 < 3e-14), which costs a few multiplications where `exp()` costs a call.
#[inline]
fn decay_weight(elapsed_ns: u64, decay_ns: f64) -> f64 {
    let x = elapsed_ns as f64 / decay_ns;
    if x < 1.0 / 64.0 {
        1.0 - x * (1.0 - x * (1.0 / 2.0 - x * (1.0 / 6.0 - x * (1.0 / 24.0 - x * (1.0 / 120.0)))))
    } else {
        (-x).exp()
    }
}

const DEFAULT_RTT: Duration = Duration::from_millis(30);
const DEFAULT_DECAY: Duration = Duration::from_secs(10);

/// Peak-EWMA least-time picker. See the [module docs](self).
#[derive(Debug)]
pub struct LeastTime {
    rng: Rng,
    default_ns: f64,
    decay_ns: f64,
}

impl LeastTime {
    /// A picker with a 30 ms default response time and a 10 s decay, seeded from the OS.
    pub fn new() -> Self {
        Self::from_rng_seed(rand::random())
    }

    /// The same with a fixed seed, for reproducible tests and benchmarks.
    pub fn from_rng_seed(seed: u64) -> Self {
        Self {
            rng: Rng::from_seed(seed),
            default_ns: DEFAULT_RTT.as_nanos() as f64,
            decay_ns: DEFAULT_DECAY.as_nanos() as f64,
        }
    }

    /// The response time assumed for a backend with no samples yet.
    #[must_use]
    pub fn default_rtt(mut self, rtt: Duration) -> Self {
        self.default_ns = rtt.as_nanos() as f64;
        self
    }

    /// How fast the estimate forgets: samples older than `decay` weigh about 1/e.
    #[must_use]
    pub fn decay(mut self, decay: Duration) -> Self {
        self.decay_ns = (decay.as_nanos() as f64).max(1.0);
        self
    }

    pub(crate) fn observe(&self, stats: &Stats, rtt: Duration) {
        stats.rtt.observe(
            rtt.as_nanos() as u64,
            now_ns(),
            self.default_ns,
            self.decay_ns,
        );
    }

    /// Whether `b` costs less than `a`: estimate × (in flight + 1) / weight, both estimates
    /// decayed to the later of their update times (see the [module docs](self)).
    #[inline]
    fn cheaper<K>(&self, a: &Endpoint<K>, b: &Endpoint<K>) -> bool {
        let (cost_a, stamp_a) = a.stats().rtt.sample(self.default_ns);
        let (cost_b, stamp_b) = b.stats().rtt.sample(self.default_ns);
        let now = stamp_a.max(stamp_b);
        let load = |e: &Endpoint<K>| (e.in_flight() as f64 + 1.0) / f64::from(e.weight());
        let a = cost_a * decay_weight(now - stamp_a, self.decay_ns) * load(a);
        let b = cost_b * decay_weight(now - stamp_b, self.decay_ns) * load(b);
        b < a
    }
}

impl Default for LeastTime {
    fn default() -> Self {
        Self::new()
    }
}

impl Configure for LeastTime {
    fn configure(config: &AlgoConfig) -> Self {
        config.seed.map_or_else(Self::new, Self::from_rng_seed)
    }
}

impl<K: Send + Sync + 'static> Pick<K> for LeastTime {
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
            self.cheaper(&endpoints[a], &endpoints[b])
        })
    }

    fn tracks_latency(&self) -> bool {
        true
    }

    fn observe_latency(&self, stats: &Stats, rtt: Duration) {
        self.observe(stats, rtt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::test_support::{endpoints, pick_n};

    #[tokio::test(start_paused = true)]
    async fn peak_takes_slow_samples_at_once_and_decays_back() {
        let rtt = Rtt::new();
        let (default, decay) = (30e6, 10e9);
        let t0 = now_ns();
        assert_eq!(rtt.cost_at(t0, default, decay), default);
        rtt.observe(200_000_000, t0, default, decay);
        assert_eq!(rtt.cost_at(t0, default, decay), 200e6);
        tokio::time::advance(Duration::from_secs(10)).await;
        let later = rtt.cost_at(now_ns(), default, decay);
        assert!((later - 200e6 / std::f64::consts::E).abs() < 1e3, "{later}");
        // A fast sample after a long while pulls the average most of the way down.
        tokio::time::advance(Duration::from_secs(30)).await;
        rtt.observe(1_000_000, now_ns(), default, decay);
        assert!(rtt.cost_at(now_ns(), default, decay) < 5e6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_faster_sample_is_averaged_in_by_the_time_since_the_last() {
        let rtt = Rtt::new();
        let (default, decay) = (30e6, 10e9);
        rtt.observe(200_000_000, now_ns(), default, decay);
        // One decay period later: the old estimate keeps 1/e of its weight, once.
        tokio::time::advance(Duration::from_secs(10)).await;
        let now = now_ns();
        rtt.observe(100_000_000, now, default, decay);
        let w = (-1.0f64).exp();
        let expected = 200e6 * w + 100e6 * (1.0 - w);
        let got = rtt.cost_at(now, default, decay);
        assert!((got - expected).abs() < 1e3, "{got} vs {expected}");
        // A second sample at the same instant moves nothing: no time has passed.
        rtt.observe(10_000_000, now, default, decay);
        assert!((rtt.cost_at(now, default, decay) - expected).abs() < 1e3);
    }

    #[test]
    fn decay_weight_matches_exp() {
        let decay = 10e9;
        for elapsed in
            (0..200)
                .map(|k| k * 1_000_000)
                .chain([156_249_999, 156_250_000, 40e9 as u64])
        {
            let exact = (-(elapsed as f64) / decay).exp();
            let got = decay_weight(elapsed, decay);
            assert!(
                ((got - exact) / exact).abs() < 3e-14,
                "{elapsed}: {got} vs {exact}"
            );
        }
        assert_eq!(decay_weight(0, decay), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn pick_agrees_with_the_costs_decayed_to_now() {
        let eps = endpoints(&[1, 1, 1]);
        let lt = LeastTime::from_rng_seed(3).decay(Duration::from_secs(1));
        // Updated at different times, so a pick decays them by different amounts.
        lt.observe(eps[0].stats(), Duration::from_millis(40));
        tokio::time::advance(Duration::from_millis(700)).await;
        lt.observe(eps[1].stats(), Duration::from_millis(25));
        tokio::time::advance(Duration::from_millis(300)).await;
        eps[2].stats().start();
        lt.observe(eps[2].stats(), Duration::from_millis(9));
        for wait in [0, 5, 200, 3_000] {
            tokio::time::advance(Duration::from_millis(wait)).await;
            let now = now_ns();
            let cost = |i: usize| {
                let e: &Endpoint<usize> = &eps[i];
                e.stats().rtt.cost_at(now, lt.default_ns, lt.decay_ns)
                    * (e.in_flight() as f64 + 1.0)
            };
            for (a, b) in [(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)] {
                assert_eq!(
                    lt.cheaper(&eps[a], &eps[b]),
                    cost(b) < cost(a),
                    "{a} vs {b} after {wait} ms: {} vs {}",
                    cost(a),
                    cost(b)
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn prefers_the_faster_backend() {
        let eps = endpoints(&[1, 1]);
        let lt = LeastTime::from_rng_seed(9);
        lt.observe(eps[0].stats(), Duration::from_millis(50));
        lt.observe(eps[1].stats(), Duration::from_millis(5));
        let picks = pick_n(&lt, &eps, 1000, |_| true);
        // With two backends both are always compared, so the cheaper one always wins.
        assert!(picks.iter().all(|&i| i == 1));
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_requests_raise_the_cost() {
        let eps = endpoints(&[1, 1]);
        let lt = LeastTime::from_rng_seed(9);
        lt.observe(eps[0].stats(), Duration::from_millis(10));
        lt.observe(eps[1].stats(), Duration::from_millis(5));
        for _ in 0..3 {
            eps[1].stats().start();
        }
        // 10 ms × 1 beats 5 ms × 4.
        assert_eq!(pick_n(&lt, &eps, 10, |_| true), [0; 10]);
    }
}
