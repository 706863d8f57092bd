use std::convert::Infallible;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until};
use tokio_test::{assert_pending, assert_ready_ok};
use tower::discover::{Change, Discover, ServiceList};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

use super::*;
use crate::{Algo, BoxError, LoadBalance, NoAvailableBackend, Weighted};

mod outlier;
mod slow_start;

type Req = http::Request<()>;
type Res = http::Response<&'static str>;

/// Per-backend probe answers the test flips, and how often each backend was probed.
struct Switches {
    up: Vec<AtomicBool>,
    calls: Vec<AtomicUsize>,
    /// How long each probe takes.
    delay: Vec<Duration>,
}

impl Switches {
    fn new(n: usize) -> Arc<Self> {
        Self::with_delays(vec![Duration::ZERO; n])
    }

    fn with_delays(delay: Vec<Duration>) -> Arc<Self> {
        Arc::new(Self {
            up: delay.iter().map(|_| AtomicBool::new(true)).collect(),
            calls: delay.iter().map(|_| AtomicUsize::new(0)).collect(),
            delay,
        })
    }

    fn set(&self, backend: usize, up: bool) {
        self.up[backend].store(up, SeqCst);
    }

    fn calls(&self, backend: usize) -> usize {
        self.calls[backend].load(SeqCst)
    }
}

/// Probes backend `i` (any key that borrows a `usize`) by reading switch `i`.
fn probe<K: std::borrow::Borrow<usize>>(
    switches: &Arc<Switches>,
) -> ProbeFn<impl Fn(&K) -> ProbeAnswer + Clone + Send + Sync + 'static> {
    let switches = Arc::clone(switches);
    probe_fn(move |key: &K| {
        let i = *key.borrow();
        switches.calls[i].fetch_add(1, SeqCst);
        let switches = Arc::clone(&switches);
        Box::pin(async move {
            if !switches.delay[i].is_zero() {
                sleep(switches.delay[i]).await;
            }
            if switches.up[i].load(SeqCst) {
                Ok(())
            } else {
                Err(BoxError::from(format!("backend {i} is down")))
            }
        }) as ProbeAnswer
    })
}

type ProbeAnswer = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

type Feed<K, S> = mpsc::UnboundedSender<Change<K, S>>;

/// A discovery stream the test feeds by hand.
fn channel<K: Eq, S>() -> (
    Feed<K, S>,
    impl Discover<Key = K, Service = S, Error = Infallible> + Unpin,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|c| c.map(Ok::<_, Infallible>))
    });
    (tx, stream)
}

/// Lets the probe tasks run what is ready, without moving the clock.
async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

/// Lets `duration` pass on the paused clock, then lets the probe tasks run what is ready.
async fn elapse(duration: Duration) {
    sleep(duration).await;
    settle().await;
}

/// Feeds `service` under `key` to the stream `discover` is built on; the health-checked
/// service it inserts.
async fn insert<D, P>(
    tx: &Feed<D::Key, D::Service>,
    discover: &mut HealthCheckDiscover<D, P>,
    key: D::Key,
    service: D::Service,
) -> HealthCheck<D::Service>
where
    D: tower::discover::Discover + Unpin,
    D::Key: Hash + Eq + Clone + std::fmt::Debug + Send + Sync + 'static,
    P: Probe<D::Key>,
{
    tx.send(Change::Insert(key, service)).unwrap();
    match discover.next().await {
        Some(Ok(Change::Insert(_, service))) => service,
        _ => panic!("expected an insert"),
    }
}

#[tokio::test(start_paused = true)]
async fn goes_pending_after_fall_failures_and_not_before() {
    let switches = Switches::new(1);
    let (tx, stream) = channel();
    let mut discover = HealthCheckLayer::new(probe(&switches))
        .interval(Duration::from_secs(1))
        .fall(3)
        .layer(stream);
    let (backend, _handle) = mock::pair::<Req, Res>();
    switches.set(0, false);
    let mut svc = mock::Spawn::new(insert(&tx, &mut discover, 0, backend).await);

    settle().await; // the first probe runs at once
    assert_eq!(switches.calls(0), 1);
    assert_ready_ok!(svc.poll_ready(), "1 failure of 3");
    elapse(Duration::from_secs(1)).await;
    assert_eq!(switches.calls(0), 2);
    assert_ready_ok!(svc.poll_ready(), "2 failures of 3");
    elapse(Duration::from_secs(1)).await;
    assert_eq!(switches.calls(0), 3);
    assert_pending!(svc.poll_ready(), "3 failures of 3");
    assert_eq!(svc.get_ref().health().health(), Health::Unhealthy);
}

#[tokio::test(start_paused = true)]
async fn ready_again_after_rise_successes() {
    let switches = Switches::new(1);
    let (tx, stream) = channel();
    let mut discover = HealthCheckLayer::new(probe(&switches))
        .interval(Duration::from_secs(1))
        .rise(2)
        .layer(stream);
    let (backend, _handle) = mock::pair::<Req, Res>();
    switches.set(0, false);
    let mut svc = mock::Spawn::new(insert(&tx, &mut discover, 0, backend).await);
    settle().await;
    assert_pending!(svc.poll_ready(), "fall 1: down after one failure");

    switches.set(0, true);
    elapse(Duration::from_secs(1)).await;
    assert_pending!(svc.poll_ready(), "1 pass of 2");
    elapse(Duration::from_secs(1)).await;
    assert_ready_ok!(svc.poll_ready(), "2 passes of 2");
}

#[tokio::test(start_paused = true)]
async fn initially_unhealthy_backend_waits_for_its_first_pass() {
    let switches = Switches::with_delays(vec![Duration::from_millis(100)]);
    let (tx, stream) = channel();
    let mut discover = HealthCheckLayer::new(probe(&switches))
        .initially_unhealthy()
        .layer(stream);
    let (backend, _handle) = mock::pair::<Req, Res>();
    let mut svc = mock::Spawn::new(insert(&tx, &mut discover, 0, backend).await);
    assert_pending!(svc.poll_ready());
    elapse(Duration::from_millis(100)).await;
    assert_ready_ok!(svc.poll_ready());
}

#[tokio::test(start_paused = true)]
async fn probe_timeout_counts_as_failure() {
    let switches = Switches::with_delays(vec![Duration::from_secs(60)]);
    let (tx, stream) = channel();
    let layer = HealthCheckLayer::new(probe(&switches)).timeout(Duration::from_secs(2));
    let monitor = layer.monitor();
    let mut discover = layer.layer(stream);
    let (backend, _handle) = mock::pair::<Req, Res>();
    let mut svc = mock::Spawn::new(insert(&tx, &mut discover, 0, backend).await);

    elapse(Duration::from_millis(1999)).await;
    assert_ready_ok!(svc.poll_ready(), "the probe has not timed out yet");
    elapse(Duration::from_millis(1)).await;
    assert_pending!(svc.poll_ready(), "a timed-out probe is a failure");
    let snapshot = monitor.get(&0).unwrap();
    assert_eq!(
        snapshot.last_error.as_deref(),
        Some("health check timed out")
    );
    assert_eq!(snapshot.consecutive_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn probes_every_interval() {
    let switches = Switches::new(1);
    let (tx, stream) = channel();
    let mut discover = HealthCheckLayer::new(probe(&switches))
        .interval(Duration::from_secs(5))
        .layer(stream);
    let (backend, _handle) = mock::pair::<Req, Res>();
    let _svc = insert(&tx, &mut discover, 0, backend).await;

    settle().await;
    assert_eq!(switches.calls(0), 1, "first probe at once");
    elapse(Duration::from_millis(4999)).await;
    assert_eq!(switches.calls(0), 1, "not before the interval");
    elapse(Duration::from_millis(1)).await;
    assert_eq!(switches.calls(0), 2);
    elapse(Duration::from_secs(20)).await;
    assert_eq!(switches.calls(0), 6);
}

#[tokio::test(start_paused = true)]
async fn remove_stops_probing() {
    let switches = Switches::new(2);
    let (tx, stream) = channel();
    let layer = HealthCheckLayer::new(probe(&switches)).interval(Duration::from_secs(1));
    let monitor = layer.monitor();
    let mut discover = layer.layer(stream);
    for i in 0..2 {
        insert(&tx, &mut discover, i, mock::pair::<Req, Res>().0).await;
    }
    settle().await;
    assert_eq!(monitor.len(), 2);

    tx.send(Change::Remove(0)).unwrap();
    assert!(matches!(discover.next().await, Some(Ok(Change::Remove(0)))));
    let calls = switches.calls(0);
    elapse(Duration::from_secs(10)).await;
    assert_eq!(switches.calls(0), calls, "no probe after removal");
    assert_eq!(switches.calls(1), 11, "the other backend is still probed");
    assert_eq!(monitor.len(), 1);
    assert!(monitor.get(&0).is_none());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_stream_stops_probing() {
    let switches = Switches::new(1);
    let (tx, stream) = channel();
    let layer = HealthCheckLayer::new(probe(&switches)).interval(Duration::from_secs(1));
    let monitor = layer.monitor();
    let mut discover = layer.layer(stream);
    insert(&tx, &mut discover, 0, mock::pair::<Req, Res>().0).await;
    settle().await;
    drop(discover);
    elapse(Duration::from_secs(10)).await;
    assert_eq!(switches.calls(0), 1);
    assert!(monitor.is_empty());
}

#[tokio::test(start_paused = true)]
async fn weight_update_keeps_state_and_a_single_probe_task() {
    let switches = Switches::new(1);
    let (tx, stream) = channel();
    let layer = HealthCheckLayer::new(probe(&switches)).interval(Duration::from_secs(1));
    let monitor = layer.monitor();
    let mut discover = layer.layer(stream);
    switches.set(0, false);
    let first = insert(
        &tx,
        &mut discover,
        Weighted::new(0, 1),
        mock::pair::<Req, Res>().0,
    )
    .await;
    settle().await;
    assert_eq!(first.health().health(), Health::Unhealthy);

    let mut second = mock::Spawn::new(
        insert(
            &tx,
            &mut discover,
            Weighted::new(0, 5),
            mock::pair::<Req, Res>().0,
        )
        .await,
    );
    assert!(Arc::ptr_eq(first.health(), second.get_ref().health()));
    assert_pending!(second.poll_ready(), "still down after the weight update");

    let calls = switches.calls(0);
    elapse(Duration::from_secs(3)).await;
    assert_eq!(switches.calls(0), calls + 3, "one probe task, not two");
    let backends = monitor.backends();
    assert_eq!(backends.len(), 1);
    assert_eq!(
        crate::Weight::weight(&backends[0].0),
        5,
        "the monitor has the new key"
    );

    tx.send(Change::Remove(Weighted::new(0, 5))).unwrap();
    discover.next().await;
    let calls = switches.calls(0);
    sleep(Duration::from_secs(3)).await;
    assert_eq!(switches.calls(0), calls, "one remove stops it");
}

#[tokio::test(start_paused = true)]
async fn slow_probe_does_not_delay_others() {
    let switches = Switches::with_delays(vec![Duration::from_secs(3600), Duration::ZERO]);
    let (tx, stream) = channel();
    let layer = HealthCheckLayer::new(probe(&switches))
        .interval(Duration::from_secs(1))
        .timeout(Duration::from_secs(7200));
    let monitor = layer.monitor();
    let mut discover = layer.layer(stream);
    switches.set(1, false);
    for i in 0..2 {
        insert(&tx, &mut discover, i, mock::pair::<Req, Res>().0).await;
    }
    settle().await;
    assert_eq!(monitor.get(&1).unwrap().status, Health::Unhealthy);
    assert_eq!(
        monitor.get(&0).unwrap().checks,
        0,
        "backend 0 is still being checked"
    );

    elapse(Duration::from_secs(5)).await;
    assert_eq!(switches.calls(1), 6);
    assert_eq!(switches.calls(0), 1);
}

#[tokio::test(start_paused = true)]
async fn waiter_is_woken_when_backend_becomes_healthy() {
    let switches = Switches::new(1);
    let (tx, stream) = channel();
    let mut discover = HealthCheckLayer::new(probe(&switches))
        .interval(Duration::from_secs(1))
        .layer(stream);
    switches.set(0, false);
    let (backend, _handle) = mock::pair::<Req, Res>();
    let service = insert(&tx, &mut discover, 0, backend).await;
    settle().await;
    let mut waiter = mock::Spawn::new(service.clone());
    let mut other = mock::Spawn::new(service);
    assert_pending!(waiter.poll_ready());
    assert_pending!(other.poll_ready());
    assert!(!waiter.is_woken());

    elapse(Duration::from_secs(1)).await;
    assert!(!waiter.is_woken(), "a failed check does not wake");

    switches.set(0, true);
    elapse(Duration::from_secs(1)).await;
    assert!(
        waiter.is_woken(),
        "every waiter is woken, not only the last"
    );
    assert!(other.is_woken());
    assert_ready_ok!(waiter.poll_ready());
    assert_ready_ok!(other.poll_ready());
}

#[tokio::test(start_paused = true)]
async fn ready_awaits_recovery() {
    let switches = Switches::new(1);
    let (tx, stream) = channel();
    let mut discover = HealthCheckLayer::new(probe(&switches))
        .interval(Duration::from_secs(1))
        .layer(stream);
    switches.set(0, false);
    let backend = service_fn(|_: Req| async { Ok::<_, Infallible>(Res::new("ok")) });
    let service = insert(&tx, &mut discover, 0, backend).await;
    settle().await;
    let waiting = tokio::spawn(async move {
        let res = service.oneshot(Req::new(())).await.unwrap();
        (tokio::time::Instant::now(), *res.body())
    });
    let start = tokio::time::Instant::now();
    sleep(Duration::from_millis(3500)).await;
    switches.set(0, true);
    let (at, body) = waiting.await.unwrap();
    assert_eq!(body, "ok");
    assert_eq!(
        at - start,
        Duration::from_secs(4),
        "answered at the first passed check"
    );
}

#[tokio::test(start_paused = true)]
async fn balancer_never_picks_unhealthy_backend_and_fails_fast_when_all_are() {
    let switches = Switches::new(3);
    let backend = |name: &'static str| {
        service_fn(move |_: Req| async move { Ok::<_, Infallible>(Res::new(name)) })
    };
    let backends = ServiceList::new(vec![backend("a"), backend("b"), backend("c")]);
    let layer = HealthCheckLayer::new(probe(&switches)).interval(Duration::from_secs(1));
    let monitor = layer.monitor();
    switches.set(1, false);
    let mut lb = LoadBalance::new(layer.layer(backends), Algo::RoundRobin);
    settle().await;
    assert_eq!(monitor.len(), 3);

    let mut send = async || {
        let res = lb.ready().await?.call(Req::new(())).await?;
        Ok::<_, BoxError>(*res.body().get_ref())
    };
    for _ in 0..12 {
        assert_ne!(send().await.unwrap(), "b");
    }

    switches.set(0, false);
    switches.set(2, false);
    elapse(Duration::from_secs(1)).await;
    let error = send().await.unwrap_err();
    assert!(
        error.downcast_ref::<NoAvailableBackend>().is_some(),
        "{error}"
    );

    switches.set(1, true);
    elapse(Duration::from_secs(1)).await;
    for _ in 0..3 {
        assert_eq!(send().await.unwrap(), "b");
    }
    assert_eq!(switches.calls(1), 3, "ServiceList ended, the checks go on");
}

#[tokio::test(start_paused = true)]
async fn monitor_probes_now_and_overrides_status() {
    let switches = Switches::new(2);
    let (tx, stream) = channel();
    let layer = HealthCheckLayer::new(probe(&switches)).interval(Duration::from_secs(10));
    let monitor = layer.monitor();
    let mut discover = layer.layer(stream);
    let (mut services, mut handles) = (Vec::new(), Vec::new());
    for i in 0..2 {
        let (backend, handle) = mock::pair::<Req, Res>();
        handles.push(handle);
        services.push(mock::Spawn::new(
            insert(&tx, &mut discover, i, backend).await,
        ));
    }
    settle().await;
    let mut listed: Vec<_> = monitor
        .backends()
        .into_iter()
        .map(|(k, s)| (k, s.status, s.checks))
        .collect();
    listed.sort_by_key(|entry| entry.0);
    assert_eq!(listed, [(0, Health::Healthy, 1), (1, Health::Healthy, 1)]);

    switches.set(0, false);
    sleep(Duration::from_secs(1)).await;
    assert!(monitor.probe_now(&0));
    assert!(!monitor.probe_now(&7));
    settle().await;
    assert_eq!(switches.calls(0), 2, "probed at once");
    assert_eq!(switches.calls(1), 1);
    assert_pending!(services[0].poll_ready());
    assert_eq!(
        monitor.get(&0).unwrap().last_error.as_deref(),
        Some("backend 0 is down")
    );
    elapse(Duration::from_secs(9)).await;
    assert_eq!(
        switches.calls(0),
        2,
        "next regular check one interval after"
    );
    elapse(Duration::from_secs(1)).await;
    assert_eq!(switches.calls(0), 3);

    assert_eq!(
        monitor.set_health(&1, Health::Unhealthy),
        Some(Health::Healthy)
    );
    assert_pending!(services[1].poll_ready(), "forced down");
    assert_eq!(
        monitor.set_health(&0, Health::Healthy),
        Some(Health::Unhealthy)
    );
    assert!(services[0].is_woken());
    assert_ready_ok!(services[0].poll_ready(), "forced up");
    assert_eq!(monitor.set_health(&7, Health::Healthy), None);
}

#[tokio::test(start_paused = true)]
async fn streams_of_one_layer_share_a_backend_and_its_task() {
    let switches = Switches::new(1);
    let layer = HealthCheckLayer::new(probe(&switches)).interval(Duration::from_secs(1));
    let monitor = layer.monitor();
    let (tx_a, stream_a) = channel();
    let (tx_b, stream_b) = channel();
    let mut a = layer.layer(stream_a);
    let mut b = layer.layer(stream_b);
    let from_a = insert(&tx_a, &mut a, 0, mock::pair::<Req, Res>().0).await;
    let from_b = insert(&tx_b, &mut b, 0, mock::pair::<Req, Res>().0).await;
    assert!(Arc::ptr_eq(from_a.health(), from_b.health()));
    settle().await;
    assert_eq!(switches.calls(0), 1);

    drop(a);
    elapse(Duration::from_secs(2)).await;
    assert_eq!(switches.calls(0), 3, "still checked for stream b");
    tx_b.send(Change::Remove(0)).unwrap();
    b.next().await;
    elapse(Duration::from_secs(2)).await;
    assert_eq!(switches.calls(0), 3);
    assert!(monitor.is_empty());
}

#[cfg(feature = "proxy")]
mod http_probe {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http::{StatusCode, Uri};
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;
    use crate::BackendAddr;

    /// A server answering 200 on `/health` and `/api/health`, 500 elsewhere.
    async fn server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let service = hyper::service::service_fn(|req: http::Request<_>| async move {
                    let status = match req.uri().path() {
                        "/health" | "/api/health" => StatusCode::OK,
                        _ => StatusCode::INTERNAL_SERVER_ERROR,
                    };
                    let mut res = http::Response::new(Full::new(Bytes::from_static(b"body")));
                    *res.status_mut() = status;
                    Ok::<_, Infallible>(res)
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        addr
    }

    fn uri(s: &str) -> BackendAddr {
        s.parse().unwrap()
    }

    #[test]
    fn joins_the_path_to_the_base_uri() {
        let probe = HttpProbe::new("/health");
        for (base, want) in [
            ("http://10.0.0.1:8080", "http://10.0.0.1:8080/health"),
            ("http://10.0.0.1:8080/", "http://10.0.0.1:8080/health"),
            (
                "http://10.0.0.1:8080/api",
                "http://10.0.0.1:8080/api/health",
            ),
            (
                "http://10.0.0.1:8080/api/",
                "http://10.0.0.1:8080/api/health",
            ),
        ] {
            assert_eq!(probe.uri_for(&uri(base)).unwrap(), want, "{base}");
        }
        let probe = HttpProbe::new("ready?full=1");
        assert_eq!(probe.path(), "/ready?full=1");
        assert_eq!(
            probe.uri_for(&uri("http://h:1/a/")).unwrap(),
            "http://h:1/a/ready?full=1"
        );
        assert_eq!(HttpProbe::default().path(), "/health");
        assert!(HttpProbe::new("/a b").uri_for(&uri("http://h:1")).is_err());
        // Keys that are no backend address: the check fails at once, naming the key.
        for key in ["10.0.0.1:8080", "https://example.com/x?q=1", "/only/a/path"] {
            let key: Uri = key.parse().unwrap();
            let error = ProbeTarget::backend_addr(&key).unwrap_err();
            assert!(error.to_string().contains("invalid address"), "{error}");
        }
    }

    #[tokio::test]
    async fn passes_on_2xx_and_fails_otherwise() {
        let addr = server().await;
        let base = uri(&format!("http://{addr}"));
        let check = |probe: HttpProbe, base: BackendAddr| async move {
            tokio::time::timeout(Duration::from_secs(5), probe.probe(&base))
                .await
                .expect("probe finished")
        };

        check(HttpProbe::new("/health"), base.clone())
            .await
            .unwrap();
        check(HttpProbe::default(), uri(&format!("http://{addr}/")))
            .await
            .unwrap();
        check(
            HttpProbe::new("health"),
            uri(&format!("http://{addr}/api/")),
        )
        .await
        .unwrap();

        let error = check(HttpProbe::new("/sick"), base).await.unwrap_err();
        let status = error
            .downcast_ref::<UnhealthyStatus>()
            .expect("typed error");
        assert_eq!(status.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            error.to_string(),
            "health check answered 500 Internal Server Error"
        );

        // Keys of other kinds: a weighted URI and a socket address.
        let probe = HttpProbe::new("/health");
        let weighted = Weighted::new(uri(&format!("http://{addr}")), 3);
        probe.probe(&weighted).await.unwrap();
        probe.probe(&addr).await.unwrap();

        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let error = check(probe, uri(&format!("http://{closed}")))
            .await
            .unwrap_err();
        assert!(error.downcast_ref::<UnhealthyStatus>().is_none(), "{error}");
    }

    /// A server answering 200 to everything that counts the connections it accepted.
    async fn counting_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, SeqCst);
                let service = hyper::service::service_fn(|_: http::Request<_>| async {
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn checks_and_traffic_share_the_clients_connections() {
        use http_body_util::{BodyExt, Empty};

        use crate::proxy::{HttpBackend, ProxyClient};

        let (addr, accepted) = counting_server().await;
        let backend: BackendAddr = format!("http://{addr}").parse().unwrap();
        let client = ProxyClient::<Empty<Bytes>>::new();
        // The backend's forwarding service, as a registry makes it; it keeps its connections.
        let mut http = HttpBackend::new(backend.clone(), client.clone());
        let probe = HttpProbe::with_client(client, "/health");
        probe.probe(&backend).await.unwrap();
        probe.probe(&backend).await.unwrap();
        assert_eq!(accepted.load(SeqCst), 1, "checks reuse their connection");

        // A request goes out on the connection the checks opened...
        let req = http::Request::get("/").body(Empty::new()).unwrap();
        let res = http.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
        assert_eq!(accepted.load(SeqCst), 1, "one pool for checks and traffic");
        // ...and a check after it on the request's.
        probe.probe(&backend).await.unwrap();
        assert_eq!(accepted.load(SeqCst), 1);

        // With no forwarding service to keep the backend's connections (a probe with a client
        // of its own, or the check at registration), each check has a connection of its own.
        let alone = HttpProbe::new("/health");
        alone.probe(&backend).await.unwrap();
        alone.probe(&backend).await.unwrap();
        assert_eq!(accepted.load(SeqCst), 3);
    }

    #[tokio::test]
    async fn checks_http_backends_under_the_layer() {
        let up = server().await;
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let layer = HealthCheckLayer::new(HttpProbe::new("/health"))
            .interval(Duration::from_millis(50))
            .timeout(Duration::from_secs(1));
        let monitor = layer.monitor();
        let backend = |name: &'static str| {
            service_fn(move |_: Req| async move { Ok::<_, Infallible>(Res::new(name)) })
        };
        let backends = ServiceList::new(vec![backend("up"), backend("closed")]);
        // ServiceList keys are indices; map them to the backends' URIs.
        let uris = [
            uri(&format!("http://{up}")),
            uri(&format!("http://{closed}")),
        ];
        let discover = backends.map(move |change| {
            change.map(|change| match change {
                Change::Insert(i, s) => Change::Insert(uris[i].clone(), s),
                Change::Remove(i) => Change::Remove(uris[i].clone()),
            })
        });
        let mut lb = LoadBalance::new(layer.layer(discover), Algo::RoundRobin);
        let closed_uri = uri(&format!("http://{closed}"));
        tokio::time::timeout(Duration::from_secs(5), async {
            while monitor.get(&closed_uri).map(|s| s.status) != Some(Health::Unhealthy) {
                sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the closed backend is marked down");
        for _ in 0..4 {
            let res = lb.ready().await.unwrap().call(Req::new(())).await.unwrap();
            assert_eq!(*res.body().get_ref(), "up");
        }
        assert_eq!(
            monitor.get(&uri(&format!("http://{up}"))).unwrap().status,
            Health::Healthy
        );
    }
}
