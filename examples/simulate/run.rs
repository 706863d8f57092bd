//! One simulation: the library's real balancer, with one algorithm, in front of simulated
//! backends, under tokio's paused clock.
//!
//! Time is virtual: the runtime is single-threaded and paused, so it jumps from one timer to
//! the next as soon as every task waits (tokio's auto-advance), and a second of traffic takes
//! only the CPU its events need. The balancer is [`LoadBalance`] as the standalone balancer
//! runs it — its picker, its in-flight counting until the response body is dropped, its
//! latency feed to `LT` from tokio's clock — over backends that are `tower` services: each
//! waits for a slot of its capacity (a FIFO semaphore), then for a latency drawn from its
//! distribution, and answers `200` or, at its error rate, a fast `503`.
//!
//! tokio's timers tick in whole milliseconds: a timer fires at the first tick at or after its
//! deadline. So that this rounding does not bias the results (always up, it would add half a
//! millisecond to every wait), each drawn time is rounded to a whole millisecond at random,
//! up with a probability equal to its fraction (0.3 ms: 1 ms three times in ten, else 0), which
//! keeps every mean exact; everything then happens on ticks, and the latencies the clients
//! measure are exact sums of the rounded times. Arrivals fall on the tick at or after their
//! time. Fleets should have latencies of a few milliseconds or more, where the spread this adds
//! (under a millisecond either way) matters little.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::discover::Change;
use tower::{Service, service_fn};
use tower_lb::algo::AlgoPick;
use tower_lb::{Algo, ClientIp, LoadBalance, PeerAddr, Weighted};

use crate::fleet::{Backend, Fleet};

thread_local! {
    /// The random source of the run on this thread (each run has its own thread).
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::seed_from_u64(0));
}

fn with_rng<T>(f: impl FnOnce(&mut SmallRng) -> T) -> T {
    RNG.with(|rng| f(&mut rng.borrow_mut()))
}

/// What one run measured.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) algo: Algo,
    /// Every request's latency in milliseconds, as the client saw it, sorted.
    pub(crate) latencies_ms: Vec<f32>,
    /// Requests answered with an error (a backend's `503`, or no backend).
    pub(crate) errors: usize,
    /// Requests each backend answered.
    pub(crate) per_backend: Vec<usize>,
}

impl Outcome {
    /// The latency at quantile `q` (0 to 1), in milliseconds.
    pub(crate) fn quantile(&self, q: f64) -> f64 {
        let n = self.latencies_ms.len();
        if n == 0 {
            return f64::NAN;
        }
        let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        f64::from(self.latencies_ms[i])
    }
}

/// One simulated backend's state.
#[derive(Debug)]
struct SimBackend {
    spec: Backend,
    slots: Semaphore,
    /// The capacity the semaphore has now (changes add or forget permits).
    capacity: Mutex<usize>,
    start: Instant,
}

/// A large number of permits standing for "no limit".
const UNLIMITED: usize = 1 << 24;

impl SimBackend {
    fn new(spec: Backend, start: Instant) -> Self {
        let capacity = cap(spec.behaviour.capacity);
        Self {
            spec,
            slots: Semaphore::new(capacity),
            capacity: Mutex::new(capacity),
            start,
        }
    }

    /// Answers one request: `Ok(true)` for a success, `Ok(false)` for a fast `503`.
    async fn serve(&self) -> bool {
        let behaviour = self.spec.behaviour_at(self.start.elapsed());
        self.resize(cap(behaviour.capacity));
        if with_rng(|rng| rng.random::<f64>()) < behaviour.error_rate {
            wait(Duration::from_secs_f64(behaviour.error_latency_ms / 1e3)).await;
            return false;
        }
        let _slot = self.slots.acquire().await.expect("never closed");
        wait(with_rng(|rng| behaviour.latency.sample(rng))).await;
        true
    }

    fn resize(&self, capacity: usize) {
        let mut now = self.capacity.lock().unwrap();
        if *now < capacity {
            self.slots.add_permits(capacity - *now);
            *now = capacity;
        } else if *now > capacity {
            let forgotten = self.slots.forget_permits(*now - capacity);
            *now -= forgotten;
        }
    }
}

/// Waits `time`, rounded to a whole millisecond at random (see the module docs).
async fn wait(time: Duration) {
    let ms = time.as_secs_f64() * 1e3;
    let whole = ms.floor() + f64::from(u8::from(with_rng(|rng| rng.random::<f64>()) < ms.fract()));
    if whole > 0.0 {
        tokio::time::sleep(Duration::from_millis(whole as u64)).await;
    }
}

fn cap(capacity: usize) -> usize {
    if capacity == 0 { UNLIMITED } else { capacity }
}

/// Runs `fleet` through `algo` on a paused current-thread runtime of its own.
pub(crate) fn simulate(fleet: &Fleet, algo: Algo, requests: usize) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    RNG.with(|rng| *rng.borrow_mut() = SmallRng::seed_from_u64(fleet.seed));
    runtime.block_on(run(fleet, algo, requests))
}

async fn run(fleet: &Fleet, algo: Algo, requests: usize) -> Outcome {
    let start = Instant::now();
    let backends: Vec<Arc<SimBackend>> = fleet
        .backends
        .iter()
        .map(|spec| Arc::new(SimBackend::new(spec.clone(), start)))
        .collect();
    let services: Vec<_> = backends
        .iter()
        .enumerate()
        .map(|(i, backend)| {
            let backend = Arc::clone(backend);
            service_fn(move |_req: http::Request<()>| {
                let backend = Arc::clone(&backend);
                async move {
                    let ok = backend.serve().await;
                    let mut res = http::Response::new(i);
                    if !ok {
                        *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    Ok::<_, Infallible>(res)
                }
            })
        })
        .collect();
    // Keyed by position, with the fleet's weights; every backend is there from the start.
    let weights: Vec<u32> = fleet.backends.iter().map(|b| b.weight).collect();
    let discover = futures_util::stream::iter(services.into_iter().zip(weights).enumerate().map(
        |(i, (service, weight))| {
            Ok::<_, Infallible>(Change::Insert(Weighted::new(i, weight), service))
        },
    ));
    let picker = AlgoPick::new(algo, ClientIp::peer()).seeded(fleet.seed);
    let lb = LoadBalance::with_picker(discover, picker);

    let record = Arc::new(Mutex::new(Record {
        latencies_ms: Vec::with_capacity(requests),
        errors: 0,
        per_backend: vec![0; fleet.backends.len()],
    }));
    let mean_gap = 1.0 / fleet.rate;
    let mut at = 0.0;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..requests {
        let (gap, client) = with_rng(|rng| {
            (
                -mean_gap * (1.0 - rng.random::<f64>()).ln(),
                rng.random_range(0..fleet.clients),
            )
        });
        at += gap;
        tokio::time::sleep_until(start + Duration::from_secs_f64(at)).await;
        let mut lb = lb.clone();
        let record = Arc::clone(&record);
        tasks.spawn(async move {
            let mut req = http::Request::new(());
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + client));
            req.extensions_mut()
                .insert(PeerAddr(SocketAddr::new(ip, 40_000)));
            let sent = Instant::now();
            let answer = lb.call(req).await;
            let took = sent.elapsed().as_secs_f64() * 1e3;
            let mut record = record.lock().unwrap();
            record.latencies_ms.push(took as f32);
            match answer {
                Ok(res) => {
                    if !res.status().is_success() {
                        record.errors += 1;
                    }
                    record.per_backend[*res.body().get_ref()] += 1;
                    // Dropping the response ends the request's time in flight.
                }
                Err(_) => record.errors += 1,
            }
        });
        // Reap finished tasks as we go, so that the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    drop(lb);
    let mut record = Arc::try_unwrap(record)
        .expect("every request task has ended")
        .into_inner()
        .unwrap();
    record.latencies_ms.sort_by(f32::total_cmp);
    Outcome {
        algo,
        latencies_ms: record.latencies_ms,
        errors: record.errors,
        per_backend: record.per_backend,
    }
}

#[derive(Debug)]
struct Record {
    latencies_ms: Vec<f32>,
    errors: usize,
    per_backend: Vec<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(text: &str) -> Fleet {
        Fleet::parse(text).unwrap()
    }

    const SLOW_NODE: &str = r#"
        rate = 2000
        seed = 7
        [[backend]]
        name = "fast-1"
        latency = { dist = "fixed", ms = 2 }
        [[backend]]
        name = "fast-2"
        latency = { dist = "fixed", ms = 2 }
        [[backend]]
        name = "slow"
        latency = { dist = "fixed", ms = 40 }
    "#;

    #[test]
    fn round_robin_sends_a_third_to_the_slow_backend_and_pays_its_latency() {
        let out = simulate(&fleet(SLOW_NODE), Algo::RoundRobin, 3_000);
        assert_eq!(out.latencies_ms.len(), 3_000);
        assert_eq!(out.per_backend, [1_000; 3]);
        assert_eq!(out.errors, 0);
        // Virtual time: fixed latencies come out exact.
        assert!(
            (out.quantile(0.5) - 2.0).abs() < 0.01,
            "{}",
            out.quantile(0.5)
        );
        assert!(
            (out.quantile(0.99) - 40.0).abs() < 0.01,
            "{}",
            out.quantile(0.99)
        );
    }

    #[test]
    fn least_conn_sends_less_to_the_slow_backend_than_round_robin() {
        let out = simulate(&fleet(SLOW_NODE), Algo::LeastConn, 3_000);
        assert!(out.per_backend[2] < 1_000, "{:?}", out.per_backend);
    }

    #[test]
    fn runs_are_reproducible() {
        let a = simulate(&fleet(SLOW_NODE), Algo::PowerOfTwoChoices, 2_000);
        let b = simulate(&fleet(SLOW_NODE), Algo::PowerOfTwoChoices, 2_000);
        assert_eq!(a.per_backend, b.per_backend);
        assert_eq!(a.latencies_ms, b.latencies_ms);
    }

    #[test]
    fn capacity_queues_and_errors_are_fast_and_counted() {
        let out = simulate(
            &fleet(
                r#"
                rate = 1000
                [[backend]]
                name = "one"
                latency = { dist = "fixed", ms = 10 }
                capacity = 1
                "#,
            ),
            Algo::RoundRobin,
            500,
        );
        // 1000/s at 10 ms each with one slot: the queue grows, so the tail is far above 10 ms.
        assert!(out.quantile(0.99) > 100.0, "{}", out.quantile(0.99));
        let out = simulate(
            &fleet(
                r#"
                rate = 1000
                [[backend]]
                name = "failing"
                latency = { dist = "fixed", ms = 10 }
                error_rate = 1.0
                "#,
            ),
            Algo::RoundRobin,
            500,
        );
        assert_eq!(out.errors, 500);
        // 0.1 ms: rounded to 0 or 1 ms, far below the 10 ms of a success.
        assert!(out.quantile(1.0) <= 1.0 + 1e-3, "{}", out.quantile(1.0));
        assert!(out.quantile(0.5) < 1e-3, "{}", out.quantile(0.5));
    }

    #[test]
    fn rounding_to_ticks_keeps_the_mean() {
        let out = simulate(
            &fleet(
                r#"
                rate = 100
                [[backend]]
                name = "a"
                latency = { dist = "fixed", ms = 2.3 }
                "#,
            ),
            Algo::RoundRobin,
            4_000,
        );
        let mean = out.latencies_ms.iter().map(|&l| f64::from(l)).sum::<f64>() / 4_000.0;
        assert!((mean - 2.3).abs() < 0.05, "{mean}");
        assert!(out.latencies_ms.iter().all(|&l| l == 2.0 || l == 3.0));
    }

    #[test]
    fn changes_apply_at_their_time() {
        let out = simulate(
            &fleet(
                r#"
                rate = 1000
                [[backend]]
                name = "a"
                latency = { dist = "fixed", ms = 1 }
                [[backend.change]]
                at = 0.5
                latency = { dist = "fixed", ms = 30 }
                "#,
            ),
            Algo::RoundRobin,
            1_000,
        );
        // About half the run (1 s of arrivals) is after the change.
        let slow = out.latencies_ms.iter().filter(|&&l| l > 20.0).count();
        assert!((350..650).contains(&slow), "{slow}");
    }
}
