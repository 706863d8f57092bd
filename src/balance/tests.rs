use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;
use tower::discover::ServiceList;
use tower::{Service, ServiceExt, service_fn};
use tower_test::mock;

use super::*;
use crate::{Algo, BoxError, NoAvailableBackend, Registry};

type Req = http::Request<()>;
type Res = http::Response<&'static str>;

fn named(
    name: &'static str,
) -> impl Service<Req, Response = Res, Error = Infallible, Future: Send> + Clone + Send + Sync {
    service_fn(move |_: Req| async move { Ok::<_, Infallible>(http::Response::new(name)) })
}

async fn call<S>(lb: &mut S) -> Result<S::Response, BoxError>
where
    S: Service<Req, Error = BoxError>,
{
    lb.ready().await?.call(http::Request::new(())).await
}

/// Waits (in virtual or real time) until the balancer's set has `n` backends.
async fn until_len<D, P>(lb: &Balance<D, P>, n: usize)
where
    D: tower::discover::Discover,
    P: crate::algo::Pick<D::Key>,
{
    for _ in 0..1000 {
        if lb.len() == n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("set never reached {n} backends (has {})", lb.len());
}

#[tokio::test]
async fn service_list_round_robin() {
    let mut lb = LoadBalance::new(
        ServiceList::new(vec![named("a"), named("b")]),
        Algo::RoundRobin,
    );
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(*call(&mut lb).await.unwrap().body().get_ref());
    }
    assert_eq!(got, ["a", "b", "a", "b"]);
}

#[tokio::test]
async fn empty_set_fails_fast_with_typed_error() {
    let registry = Registry::new(|_: &&'static str| named("x"));
    for algo in Algo::ALL {
        let mut lb = LoadBalance::new(registry.discover(), algo);
        let err = tokio::time::timeout(Duration::from_secs(1), call(&mut lb))
            .await
            .expect("must not wait")
            .unwrap_err();
        assert!(
            err.downcast_ref::<NoAvailableBackend>().is_some(),
            "{algo}: {err}"
        );
    }
}

#[tokio::test]
async fn unready_backends_are_skipped_and_none_ready_fails_fast() {
    let (svc_a, mut handle_a) = mock::pair::<Req, Res>();
    let (svc_b, mut handle_b) = mock::pair::<Req, Res>();
    let mut lb = LoadBalance::new(ServiceList::new(vec![svc_a, svc_b]), Algo::RoundRobin);

    // Neither mock allows a request: both are Pending, so the call fails at once.
    handle_a.allow(0);
    handle_b.allow(0);
    let err = call(&mut lb).await.unwrap_err();
    assert!(err.is::<NoAvailableBackend>());

    // Only b is ready: every request goes to b.
    handle_b.allow(2);
    for _ in 0..2 {
        let fut = lb.call(http::Request::new(()));
        let (_, send) = handle_b.next_request().await.unwrap();
        send.send_response(http::Response::new("b"));
        assert_eq!(*fut.await.unwrap().body().get_ref(), "b");
    }
}

#[tokio::test]
async fn discovery_applies_without_requests() {
    let registry = Registry::new(|name: &&'static str| named(name));
    let lb = LoadBalance::new(registry.discover(), Algo::RoundRobin);
    assert!(lb.is_empty());
    registry.register("a", 1);
    registry.register("b", 1);
    until_len(&lb, 2).await;
    registry.deregister(&"a");
    until_len(&lb, 1).await;
    assert_eq!(*lb.endpoints()[0].key().key(), "b");
}

#[tokio::test]
async fn backends_already_registered_are_present_at_construction() {
    let registry = Registry::new(|name: &&'static str| named(name));
    registry.register("a", 1);
    let mut lb = LoadBalance::new(registry.discover(), Algo::LeastConn);
    assert_eq!(lb.len(), 1);
    assert_eq!(*call(&mut lb).await.unwrap().body().get_ref(), "a");
}

#[tokio::test]
async fn removed_backend_finishes_in_flight_request() {
    let (svc, mut handle) = mock::pair::<Req, Res>();
    handle.allow(1);
    let registry = Registry::new(move |_: &&'static str| svc.clone());
    registry.register("a", 1);
    let mut lb = LoadBalance::new(registry.discover(), Algo::RoundRobin);

    let fut = lb.call(http::Request::new(()));
    let (_, send) = handle.next_request().await.unwrap();
    registry.deregister(&"a");
    until_len(&lb, 0).await;
    assert_eq!(lb.retired().len(), 1, "still finishing its request");

    send.send_response(http::Response::new("done"));
    let res = fut.await.unwrap();
    assert_eq!(*res.body().get_ref(), "done");
    drop(res);
    assert!(lb.retired().is_empty());
    assert!(call(&mut lb).await.unwrap_err().is::<NoAvailableBackend>());
}

#[tokio::test]
async fn counters_survive_set_changes_and_weight_updates() {
    let registry = Registry::new(|name: &&'static str| named(name));
    registry.register("a", 1);
    let mut lb = LoadBalance::new(registry.discover(), Algo::RoundRobin);
    for _ in 0..3 {
        call(&mut lb).await.unwrap();
    }
    registry.register("b", 1);
    until_len(&lb, 2).await;
    registry.register("a", 4);
    registry.deregister(&"b");
    until_len(&lb, 1).await;
    // Wait for the weight update too: it arrives in the same batch or just before.
    for _ in 0..100 {
        if lb.endpoints()[0].weight() == 4 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let a = &lb.endpoints()[0];
    assert_eq!(a.weight(), 4);
    assert_eq!(a.stats().served(), 3);
}

#[tokio::test]
async fn backends_are_keyed_by_identity_not_position() {
    let registry = Registry::new(|name: &&'static str| named(name));
    for name in ["a", "b", "c"] {
        registry.register(name, 1);
    }
    let mut lb = LoadBalance::new(registry.discover(), Algo::RoundRobin);
    let c_stats = lb.endpoints()[2].stats_arc().clone();
    registry.deregister(&"a");
    until_len(&lb, 2).await;
    // "c" moved from slot 2 to slot 1 and kept its counters object.
    assert!(std::sync::Arc::ptr_eq(
        lb.endpoints()[1].stats_arc(),
        &c_stats
    ));
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(*call(&mut lb).await.unwrap().body().get_ref());
    }
    got.sort_unstable();
    assert_eq!(got, ["b", "b", "c", "c"]);
}

#[tokio::test]
async fn request_counts_in_flight_until_body_ends() {
    let (tx, rx) = mpsc::channel::<Result<http_body::Frame<Bytes>, Infallible>>(1);
    let rx = std::sync::Arc::new(std::sync::Mutex::new(Some(rx)));
    let backend = service_fn(move |_: Req| {
        let rx = rx.lock().unwrap().take().expect("one request");
        async move {
            let stream = tokio_stream_from(rx);
            Ok::<_, Infallible>(http::Response::new(StreamBody::new(stream)))
        }
    });
    let mut lb = LoadBalance::new(ServiceList::new(vec![backend]), Algo::LeastConn);
    let res = call(&mut lb).await.unwrap();
    let endpoint = lb.endpoints()[0].clone();
    assert_eq!(endpoint.in_flight(), 1, "headers arrived, body still open");
    let mut body = res.into_body();
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"x"))))
        .await
        .unwrap();
    assert!(body.frame().await.unwrap().is_ok());
    assert_eq!(endpoint.in_flight(), 1);
    drop(tx);
    assert!(body.frame().await.is_none());
    assert_eq!(endpoint.in_flight(), 0, "body ended");
    assert_eq!(endpoint.stats().served(), 1);
}

fn tokio_stream_from<T>(rx: mpsc::Receiver<T>) -> impl futures_core::Stream<Item = T> + Unpin {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|t| (t, rx))
    }))
}

#[tokio::test]
async fn failed_calls_are_counted() {
    let backend = service_fn(|_: Req| async { Err::<Res, _>(std::io::Error::other("boom")) });
    let mut lb = LoadBalance::new(ServiceList::new(vec![backend]), Algo::RoundRobin);
    let err = call(&mut lb).await.unwrap_err();
    assert_eq!(err.to_string(), "boom");
    let e = &lb.endpoints()[0];
    assert_eq!((e.stats().failures(), e.in_flight()), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_balancer_is_shared_across_threads_without_buffer() {
    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>(_: &T) {}
    let lb = LoadBalance::new(
        ServiceList::new(vec![named("a"), named("b"), named("c")]),
        Algo::PowerOfTwoChoices,
    );
    assert_send_sync_clone(&lb);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let mut lb = lb.clone();
            tokio::spawn(async move {
                for _ in 0..500 {
                    call(&mut lb).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let served: u64 = lb.endpoints().iter().map(|e| e.stats().served()).sum();
    assert_eq!(served, 4000);
    assert!(lb.endpoints().iter().all(|e| e.in_flight() == 0));
}

#[tokio::test]
async fn background_task_stops_when_balancer_dropped() {
    let registry = Registry::new(|name: &&'static str| named(name));
    let lb = LoadBalance::new(registry.discover(), Algo::RoundRobin);
    let weak = std::sync::Arc::downgrade(&lb.shared);
    drop(lb);
    assert!(weak.upgrade().is_none());
    // The registry notices the stream is gone on its next change.
    registry.register("a", 1);
    tokio::task::yield_now().await;
    registry.register("b", 1);
    assert_eq!(registry.len(), 2);
}

#[tokio::test]
async fn tried_backends_are_skipped_on_retry() {
    let mut lb = LoadBalance::new(
        ServiceList::new(vec![named("a"), named("b"), named("c")]),
        Algo::RoundRobin,
    );
    let tried = Tried::new();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut req = http::Request::new(());
        req.extensions_mut().insert(tried.clone());
        let res = lb.ready().await.unwrap().call(req).await.unwrap();
        seen.push(*res.body().get_ref());
    }
    seen.sort_unstable();
    assert_eq!(seen, ["a", "b", "c"], "each attempt went to a new backend");
    assert_eq!(tried.len(), 3);
    let mut req = http::Request::new(());
    req.extensions_mut().insert(tried.clone());
    let err = lb.ready().await.unwrap().call(req).await.unwrap_err();
    assert!(err.is::<NoAvailableBackend>());
}

/// A picker that says what the in-flight counts were right after each `ready(i)` said yes, and
/// takes the last backend it asked: it asks `ask` in order.
struct Recording {
    ask: Vec<usize>,
    seen: std::sync::Mutex<Vec<(usize, Vec<usize>)>>,
}

impl crate::algo::Pick<usize> for Recording {
    type Table = ();

    fn build(&self, _: &[Arc<Endpoint<usize>>]) {}

    fn pick<B>(
        &self,
        _: &(),
        endpoints: &[Arc<Endpoint<usize>>],
        _: &http::Request<B>,
        ready: &mut impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let mut last = None;
        for &i in &self.ask {
            if ready(i) {
                let counts = endpoints.iter().map(|e| e.in_flight()).collect();
                self.seen.lock().unwrap().push((i, counts));
                last = Some(i);
            }
        }
        last
    }
}

#[tokio::test]
async fn a_backend_counts_the_request_as_soon_as_its_service_says_ready() {
    let picker = Recording {
        ask: vec![1],
        seen: Default::default(),
    };
    let mut lb = Balance::with_picker(ServiceList::new(vec![named("a"), named("b")]), picker);
    let res = call(&mut lb).await.unwrap();
    assert_eq!(*res.body().get_ref(), "b");
    // Inside the pick, right after the yes: a picker that tracks load sees the request.
    assert_eq!(*lb.picker().seen.lock().unwrap(), [(1, vec![0, 1])]);
    assert_eq!(lb.endpoints()[1].in_flight(), 1, "until the body ends");
    drop(res);
    assert_eq!(lb.endpoints()[1].in_flight(), 0);
}

#[tokio::test]
async fn a_picker_that_asks_again_after_a_yes_moves_the_reservation() {
    let picker = Recording {
        ask: vec![0, 1],
        seen: Default::default(),
    };
    let mut lb = Balance::with_picker(ServiceList::new(vec![named("a"), named("b")]), picker);
    let res = call(&mut lb).await.unwrap();
    assert_eq!(*res.body().get_ref(), "b", "sent where the last yes was");
    // Backend 0 was counted while reserved, and let go when 1 said yes.
    assert_eq!(
        *lb.picker().seen.lock().unwrap(),
        [(0, vec![1, 0]), (1, vec![0, 1])]
    );
    let counts: Vec<_> = lb.endpoints().iter().map(|e| e.in_flight()).collect();
    assert_eq!(counts, [0, 1]);
    drop(res);
    assert_eq!(lb.endpoints()[1].in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn least_time_leaves_the_connect_out_of_its_sample() {
    // The backend takes 12 ms, 10 of them opening its connection, and says so.
    let backend = service_fn(|_: Req| async {
        tokio::time::sleep(Duration::from_millis(12)).await;
        let mut res = http::Response::new("ok");
        res.extensions_mut()
            .insert(ConnectTime(Duration::from_millis(10)));
        Ok::<_, Infallible>(res)
    });
    let mut lb = LoadBalance::new(ServiceList::new(vec![backend]), Algo::LeastTime);
    lb.record_response_times(true);
    drop(call(&mut lb).await.unwrap());
    let endpoints = lb.endpoints();
    let stats = endpoints[0].stats();
    // Least time heard 2 ms; the histogram, what the client waited.
    assert_eq!(stats.rtt_estimate_ns(), Some(2e6));
    assert_eq!(
        stats.response_time().mean(),
        Some(Duration::from_millis(12))
    );
}
