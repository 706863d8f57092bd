use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tower::discover::ServiceList;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_test::mock;

use super::*;
use crate::algo::RoundRobin;
use crate::balance::Tried;
use crate::health::{BackendState, HealthCheckLayer, OutlierDetection, probe_fn};
use crate::{Algo, Balance, BoxError, LoadBalance, LoadBalanceLayer, NoAvailableBackend};
use crate::{Registry, TrackedBody, Weighted};

type Req = http::Request<()>;
type Res = http::Response<&'static str>;

fn with_status(code: u16) -> Res {
    let mut res = Res::new("");
    *res.status_mut() = StatusCode::from_u16(code).unwrap();
    res
}

/// A backend answering `codes` in turn.
fn answering(
    codes: &'static [u16],
) -> impl Service<Req, Response = Res, Error = Infallible, Future: Send> + Clone + Send + Sync {
    let next = Arc::new(AtomicU16::new(0));
    service_fn(move |_: Req| {
        let i = next.fetch_add(1, SeqCst);
        let code = codes[usize::from(i) % codes.len()];
        async move { Ok::<_, Infallible>(with_status(code)) }
    })
}

async fn send<S>(lb: &mut S, req: Req) -> Result<S::Response, BoxError>
where
    S: Service<Req, Error = BoxError>,
{
    lb.ready().await?.call(req).await
}

#[tokio::test]
async fn answers_are_counted_by_status_class() {
    const CODES: &[u16] = &[101, 200, 204, 302, 404, 429, 500, 503, 999];
    let mut lb = LoadBalance::new(ServiceList::new(vec![answering(CODES)]), Algo::RoundRobin);
    for _ in CODES {
        send(&mut lb, Req::new(())).await.unwrap();
    }
    let stats = lb.snapshot();
    let backend = &stats.backends[0];
    assert_eq!(
        backend.responses,
        Responses {
            informational: 1,
            success: 2,
            redirection: 1,
            client_error: 2,
            server_error: 2,
            other: 1,
        }
    );
    assert_eq!(backend.responses.total(), 9);
    assert_eq!(
        backend.responses.by_class().map(|(_, n)| n),
        [1, 2, 1, 2, 2, 1]
    );
    assert_eq!(
        lb.endpoints()[0].stats().served(),
        9,
        "served is every class"
    );
    assert_eq!((backend.transport_failures, backend.in_flight), (0, 0));
    assert_eq!(stats.responses(), backend.responses);
}

#[tokio::test]
async fn an_error_from_the_backend_is_a_transport_failure() {
    let (svc, mut handle) = mock::pair::<Req, Res>();
    handle.allow(2);
    let mut lb = LoadBalance::new(ServiceList::new(vec![svc]), Algo::RoundRobin);

    let fut = lb.call(Req::new(()));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error("connection refused");
    assert_eq!(fut.await.unwrap_err().to_string(), "connection refused");

    let fut = lb.call(Req::new(()));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(with_status(502));
    assert_eq!(fut.await.unwrap().status(), 502);

    let backend = &lb.snapshot().backends[0];
    assert_eq!(backend.transport_failures, 1);
    assert_eq!(backend.responses.server_error, 1, "a 502 is a response");
    assert_eq!(backend.body_errors, 0);
    assert_eq!(backend.in_flight, 0);
}

#[tokio::test]
async fn a_body_that_fails_after_the_head_is_a_body_error() {
    let backend = service_fn(|_: Req| async {
        let frames = futures_util::stream::iter([
            Ok(Frame::data(Bytes::from_static(b"half"))),
            Err(BoxError::from("connection reset")),
        ]);
        Ok::<_, Infallible>(http::Response::new(StreamBody::new(frames)))
    });
    let mut lb = LoadBalance::new(ServiceList::new(vec![backend]), Algo::RoundRobin);
    let mut body = send(&mut lb, Req::new(())).await.unwrap().into_body();
    assert_eq!(lb.snapshot().backends[0].in_flight, 1, "the body is open");
    assert!(body.frame().await.unwrap().is_ok());
    assert!(body.frame().await.unwrap().is_err());

    let backend = &lb.snapshot().backends[0];
    assert_eq!(backend.body_errors, 1);
    assert_eq!(backend.responses.success, 1, "its head was a 200");
    assert_eq!((backend.transport_failures, backend.in_flight), (0, 0));
    drop(body);
    assert_eq!(lb.snapshot().backends[0].body_errors, 1, "counted once");
}

#[tokio::test(start_paused = true)]
async fn response_times_are_recorded_to_the_head_and_to_the_end_of_the_body() {
    let (svc, mut handle) = mock::pair::<Req, http::Response<StreamBody<_>>>();
    handle.allow(2);
    let mut lb = LoadBalance::new(ServiceList::new(vec![svc]), Algo::RoundRobin);
    lb.record_response_times(true);

    // The head after 3 ms, the body's end 40 ms later.
    let fut = lb.call(Req::new(()));
    let (_, respond) = handle.next_request().await.unwrap();
    tokio::time::advance(Duration::from_millis(3)).await;
    let (frames, rx) = tokio::sync::mpsc::unbounded_channel::<Result<Frame<Bytes>, Infallible>>();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (frame, rx))
    });
    respond.send_response(http::Response::new(StreamBody::new(Box::pin(stream))));
    let mut body = fut.await.unwrap().into_body();
    let backend = &lb.snapshot().backends[0];
    assert_eq!(backend.response_time.count(), 1);
    assert_eq!(backend.response_time.sum(), Duration::from_millis(3));
    assert_eq!(backend.total_time.count(), 0, "the body is still open");

    tokio::time::advance(Duration::from_millis(40)).await;
    frames
        .send(Ok(Frame::data(Bytes::from_static(b"x"))))
        .unwrap();
    drop(frames);
    assert!(body.frame().await.unwrap().is_ok());
    assert!(body.frame().await.is_none());
    let backend = &lb.snapshot().backends[0];
    assert_eq!(backend.total_time.count(), 1);
    assert_eq!(backend.total_time.sum(), Duration::from_millis(43));
    // 3 ms is in the bucket (2 ms, 3 ms], 43 ms in (32 ms, 48 ms].
    let bucket = |d| {
        HistogramSnapshot::BOUNDS
            .iter()
            .position(|b| *b == d)
            .unwrap()
    };
    assert_eq!(
        backend.response_time.counts()[bucket(Duration::from_millis(3))],
        1
    );
    assert_eq!(
        backend.total_time.counts()[bucket(Duration::from_millis(48))],
        1
    );
    assert_eq!(
        backend.response_time.quantile(1.0),
        Some(Duration::from_millis(3))
    );

    // A request that gets no head is in neither histogram.
    let fut = lb.call(Req::new(()));
    let (_, respond) = handle.next_request().await.unwrap();
    respond.send_error("connection refused");
    assert!(fut.await.is_err());
    let backend = &lb.snapshot().backends[0];
    assert_eq!(backend.transport_failures, 1);
    assert_eq!(
        (backend.response_time.count(), backend.total_time.count()),
        (1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn response_times_are_recorded_only_while_asked_for() {
    let mut lb = LoadBalance::new(
        ServiceList::new(vec![answering(&[200, 200, 200])]),
        Algo::LeastTime,
    );
    let timed = |lb: &LoadBalance<_>| {
        let backend = &lb.snapshot().backends[0];
        (
            backend.responses.success,
            backend.response_time.count(),
            backend.total_time.count(),
        )
    };

    send(&mut lb, Req::new(())).await.unwrap();
    assert_eq!(timed(&lb), (1, 0, 0), "counted, not timed");

    lb.clone().record_response_times(true);
    send(&mut lb, Req::new(())).await.unwrap();
    assert_eq!(timed(&lb), (2, 1, 1), "a clone turns it on for all");

    lb.record_response_times(false);
    send(&mut lb, Req::new(())).await.unwrap();
    assert_eq!(timed(&lb), (3, 1, 1));
}

#[tokio::test]
async fn a_request_sent_elsewhere_before_is_a_retry_on_the_backend_it_goes_to() {
    let mut lb = LoadBalance::new(
        ServiceList::new(vec![answering(&[200]), answering(&[200])]),
        Algo::RoundRobin,
    );
    // Without a `Tried`, and on a first attempt, nothing is a retry.
    send(&mut lb, Req::new(())).await.unwrap();
    let tried = Tried::new();
    let attempt = || {
        let mut req = Req::new(());
        req.extensions_mut().insert(tried.clone());
        req
    };
    send(&mut lb, attempt()).await.unwrap();
    let retries = |lb: &LoadBalance<_>| -> Vec<u64> {
        lb.snapshot().backends.iter().map(|b| b.retries).collect()
    };
    assert_eq!(retries(&lb), [0, 0]);

    // Round robin: the first attempt went to `1`; the second goes to `0` and counts there.
    send(&mut lb, attempt()).await.unwrap();
    assert_eq!(retries(&lb), [1, 0]);
    assert_eq!(lb.snapshot().responses().total(), 3);
}

#[tokio::test]
async fn no_backend_answers_are_counted_but_a_try_call_that_waits_is_not() {
    let (svc, mut handle) = mock::pair::<Req, Res>();
    handle.allow(0);
    let mut lb = LoadBalance::new(ServiceList::new(vec![svc]), Algo::LeastConn);

    let err = send(&mut lb, Req::new(())).await.unwrap_err();
    assert!(err.is::<NoAvailableBackend>());
    assert_eq!(lb.snapshot().no_backend, 1);

    // A queue that gets its request back has not answered yet; when it gives up, it does.
    assert!(lb.try_call(Req::new(())).is_err());
    assert_eq!(lb.snapshot().no_backend, 1);
    let answer = lb.no_backend::<std::future::Ready<Result<Res, Infallible>>>();
    assert!(answer.await.unwrap_err().is::<NoAvailableBackend>());
    assert_eq!(
        lb.clone().snapshot().no_backend,
        2,
        "clones share the count"
    );
    assert_eq!(lb.snapshot().backends[0].transport_failures, 0);
}

#[tokio::test]
async fn the_snapshot_names_the_algorithm_of_an_algo_pick_only() {
    let list = || ServiceList::new(vec![answering(&[200])]);
    assert_eq!(
        LoadBalance::new(list(), Algo::SourceIpHash)
            .snapshot()
            .algorithm,
        Some(Algo::SourceIpHash)
    );
    let custom = Balance::with_picker(list(), RoundRobin::default());
    let stats = custom.snapshot();
    assert_eq!((stats.algorithm, stats.backends.len()), (None, 1));
    assert_eq!((stats.queue, stats.connections), (None, None));
}

#[tokio::test]
async fn a_removed_backend_finishing_a_request_is_listed_as_removed() {
    let (svc, mut handle) = mock::pair::<Req, Res>();
    handle.allow(1);
    let registry = Registry::new(move |_: &&'static str| svc.clone());
    registry.register("a", 3);
    let mut lb = LoadBalance::new(registry.discover(), Algo::RoundRobin);
    let fut = lb.call(Req::new(()));
    registry.deregister(&"a");
    for _ in 0..100 {
        if lb.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }

    let stats = lb.snapshot();
    assert_eq!(stats.backends.len(), 1);
    let backend = &stats.backends[0];
    assert_eq!(
        (
            *backend.key.key(),
            backend.weight,
            backend.in_flight,
            backend.removed
        ),
        ("a", 3, 1, true)
    );
    assert_eq!(stats.in_flight(), 1);

    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(Res::new("a"));
    drop(fut.await.unwrap());
    assert!(lb.snapshot().backends.is_empty(), "done: no longer listed");
}

type Backend = tower::util::BoxCloneSyncService<Req, Res, Infallible>;
type Lb =
    tower::util::BoxCloneSyncService<Req, http::Response<TrackedBody<&'static str>>, BoxError>;
type Snapshot = Box<dyn Fn() -> BalancerSnapshot<Weighted<&'static str>>>;

/// Two backends under health checks with outlier detection (2 failures eject) and a round
/// robin; backend `b` answers `b_answers`, `a` always `200`; probes fail for the keys in
/// `down`.
fn checked(
    b_answers: &'static [u16],
    down: &'static [&'static str],
) -> (Registry<&'static str, Backend>, Lb, Snapshot) {
    let registry = Registry::new(move |name: &&'static str| {
        let codes: &'static [u16] = if *name == "b" { b_answers } else { &[200] };
        Backend::new(answering(codes))
    });
    let probe = probe_fn(move |backend: &Weighted<&'static str>| {
        let up = !down.contains(backend.key());
        async move {
            if up {
                Ok(())
            } else {
                Err("connection refused")
            }
        }
    });
    let health = HealthCheckLayer::new(probe)
        .interval(Duration::from_secs(10))
        .outlier_detection(
            OutlierDetection::new()
                .consecutive_failures(2)
                .base_ejection(Duration::from_secs(30)),
        );
    let monitor = health.monitor();
    let lb = ServiceBuilder::new()
        .layer(LoadBalanceLayer::new(Algo::RoundRobin))
        .layer(health)
        .service(registry.discover());
    let snapshot = {
        let lb = lb.clone();
        Box::new(move || lb.snapshot_with(&monitor))
    };
    (registry, Lb::new(lb), snapshot)
}

/// Lets the probe tasks run what is ready.
async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

fn backend<K: PartialEq + std::fmt::Debug>(
    stats: &BalancerSnapshot<Weighted<K>>,
    key: K,
) -> &BackendSnapshot<Weighted<K>> {
    stats
        .backends
        .iter()
        .find(|b| *b.key.key() == key)
        .unwrap_or_else(|| panic!("{key:?} listed"))
}

#[tokio::test(start_paused = true)]
async fn an_ejection_and_the_last_check_show_in_the_snapshot() {
    let (registry, mut lb, snapshot) = checked(&[503], &[]);
    registry.register("a", 1);
    registry.register("b", 1);
    settle().await;
    let stats = snapshot();
    let b = backend(&stats, "b");
    assert_eq!((b.state(), b.ejections()), (Some(BackendState::Healthy), 0));
    let (_, passed) = b.last_check().expect("checked when inserted");
    assert!(passed);

    // Round robin: `b` gets every other request, and its second 503 ejects it.
    for _ in 0..4 {
        send(&mut lb, Req::new(())).await.unwrap();
    }
    let stats = snapshot();
    let b = backend(&stats, "b");
    assert_eq!(b.state(), Some(BackendState::Ejected));
    assert_eq!(b.ejections(), 1);
    assert_eq!(b.responses.server_error, 2);
    assert_eq!(backend(&stats, "a").ejections(), 0);

    // The ejection ends; the count stays.
    tokio::time::sleep(Duration::from_secs(31)).await;
    settle().await;
    let stats = snapshot();
    let b = backend(&stats, "b");
    assert_eq!((b.state(), b.ejections()), (Some(BackendState::Healthy), 1));
}

#[tokio::test(start_paused = true)]
async fn a_failed_check_shows_as_the_last_check_failed() {
    let (registry, _lb, snapshot) = checked(&[200], &["b"]);
    registry.register("a", 1);
    registry.register("b", 1);
    settle().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    settle().await;

    let stats = snapshot();
    let b = backend(&stats, "b");
    assert_eq!(b.state(), Some(BackendState::Unhealthy));
    assert!(!b.last_check().unwrap().1, "the last check failed");
    let health = b.health.as_ref().unwrap();
    assert_eq!((health.checks, health.checks_failed), (2, 2));
    assert_eq!(health.last_error.as_deref(), Some("connection refused"));
    let a = backend(&stats, "a").health.as_ref().unwrap();
    assert_eq!((a.checks, a.checks_failed), (2, 0));
}

#[test]
fn queue_counters_count_waiting_requests_and_timeouts() {
    let counters = Arc::new(QueueCounters::new());
    let first = counters.enqueue();
    let second = counters.enqueue();
    assert_eq!(
        counters.snapshot(),
        QueueSnapshot {
            waiting: 2,
            queued: 2,
            timeouts: 0
        }
    );
    drop(first);
    second.timed_out();
    assert_eq!(
        counters.snapshot(),
        QueueSnapshot {
            waiting: 0,
            queued: 2,
            timeouts: 1
        }
    );
}

#[test]
fn connection_counters_count_open_and_accepted_connections() {
    let counters = Arc::new(ConnectionCounters::new());
    let open: Vec<_> = (0..3).map(|_| counters.open()).collect();
    assert_eq!(
        counters.snapshot(),
        ConnectionsSnapshot {
            open: 3,
            accepted: 3
        }
    );
    drop(open);
    assert_eq!(counters.snapshot().open, 0);
    assert_eq!(counters.snapshot().accepted, 3);
}

#[tokio::test]
async fn a_snapshot_takes_the_queue_and_connection_numbers_it_is_given() {
    let lb = LoadBalance::new(ServiceList::new(vec![answering(&[200])]), Algo::RoundRobin);
    let (queue, connections) = (
        Arc::new(QueueCounters::new()),
        Arc::new(ConnectionCounters::new()),
    );
    let _waiting = queue.enqueue();
    let _open = connections.open();
    let stats = lb
        .snapshot()
        .with_queue(&queue)
        .with_connections(&connections);
    assert_eq!(stats.queue.map(|q| q.waiting), Some(1));
    assert_eq!(stats.connections.map(|c| c.open), Some(1));
}

#[cfg(feature = "server")]
#[tokio::test]
async fn a_server_reads_its_balancer_and_health() {
    let config = crate::server::Config::new()
        .bind(([127, 0, 0, 1], 0))
        .algo(Algo::LeastConn);
    let server = crate::server::Server::bind(config).await.unwrap();
    let stats = server.stats().snapshot();
    assert_eq!(stats.algorithm, Some(Algo::LeastConn));
    assert!(stats.backends.is_empty());
    assert_eq!(stats.no_backend, 0);
    let connections = stats.connections.expect("a server counts its connections");
    assert_eq!((connections.open, connections.accepted), (0, 0));
    let queue = stats.queue.expect("a server counts its queue");
    assert_eq!((queue.waiting, queue.queued, queue.timeouts), (0, 0, 0));
}

#[tokio::test]
async fn discovery_changes_count_every_applied_add_update_and_removal() {
    let registry = Registry::new(|_: &&'static str| answering(&[200]));
    registry.register("a", 1);
    registry.register("b", 1);
    let lb = LoadBalance::new(registry.discover(), Algo::RoundRobin);
    assert_eq!(
        lb.snapshot().discovery_changes,
        2,
        "the changes ready at start"
    );

    let changed = lb.changed();
    registry.register("a", 5);
    changed.await;
    let changed = lb.changed();
    assert!(registry.deregister(&"b"));
    assert!(!registry.deregister(&"c"), "not registered: no change");
    changed.await;
    let stats = lb.snapshot();
    assert_eq!(stats.discovery_changes, 4);
    assert_eq!(stats.backends.len(), 1);
}

#[tokio::test]
async fn retries_and_refusals_of_the_budget_are_counted_with_the_retry_layer() {
    use crate::retry::{RetryBody, RetryLayer};
    use http_body_util::Empty;
    use tower::retry::budget::TpsBudget;

    type RetryReq = http::Request<RetryBody<Empty<Bytes>>>;
    // Every attempt is refused: each request is retried while the budget lasts.
    let refusing = || {
        service_fn(|_: RetryReq| async {
            let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            Err::<Res, BoxError>(
                crate::BackendUnavailable::new("10.0.0.1:80".parse().unwrap(), refused).into(),
            )
        })
    };
    let lb = LoadBalance::new(
        ServiceList::new(vec![refusing(), refusing(), refusing()]),
        Algo::RoundRobin,
    );
    // A budget with room for exactly 1 retry (the minimum of 1 per second, nothing from
    // deposits).
    let mut retry = ServiceBuilder::new()
        .layer(RetryLayer::new().max_retries(2).budget(TpsBudget::new(
            Duration::from_secs(1),
            1,
            0.0,
        )))
        .service(lb.clone());
    for _ in 0..2 {
        let req = http::Request::get("/").body(Empty::new()).unwrap();
        assert!(retry.ready().await.unwrap().call(req).await.is_err());
    }
    let stats = lb.snapshot().with_retries(retry.counters());
    let retries = stats.retries.unwrap();
    assert_eq!(retries.retries, retry.retries());
    assert_eq!(retries.budget_exhausted, retry.budget_exhausted());
    assert!(retries.retries >= 1, "{retries:?}");
    assert!(retries.budget_exhausted >= 1, "{retries:?}");
    // Each retry was sent to a backend, which counts it.
    let by_backends: u64 = stats.backends.iter().map(|b| b.retries).sum();
    assert_eq!(by_backends, retries.retries);
}
