use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http::{Method, Request, Response};
use http_body_util::Full;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::discover::ServiceList;
use tower::retry::budget::Budget;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

use super::*;
use crate::balance::Tried;
use crate::{Algo, BoxError, LoadBalance, NoAvailableBackend};
use crate::{BackendTimeout, BackendUnavailable};

type Body = Full<Bytes>;
type Req = Request<RetryBody<Body>>;

fn authority() -> Authority {
    "127.0.0.1:1080".parse().unwrap()
}

fn refused() -> BoxError {
    BackendUnavailable::new(
        authority(),
        io::Error::from(io::ErrorKind::ConnectionRefused),
    )
    .into()
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Refused,
    ConnectTimeout,
    ResponseTimeout,
    Other,
}

impl Outcome {
    fn error(self) -> BoxError {
        match self {
            Self::Refused => refused(),
            Self::ConnectTimeout => BackendTimeout::connect(authority()).into(),
            Self::ResponseTimeout => {
                BackendTimeout::response(authority(), Duration::from_secs(30)).into()
            }
            Self::Other => "backend said something odd".into(),
        }
    }
}

/// One attempt as the backend saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    uri: String,
    test_header: Option<String>,
    replay: bool,
    tried: Option<usize>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// (request id, backend) of each attempt, for [`balancer`].
type Attempts = Arc<Mutex<Vec<(String, &'static str)>>>;

/// What the test backends are: services a `Retry` and a balancer can wrap.
trait TestBackend:
    Service<Req, Response = Response<&'static str>, Error = BoxError, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> TestBackend for S where
    S: Service<Req, Response = Response<&'static str>, Error = BoxError, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// A backend that fails with `script`, one error per attempt, then answers `200 ok`.
fn scripted(script: impl IntoIterator<Item = Outcome>) -> (impl TestBackend, Log) {
    let script = Arc::new(Mutex::new(script.into_iter().collect::<VecDeque<_>>()));
    let log = Log::default();
    let seen = Arc::clone(&log);
    let svc = service_fn(move |req: Req| {
        seen.lock().unwrap().push(Seen {
            method: req.method().clone(),
            uri: req.uri().to_string(),
            test_header: req
                .headers()
                .get("x-test")
                .map(|v| v.to_str().unwrap().to_owned()),
            replay: req.body().is_replay(),
            tried: req.extensions().get::<Tried>().map(Tried::len),
        });
        let next = script.lock().unwrap().pop_front();
        async move {
            match next {
                Some(outcome) => Err(outcome.error()),
                None => Ok(Response::new("ok")),
            }
        }
    });
    (svc, log)
}

fn always_failing(outcome: Outcome) -> (impl TestBackend, Log) {
    scripted(std::iter::repeat_n(outcome, 100_000))
}

fn request(method: Method) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri("/path?q=1")
        .header("x-test", "kept")
        .body(Body::default())
        .unwrap()
}

async fn send<S>(svc: &mut S, req: Request<Body>) -> Result<S::Response, BoxError>
where
    S: Service<Request<Body>, Error = BoxError>,
{
    svc.ready().await?.call(req).await
}

/// A budget with a fixed number of tokens that counts deposits.
#[derive(Clone, Default)]
struct Tokens(Arc<(AtomicIsize, AtomicUsize)>);

impl Tokens {
    fn new(tokens: isize) -> Self {
        let t = Self::default();
        t.0.0.store(tokens, Ordering::SeqCst);
        t
    }

    fn left(&self) -> isize {
        self.0.0.load(Ordering::SeqCst)
    }

    fn deposits(&self) -> usize {
        self.0.1.load(Ordering::SeqCst)
    }
}

impl Budget for Tokens {
    fn deposit(&self) {
        self.0.1.fetch_add(1, Ordering::SeqCst);
    }

    fn withdraw(&self) -> bool {
        self.0
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                (t > 0).then_some(t - 1)
            })
            .is_ok()
    }
}

#[test]
fn retry_is_clone_send_sync_and_its_future_is_send() {
    fn assert_service<T: Clone + Send + Sync + 'static>(_: &T) {}
    fn assert_future<T: Send + 'static>(_: &T) {}
    let (backend, _) = scripted([]);
    let mut retry = RetryLayer::new().layer(backend);
    assert_service(&retry);
    assert_service(&RetryLayer::new());
    assert_future(&retry.call(request(Method::GET)));
    assert_eq!(retry.max_retries(), 2);
    let layer = format!("{:?}", RetryLayer::new().max_retries(3));
    assert!(layer.contains("max_retries: 3"), "{layer}");
}

#[tokio::test]
async fn idempotent_methods_are_retried_after_a_refused_connect() {
    for method in [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
    ] {
        let (backend, log) = scripted([Outcome::Refused]);
        let mut retry = Retry::new(backend);
        let res = send(&mut retry, request(method.clone())).await.unwrap();
        assert_eq!(*res.body(), "ok", "{method}");
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 2, "{method}: one attempt and one retry");
        assert!(log.iter().all(|s| s.method == method));
        assert_eq!(retry.retries(), 1);
    }
}

#[tokio::test]
async fn a_retry_sends_the_same_head_with_an_empty_body_and_the_same_tried() {
    let (backend, log) = scripted([Outcome::Refused, Outcome::Refused]);
    let mut retry = Retry::new(backend);
    send(&mut retry, request(Method::GET)).await.unwrap();
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 3);
    for (i, seen) in log.iter().enumerate() {
        assert_eq!(seen.uri, "/path?q=1");
        assert_eq!(seen.test_header.as_deref(), Some("kept"));
        assert_eq!(seen.replay, i > 0, "attempt {i}");
        // One `Tried`, shared by every copy (the test backend records nothing in it).
        assert_eq!(seen.tried, Some(0));
    }
}

#[tokio::test]
async fn only_retry_safe_errors_are_retried() {
    for (outcome, retried) in [
        (Outcome::Refused, true),
        (Outcome::ConnectTimeout, true),
        (Outcome::ResponseTimeout, false),
        (Outcome::Other, false),
    ] {
        let (backend, log) = scripted([outcome]);
        let mut retry = Retry::new(backend);
        let result = send(&mut retry, request(Method::GET)).await;
        assert_eq!(result.is_ok(), retried, "{outcome:?}");
        assert_eq!(log.lock().unwrap().len(), 1 + usize::from(retried));
        if !retried {
            assert_eq!(result.unwrap_err().to_string(), outcome.error().to_string());
        }
    }
}

#[test]
fn is_retry_safe_looks_through_sources() {
    assert!(is_retry_safe(&refused()));
    assert!(is_retry_safe(&BackendTimeout::connect(authority()).into()));
    assert!(!is_retry_safe(
        &BackendTimeout::response(authority(), Duration::from_secs(1)).into()
    ));
    assert!(!is_retry_safe(&NoAvailableBackend::new().into()));
    assert!(!is_retry_safe(&"other".into()));

    #[derive(Debug)]
    struct Wrapper(BackendUnavailable);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.pad("wrapped")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let inner = BackendUnavailable::new(authority(), "reset");
    assert!(is_retry_safe(&Wrapper(inner).into()));
}

#[tokio::test]
async fn at_most_max_retries_and_the_last_error_is_returned() {
    for max in [0, 1, 2, 5] {
        let (backend, log) = always_failing(Outcome::Refused);
        let mut retry = RetryLayer::new().max_retries(max).layer(backend);
        assert_eq!(retry.max_retries(), max);
        let err = send(&mut retry, request(Method::GET)).await.unwrap_err();
        assert!(err.is::<BackendUnavailable>(), "{err}");
        assert_eq!(log.lock().unwrap().len(), 1 + max);
        assert_eq!(retry.retries(), max as u64);
    }
}

#[tokio::test]
async fn zero_retries_passes_requests_through_untouched() {
    let (backend, log) = scripted([Outcome::Refused]);
    let budget = Tokens::new(10);
    let mut retry = RetryLayer::new()
        .max_retries(0)
        .budget(budget.clone())
        .layer(backend);
    assert!(send(&mut retry, request(Method::GET)).await.is_err());
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].tried, None, "no Tried without retries");
    assert_eq!(budget.deposits(), 0);
}

#[tokio::test]
async fn post_and_patch_are_not_retried_unless_configured() {
    for method in [Method::POST, Method::PATCH] {
        let (backend, log) = scripted([Outcome::Refused]);
        let mut retry = Retry::new(backend);
        let err = send(&mut retry, request(method.clone())).await.unwrap_err();
        assert!(err.is::<BackendUnavailable>());
        {
            let log = log.lock().unwrap();
            assert_eq!(log.len(), 1, "{method} is not retried by default");
            assert_eq!(log[0].tried, None, "nor given a Tried");
        }

        let (backend, log) = scripted([Outcome::Refused]);
        let mut retry = RetryLayer::new().retry_non_idempotent(true).layer(backend);
        send(&mut retry, request(method.clone())).await.unwrap();
        assert_eq!(log.lock().unwrap().len(), 2, "{method} when configured");
    }
}

#[tokio::test]
async fn retry_methods_replaces_the_default_set() {
    let layer = RetryLayer::new().retry_methods([Method::GET, Method::POST]);
    for (method, retried) in [
        (Method::GET, true),
        (Method::POST, true),
        (Method::PUT, false),
        (Method::DELETE, false),
    ] {
        let (backend, log) = scripted([Outcome::Refused]);
        let mut retry = layer.layer(backend);
        assert_eq!(
            send(&mut retry, request(method.clone())).await.is_ok(),
            retried
        );
        assert_eq!(
            log.lock().unwrap().len(),
            1 + usize::from(retried),
            "{method}"
        );
    }
}

#[tokio::test]
async fn a_put_with_a_body_over_the_buffer_is_not_retried() {
    let (backend, log) = scripted([Outcome::Refused]);
    let mut retry = RetryLayer::new().buffer(6).layer(backend);
    let mut req = request(Method::PUT);
    *req.body_mut() = Full::from("content");
    let err = send(&mut retry, req).await.unwrap_err();
    assert!(err.is::<BackendUnavailable>());
    assert_eq!(log.lock().unwrap().len(), 1);

    // The same PUT within the buffer is, and so is one without content.
    for body in ["content", ""] {
        let (backend, log) = scripted([Outcome::Refused]);
        let mut retry = RetryLayer::new().buffer(7).layer(backend);
        let mut req = request(Method::PUT);
        *req.body_mut() = Full::from(body);
        send(&mut retry, req).await.unwrap();
        assert_eq!(log.lock().unwrap().len(), 2, "{body:?}");
    }
}

/// Backends named `a`, `b`… behind a round-robin balancer; each answers with the status in
/// `statuses` and echoes the request body (`name:body`). Returns it and the log of attempts.
fn answering(
    backends: &[(&'static str, u16)],
) -> (
    LoadBalance<ServiceList<Vec<impl TestBackendOf<Response<String>>>>>,
    Attempts,
) {
    let log = Attempts::default();
    let services = backends
        .iter()
        .map(|&(name, status)| {
            let log = Arc::clone(&log);
            service_fn(move |req: Req| {
                let log = Arc::clone(&log);
                async move {
                    let replay = req.body().is_replay();
                    let body = http_body_util::BodyExt::collect(req.into_body())
                        .await
                        .map_err(|e| -> BoxError { Box::new(e) })?
                        .to_bytes();
                    let body = String::from_utf8(body.to_vec()).unwrap();
                    log.lock()
                        .unwrap()
                        .push((format!("{body}{}", if replay { "+" } else { "" }), name));
                    let mut res = Response::new(format!("{name}:{body}"));
                    *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    Ok::<_, BoxError>(res)
                }
            })
        })
        .collect::<Vec<_>>();
    (
        LoadBalance::new(ServiceList::new(services), Algo::RoundRobin),
        log,
    )
}

trait TestBackendOf<R>:
    Service<Req, Response = R, Error = BoxError, Future: Send + 'static> + Clone + Send + Sync + 'static
{
}

impl<S, R> TestBackendOf<R> for S where
    S: Service<Req, Response = R, Error = BoxError, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

#[tokio::test]
async fn a_503_is_retried_on_another_backend_only_when_retry_on_names_it() {
    for on in ["503", "gateway-error", "5xx", "connect-failure,502,503"] {
        let (lb, log) = answering(&[("a", 503), ("b", 200), ("c", 200)]);
        let mut retry = RetryLayer::new().retry_on(on.parse().unwrap()).layer(lb);
        for _ in 0..9 {
            let res = send(&mut retry, request(Method::GET)).await.unwrap();
            assert_eq!(res.status(), 200, "{on}");
            assert_ne!(res.body().get_ref(), "a:", "{on}");
        }
        let log = log.lock().unwrap();
        let to_a = log.iter().filter(|&&(_, b)| b == "a").count();
        assert!(to_a > 0, "{on}");
        assert_eq!(
            retry.retries(),
            to_a as u64,
            "{on}: every request that met \"a\""
        );
        assert_eq!(log.len(), 9 + to_a, "{on}");
    }
    // By default (connect failures), and for other statuses, the 503 is the answer.
    for layer in [
        RetryLayer::new(),
        RetryLayer::new().retry_on("502,504".parse().unwrap()),
    ] {
        let (lb, _) = answering(&[("a", 503), ("b", 200)]);
        let mut retry = layer.layer(lb);
        let statuses: Vec<u16> = futures_statuses(&mut retry, 4).await;
        assert_eq!(statuses, [503, 200, 503, 200]);
        assert_eq!(retry.retries(), 0);
    }
    // A POST is retried on a status only with retry_non_idempotent.
    let (lb, _) = answering(&[("a", 503), ("b", 200)]);
    let mut retry = RetryLayer::new()
        .retry_on(RetryOn::GATEWAY_ERRORS)
        .layer(lb);
    let res = send(&mut retry, request(Method::POST)).await.unwrap();
    assert_eq!(res.status(), 503);
}

async fn futures_statuses<S>(svc: &mut S, n: usize) -> Vec<u16>
where
    S: Service<Request<Body>, Response = Response<crate::TrackedBody<String>>, Error = BoxError>,
{
    let mut statuses = Vec::new();
    for _ in 0..n {
        statuses.push(
            send(svc, request(Method::GET))
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    statuses
}

#[tokio::test]
async fn when_every_backend_answers_503_the_last_answer_is_returned() {
    let (lb, log) = answering(&[("a", 503), ("b", 502)]);
    let mut retry = RetryLayer::new()
        .retry_on(RetryOn::GATEWAY_ERRORS)
        .max_retries(5)
        .layer(lb);
    let res = send(&mut retry, request(Method::GET)).await.unwrap();
    assert_eq!(
        (res.status().as_u16(), res.body().get_ref().as_str()),
        (502, "b:")
    );
    assert_eq!(log.lock().unwrap().len(), 2, "each backend once");

    // Out of retries: the last answer too.
    let (lb, log) = answering(&[("a", 503), ("b", 502), ("c", 200)]);
    let mut retry = RetryLayer::new()
        .retry_on(RetryOn::GATEWAY_ERRORS)
        .max_retries(1)
        .layer(lb);
    let res = send(&mut retry, request(Method::GET)).await.unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(log.lock().unwrap().len(), 2);

    // And when the budget is empty, the first.
    let (lb, log) = answering(&[("a", 503), ("b", 200)]);
    let mut retry = RetryLayer::new()
        .retry_on(RetryOn::GATEWAY_ERRORS)
        .budget(Tokens::new(0))
        .layer(lb);
    let res = send(&mut retry, request(Method::GET)).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(log.lock().unwrap().len(), 1);
    assert_eq!(retry.budget_exhausted(), 1);
}

#[tokio::test]
async fn a_small_post_body_is_sent_again_whole_to_the_next_backend() {
    let (lb, log) = answering(&[("a", 503), ("b", 200)]);
    let mut retry = RetryLayer::new()
        .retry_on(RetryOn::GATEWAY_ERRORS)
        .retry_non_idempotent(true)
        .layer(lb);
    let mut req = request(Method::POST);
    *req.body_mut() = Full::from("order=42");
    let res = send(&mut retry, req).await.unwrap();
    assert_eq!(
        (res.status().as_u16(), res.body().get_ref().as_str()),
        (200, "b:order=42")
    );
    // The first attempt sent the copy as the original; the retry, marked, the same bytes.
    assert_eq!(
        *log.lock().unwrap(),
        [("order=42".to_owned(), "a"), ("order=42+".to_owned(), "b")]
    );

    // Without retry_non_idempotent the POST is streamed once.
    let (lb, log) = answering(&[("a", 503), ("b", 200)]);
    let mut retry = RetryLayer::new()
        .retry_on(RetryOn::GATEWAY_ERRORS)
        .layer(lb);
    let mut req = request(Method::POST);
    *req.body_mut() = Full::from("order=42");
    assert_eq!(send(&mut retry, req).await.unwrap().status(), 503);
    assert_eq!(*log.lock().unwrap(), [("order=42".to_owned(), "a")]);
}

/// A body of one chunk whose length is not announced (as a chunked upload).
struct Unannounced(Option<Bytes>);

impl http_body::Body for Unannounced {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.take().map(|b| Ok(http_body::Frame::data(b))))
    }
}

#[tokio::test]
async fn a_body_of_unknown_length_is_streamed_and_not_retried() {
    let (svc, mut handle) = mock::pair::<Request<RetryBody<Unannounced>>, Response<&str>>();
    let mut retry = RetryLayer::new()
        .retry_on(RetryOn::GATEWAY_ERRORS)
        .layer(svc);
    handle.allow(2);
    let req = Request::put("/")
        .body(Unannounced(Some(Bytes::from("x"))))
        .unwrap();
    let mut fut = task::spawn(retry.ready().await.unwrap().call(req));
    assert_pending!(fut.poll());
    let (req, send_response) = handle.next_request().await.unwrap();
    assert!(!req.body().is_replay(), "streamed as it came");
    send_response.send_response(Response::builder().status(503).body("busy").unwrap());
    let res = assert_ready_ok!(fut.poll());
    assert_eq!(res.status(), 503);
    assert!(
        futures_util::FutureExt::now_or_never(handle.next_request()).is_none(),
        "not sent again"
    );
}

#[tokio::test]
async fn an_empty_budget_stops_retries() {
    let (backend, log) = always_failing(Outcome::Refused);
    let budget = Tokens::new(3);
    let mut retry = RetryLayer::new()
        .max_retries(2)
        .budget(budget.clone())
        .layer(backend);
    // 2 retries, then 1 (the budget runs dry), then none.
    let mut attempts = Vec::new();
    for _ in 0..3 {
        let before = log.lock().unwrap().len();
        let err = send(&mut retry, request(Method::GET)).await.unwrap_err();
        assert!(err.is::<BackendUnavailable>());
        attempts.push(log.lock().unwrap().len() - before);
    }
    assert_eq!(attempts, [3, 2, 1]);
    assert_eq!(budget.left(), 0);
    assert_eq!(budget.deposits(), 3, "every request deposits");
    assert_eq!(retry.retries(), 3);
    assert_eq!(retry.budget_exhausted(), 2);

    // Requests that never fail deposit too, and do not withdraw.
    let (backend, _) = scripted([]);
    let budget = Tokens::new(1);
    let mut retry = RetryLayer::new().budget(budget.clone()).layer(backend);
    for method in [Method::GET, Method::POST] {
        send(&mut retry, request(method)).await.unwrap();
    }
    assert_eq!((budget.deposits(), budget.left()), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn the_default_budget_keeps_retries_near_a_fifth_of_requests() {
    let (backend, log) = always_failing(Outcome::Refused);
    let budget = RetryLayer::default_budget();
    let mut retry = RetryLayer::new()
        .max_retries(2)
        .budget(budget)
        .layer(backend);
    let requests = 2_000u64;
    for _ in 0..requests {
        let _ = send(&mut retry, request(Method::GET)).await;
    }
    let retries = retry.retries();
    // 20 % of the requests, plus the reserve of 10 a second over the 10 s window.
    assert!(retries <= requests / 5 + 100, "{retries} retries");
    assert!(retries >= requests / 5, "{retries} retries");
    assert_eq!(log.lock().unwrap().len() as u64, requests + retries);
    assert!(retry.budget_exhausted() > 0);
}

#[tokio::test]
async fn a_retry_waits_until_the_service_is_ready() {
    let (service, mut handle) = mock::pair::<Req, Response<&'static str>>();
    let mut retry = Retry::new(service);
    handle.allow(1);
    tokio_test::assert_ready_ok!(task::spawn(()).enter(|cx, _| retry.poll_ready(cx)));
    let mut fut = task::spawn(retry.call(request(Method::GET)));
    assert_pending!(fut.poll());
    let (req, send_response) = handle.next_request().await.unwrap();
    assert!(!req.body().is_replay());
    send_response.send_error(refused());

    // The retry's clone of the service is not ready yet.
    assert_pending!(fut.poll());
    assert!(handle.poll_request().is_pending());
    handle.allow(1);
    assert!(fut.is_woken());
    assert_pending!(fut.poll());
    let (req, send_response) = handle.next_request().await.unwrap();
    assert!(req.body().is_replay());
    assert_eq!(req.uri(), "/path?q=1");
    send_response.send_response(Response::new("second"));
    let res = assert_ready_ok!(fut.poll());
    assert_eq!(*res.body(), "second");
}

/// A balancer over backends named `a`, `b`, `c`...; those in `failing` refuse every request.
/// Returns it and the log of (request id, backend) attempts.
fn balancer(
    names: &[&'static str],
    failing: &[&'static str],
) -> (LoadBalance<ServiceList<Vec<impl TestBackend>>>, Attempts) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let backends = names
        .iter()
        .map(|&name| {
            let log = Arc::clone(&log);
            let fails = failing.contains(&name);
            service_fn(move |req: Req| {
                let id = req.headers()["x-id"].to_str().unwrap().to_owned();
                log.lock().unwrap().push((id, name));
                async move {
                    if fails {
                        Err::<_, BoxError>(refused())
                    } else {
                        Ok(Response::new(name))
                    }
                }
            })
        })
        .collect::<Vec<_>>();
    (
        LoadBalance::new(ServiceList::new(backends), Algo::RoundRobin),
        log,
    )
}

fn with_id(id: usize) -> Request<Body> {
    let mut req = request(Method::GET);
    req.headers_mut().insert("x-id", id.into());
    req
}

#[tokio::test]
async fn a_retry_goes_to_a_backend_not_tried_yet() {
    let (lb, log) = balancer(&["a", "b", "c"], &["a"]);
    let mut retry = RetryLayer::new().max_retries(2).layer(lb);
    for id in 0..30 {
        let res = send(&mut retry, with_id(id)).await.unwrap();
        assert_ne!(*res.body().get_ref(), "a");
    }
    let first_to_a = {
        let log = log.lock().unwrap();
        for id in 0..30 {
            let backends: Vec<_> = log
                .iter()
                .filter(|(i, _)| *i == id.to_string())
                .map(|&(_, b)| b)
                .collect();
            match backends[..] {
                [b] => assert_ne!(b, "a"),
                ["a", b] => assert_ne!(b, "a"),
                _ => panic!("request {id} went to {backends:?}"),
            }
        }
        log.iter().filter(|&&(_, b)| b == "a").count()
    };
    assert!(first_to_a > 0);
    assert_eq!(
        retry.retries(),
        first_to_a as u64,
        "every request that met \"a\""
    );

    // A `Tried` the caller inserted is the one the balancer fills: "a", then another.
    let mut lens = Vec::new();
    for id in 100..104 {
        let tried = Tried::new();
        let mut req = with_id(id);
        req.extensions_mut().insert(tried.clone());
        send(&mut retry, req).await.unwrap();
        lens.push(tried.len());
    }
    assert!(lens.iter().all(|&n| n == 1 || n == 2), "{lens:?}");
    assert!(lens.contains(&2), "{lens:?}");

    // Two of three failing: a request that meets both still ends on "c".
    let (lb, log) = balancer(&["a", "b", "c"], &["a", "b"]);
    let mut retry = RetryLayer::new().max_retries(2).layer(lb);
    for id in 0..30 {
        let res = send(&mut retry, with_id(id)).await.unwrap();
        assert_eq!(*res.body().get_ref(), "c");
    }
    let log = log.lock().unwrap();
    for id in 0..30 {
        let mut backends: Vec<_> = log
            .iter()
            .filter(|(i, _)| *i == id.to_string())
            .map(|&(_, b)| b)
            .collect();
        let len = backends.len();
        backends.sort_unstable();
        backends.dedup();
        assert_eq!(backends.len(), len, "request {id}: no backend twice");
    }
}

#[tokio::test]
async fn when_every_backend_was_tried_the_backend_error_is_returned() {
    let (lb, log) = balancer(&["a", "b"], &["a", "b"]);
    let mut retry = RetryLayer::new().max_retries(5).layer(lb);
    let err = send(&mut retry, with_id(0)).await.unwrap_err();
    assert!(
        err.is::<BackendUnavailable>(),
        "the last backend error, not NoAvailableBackend: {err}"
    );
    assert_eq!(log.lock().unwrap().len(), 2, "each backend once");
    assert_eq!(retry.retries(), 2, "the second retry found no backend");

    // With no backend at all, the balancer's own error is the answer.
    let (lb, _) = balancer(&[], &[]);
    let mut retry = Retry::new(lb);
    let err = send(&mut retry, with_id(1)).await.unwrap_err();
    assert!(err.is::<NoAvailableBackend>(), "{err}");
    assert_eq!(retry.retries(), 0);
}
