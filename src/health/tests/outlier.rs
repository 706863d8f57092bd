//! Passive health checks: outlier ejection.

use std::sync::atomic::AtomicU16;

use http::StatusCode;
use tokio::time::Instant;

use super::*;

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// What each backend answers: a status code, or `0` for an error from its service.
struct Answers(Vec<AtomicU16>);

impl Answers {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Self((0..n).map(|_| AtomicU16::new(200)).collect()))
    }

    fn set(&self, backend: usize, code: u16) {
        self.0[backend].store(code, SeqCst);
    }
}

type Backend = tower::util::BoxCloneSyncService<Req, Res, BoxError>;

/// Backend `i`, answering what `answers` says with its name as the body.
fn backend(answers: &Arc<Answers>, i: usize) -> Backend {
    let answers = Arc::clone(answers);
    Backend::new(service_fn(move |_: Req| {
        let code = answers.0[i].load(SeqCst);
        async move {
            if code == 0 {
                return Err(BoxError::from("connection refused"));
            }
            let mut res = Res::new(NAMES[i]);
            *res.status_mut() = StatusCode::from_u16(code).unwrap();
            Ok(res)
        }
    }))
}

/// `n` backends under a layer with outlier detection `outlier` (probes always pass, every
/// 10 s); their health-checked services, ready to poll by hand.
async fn backends(
    n: usize,
    outlier: OutlierDetection,
) -> (
    Arc<Answers>,
    Arc<Switches>,
    HealthMonitor<usize>,
    Vec<mock::Spawn<HealthCheck<Backend>>>,
) {
    let answers = Answers::new(n);
    let switches = Switches::new(n);
    let layer = HealthCheckLayer::new(probe(&switches))
        .interval(Duration::from_secs(10))
        .outlier_detection(outlier);
    let monitor = layer.monitor();
    let (tx, stream) = channel();
    let mut discover = layer.layer(stream);
    let mut services = Vec::new();
    for i in 0..n {
        services.push(mock::Spawn::new(
            insert(&tx, &mut discover, i, backend(&answers, i)).await,
        ));
    }
    // The stream keeps the backends checked for as long as it lives.
    tokio::spawn(async move {
        let _keep = (tx, discover);
        std::future::pending::<()>().await;
    });
    settle().await;
    (answers, switches, monitor, services)
}

/// Sends one request through a ready service; its answer (the status, or 0 for an error).
async fn send(service: &mut mock::Spawn<HealthCheck<Backend>>) -> u16 {
    assert_ready_ok!(service.poll_ready(), "the backend takes requests");
    match service.call(Req::new(())).await {
        Ok(res) => res.status().as_u16(),
        Err(_) => 0,
    }
}

/// Makes backend `i` answer `code` `times` times.
async fn answer(
    answers: &Answers,
    services: &mut [mock::Spawn<HealthCheck<Backend>>],
    i: usize,
    code: u16,
    times: usize,
) {
    answers.set(i, code);
    for _ in 0..times {
        assert_eq!(send(&mut services[i]).await, code);
    }
    answers.set(i, 200);
}

fn state(monitor: &HealthMonitor<usize>, i: usize) -> BackendState {
    monitor.get(&i).unwrap().state
}

fn outliers(failures: u32) -> OutlierDetection {
    OutlierDetection::new()
        .consecutive_failures(failures)
        .base_ejection(Duration::from_secs(30))
        .max_ejection(Duration::from_secs(300))
        .max_ejection_percent(100)
}

#[tokio::test(start_paused = true)]
async fn ejected_after_exactly_n_consecutive_gateway_failures() {
    let (answers, _, monitor, mut svc) = backends(4, outliers(3)).await;

    // 502, 503, 504 and errors count; a success in between starts over.
    answer(&answers, &mut svc, 0, 502, 1).await;
    answer(&answers, &mut svc, 0, 503, 1).await;
    assert_eq!(monitor.get(&0).unwrap().response_failures, 2);
    answer(&answers, &mut svc, 0, 200, 1).await;
    assert_eq!(monitor.get(&0).unwrap().response_failures, 0);
    answer(&answers, &mut svc, 0, 504, 1).await;
    answer(&answers, &mut svc, 0, 0, 1).await;
    assert_ready_ok!(svc[0].poll_ready(), "2 failures of 3");
    assert_eq!(state(&monitor, 0), BackendState::Healthy);
    answer(&answers, &mut svc, 0, 502, 1).await;
    assert_pending!(svc[0].poll_ready(), "3 failures of 3");
    assert_eq!(state(&monitor, 0), BackendState::Ejected);
    assert!(svc[0].get_ref().health().is_ejected());

    // 500 and 404 are the backend's answers, not failures of the backend; they reset too.
    answer(&answers, &mut svc, 1, 500, 10).await;
    answer(&answers, &mut svc, 1, 404, 10).await;
    answer(&answers, &mut svc, 1, 502, 2).await;
    answer(&answers, &mut svc, 1, 500, 1).await;
    answer(&answers, &mut svc, 1, 502, 2).await;
    assert_ready_ok!(svc[1].poll_ready());
    assert_eq!(state(&monitor, 1), BackendState::Healthy);
    assert_eq!(monitor.get(&1).unwrap().total_ejections, 0);
}

#[tokio::test(start_paused = true)]
async fn outlier_detection_is_off_unless_set() {
    let answers = Answers::new(2);
    let switches = Switches::new(2);
    let (tx, stream) = channel();
    let layer = HealthCheckLayer::new(probe(&switches));
    let monitor = layer.monitor();
    let mut discover = layer.layer(stream);
    let mut svc = vec![mock::Spawn::new(
        insert(&tx, &mut discover, 0, backend(&answers, 0)).await,
    )];
    svc.push(mock::Spawn::new(
        insert(&tx, &mut discover, 1, backend(&answers, 1)).await,
    ));
    answer(&answers, &mut svc, 0, 503, 50).await;
    assert_ready_ok!(svc[0].poll_ready());
    let snapshot = monitor.get(&0).unwrap();
    assert_eq!(snapshot.state, BackendState::Healthy);
    assert_eq!(snapshot.response_failures, 0, "not even counted");
}

#[tokio::test(start_paused = true)]
async fn ejection_ends_after_base_then_lasts_longer_each_time_up_to_the_max() {
    let outlier = outliers(1)
        .base_ejection(Duration::from_secs(10))
        .max_ejection(Duration::from_secs(25));
    let (answers, _, monitor, mut svc) = backends(2, outlier).await;

    for (nth, secs) in [(1, 10), (2, 20), (3, 25), (4, 25)] {
        answer(&answers, &mut svc, 0, 503, 1).await;
        let start = Instant::now();
        let snapshot = monitor.get(&0).unwrap();
        assert_eq!(snapshot.ejections, nth);
        assert_eq!(
            snapshot.ejection_remaining,
            Some(Duration::from_secs(secs)),
            "ejection {nth}"
        );
        assert!(snapshot.ejected_until.is_some());
        assert_pending!(svc[0].poll_ready());

        sleep_until(start + Duration::from_secs(secs) - Duration::from_millis(1)).await;
        settle().await;
        assert_pending!(svc[0].poll_ready(), "ejection {nth} is not over yet");
        assert!(!svc[0].is_woken());
        elapse(Duration::from_millis(1)).await;
        assert!(
            svc[0].is_woken(),
            "the waiter is woken when ejection {nth} ends"
        );
        assert_ready_ok!(svc[0].poll_ready());
        let snapshot = monitor.get(&0).unwrap();
        assert_eq!(snapshot.state, BackendState::Healthy);
        assert_eq!(snapshot.ejected_until, None);
        assert_eq!(snapshot.ejection_remaining, None);
    }
    assert_eq!(monitor.get(&0).unwrap().total_ejections, 4);
}

#[tokio::test(start_paused = true)]
async fn ejection_count_starts_over_after_a_max_ejection_time_without_one() {
    let outlier = outliers(1)
        .base_ejection(Duration::from_secs(10))
        .max_ejection(Duration::from_secs(60));
    let (answers, _, monitor, mut svc) = backends(2, outlier).await;
    answer(&answers, &mut svc, 0, 503, 1).await;
    elapse(Duration::from_secs(10)).await;
    answer(&answers, &mut svc, 0, 503, 1).await;
    assert_eq!(monitor.get(&0).unwrap().ejections, 2);
    elapse(Duration::from_secs(20)).await;

    sleep(Duration::from_secs(59)).await;
    assert_eq!(monitor.get(&0).unwrap().ejections, 2, "not yet forgotten");
    sleep(Duration::from_secs(1)).await;
    let snapshot = monitor.get(&0).unwrap();
    assert_eq!(
        snapshot.ejections, 0,
        "a whole max ejection time without one"
    );
    assert_eq!(snapshot.total_ejections, 2);
    answer(&answers, &mut svc, 0, 503, 1).await;
    let snapshot = monitor.get(&0).unwrap();
    assert_eq!(snapshot.ejections, 1);
    assert_eq!(
        snapshot.ejection_remaining,
        Some(Duration::from_secs(10)),
        "back to the base time"
    );
}

#[tokio::test(start_paused = true)]
async fn never_ejects_more_than_the_max_percent() {
    let (answers, _, monitor, mut svc) = backends(4, outliers(2).max_ejection_percent(50)).await;
    answer(&answers, &mut svc, 0, 502, 2).await;
    answer(&answers, &mut svc, 1, 502, 2).await;
    assert_eq!(state(&monitor, 0), BackendState::Ejected);
    assert_eq!(state(&monitor, 1), BackendState::Ejected);

    answer(&answers, &mut svc, 2, 502, 2).await;
    assert_ready_ok!(svc[2].poll_ready(), "a third of four would be 75 %");
    assert_eq!(state(&monitor, 2), BackendState::Healthy);
    assert_eq!(
        monitor.get(&2).unwrap().response_failures,
        0,
        "the count starts over"
    );

    // Once one comes back, the next streak ejects it.
    assert!(monitor.end_ejection(&0).unwrap());
    assert_eq!(monitor.end_ejection(&0), Some(false));
    assert_eq!(monitor.end_ejection(&9), None);
    answer(&answers, &mut svc, 2, 502, 1).await;
    assert_ready_ok!(svc[2].poll_ready(), "one failure of a new streak");
    answer(&answers, &mut svc, 2, 502, 1).await;
    assert_pending!(svc[2].poll_ready());
    assert_eq!(state(&monitor, 2), BackendState::Ejected);
}

#[tokio::test(start_paused = true)]
async fn the_last_available_backend_is_never_ejected() {
    let (answers, switches, monitor, mut svc) = backends(3, outliers(1)).await;
    // One is down by its checks, one is ejected: the third is all there is.
    switches.set(2, false);
    assert!(monitor.probe_now(&2));
    settle().await;
    assert_eq!(state(&monitor, 2), BackendState::Unhealthy);
    answer(&answers, &mut svc, 0, 503, 1).await;
    assert_eq!(state(&monitor, 0), BackendState::Ejected);
    answer(&answers, &mut svc, 1, 503, 5).await;
    assert_ready_ok!(svc[1].poll_ready());
    assert_eq!(state(&monitor, 1), BackendState::Healthy);

    // A backend alone is never ejected.
    let (answers, _, monitor, mut svc) = backends(1, outliers(1)).await;
    answer(&answers, &mut svc, 0, 0, 5).await;
    assert_ready_ok!(svc[0].poll_ready());
    assert_eq!(state(&monitor, 0), BackendState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn active_checks_go_on_while_ejected_and_still_take_it_down() {
    let outlier = outliers(1).base_ejection(Duration::from_secs(45));
    let (answers, switches, monitor, mut svc) = backends(2, outlier).await;
    let calls = switches.calls(0);
    answer(&answers, &mut svc, 0, 504, 1).await;
    elapse(Duration::from_secs(20)).await;
    assert_eq!(
        switches.calls(0),
        calls + 2,
        "probed every 10 s while ejected"
    );
    assert_eq!(monitor.get(&0).unwrap().status, Health::Healthy);

    switches.set(0, false);
    elapse(Duration::from_secs(10)).await;
    let snapshot = monitor.get(&0).unwrap();
    assert_eq!(snapshot.status, Health::Unhealthy);
    assert_eq!(snapshot.state, BackendState::Unhealthy, "down and ejected");
    assert!(snapshot.ejected_until.is_some());

    // The ejection ends at 45 s, but the backend stays down until it passes a check.
    elapse(Duration::from_secs(15)).await;
    assert_eq!(monitor.get(&0).unwrap().ejected_until, None);
    assert_pending!(svc[0].poll_ready(), "ejection over, still down");
    switches.set(0, true);
    elapse(Duration::from_secs(5)).await;
    assert_ready_ok!(svc[0].poll_ready(), "up at the next passed check");
}

#[tokio::test(start_paused = true)]
async fn monitor_lists_the_ejected_state() {
    let (answers, _, monitor, mut svc) = backends(2, outliers(2)).await;
    answer(&answers, &mut svc, 1, 0, 2).await;
    let mut listed: Vec<_> = monitor
        .backends()
        .into_iter()
        .map(|(key, s)| (key, s.state.as_str(), s.total_ejections))
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, [(0, "healthy", 0), (1, "ejected", 1)]);
    assert_eq!(BackendState::Ejected.to_string(), "ejected");
    assert_eq!(
        serde_json::to_string(&BackendState::Unhealthy).unwrap(),
        "\"unhealthy\""
    );
    let ejected = monitor.health(&1).unwrap();
    assert!(ejected.is_ejected());
    assert_eq!(ejected.health(), Health::Healthy, "its checks still pass");

    // Ended by hand: available again and woken.
    assert_pending!(svc[1].poll_ready());
    assert!(ejected.end_ejection());
    assert!(svc[1].is_woken());
    assert_ready_ok!(svc[1].poll_ready());
    assert_eq!(state(&monitor, 1), BackendState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn removed_backend_frees_its_share_of_ejections() {
    let answers = Answers::new(3);
    let switches = Switches::new(3);
    let layer = HealthCheckLayer::new(probe(&switches))
        .outlier_detection(outliers(1).max_ejection_percent(34));
    let (tx, stream) = channel();
    let mut discover = layer.layer(stream);
    let mut svc = Vec::new();
    for i in 0..3 {
        svc.push(mock::Spawn::new(
            insert(&tx, &mut discover, i, backend(&answers, i)).await,
        ));
    }
    answer(&answers, &mut svc, 0, 503, 1).await;
    assert!(svc[0].get_ref().health().is_ejected());
    answer(&answers, &mut svc, 1, 503, 1).await;
    assert!(!svc[1].get_ref().health().is_ejected(), "34 % of 3 is 1");

    tx.send(Change::Remove(0)).unwrap();
    assert!(matches!(discover.next().await, Some(Ok(Change::Remove(0)))));
    answer(&answers, &mut svc, 1, 503, 1).await;
    assert!(
        svc[1].get_ref().health().is_ejected(),
        "the removed backend's ejection no longer counts"
    );
    answer(&answers, &mut svc, 2, 503, 1).await;
    assert!(
        !svc[2].get_ref().health().is_ejected(),
        "the last available backend"
    );
}

#[tokio::test(start_paused = true)]
async fn balancer_never_picks_an_ejected_backend() {
    let answers = Answers::new(3);
    let switches = Switches::new(3);
    let layer = HealthCheckLayer::new(probe(&switches)).outlier_detection(outliers(3));
    let monitor = layer.monitor();
    let backends = ServiceList::new((0..3).map(|i| backend(&answers, i)).collect::<Vec<_>>());
    let mut lb = LoadBalance::new(layer.layer(backends), Algo::RoundRobin);
    settle().await;
    answers.set(1, 503);

    let mut send = async || {
        let res = lb.ready().await?.call(Req::new(())).await?;
        Ok::<_, BoxError>((*res.body().get_ref(), res.status().as_u16()))
    };
    let mut from_b = 0;
    for _ in 0..30 {
        if send().await.unwrap().0 == "b" {
            from_b += 1;
        }
    }
    assert_eq!(from_b, 3, "b answered 3 times, then it was ejected");
    assert_eq!(state(&monitor, 1), BackendState::Ejected);

    answers.set(1, 200);
    elapse(Duration::from_secs(30)).await;
    let mut picked = Vec::new();
    for _ in 0..6 {
        picked.push(send().await.unwrap());
    }
    assert_eq!(picked.iter().filter(|(name, _)| *name == "b").count(), 2);
    assert!(picked.iter().all(|(_, status)| *status == 200));
}
