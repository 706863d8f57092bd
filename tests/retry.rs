//! Retries end to end: an in-process `Server` over `backend_server` backends on 127.0.0.1, one
//! of them killed (listener and every connection closed at once, as if the process died)
//! while a load of GETs runs.
//!
//! The load scenario runs as in production: passive health checks (outlier ejection after 5
//! failures in a row) take the dead backend out, and retries cover the requests that meet it
//! until then (those in flight when it died, those sent on its pooled connections, those it
//! refused). Active checks are 60 s apart so that they play no part. Without any check, a
//! dead backend would keep a third of the traffic and retries would soon hit their budget
//! (about 20 % extra load): they bridge the time until the backend is taken out, not longer.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use support::{DEADLINE, HttpClient, Lb, backends, eventually, send, specs, start};
use tower_lb::Algo;
use tower_lb::health::{Health, OutlierDetection};
use tower_lb::server::Config;

/// Requests in one load run, and the client tasks that send them.
const REQUESTS: usize = 3_000;
const CLIENTS: usize = 4;
/// The backend is killed once this many responses have arrived.
const KILL_AFTER: usize = REQUESTS / 2;
/// Failures in a row that eject a backend.
const EJECT_AFTER: u32 = 5;

/// A balancer over `backends`, round robin; health checks far enough apart that a killed
/// backend stays in rotation for the whole test (the first check runs at start-up).
async fn balancer(backends: &[backend_server::Handle], config: Config) -> Lb {
    let config = config
        .algo(Algo::RoundRobin)
        .health_interval(Duration::from_secs(60))
        .backends_from(specs(backends));
    let lb = start(config).await;
    eventually(
        "every backend passed its first check and is in the balancer",
        || async {
            let checked = lb.health.backends();
            let ready = checked.len() == backends.len()
                && checked
                    .iter()
                    .all(|(_, h)| h.checks >= 1 && h.status == Health::Healthy)
                && lb.balancer.len() == backends.len();
            ready.then_some(())
        },
    )
    .await;
    lb
}

/// What one request got: the status, or why there was none.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok,
    Status(StatusCode, String),
    Failed(String),
}

async fn get(client: &HttpClient, url: &str) -> Outcome {
    let req = Request::get(url).body(Full::new(Bytes::new())).unwrap();
    let exchange = async {
        let res = client
            .request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        if status != StatusCode::OK {
            return Ok(Outcome::Status(
                status,
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
        if !body.starts_with(b"Hello from Rust server at ") {
            return Err(format!("not a greeting: {body:?}"));
        }
        Ok(Outcome::Ok)
    };
    match tokio::time::timeout(DEADLINE, exchange).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => Outcome::Failed(e),
        Err(_) => Outcome::Failed("timed out".into()),
    }
}

/// Three backends, `REQUESTS` GETs from `CLIENTS` keep-alive clients, and the first backend
/// killed once `KILL_AFTER` responses have arrived; outlier ejection after
/// [`EJECT_AFTER`] failures in a row. Returns every outcome.
async fn load_with_a_kill(config: Config) -> Vec<Outcome> {
    let mut backends = backends(3).await;
    let config =
        config.outlier_detection(OutlierDetection::new().consecutive_failures(EJECT_AFTER));
    let lb = balancer(&backends, config).await;
    let url = lb.url("/");
    let done = Arc::new(AtomicUsize::new(0));

    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let client = support::client();
            let url = url.clone();
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                let mut outcomes = Vec::with_capacity(REQUESTS / CLIENTS);
                for _ in 0..REQUESTS / CLIENTS {
                    outcomes.push(get(&client, &url).await);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                outcomes
            })
        })
        .collect();

    eventually("half the requests are answered", || async {
        (done.load(Ordering::Relaxed) >= KILL_AFTER).then_some(())
    })
    .await;
    let victim = backends.remove(0);
    let victim_addr = victim.addr().to_string();
    assert!(
        victim.stats().requests() > 0,
        "the killed backend was taking requests"
    );
    victim.kill().await;
    let at_kill = done.load(Ordering::Relaxed);
    assert!(
        at_kill < REQUESTS * 3 / 4,
        "the backend is killed under load ({at_kill} of {REQUESTS} done)"
    );

    let mut outcomes = Vec::with_capacity(REQUESTS);
    for client in clients {
        outcomes.extend(client.await.expect("a client task"));
    }
    assert_eq!(outcomes.len(), REQUESTS);
    let ejected = lb.health.backends().into_iter().any(|(key, health)| {
        key.key().authority().as_str() == victim_addr.as_str() && health.total_ejections > 0
    });
    assert!(ejected, "the dead backend was ejected");
    lb.stop().await;
    outcomes
}

fn failures(outcomes: &[Outcome]) -> Vec<&Outcome> {
    outcomes.iter().filter(|o| **o != Outcome::Ok).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_three_backends_under_load_fails_no_get() {
    let outcomes = load_with_a_kill(Config::new()).await;
    let failed = failures(&outcomes);
    assert!(
        failed.is_empty(),
        "{} of {REQUESTS} GETs failed, first: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retries_the_same_kill_fails_gets_with_502() {
    let outcomes = load_with_a_kill(Config::new().retries(0)).await;
    let failed = failures(&outcomes);
    // Each failure before the ejection reached a client.
    assert!(
        failed.len() >= EJECT_AFTER as usize,
        "only {} failures",
        failed.len()
    );
    for outcome in failed {
        assert!(
            matches!(outcome, Outcome::Status(StatusCode::BAD_GATEWAY, _)),
            "{outcome:?}"
        );
    }
}

/// Two backends, the first killed: round robin sends every other request to it. Passive
/// checks (on by default) are off, so that retries alone meet the dead backend.
async fn one_of_two_killed(config: Config) -> (Lb, backend_server::Handle) {
    let backends = backends(2).await;
    let lb = balancer(&backends, config.outlier_detection(None)).await;
    let mut backends = backends.into_iter();
    backends.next().unwrap().kill().await;
    (lb, backends.next().unwrap())
}

async fn statuses(lb: &Lb, method: Method, body: &'static str, n: usize) -> Vec<StatusCode> {
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        let reply = send(
            &lb.client,
            method.clone(),
            &lb.url("/"),
            None,
            Bytes::from_static(body.as_bytes()),
        )
        .await;
        statuses.push(reply.status);
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_is_not_retried_by_default_but_get_put_and_delete_are() {
    let (lb, _alive) = one_of_two_killed(Config::new()).await;
    for method in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
        let got = statuses(&lb, method.clone(), "", 6).await;
        assert!(
            got.iter().all(|s| *s == StatusCode::OK),
            "{method}: {got:?}"
        );
    }
    for method in [Method::POST, Method::PATCH] {
        let got = statuses(&lb, method.clone(), "", 6).await;
        let failed = got
            .iter()
            .filter(|s| **s == StatusCode::BAD_GATEWAY)
            .count();
        assert_eq!(
            failed, 3,
            "{method}: every other one went to the dead backend: {got:?}"
        );
    }
    // A PUT with a small body is buffered and sent again.
    let got = statuses(&lb, Method::PUT, "content", 6).await;
    assert!(got.iter().all(|s| *s == StatusCode::OK), "{got:?}");
    lb.stop().await;

    // Without the buffer, a PUT with content cannot be sent twice.
    let (lb, _alive) = one_of_two_killed(Config::new().retry_buffer(0)).await;
    let got = statuses(&lb, Method::PUT, "content", 6).await;
    let failed = got
        .iter()
        .filter(|s| **s == StatusCode::BAD_GATEWAY)
        .count();
    assert_eq!(failed, 3, "PUT with a body: {got:?}");
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_non_idempotent_retries_posts_without_a_body_or_with_a_small_one() {
    let config = Config::new().retry_non_idempotent(true);
    let (lb, _alive) = one_of_two_killed(config.clone()).await;
    let got = statuses(&lb, Method::POST, "", 6).await;
    assert!(got.iter().all(|s| *s == StatusCode::OK), "{got:?}");
    let got = statuses(&lb, Method::POST, "form=1", 6).await;
    assert!(got.iter().all(|s| *s == StatusCode::OK), "{got:?}");
    lb.stop().await;

    // A body over the buffer is streamed, once.
    let (lb, _alive) = one_of_two_killed(config.retry_buffer(5)).await;
    let got = statuses(&lb, Method::POST, "form=1", 6).await;
    let failed = got
        .iter()
        .filter(|s| **s == StatusCode::BAD_GATEWAY)
        .count();
    assert_eq!(failed, 3, "a POST over the buffer is not retried: {got:?}");
    lb.stop().await;
}

/// A backend that passes its health checks but answers every other request with `status`
/// and the body it got (`status:body`), and logs those bodies.
struct App {
    url: String,
    bodies: Arc<std::sync::Mutex<Vec<String>>>,
}

async fn app(status: u16) -> App {
    use axum::extract::State;

    type Log = Arc<std::sync::Mutex<Vec<String>>>;
    let bodies = Log::default();
    let router = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .fallback(move |State(log): State<Log>, body: Bytes| async move {
            let body = String::from_utf8(body.to_vec()).unwrap();
            log.lock().unwrap().push(body.clone());
            (
                StatusCode::from_u16(status).unwrap(),
                format!("{status}:{body}"),
            )
        })
        .with_state(Arc::clone(&bodies));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    App { url, bodies }
}

impl App {
    fn spec(&self) -> tower_lb::admin::BackendSpec {
        tower_lb::admin::BackendSpec::new(&self.url, 1).unwrap()
    }

    fn hits(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_answering_503_fails_no_get_before_or_after_its_ejection() {
    let greeters = backends(2).await;
    let failing = app(503).await;
    let config = Config::new()
        .algo(Algo::RoundRobin)
        .health_interval(Duration::from_secs(60))
        .retry_on(tower_lb::retry::RetryOn::GATEWAY_ERRORS)
        .outlier_detection(OutlierDetection::new().consecutive_failures(EJECT_AFTER))
        .backends_from(specs(&greeters))
        .backend(failing.spec());
    let lb = start(config).await;
    eventually("the three backends passed their first check", || async {
        let checked = lb.health.backends();
        let ready = checked.len() == 3
            && checked
                .iter()
                .all(|(_, h)| h.checks >= 1 && h.status == Health::Healthy)
            && lb.balancer.len() == 3;
        ready.then_some(())
    })
    .await;
    let lb = Arc::new(lb);
    let run = async |n: usize| {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let lb = Arc::clone(&lb);
                tokio::spawn(async move {
                    let url = lb.url("/");
                    let mut outcomes = Vec::new();
                    for _ in 0..n / CLIENTS {
                        outcomes.push(get(&lb.client, &url).await);
                    }
                    outcomes
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.extend(task.await.unwrap());
        }
        outcomes
    };
    let outcomes = run(400).await;
    assert_eq!(failures(&outcomes), Vec::<&Outcome>::new());
    // It met requests (retried) until passive checks took it out.
    let before = failing.hits();
    assert!(before >= EJECT_AFTER as usize, "{before}");
    let outcomes = run(400).await;
    assert_eq!(failures(&outcomes), Vec::<&Outcome>::new());
    assert_eq!(failing.hits(), before, "ejected: no more requests");
    Arc::into_inner(lb).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_post_is_retried_with_its_body_on_the_next_backend() {
    let (failing, serving) = (app(503).await, app(200).await);
    let config = Config::new()
        .algo(Algo::RoundRobin)
        .outlier_detection(None)
        .retry_non_idempotent(true)
        .retry_on("503".parse().unwrap())
        .backend(failing.spec())
        .backend(serving.spec());
    let lb = start(config).await;
    eventually("both backends are in", || async {
        (lb.balancer.len() == 2).then_some(())
    })
    .await;
    for n in 0..4 {
        let body = format!("order={n}");
        let reply = send(
            &lb.client,
            Method::POST,
            &lb.url("/orders"),
            None,
            body.clone().into(),
        )
        .await;
        assert_eq!(
            (reply.status, reply.body),
            (StatusCode::OK, format!("200:{body}"))
        );
    }
    // Every POST met the failing backend first (round robin: the retry takes the other's
    // turn), then reached the other with the same body.
    let expected: Vec<String> = (0..4).map(|n| format!("order={n}")).collect();
    assert_eq!(*failing.bodies.lock().unwrap(), expected);
    assert_eq!(*serving.bodies.lock().unwrap(), expected);
    lb.stop().await;

    // Without --retry-non-idempotent, the 503 is the answer.
    let config = Config::new()
        .algo(Algo::RoundRobin)
        .outlier_detection(None)
        .retry_on("503".parse().unwrap())
        .backend(failing.spec())
        .backend(serving.spec());
    let lb = start(config).await;
    eventually("both backends are in", || async {
        (lb.balancer.len() == 2).then_some(())
    })
    .await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let reply = send(&lb.client, Method::POST, &lb.url("/"), None, "x".into()).await;
        got.push(reply.status.as_u16());
    }
    assert_eq!(got, [503, 200, 503, 200]);
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_backend_is_dead_the_answer_is_502_not_503() {
    let backends = backends(2).await;
    let lb = balancer(&backends, Config::new()).await;
    for b in backends {
        b.kill().await;
    }
    for _ in 0..4 {
        let reply = lb.get("/").await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
        assert_eq!(
            reply.body,
            r#"{"status":"error","data":"error backend unavailable"}"#
        );
    }
    lb.stop().await;
}
