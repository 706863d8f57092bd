//! What one request costs in each balancer: pick + call + the response + dropping it.
//!
//! Every iteration builds a request the way the server's request path does (an
//! `http::Request<()>` carrying a [`PeerAddr`] from a pool of 1024 client addresses, so the
//! source-IP algorithms see many clients), asks the balancer `poll_ready`, `call`s it, polls the
//! response future to completion and drops the response — so a backend's in-flight count goes up
//! and down as in real use. The backend is [`Backend`], a named `Clone` service answering with
//! `std::future::ready`, so nearly all the time left is the balancer's.
//!
//! Groups:
//!
//! - `baseline`: the same request sent straight to one [`Backend`] (`request_only`; also in every
//!   group below, as the machine drifts), and without the peer address (`request_plain`). Subtract it
//!   from the other numbers to get the balancer's own cost.
//! - One group per [`Algo`] (`RR`, `WRR`, …), parameterised by the number of backends (3, 100,
//!   10 000): `tower-lb` is our balancer over a `ServiceList` (`tower-lb-timed`, at 3 backends,
//!   the same with its response-time histograms on, as under a metrics exporter), `tower-p2c` is
//!   `tower::balance::p2c::Balance` over `PendingRequestsDiscover` of the same `ServiceList`, the
//!   reference, repeated in every group so each report compares like with like. `LT` also has
//!   `tower-p2c-peak-ewma`, tower's p2c over `PeakEwmaDiscover`, its like-for-like reference.
//!   `SRR`, `LC` and `LT` also have `tower-lb-static` at 10 000 backends: the balancer with
//!   the picker's type fixed at compile time rather than chosen from an [`Algo`] at run time.
//! - `threads`: one shared balancer (a clone per thread) called from 1 and 2 OS threads at once
//!   (RR, LC, PTC at 100 backends). The time reported is wall time divided by the requests of
//!   all threads, so perfect scaling halves it at 2 threads. tower's p2c is not `Clone`; the
//!   reference is the usual way to share it, `tower::buffer::Buffer`, called from 1 or 2 tasks
//!   of a multi-thread tokio runtime with as many workers. `request_only` on 1 and 2 threads
//!   shows how much parallelism the machine gives at the time.
//!
//! All services are driven the same way, by polling by hand with a no-op waker (no runtime on
//! the path): both balancers and the backend are ready at once, so a runtime would only add its
//! own overhead to both sides. tower's p2c is seeded with a fixed-key hasher and ours with
//! `LoadBalanceLayer::seed`, so runs are repeatable.
//!
//! Times are wall time by default. With `PICK_CLOCK=cpu` they are CPU time instead (of the
//! benchmarking thread; in `threads`, the process's CPU time divided by the threads), which
//! preemption by other processes does not inflate: use it on a shared, busy machine. Its groups
//! are named `cpu-RR`, `cpu-threads`, … so criterion never compares the two kinds.
//!
//! ```text
//! cargo bench --bench pick                 # full run
//! cargo bench --bench pick -- --quick      # a few minutes
//! PICK_CLOCK=cpu cargo bench --bench pick -- --quick   # CPU time, on a busy machine
//! cargo bench --bench pick -- 'PTC/'       # one group
//! python3 benches/pick_table.py [--cpu]    # the tables of benches/RESULTS.md
//! ```

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{Future, Ready, ready};
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_main};
use http::{Request, Response};
use rustix::time::{ClockId, clock_gettime};
use tower::balance::p2c;
use tower::buffer::Buffer;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PeakEwmaDiscover, PendingRequestsDiscover};
use tower::util::rng::HasherRng;
use tower::{Layer, Service, ServiceExt};
use tower_lb::algo::{LeastConn, LeastTime, StickyRoundRobin};
use tower_lb::{Algo, Balance, LoadBalance, LoadBalanceLayer, PeerAddr};

/// Backend counts every algorithm is measured at.
const SIZES: [usize; 3] = [3, 100, 10_000];
/// Distinct client addresses the requests come from (a power of two).
const CLIENTS: usize = 1024;
/// Backend count of the `threads` group.
const SHARED_SIZE: usize = 100;

/// The trivial backend: answers at once with an empty response.
#[derive(Debug, Clone, Copy)]
struct Backend;

impl Service<Request<()>> for Backend {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, _: Request<()>) -> Self::Future {
        ready(Ok(Response::new(())))
    }
}

/// Builds requests from a fixed pool of client addresses, as a server's accept loop would
/// attach them.
#[derive(Clone)]
struct Requests {
    peers: Box<[SocketAddr]>,
    next: usize,
}

impl Requests {
    /// 1024 clients in 10.0.0.0/8, scattered by a multiplicative hash of `seed` and the index.
    fn new(seed: u32) -> Self {
        let peers = (0..CLIENTS as u32)
            .map(|i| {
                let h = (i ^ seed.rotate_left(16)).wrapping_mul(0x9E37_79B1);
                let ip = Ipv4Addr::from(0x0A00_0000 | (h >> 8));
                SocketAddr::from((ip, 1024 + (h & 0xFFFF) as u16 % 60_000))
            })
            .collect();
        Self { peers, next: 0 }
    }

    #[inline]
    fn next(&mut self) -> Request<()> {
        let peer = self.peers[self.next & (CLIENTS - 1)];
        self.next = self.next.wrapping_add(1);
        let mut req = Request::new(());
        req.extensions_mut().insert(PeerAddr(peer));
        req
    }
}

/// One request through `svc`: `poll_ready` until ready, `call`, poll the response future until
/// it completes. No runtime, a no-op waker; both balancers are ready at once here.
#[inline]
fn call_once<S, R>(svc: &mut S, req: R) -> S::Response
where
    S: Service<R>,
    S::Error: Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match svc.poll_ready(&mut cx) {
            Poll::Ready(ready) => break ready.expect("service failed"),
            Poll::Pending => std::hint::spin_loop(),
        }
    }
    let mut fut = pin!(svc.call(req));
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(res) => break res.expect("request failed"),
            Poll::Pending => std::hint::spin_loop(),
        }
    }
}

type Backends = ServiceList<Vec<Backend>>;
type Ours = LoadBalance<Backends>;
type TowerP2c = p2c::Balance<PendingRequestsDiscover<Backends, CompleteOnResponse>, Request<()>>;
type TowerP2cEwma = p2c::Balance<PeakEwmaDiscover<Backends, CompleteOnResponse>, Request<()>>;

fn backends(n: usize) -> Backends {
    ServiceList::new::<Request<()>>(vec![Backend; n])
}

/// Our balancer for `algo` over `n` backends, seeded; warmed up by one request.
///
/// Built inside `rt` (a balancer spawns its discovery task there if discovery is still open; a
/// `ServiceList` has ended by then) but measured outside it, as the other services: the clock
/// reads of `LT` and `SRR` then cost what they cost in production, where tokio's `test-util`
/// (on in this build, for the tests) does not lock the runtime's clock on every read.
fn ours(rt: &tokio::runtime::Runtime, algo: Algo, n: usize) -> Ours {
    let _enter = rt.enter();
    let lb = LoadBalanceLayer::new(algo).seed(1).layer(backends(n));
    assert_eq!(lb.len(), n);
    warmed(lb)
}

/// `svc` after one request through it.
fn warmed<S: Service<Request<()>>>(mut svc: S) -> S
where
    S::Error: Debug,
{
    drop(call_once(&mut svc, Requests::new(0).next()));
    svc
}

/// `tower-lb-static`: our balancer with the picker's type fixed at compile time
/// ([`Balance::with_picker`]) instead of chosen at run time
/// ([`AlgoPick`](tower_lb::algo::AlgoPick), what `LoadBalanceLayer` and the standalone server
/// use), for the algorithms whose own cost was over 100 ns: what choosing at run time costs,
/// the `match` over every algorithm in each method `AlgoPick` forwards.
fn ours_static<M: Measurement>(
    group: &mut BenchmarkGroup<'_, M>,
    rt: &tokio::runtime::Runtime,
    algo: Algo,
    n: usize,
) {
    let _enter = rt.enter();
    let id = BenchmarkId::new("tower-lb-static", n);
    match algo {
        Algo::StickyRoundRobin => {
            let lb = Balance::with_picker(backends(n), StickyRoundRobin::new());
            bench_calls(group, id, warmed(lb));
        }
        Algo::LeastConn => {
            let lb = Balance::with_picker(backends(n), LeastConn::new());
            bench_calls(group, id, warmed(lb));
        }
        Algo::LeastTime => {
            let lb = Balance::with_picker(backends(n), LeastTime::from_rng_seed(1));
            bench_calls(group, id, warmed(lb));
        }
        _ => {}
    }
}

/// tower's p2c over `n` backends, seeded; its first request moves them all to its ready set.
fn tower_p2c(n: usize) -> TowerP2c {
    let discover =
        PendingRequestsDiscover::new::<Request<()>>(backends(n), CompleteOnResponse::default());
    let rng = HasherRng::with_hasher(BuildHasherDefault::<DefaultHasher>::default());
    let lb = warmed(p2c::Balance::from_rng(discover, rng));
    assert_eq!(lb.len(), n);
    lb
}

/// tower's p2c over `n` backends with its Peak-EWMA load, configured as our `LT` (30 ms default
/// response time, 10 s decay): the like-for-like reference for least-time.
fn tower_p2c_ewma(n: usize) -> TowerP2cEwma {
    let discover = PeakEwmaDiscover::new::<Request<()>>(
        backends(n),
        Duration::from_millis(30),
        Duration::from_secs(10),
        CompleteOnResponse::default(),
    );
    let rng = HasherRng::with_hasher(BuildHasherDefault::<DefaultHasher>::default());
    let lb = warmed(p2c::Balance::from_rng(discover, rng));
    assert_eq!(lb.len(), n);
    lb
}

/// Measures one request at a time through `svc`, new request each time.
fn bench_calls<M, S>(group: &mut BenchmarkGroup<'_, M>, id: BenchmarkId, mut svc: S)
where
    M: Measurement,
    S: Service<Request<()>>,
    S::Error: Debug,
{
    let mut requests = Requests::new(1);
    group.bench_function(id, |b| {
        b.iter(|| drop(black_box(call_once(&mut svc, black_box(requests.next())))));
    });
}

/// The request alone, sent straight to the backend: with the peer address every other bench
/// attaches (`request_only`), and without it (`request_plain`), which shows what the extension
/// (a map allocated per request) costs.
fn baseline<M: Measurement>(c: &mut Criterion<M>, clock: Clock) {
    let mut group = c.benchmark_group(clock.group("baseline"));
    let id = BenchmarkId::from_parameter("request_only");
    bench_calls(&mut group, id, Backend);
    let mut backend = Backend;
    group.bench_function(BenchmarkId::from_parameter("request_plain"), |b| {
        b.iter(|| {
            drop(black_box(call_once(
                &mut backend,
                black_box(Request::new(())),
            )))
        });
    });
    group.finish();
}

fn per_algorithm<M: Measurement>(c: &mut Criterion<M>, clock: Clock) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for algo in Algo::ALL {
        let mut group = c.benchmark_group(clock.group(algo.short_name()));
        // Measured again in every group: on a busy machine the baseline drifts between groups.
        let id = BenchmarkId::from_parameter("request_only");
        bench_calls(&mut group, id, Backend);
        for n in SIZES {
            bench_calls(
                &mut group,
                BenchmarkId::new("tower-lb", n),
                ours(&rt, algo, n),
            );
            if n == SIZES[0] {
                // With the response-time histograms on, as under an exporter: timing's own
                // cost, the same at any size.
                let lb = ours(&rt, algo, n);
                lb.record_response_times(true);
                bench_calls(&mut group, BenchmarkId::new("tower-lb-timed", n), lb);
            }
            bench_calls(&mut group, BenchmarkId::new("tower-p2c", n), tower_p2c(n));
            if algo == Algo::LeastTime {
                let id = BenchmarkId::new("tower-p2c-peak-ewma", n);
                bench_calls(&mut group, id, tower_p2c_ewma(n));
            }
            if n == SIZES[2] {
                ours_static(&mut group, &rt, algo, n);
            }
        }
        group.finish();
    }
}

/// `iters` requests split over `threads` threads, each calling its own clone of `svc`; the
/// time they took by `clock` (see [`Clock::parallel`]).
fn on_threads<S>(clock: Clock, svc: &S, threads: usize, iters: u64) -> Duration
where
    S: Service<Request<()>> + Clone + Send,
    S::Error: Debug,
{
    let barrier = Barrier::new(threads);
    let cpu = process_cpu();
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let mut svc = svc.clone();
                let barrier = &barrier;
                let n = share(iters, threads, k);
                scope.spawn(move || {
                    let mut requests = Requests::new(k as u32 + 1);
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..n {
                        drop(black_box(call_once(&mut svc, black_box(requests.next()))));
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .collect()
    });
    clock.parallel(&spans, process_cpu() - cpu)
}

type SharedP2c = Buffer<Request<()>, <TowerP2c as Service<Request<()>>>::Future>;

/// The same with `tasks` tokio tasks sharing tower's p2c through a `Buffer`.
async fn on_tasks(clock: Clock, svc: &SharedP2c, tasks: usize, iters: u64) -> Duration {
    let barrier = Arc::new(tokio::sync::Barrier::new(tasks));
    let cpu = process_cpu();
    let handles: Vec<_> = (0..tasks)
        .map(|k| {
            let mut svc = svc.clone();
            let barrier = Arc::clone(&barrier);
            let n = share(iters, tasks, k);
            tokio::spawn(async move {
                let mut requests = Requests::new(k as u32 + 1);
                barrier.wait().await;
                let start = Instant::now();
                for _ in 0..n {
                    let svc = svc.ready().await.expect("buffer failed");
                    let res = svc.call(black_box(requests.next())).await;
                    drop(black_box(res.expect("request failed")));
                }
                (start, Instant::now())
            })
        })
        .collect();
    let mut spans = Vec::with_capacity(tasks);
    for h in handles {
        spans.push(h.await.expect("bench task panicked"));
    }
    clock.parallel(&spans, process_cpu() - cpu)
}

/// Worker `k`'s part of `iters`; the first ones take the remainder.
fn share(iters: u64, workers: usize, k: usize) -> u64 {
    let workers = workers as u64;
    iters / workers + u64::from((k as u64) < iters % workers)
}

fn threads<M>(c: &mut Criterion<M>, clock: Clock)
where
    M: Measurement<Value = Duration>,
{
    let mut group = c.benchmark_group(clock.group("threads"));
    // What the machine gives two threads: the request alone scales perfectly when both run.
    for t in [1, 2] {
        group.bench_function(BenchmarkId::new("request_only", t), |b| {
            b.iter_custom(|iters| on_threads(clock, &Backend, t, iters));
        });
    }
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        for algo in [Algo::RoundRobin, Algo::LeastConn, Algo::PowerOfTwoChoices] {
            let lb = ours(&rt, algo, SHARED_SIZE);
            for t in [1, 2] {
                group.bench_function(BenchmarkId::new(algo.short_name(), t), |b| {
                    b.iter_custom(|iters| on_threads(clock, &lb, t, iters));
                });
            }
        }
    }
    for t in [1, 2] {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(t)
            .build()
            .expect("runtime");
        // The buffer's worker task runs on this runtime, next to the callers.
        let shared = rt.block_on(async { Buffer::new(tower_p2c(SHARED_SIZE), 1024) });
        group.bench_function(BenchmarkId::new("tower-p2c-buffer", t), |b| {
            b.iter_custom(|iters| rt.block_on(on_tasks(clock, &shared, t, iters)));
        });
    }
    group.finish();
}

/// Which clock the benches read: wall time, criterion's default, or with `PICK_CLOCK=cpu` the
/// CPU time of the benchmarking thread, which time spent preempted by other processes does not
/// inflate. Choose `cpu` on a shared, busy machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clock {
    Wall,
    Cpu,
}

impl Clock {
    fn from_env() -> Self {
        match std::env::var("PICK_CLOCK").as_deref() {
            Err(_) | Ok("" | "wall") => Clock::Wall,
            Ok("cpu") => Clock::Cpu,
            Ok(other) => panic!("PICK_CLOCK={other:?}: expected `wall` or `cpu`"),
        }
    }

    /// Group names get a `cpu-` prefix under the CPU clock, so criterion never compares a CPU
    /// time with a wall time.
    fn group(self, name: &str) -> String {
        match self {
            Clock::Wall => name.to_owned(),
            Clock::Cpu => format!("cpu-{name}"),
        }
    }

    /// The time of a parallel run whose workers ran over `spans` and the process used `cpu`:
    /// the wall time from the first start to the last finish, or the CPU time per worker (the
    /// wall time the run would take with a core for each worker and nothing else running).
    fn parallel(self, spans: &[(Instant, Instant)], cpu: Duration) -> Duration {
        match self {
            Clock::Wall => {
                let start = spans.iter().map(|s| s.0).min().expect("no spans");
                let end = spans.iter().map(|s| s.1).max().expect("no spans");
                end - start
            }
            Clock::Cpu => cpu / u32::try_from(spans.len()).expect("workers"),
        }
    }
}

fn cpu_time(clock: ClockId) -> Duration {
    let t = clock_gettime(clock);
    Duration::new(
        u64::try_from(t.tv_sec).expect("CPU time is positive"),
        u32::try_from(t.tv_nsec).expect("nanoseconds"),
    )
}

fn process_cpu() -> Duration {
    cpu_time(ClockId::ProcessCPUTime)
}

/// CPU time of the calling thread, as a criterion measurement (`PICK_CLOCK=cpu`).
#[derive(Debug)]
struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        cpu_time(ClockId::ThreadCPUTime)
    }

    fn end(&self, start: Duration) -> Duration {
        cpu_time(ClockId::ThreadCPUTime) - start
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Formats nanoseconds of CPU time as criterion formats wall time, marked `(cpu)`.
#[derive(Debug)]
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match typical {
            t if t < 1e3 => (1.0, "ns (cpu)"),
            t if t < 1e6 => (1e-3, "µs (cpu)"),
            t if t < 1e9 => (1e-6, "ms (cpu)"),
            _ => (1e-9, "s (cpu)"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        _: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (n, unit) = match *throughput {
            Throughput::Elements(n) => (n, "elem/s (cpu)"),
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => (n, "B/s (cpu)"),
            Throughput::Bits(n) => (n, "bit/s (cpu)"),
            // Reported as elements, the unit every bench here sets.
            Throughput::ElementsAndBytes { elements, .. } => (elements, "elem/s (cpu)"),
        };
        values.iter_mut().for_each(|v| *v = n as f64 * 1e9 / *v);
        unit
    }

    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40)
}

fn run<M: Measurement<Value = Duration>>(mut c: Criterion<M>, clock: Clock) {
    baseline(&mut c, clock);
    per_algorithm(&mut c, clock);
    threads(&mut c, clock);
}

/// Every group, with the command line's options (`--quick`, filters) on top of [`config`].
fn benches() {
    match Clock::from_env() {
        Clock::Wall => run(config().configure_from_args(), Clock::Wall),
        Clock::Cpu => run(
            config()
                .with_measurement(ThreadCpuTime)
                .configure_from_args(),
            Clock::Cpu,
        ),
    }
}

criterion_main!(benches);
