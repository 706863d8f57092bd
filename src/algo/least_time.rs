//! Least response time: Peak-EWMA latency × the load above what it was measured at, chosen by
//! power of two choices, with failures counted as slow responses.
//!
//! Each backend keeps an exponentially weighted moving average of its response time that jumps
//! to any slower sample at once (the *peak*) and decays back over `decay` (10 s by default),
//! and beside it the average number of requests it had in flight when those answers came (its
//! *usual load*). Its cost is the estimate times `(in flight + 1) / √usual load`, at least
//! once, divided by its weight (see "The cost" below); each request compares the costs of two
//! random ready backends and takes the cheaper (of up to 8 backends, all are compared: with
//! two choices, two failing backends out of three would meet in a third of the pairs, and one
//! of them would be picked).
//!
//! Choose it when backends differ in speed or slow down under load: it moves traffic off a
//! degrading backend within a few requests.
//!
//! # Where it comes from, and what was chosen
//!
//! - **Finagle and linkerd2-proxy** (`P2CPeakEwma`; "Beyond Round Robin: Load Balancing for
//!   Latency", Buoyant 2016; tower's `load::PeakEwma`): cost = `ewma_rtt × (in_flight + 1)`,
//!   a slower sample replaces the estimate at once (peak sensitivity), a faster one is averaged
//!   in with weight `1 − e^(−Δt/τ)`, τ = 10 s, and a backend with no sample starts at a
//!   default of 30 ms. This picker keeps the estimate, its peak (a backend that turns slow
//!   loses its traffic with its first slow answer) and the default; it changes the in-flight
//!   factor, which models a backend serving one request at a time (see "The cost").
//! - **Envoy's least request** (`LEAST_REQUEST` with `active_request_bias`): weight ÷
//!   (active + 1)^bias over two (or more) random choices, plus **slow start**, which ramps a new
//!   backend's weight up over a window. Envoy's bias is a load exponent without latency; this
//!   picker's bias is 1 (Envoy's default), and slow start is the health layer's
//!   ([`HealthCheckLayer::slow_start`](crate::health::HealthCheckLayer::slow_start)), which
//!   works for every algorithm.
//! - **C3** (Suresh et al., "C3: Cutting Tail Latency in Cloud Data Stores via Adaptive Replica
//!   Selection", NSDI '15): score `R − 1/μ + q̂³/μ`, a cubic penalty on the queue estimate
//!   `q̂`, where the server reports its queue size and service time `1/μ` with every answer.
//!   HTTP backends report neither, so `R − 1/μ` cannot be separated from the queue term; the
//!   cubic is not used. Its lesson is kept in another form: the queue term grows with the
//!   requests in flight, so a backend piling up requests loses traffic fast.
//! - **linkerd2-proxy's failure-aware P2C** (linkerd2-proxy#4537, "an endpoint returning fast
//!   503s looks fast to PeakEwma"): failures are injected into the estimate as peak samples.
//!   Here every `5xx` response and every error from a backend's service (connect refused,
//!   reset, timed out) is observed as a response time of at least
//!   [`failure_penalty`](LeastTime::failure_penalty) (1 s by default): the peak takes it at
//!   once, so a backend answering `503` in microseconds is the *most* expensive one, not the
//!   cheapest.
//!
//! # The cost
//!
//! `ewma_rtt × (in_flight + 1)` estimates the time to drain a backend's queue if it serves one
//! request after the other. Most HTTP backends serve many at once (nginx, any async server, a
//! thread pool), and then the measured response time *already* contains whatever queueing the
//! backend has at its load: charging the in-flight requests again counts it twice. With many
//! requests in flight this decides where the tail goes. Closed loop, 32 connections, two
//! backends answering in 2 ms and one in 40 ms (`benches/compare/uneven.py`): each fast
//! backend holds about 16 requests, so it costs ≈ 3 ms × 17 ≈ 50 ms, more than the idle slow
//! one at 40 ms × 1; the slow backend was kept busy all the time, and any hiccup of a fast one
//! sent it more: p99 30 ms against the fast backends' own 2.8 ms.
//!
//! So the factor is taken *relative to the load the estimate was measured at*. Each answer
//! also records the requests in flight at the moment it arrived (itself included, so at least
//! 1), averaged with the same weight as the response time (without a peak); the cost is
//!
//! ```text
//! ewma_rtt × max(1, (in_flight + 1) / √usual_load) / weight
//! ```
//!
//! - A backend that serves one request at a time is measured at a load of 1 and costs exactly
//!   what Finagle's does.
//! - A backend that serves many at once and stays fast at its usual load `m` costs its
//!   response time × √m instead of × m: 3 ms × 4 = 12 ms for a fast backend at 16 in flight,
//!   well below an idle 40 ms one. A burst *above* that load still costs in proportion
//!   (Envoy's least request with `active_request_bias` = 1), so a backend piling up requests
//!   loses traffic.
//! - Why the square root and not `m` itself, which would make a parallel backend's load free
//!   at its usual depth (Little's law, `L = λW`, read backwards: a serial backend measured at
//!   load `m` answers in `m × s`, and `m × s × (n + 1) / m` is Finagle's drain time again)?
//!   Because the usual load follows the traffic the picker itself sends: with `/ m`, two equal
//!   backends cost the same at *any* split, nothing pulls them back together, and in a closed
//!   loop of 32 clients over two equal backends (the test
//!   `in_a_closed_loop_two_equal_backends_share_without_herding`) the split drifted to 5 % /
//!   95 %. With `/ √m` a backend's factor at its usual load is `√m`, which grows with the
//!   share it takes, so equal backends settle at equal shares. The price: a serial backend is
//!   charged √m times its drain time, so it sheds load a little early, never late.
//! - *Below* its usual load a backend is not assumed faster than it was measured (the factor
//!   stays at least 1): an idle slow backend costs its full 40 ms, not 40 ms ÷ √(its old
//!   load). With the fast backends at 12 ms it gets no traffic until its estimate has decayed
//!   (see "Probing and recovery") or they are loaded past their usual load.
//! - The load average has no peak: one answer at an unusual depth must not make that depth
//!   cheap from then on. A failure records the load too; its penalty (below) is charged whole,
//!   whatever the load.
//! - C3's cubic `q̂³` penalty (above) answers the same question — how much does a queue
//!   cost? — for servers that report their queue; this picker only has its own in-flight
//!   count and the answers' timing, and learns the backend's parallelism from them.
//!
//! The two cheapest backends of a small fleet (which is scanned whole) take turns at random
//! when within 2× of each other, so noise in one early sample does not herd every request
//! onto one of two equally fast backends.
//!
//! # Decay
//!
//! Between samples an estimate decays with time, `× e^(−Δt/τ)`, τ = 10 s as in Finagle; a
//! faster sample is averaged in with weight `1 − e^(−Δt/τ)`, **but at least 1/10**. Finagle's
//! purely time-based weight suits a few hundred answers a second; at thousands of answers a
//! second per backend each answer weighs ~1e-5, so one 15 ms hiccup of a 2 ms backend is
//! remembered for ln(15/2)·τ ≈ 20 s: the estimate becomes a slowly decaying *maximum*, fast
//! backends look 3× faster than a 40 ms one instead of 20×, and the slow one keeps the few
//! per cent of requests that make the p99 (what the issue measured: every balancer at 41 ms).
//! With the 1/10 floor a peak fades within a few dozen answers of a busy backend, while a
//! backend that answers rarely (a slow or failing one, probed now and then) still decays by
//! time.
//!
//! # The signal
//!
//! The response time is measured by the balancer from the moment the backend was picked to
//! the response head: time a request spent in a [`Queue`](crate::queue::Queue) or in the
//! server before the pick does not count (it would hide which backend is slow), and neither
//! does opening a new connection to the backend, which the backend's service reports with the
//! response ([`ConnectTime`](crate::balance::ConnectTime);
//! `proxy::HttpBackend` (feature `proxy`) does). A pool pays a connect once per
//! connection, so counting it made the first request on each connection look several times
//! slower than the backend is; a backend that fails to connect or times out still counts as a
//! failure.
//!
//! # Probing and recovery
//!
//! Between samples an estimate decays toward zero (`× e^(−Δt/τ)`), as Finagle's does, so a
//! backend that got no traffic because it was slow or failing becomes cheaper with time and
//! is tried again: after a failure (1 s penalty) against backends costing 20 ms, after about
//! τ·ln(1 s / 20 ms) ≈ 40 s, sooner under load (the others' factor grows). The first
//! fast answer after such a pause weighs `1 − e^(−Δt/τ)` (98 % after 40 s), so a recovered
//! backend gets its traffic back within seconds; one that is still slow or failing sets its
//! peak again and costs one request per probe (which [`Retry`](crate::retry::Retry) with
//! `retry_on` hides from clients).
//!
//! A backend that has never answered, and has no request in flight, takes the next request:
//! every new backend is measured by its first request. Its first answer replaces the default
//! outright (tower averages it in, so a new fast backend would pass for a 30 ms one for
//! seconds). Without the probe, the default of 30 ms alone decided: in a fleet answering in a
//! millisecond, the backend that happened to answer first was the cheapest by far, and the
//! others, never asked, stayed at their default until it decayed (half a minute; the test
//! `distribution::least_time_gives_a_slow_backend_a_small_share` caught all 300 requests on
//! one of two fast backends one run in ten). One request at a time, so a slow or failing
//! new backend costs one request before its answer counts.
//!
//! # Cost per request
//!
//! A pick reads no clock: both candidates' estimates are decayed to the later of their two
//! update times, and since from there on both decay by the same factor, the comparison comes
//! out as it would at any later instant (this is exact, not an approximation). A decay shorter
//! than 1/64 of `decay` (156 ms of the default 10 s), the usual case under load, is computed by
//! a fifth-degree Taylor polynomial instead of `exp()`, with a relative error below 3e-14.
//! The load factor adds one relaxed atomic load and one square root per backend compared;
//! an answer writes one more atomic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

use super::p2c::two_choices_by;
use super::rng::Rng;
use super::walk::around;
use super::{AlgoConfig, Configure, Pick};
use crate::balance::{Endpoint, Stats};
use crate::clock::{now_ns, ns_at};

const NEVER: u64 = u64::MAX;

/// A backend's Peak-EWMA response-time estimate, lock-free.
///
/// Updates race benignly: two responses finishing at once may each overwrite the other's
/// sample, which an average tolerates.
#[derive(Debug)]
pub(crate) struct Rtt {
    cost_ns: AtomicU64,
    stamp_ns: AtomicU64,
    /// The requests in flight when the answers averaged into `cost_ns` arrived (the answer
    /// itself included, so at least 1), averaged like the response times: the load at which
    /// the estimate was measured. `f64` bits; 1 before the first answer.
    load: AtomicU64,
    /// `√load`, `f64` bits: what a pick divides by, computed once per answer rather than for
    /// every backend a pick compares.
    load_sqrt: AtomicU64,
}

impl Rtt {
    pub(crate) fn new() -> Self {
        Self {
            cost_ns: AtomicU64::new(NEVER),
            stamp_ns: AtomicU64::new(now_ns()),
            load: AtomicU64::new(1f64.to_bits()),
            load_sqrt: AtomicU64::new(1f64.to_bits()),
        }
    }

    /// The load the estimate was measured at (see [`load`](Self::load)), at least 1.
    #[inline]
    fn usual_load(&self) -> f64 {
        f64::from_bits(self.load.load(Relaxed))
    }

    /// How many times its cost the estimate counts for with `in_flight` requests in flight:
    /// `(in_flight + 1) / √(usual load)`, but never below 1 (see the module docs: "The cost").
    #[inline]
    fn load_factor(&self, in_flight: usize) -> f64 {
        ((in_flight as f64 + 1.0) / f64::from_bits(self.load_sqrt.load(Relaxed))).max(1.0)
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

    /// Feeds one response time in, that arrived with `in_flight` requests in flight (itself
    /// included).
    pub(crate) fn observe(
        &self,
        rtt_ns: u64,
        in_flight: usize,
        now: u64,
        default_ns: f64,
        decay_ns: f64,
    ) {
        let (cost, stamp) = self.sample(default_ns);
        let rtt = rtt_ns as f64;
        // As Finagle's `PeakEwma` and tower's `RttEstimate::update` do: a sample slower than
        // the estimate replaces it at once (the peak); a faster one is averaged in, weighted by
        // the time since the last update. The first sample replaces the default whatever it
        // is (tower averages it in, so a fast new backend passed for 30 ms for seconds).
        let first = self.cost_ns.load(Relaxed) == NEVER;
        // Each sample takes at least a share of MIN_SAMPLE_WEIGHT, however close it follows
        // the last (see the module docs: "Decay").
        let w = decay_weight(now.saturating_sub(stamp), decay_ns).min(1.0 - MIN_SAMPLE_WEIGHT);
        let next = if first || rtt > cost {
            rtt
        } else {
            cost * w + rtt * (1.0 - w)
        };
        // The load is a plain average, without a peak: one answer at a rare depth must not
        // excuse that depth from then on.
        let load = (in_flight as f64).max(1.0);
        let load = if first {
            load
        } else {
            self.usual_load() * w + load * (1.0 - w)
        };
        self.stamp_ns.store(now, Relaxed);
        self.cost_ns.store(next.to_bits(), Relaxed);
        self.load.store(load.to_bits(), Relaxed);
        self.load_sqrt.store(load.sqrt().to_bits(), Relaxed);
    }

    /// Whether no answer has been observed yet.
    #[inline]
    fn unmeasured(&self) -> bool {
        self.cost_ns.load(Relaxed) == NEVER
    }

    /// The estimate without a default, decayed to now.
    pub(crate) fn estimate_ns(&self) -> Option<f64> {
        (self.cost_ns.load(Relaxed) != NEVER)
            .then(|| self.cost_at(now_ns(), 0.0, DEFAULT_DECAY.as_nanos() as f64))
    }
}

/// The least weight a faster sample gets in the average, however soon after the last.
const MIN_SAMPLE_WEIGHT: f64 = 0.1;

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

const DEFAULT_RTT: Duration = LeastTime::DEFAULT_RTT;
const DEFAULT_DECAY: Duration = LeastTime::DEFAULT_DECAY;

/// Peak-EWMA least-time picker. See the [module docs](self).
#[derive(Debug)]
pub struct LeastTime {
    rng: Rng,
    default_ns: f64,
    decay_ns: f64,
    penalty: Duration,
}

impl LeastTime {
    /// The response time assumed for a backend with no samples yet: 30 ms, as Finagle and
    /// linkerd2-proxy.
    pub const DEFAULT_RTT: Duration = Duration::from_millis(30);
    /// The decay time τ: 10 s, as Finagle and linkerd2-proxy.
    pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);
    /// The response time a failure counts as, at least: 1 s.
    pub const DEFAULT_FAILURE_PENALTY: Duration = Duration::from_secs(1);

    /// A picker with a 30 ms default response time, a 10 s decay and a 1 s failure penalty,
    /// seeded from the OS.
    pub fn new() -> Self {
        Self::from_rng_seed(rand::random())
    }

    /// The same with a fixed seed, for reproducible tests and benchmarks.
    pub fn from_rng_seed(seed: u64) -> Self {
        Self {
            rng: Rng::from_seed(seed),
            default_ns: DEFAULT_RTT.as_nanos() as f64,
            decay_ns: DEFAULT_DECAY.as_nanos() as f64,
            penalty: Self::DEFAULT_FAILURE_PENALTY,
        }
    }

    /// The response time a failure (a `5xx` response, or an error from the backend's
    /// service) counts as, at least; it enters the estimate as a peak. Zero counts failures
    /// at their real response time, as plain Peak-EWMA does (not recommended: a backend that
    /// fails fast then attracts traffic).
    #[must_use]
    pub fn failure_penalty(mut self, penalty: Duration) -> Self {
        self.penalty = penalty;
        self
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

    /// Feeds one response time in, of a response that arrived `at`.
    pub(crate) fn observe(&self, stats: &Stats, rtt: Duration, at: Instant) {
        stats.rtt.observe(
            rtt.as_nanos() as u64,
            stats.in_flight(),
            ns_at(at),
            self.default_ns,
            self.decay_ns,
        );
    }

    /// Feeds one failure in, as a response time of at least the penalty.
    pub(crate) fn observe_failure(&self, stats: &Stats, elapsed: Duration, at: Instant) {
        self.observe(stats, elapsed.max(self.penalty), at);
    }

    /// Whether `b` costs less than `a`: estimate × load factor / weight, both estimates
    /// decayed to the later of their update times (see the [module docs](self)).
    #[inline]
    fn cheaper<K>(&self, a: &Endpoint<K>, b: &Endpoint<K>) -> bool {
        // A backend to probe goes first (see "Probing and recovery").
        let (probe_a, probe_b) = (to_probe(a), to_probe(b));
        if probe_a != probe_b {
            return probe_b;
        }
        let (mut cost_a, stamp_a) = a.stats().rtt.sample(self.default_ns);
        let (mut cost_b, stamp_b) = b.stats().rtt.sample(self.default_ns);
        // Only the older estimate decays to the other's stamp; weights are cross-multiplied
        // instead of divided by.
        if stamp_a < stamp_b {
            cost_a *= decay_weight(stamp_b - stamp_a, self.decay_ns);
        } else {
            cost_b *= decay_weight(stamp_a - stamp_b, self.decay_ns);
        }
        let load_a = a.stats().rtt.load_factor(a.in_flight());
        let load_b = b.stats().rtt.load_factor(b.in_flight());
        let total_a = cost_a * load_a * f64::from(b.weight());
        let total_b = cost_b * load_b * f64::from(a.weight());
        total_b < total_a
    }
}

/// Whether `e` has never answered and has no request in flight: the next request measures it.
#[inline]
fn to_probe<K>(e: &Endpoint<K>) -> bool {
    e.stats().rtt.unmeasured() && e.in_flight() == 0
}

/// Fleets up to this size are scanned whole instead of sampled by two choices.
const SCAN_UP_TO: usize = 8;

impl LeastTime {
    /// The cheapest ready backend of a small fleet, every one compared: with two choices, a
    /// pair of two failing backends out of three would take a third of the requests.
    /// Ties go to the first after a random start.
    #[inline]
    fn cheapest<K>(
        &self,
        endpoints: &[Arc<Endpoint<K>>],
        ready: &mut impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let n = endpoints.len();
        let mut samples = [(0.0, 0u64); SCAN_UP_TO];
        let mut now = 0;
        for (sample, e) in samples.iter_mut().zip(endpoints) {
            *sample = e.stats().rtt.sample(self.default_ns);
            now = now.max(sample.1);
        }
        let mut costs = [(f64::INFINITY, 0usize); SCAN_UP_TO];
        let start = self.rng.below(n);
        for (slot, i) in costs[..n].iter_mut().zip(around(start, n)) {
            let (cost, stamp) = samples[i];
            let e = &endpoints[i];
            // A backend to probe costs nothing: it goes first (see "Probing and recovery").
            *slot = if to_probe(e) {
                (0.0, i)
            } else {
                let load = e.stats().rtt.load_factor(e.in_flight()) / f64::from(e.weight());
                (cost * decay_weight(now - stamp, self.decay_ns) * load, i)
            };
        }
        let costs = &mut costs[..n];
        // Stable: equal costs keep the order from the random start.
        costs.sort_by(|a, b| a.0.total_cmp(&b.0));
        // The two cheapest within 2× of each other count as equal and take turns at random:
        // otherwise noise in one early sample herds every request onto one of two equally
        // fast backends, and the other, never picked, is never measured again until its
        // estimate decays. A backend 20× slower, or one paying the failure penalty, is far
        // outside the band.
        if costs[1].0 <= 2.0 * costs[0].0 && self.rng.below(2) == 1 {
            costs.swap(0, 1);
        }
        costs.iter().map(|&(_, i)| i).find(|&i| ready(i))
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
        if (3..=SCAN_UP_TO).contains(&endpoints.len()) {
            return self.cheapest(endpoints, ready);
        }
        two_choices_by(&self.rng, endpoints.len(), ready, |a, b| {
            self.cheaper(&endpoints[a], &endpoints[b])
        })
    }

    fn tracks_latency(&self) -> bool {
        true
    }

    fn observe_latency(&self, stats: &Stats, rtt: Duration, at: Instant) {
        self.observe(stats, rtt, at);
    }

    fn observe_failure(&self, stats: &Stats, elapsed: Duration, at: Instant) {
        LeastTime::observe_failure(self, stats, elapsed, at);
    }
}

#[cfg(test)]
mod tests;
