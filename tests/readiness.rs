//! Readiness through any tower layer between the balancer and its backends, and the queue
//! waiting on the backends' own wake-ups.
//!
//! Sockets are not the point here: the backends are in-process services that answer with
//! their name, wrapped in tower's own layers (`ConcurrencyLimit`, `RateLimit`) or the crate's
//! `HealthCheck`, and time is paused so that no test waits on a timer by accident.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tokio::sync::Semaphore;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::discover::ServiceList;
use tower::limit::{ConcurrencyLimit, RateLimit, rate::Rate};
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};
use tower_lb::health::{BackendHealth, Health, HealthCheck};
use tower_lb::queue::QueueLayer;
use tower_lb::{Algo, LoadBalance, Registry};

type Req = Request<()>;
type Res = Response<&'static str>;

/// A backend named `name`: `/hold` answers once `release` gives it a permit, anything else
/// answers at once.
fn backend(
    name: &'static str,
    release: &Arc<Semaphore>,
) -> impl Service<Req, Response = Res, Error = Infallible, Future: Send> + Clone + Send + Sync + use<>
{
    let release = Arc::clone(release);
    service_fn(move |req: Req| {
        let release = Arc::clone(&release);
        async move {
            if req.uri().path() == "/hold" {
                release.acquire().await.unwrap().forget();
            }
            Ok::<_, Infallible>(Response::new(name))
        }
    })
}

fn get(path: &str) -> Req {
    Request::get(path).body(()).unwrap()
}

/// Sends `req` and returns the name of the backend that answered.
async fn name<S>(lb: &mut S, req: Req) -> &'static str
where
    S: Service<Req, Response = Response<tower_lb::TrackedBody<&'static str>>, Error = BoxError>,
{
    let res = lb.ready().await.unwrap().call(req).await.unwrap();
    res.into_body().into_inner()
}

#[tokio::test(start_paused = true)]
async fn a_backend_saturated_under_a_concurrency_limit_is_skipped() {
    let release = Arc::new(Semaphore::new(0));
    let limited = |name| ConcurrencyLimit::new(backend(name, &release), 1);
    let mut lb = LoadBalance::new(
        ServiceList::new(vec![limited("a"), limited("b")]),
        Algo::RoundRobin,
    );

    // `a` takes a request that holds its only permit.
    let mut held = task::spawn(lb.call(get("/hold")));
    assert_pending!(held.poll());
    assert_eq!(name(&mut lb, get("/")).await, "b");
    // Round robin's turn is `a`'s, but `a` is saturated: `b` takes the request.
    assert_eq!(name(&mut lb, get("/")).await, "b");
    assert_eq!(name(&mut lb, get("/")).await, "b");

    // Once `a`'s request ends, `a` takes its turns again.
    release.add_permits(1);
    let res = assert_ready_ok!(held.poll());
    assert_eq!(res.into_body().into_inner(), "a");
    // (tower's response future holds the permit until it is dropped.)
    drop(held);
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(name(&mut lb, get("/")).await);
    }
    names.sort_unstable();
    assert_eq!(names, ["a", "a", "b", "b"]);
}

/// Shares one service between clones. tower's `RateLimit` is not `Clone` (its budget is
/// its own), and a balancer clones a backend's service for each request: behind this
/// wrapper, every clone draws on the one budget.
struct Shared<S>(Arc<Mutex<S>>);

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<S: Service<Req>> Service<Req> for Shared<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.lock().unwrap().poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> S::Future {
        self.0.lock().unwrap().call(req)
    }
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_backend_is_skipped() {
    let release = Arc::new(Semaphore::new(0));
    // `a` takes one request per 10 seconds, `b` a hundred.
    let limited = |name, n| {
        let rate = Rate::new(n, Duration::from_secs(10));
        Shared(Arc::new(Mutex::new(RateLimit::new(
            backend(name, &release),
            rate,
        ))))
    };
    let mut lb = LoadBalance::new(
        ServiceList::new(vec![limited("a", 1), limited("b", 100)]),
        Algo::RoundRobin,
    );
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(name(&mut lb, get("/")).await);
    }
    // From the third request on, round robin's turn is `a`'s every other time, but `a` has
    // used its budget: `b` takes the request.
    assert_eq!(names, ["a", "b", "b", "b"]);

    // `a`'s budget is renewed after its window.
    tokio::time::advance(Duration::from_secs(10)).await;
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(name(&mut lb, get("/")).await);
    }
    assert_eq!(names.iter().filter(|&&n| n == "a").count(), 1, "{names:?}");
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_is_woken_at_once_when_a_concurrency_limit_permit_frees() {
    let release = Arc::new(Semaphore::new(0));
    let lb = LoadBalance::new(
        ServiceList::new(vec![ConcurrencyLimit::new(backend("a", &release), 1)]),
        Algo::RoundRobin,
    );
    let mut queue = QueueLayer::new(Duration::from_secs(5)).layer(lb);

    let mut held = task::spawn(queue.call(get("/hold")));
    assert_pending!(held.poll());
    let mut queued = task::spawn(queue.call(get("/")));
    assert_pending!(queued.poll(), "no permit: the request waits");
    assert!(!queued.is_woken());

    // The held request ends and frees its permit: the queued one is woken now, not at a
    // recheck (time does not move in this test).
    release.add_permits(1);
    assert_ready_ok!(held.poll());
    // (tower's response future holds the permit until it is dropped.)
    assert!(!queued.is_woken());
    drop(held);
    assert!(queued.is_woken(), "woken by the freed permit");
    let res = assert_ready_ok!(queued.poll());
    assert_eq!(res.into_body().into_inner(), "a");
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_is_woken_when_its_backend_passes_its_health_check_again() {
    let release = Arc::new(Semaphore::new(0));
    let health = Arc::new(BackendHealth::new(Health::Unhealthy));
    let lb = LoadBalance::new(
        ServiceList::new(vec![HealthCheck::new(
            backend("a", &release),
            Arc::clone(&health),
        )]),
        Algo::RoundRobin,
    );
    let mut queue = QueueLayer::new(Duration::from_secs(5)).layer(lb);

    let mut queued = task::spawn(queue.call(get("/")));
    assert_pending!(queued.poll(), "the only backend is down: the request waits");
    health.set_health(Health::Healthy);
    assert!(queued.is_woken(), "woken by the backend coming back");
    let res = assert_ready_ok!(queued.poll());
    assert_eq!(res.into_body().into_inner(), "a");
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_is_woken_when_a_backend_joins() {
    let release = Arc::new(Semaphore::new(0));
    let made = Arc::clone(&release);
    let registry = Registry::new(move |_: &&'static str| backend("a", &made));
    let lb = LoadBalance::new(registry.discover(), Algo::RoundRobin);
    let mut queue = QueueLayer::new(Duration::from_secs(5)).layer(lb);

    let mut queued = task::spawn(queue.call(get("/")));
    assert_pending!(queued.poll(), "no backend at all: the request waits");
    let applied = queue.get_ref().changed();
    registry.register("a", 1);
    // The balancer applies the change on its own task.
    applied.await;
    assert!(queued.is_woken(), "woken by the new set");
    let res = assert_ready_ok!(queued.poll());
    assert_eq!(res.into_body().into_inner(), "a");
}

#[tokio::test(start_paused = true)]
async fn a_health_check_under_a_foreign_layer_still_wakes_a_queued_request() {
    let release = Arc::new(Semaphore::new(0));
    let health = Arc::new(BackendHealth::new(Health::Unhealthy));
    // tower's layer between the balancer and the health check: the health check sees the
    // queued request's waker through it.
    let checked = HealthCheck::new(backend("a", &release), Arc::clone(&health));
    let lb = LoadBalance::new(
        ServiceList::new(vec![ConcurrencyLimit::new(checked, 4)]),
        Algo::RoundRobin,
    );
    let mut queue = QueueLayer::new(Duration::from_secs(5)).layer(lb);

    let mut queued = task::spawn(queue.call(get("/")));
    assert_pending!(queued.poll());
    health.set_health(Health::Healthy);
    assert!(queued.is_woken(), "woken through the concurrency limit");
    let res = assert_ready_ok!(queued.poll());
    assert_eq!(res.into_body().into_inner(), "a");
}
