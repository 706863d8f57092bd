//! Slow start: a newly available backend's share of requests ramps up.

use super::*;

const WINDOW: Duration = Duration::from_secs(100);

type Backend = tower::util::BoxCloneSyncService<Req, Res, Infallible>;

fn backend(name: &'static str) -> Backend {
    Backend::new(service_fn(move |_: Req| async move {
        Ok::<_, Infallible>(Res::new(name))
    }))
}

/// A balancer, the feed of its health-checked stream, and the health of its backends.
struct Setup<D: Discover<Key = usize>> {
    tx: Feed<usize, Backend>,
    lb: LoadBalance<D>,
    monitor: HealthMonitor<usize>,
}

/// A round-robin balancer over a health-checked stream with slow start.
fn balancer(
    switches: &Arc<Switches>,
) -> Setup<
    impl Discover<Key = usize, Service = HealthCheck<Backend>, Error = Infallible> + Send + 'static,
> {
    let layer = HealthCheckLayer::new(probe(switches))
        .interval(Duration::from_secs(10))
        .slow_start(WINDOW);
    let monitor = layer.monitor();
    let (tx, stream) = channel();
    let lb = LoadBalance::new(layer.layer(stream), Algo::RoundRobin);
    Setup { tx, lb, monitor }
}

/// Sends `n` requests; how many each backend (`"a"`, `"b"`) answered.
async fn spread<D>(lb: &mut LoadBalance<D>, n: usize) -> [usize; 2]
where
    D: Discover<Key = usize, Service = HealthCheck<Backend>, Error = Infallible> + Send + 'static,
{
    let mut counts = [0; 2];
    for _ in 0..n {
        let res = lb.ready().await.unwrap().call(Req::new(())).await;
        let res = res.expect("no request fails because of the ramp");
        counts[usize::from(*res.body().get_ref() == "b")] += 1;
    }
    counts
}

fn remaining(monitor: &HealthMonitor<usize>, i: usize) -> Option<Duration> {
    monitor.get(&i).unwrap().slow_start_remaining
}

/// Backend "a" inserted at 0 and through its ramp, then "b" inserted: at `WINDOW`.
async fn a_steady_then_b(
    switches: &Arc<Switches>,
) -> Setup<
    impl Discover<Key = usize, Service = HealthCheck<Backend>, Error = Infallible> + Send + 'static,
> {
    let setup = balancer(switches);
    let Setup { tx, lb, monitor } = &setup;
    tx.send(Change::Insert(0, backend("a"))).unwrap();
    settle().await;
    assert_eq!(
        remaining(monitor, 0),
        Some(WINDOW),
        "a new backend ramps up"
    );
    elapse(WINDOW).await;
    assert_eq!(
        remaining(monitor, 0),
        None,
        "the check at the end closes the ramp"
    );
    tx.send(Change::Insert(1, backend("b"))).unwrap();
    settle().await;
    assert_eq!(lb.len(), 2);
    assert_eq!(remaining(monitor, 1), Some(WINDOW));
    setup
}

#[tokio::test(start_paused = true)]
async fn new_backend_share_ramps_up_then_is_exactly_round_robin() {
    let switches = Switches::new(2);
    let Setup {
        tx: _tx,
        mut lb,
        monitor,
    } = a_steady_then_b(&switches).await;

    // The first tenth of the window: b admits 10 % of its turns, about 9 % of requests.
    let mut first = [0; 2];
    for _ in 0..10 {
        let [a, b] = spread(&mut lb, 400).await;
        first = [first[0] + a, first[1] + b];
        sleep(WINDOW / 100).await;
    }
    let share = first[1] as f64 / 4000.0;
    assert!((0.04..0.16).contains(&share), "first tenth: {first:?}");

    // The last tenth: close to half.
    sleep(WINDOW * 8 / 10).await;
    assert!(remaining(&monitor, 1).is_some_and(|left| left <= WINDOW / 10));
    let mut last = [0; 2];
    for _ in 0..10 {
        let [a, b] = spread(&mut lb, 400).await;
        last = [last[0] + a, last[1] + b];
        sleep(WINDOW / 100).await;
    }
    let share = last[1] as f64 / 4000.0;
    assert!((0.43..=0.5).contains(&share), "last tenth: {last:?}");

    // After the window: plain round robin.
    assert_eq!(remaining(&monitor, 1), None);
    assert_eq!(spread(&mut lb, 1000).await, [500, 500]);
    let mut names = Vec::new();
    for _ in 0..4 {
        let res = lb.ready().await.unwrap().call(Req::new(())).await.unwrap();
        names.push(*res.body().get_ref());
    }
    assert!(
        names == ["a", "b", "a", "b"] || names == ["b", "a", "b", "a"],
        "{names:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn ramping_backends_alone_take_every_request() {
    let switches = Switches::new(2);
    let Setup {
        tx,
        mut lb,
        monitor,
    } = balancer(&switches);
    tx.send(Change::Insert(0, backend("a"))).unwrap();
    tx.send(Change::Insert(1, backend("b"))).unwrap();
    settle().await;
    sleep(WINDOW / 100).await;
    assert!(remaining(&monitor, 0).is_some() && remaining(&monitor, 1).is_some());
    assert_eq!(
        spread(&mut lb, 1000).await,
        [500, 500],
        "both ramp: neither holds back"
    );

    // b ramps while a is steady; then a goes down and b is all there is.
    drop((tx, lb, monitor));
    let Setup {
        tx: _tx,
        mut lb,
        monitor,
    } = a_steady_then_b(&switches).await;
    assert!(
        spread(&mut lb, 1000).await[1] < 200,
        "b holds back while a is up"
    );
    assert_eq!(
        monitor.set_health(&0, Health::Unhealthy),
        Some(Health::Healthy)
    );
    assert_eq!(spread(&mut lb, 1000).await, [0, 1000]);
    assert!(remaining(&monitor, 1).is_some(), "still in its ramp");
}

#[tokio::test(start_paused = true)]
async fn backend_ramps_again_when_it_comes_back() {
    let switches = Switches::new(2);
    let answers = Arc::new(AtomicUsize::new(200));
    let layer = HealthCheckLayer::new(probe(&switches))
        .interval(Duration::from_secs(10))
        .slow_start(WINDOW)
        .outlier_detection(
            OutlierDetection::new()
                .consecutive_failures(1)
                .base_ejection(Duration::from_secs(30)),
        );
    let monitor = layer.monitor();
    let (tx, stream) = channel();
    let mut discover = layer.layer(stream);
    let mut svc = Vec::new();
    for i in 0..2 {
        let answers = Arc::clone(&answers);
        let backend = service_fn(move |_: Req| {
            let mut res = Res::new("");
            *res.status_mut() = http::StatusCode::from_u16(answers.load(SeqCst) as u16).unwrap();
            async move { Ok::<_, Infallible>(res) }
        });
        svc.push(mock::Spawn::new(
            insert(&tx, &mut discover, i, backend).await,
        ));
    }
    elapse(WINDOW).await;
    assert_eq!(remaining(&monitor, 0), None);

    // Down by its checks, then up: a new ramp from the passed check.
    switches.set(0, false);
    elapse(Duration::from_secs(10)).await;
    assert_eq!(remaining(&monitor, 0), None, "no ramp while down");
    switches.set(0, true);
    elapse(Duration::from_secs(10)).await;
    assert_eq!(remaining(&monitor, 0), Some(WINDOW));

    // Ejected, then back: a new ramp from the end of the ejection.
    elapse(WINDOW).await;
    assert_eq!(remaining(&monitor, 1), None);
    answers.store(503, SeqCst);
    while !svc[1].poll_ready().is_ready() {
        tokio::task::yield_now().await;
    }
    svc[1].call(Req::new(())).await.unwrap();
    answers.store(200, SeqCst);
    assert_eq!(monitor.get(&1).unwrap().state, BackendState::Ejected);
    assert_eq!(remaining(&monitor, 1), None);
    elapse(Duration::from_secs(30)).await;
    assert_eq!(monitor.get(&1).unwrap().state, BackendState::Healthy);
    assert_eq!(remaining(&monitor, 1), Some(WINDOW));
}

#[tokio::test(start_paused = true)]
async fn a_caller_waiting_on_a_ramping_backend_gets_it_and_keeps_it_until_called() {
    let switches = Switches::new(2);
    let layer = HealthCheckLayer::new(probe(&switches))
        .interval(Duration::from_secs(10))
        .slow_start(WINDOW);
    let (tx, stream) = channel();
    let mut discover = layer.layer(stream);
    let _a = insert(&tx, &mut discover, 0, backend("a")).await;
    elapse(WINDOW).await;
    let b = insert(&tx, &mut discover, 1, backend("b")).await;

    // b admits about one request in ten now; a waiting caller is asked again until it does.
    let mut spawned = mock::Spawn::new(b.clone());
    let mut refused = 0;
    while spawned.poll_ready().is_pending() {
        assert!(spawned.is_woken(), "a refused waiter is woken to ask again");
        refused += 1;
    }
    for _ in 0..100 {
        assert_ready_ok!(spawned.poll_ready(), "ready until called");
    }
    assert_eq!(*spawned.call(Req::new(())).await.unwrap().body(), "b");

    let mut total_refused = refused;
    for _ in 0..50 {
        let res = b.clone().oneshot(Req::new(())).await.unwrap();
        assert_eq!(*res.body(), "b");
        let mut probe = mock::Spawn::new(b.clone());
        while probe.poll_ready().is_pending() {
            total_refused += 1;
        }
    }
    assert!(
        total_refused > 100,
        "refused {total_refused} times in 51 admissions"
    );
}
