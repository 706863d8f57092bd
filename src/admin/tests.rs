use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::{Value, json};
use tower::{Service, ServiceExt};

use super::*;
use crate::balance::Endpoint;
use crate::health::{Probe, probe_fn};
use crate::{BackendAddr, PeerAddr, Registry, Weighted};

type TestRegistry = Registry<BackendAddr, BackendAddr>;

/// A probe that passes for port 1080 and fails for every other.
fn probe() -> impl Probe<BackendAddr> {
    probe_fn(|uri: &BackendAddr| {
        let alive = uri.port() == 1080;
        async move {
            if alive {
                Ok(())
            } else {
                Err("connection refused")
            }
        }
    })
}

fn admin() -> (Admin<BackendAddr, impl Probe<BackendAddr>>, TestRegistry) {
    let registry = Registry::new(|uri: &BackendAddr| uri.clone());
    (Admin::new(registry.clone(), probe()), registry)
}

fn post(body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post("/register")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.into()))
        .unwrap()
}

/// A request with a JSON body, from `peer`.
fn request(method: Method, path: &str, body: &str, peer: &str) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap();
    req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
    req
}

fn delete(body: &str) -> Request<Full<Bytes>> {
    request(Method::DELETE, "/register", body, "127.0.0.1:40000")
}

fn get(path: &str) -> Request<Full<Bytes>> {
    request(Method::GET, path, "", "127.0.0.1:40000")
}

/// Sends `req` (from a loopback peer unless it names one) and reads the JSON answer.
async fn send<S, B>(svc: &mut S, mut req: Request<B>) -> (StatusCode, Value, Response<()>)
where
    S: Service<Request<B>, Response = Response<Full<Bytes>>, Error = Infallible>,
{
    if req.extensions().get::<PeerAddr>().is_none() {
        req.extensions_mut()
            .insert(PeerAddr(([127, 0, 0, 1], 40000).into()));
    }
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&body).expect("a JSON body");
    (parts.status, json, Response::from_parts(parts, ()))
}

fn title(json: &Value) -> &str {
    assert_eq!(json["status"], "fail", "{json}");
    json["data"]["title"].as_str().expect("a title")
}

#[tokio::test]
async fn live_backend_is_registered_and_reported() {
    let (mut admin, registry) = admin();
    let (status, json, _) = send(
        &mut admin,
        post(r#"{"address": "http://127.0.0.1:1080", "weight": 5}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json,
        json!({"status": "success", "data": {"server": "http://127.0.0.1:1080", "weight": 5}})
    );
    let uri: BackendAddr = "http://127.0.0.1:1080".parse().unwrap();
    assert_eq!(registry.backends(), vec![(uri, 5)]);
}

#[tokio::test]
async fn registering_again_updates_the_weight_of_the_same_backend() {
    let (mut admin, registry) = admin();
    let (status, _, _) = send(&mut admin, post(r#"{"address": "http://127.0.0.1:1080"}"#)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, json, _) = send(
        &mut admin,
        post(r#"{"address": "HTTP://127.0.0.1:1080/", "weight": 7}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["data"]["server"], "http://127.0.0.1:1080");
    assert_eq!(registry.len(), 1);
    assert_eq!(
        registry.weight(&"http://127.0.0.1:1080".parse().unwrap()),
        Some(7)
    );
}

#[tokio::test]
async fn dead_backend_is_404_and_not_registered() {
    let (mut admin, registry) = admin();
    let (status, json, _) = send(&mut admin, post(r#"{"address": "http://127.0.0.1:1081"}"#)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        title(&json),
        "http://127.0.0.1:1081 not alive, registration failed."
    );
    assert!(registry.is_empty());
}

#[tokio::test(start_paused = true)]
async fn backend_that_does_not_answer_in_time_is_not_alive() {
    let registry: TestRegistry = Registry::new(|uri: &BackendAddr| uri.clone());
    let hangs = probe_fn(|_: &BackendAddr| std::future::pending::<Result<(), Infallible>>());
    let mut admin = Admin::new(registry.clone(), hangs).timeout(Duration::from_millis(300));
    let started = tokio::time::Instant::now();
    let (status, json, _) = send(&mut admin, post(r#"{"address": "http://10.0.0.1"}"#)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        title(&json),
        "http://10.0.0.1 not alive, registration failed."
    );
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert!(registry.is_empty());
}

#[tokio::test]
async fn invalid_bodies_are_400_and_unknown_fields_403() {
    let (mut admin, registry) = admin();
    for (body, code, needle) in [
        ("", 400, "empty body"),
        ("{", 400, "malformed JSON"),
        (r#"{"address": 1080}"#, 400, "\"address\" must be a string"),
        (
            r#"{"address": "http://127.0.0.1:1080", "weight": "5"}"#,
            400,
            "\"weight\" must be an integer",
        ),
        (
            r#"{"address": "ftp://x"}"#,
            400,
            "invalid address \"ftp://x\"",
        ),
        (r#"{"address": "127.0.0.1:1080"}"#, 400, "invalid address"),
        (r#"{"address": "http://"}"#, 400, "invalid address"),
        (
            r#"{"address": "http://127.0.0.1:1080", "weight": 0}"#,
            400,
            "between 1 and 1000",
        ),
        (
            r#"{"address": "http://127.0.0.1:1080", "weight": 1001}"#,
            400,
            "between 1 and 1000",
        ),
        (
            r#"{"address": "http://127.0.0.1:1080", "wieght": 2}"#,
            403,
            "\"wieght\"",
        ),
    ] {
        let (status, json, _) = send(&mut admin, post(body)).await;
        assert_eq!(status.as_u16(), code, "{body}: {json}");
        assert!(title(&json).contains(needle), "{body}: {json}");
    }
    assert!(registry.is_empty());
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let (mut admin, _) = admin();
    for (path, methods, allow) in [
        (
            "/register",
            &["GET", "PUT", "PATCH", "HEAD"][..],
            "POST, DELETE",
        ),
        ("/backends", &["POST", "PUT", "DELETE"], "GET"),
    ] {
        for method in methods {
            let req = Request::builder()
                .method(*method)
                .uri(path)
                .body(Full::new(Bytes::new()))
                .unwrap();
            let (status, json, res) = send(&mut admin, req).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
            assert_eq!(res.headers()[header::ALLOW], allow);
            assert!(title(&json).contains(method), "{json}");
        }
    }
}

#[tokio::test]
async fn other_paths_are_404() {
    let (mut admin, _) = admin();
    let (status, json, _) = send(&mut admin, get("/stats")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        title(&json),
        "no admin route GET /stats: the admin API serves /register, /backends, /status and \
         /status.json"
    );
    assert!(is_admin_path("/register") && is_admin_path("/backends"));
    assert!(is_admin_path("/status") && is_admin_path("/status.json"));
    assert!(!is_admin_path("/status/") && !is_admin_path("/status.html"));
    assert!(!is_admin_path("/register/") && !is_admin_path("/") && !is_admin_path("/Backends"));
}

#[tokio::test]
async fn content_type_must_be_json_when_given() {
    let (mut admin, registry) = admin();
    let body = r#"{"address": "http://127.0.0.1:1080"}"#;
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "json",
        "application/jsonx",
    ] {
        let mut req = post(body);
        req.headers_mut()
            .insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        let (status, json, _) = send(&mut admin, req).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
        assert!(title(&json).contains("application/json"));
    }
    assert!(registry.is_empty());
    for content_type in [
        None,
        Some("application/json; charset=utf-8"),
        Some("Application/JSON"),
        Some("application/merge-patch+json"),
    ] {
        let mut req = post(body);
        match content_type {
            Some(ct) => req
                .headers_mut()
                .insert(header::CONTENT_TYPE, ct.parse().unwrap()),
            None => req.headers_mut().remove(header::CONTENT_TYPE),
        };
        let (status, _, _) = send(&mut admin, req).await;
        assert_eq!(status, StatusCode::OK, "{content_type:?}");
    }
}

#[tokio::test]
async fn bodies_over_64_kib_are_413() {
    let (mut admin, registry) = admin();
    // Padding inside the JSON, so only the size is wrong.
    let big = format!(
        r#"{{"address": "http://127.0.0.1:1080", "weight": 1{}}}"#,
        " ".repeat(MAX_BODY)
    );
    let (status, json, _) = send(&mut admin, post(big.clone())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(title(&json).contains("65536"), "{json}");

    // Without a Content-Length, the limit applies while reading.
    let chunks = big
        .into_bytes()
        .chunks(4096)
        .map(|c| Ok::<_, Infallible>(http_body::Frame::data(Bytes::copy_from_slice(c))))
        .collect::<Vec<_>>();
    let req = Request::post("/register")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let (status, _, _) = send(&mut admin, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(registry.is_empty());

    // Exactly the limit is fine.
    let body = r#"{"address": "http://127.0.0.1:1080"}"#;
    let exact = format!("{body}{}", " ".repeat(MAX_BODY - body.len()));
    let (status, _, _) = send(&mut admin, post(exact)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn wait_until_delays_the_answer_until_serving() {
    let registry: TestRegistry = Registry::new(|uri: &BackendAddr| uri.clone());
    let polls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&polls);
    let mut admin =
        Admin::new(registry, probe())
            .balancer(Changing)
            .wait_until(move |uri, weight| {
                assert_eq!((uri.port(), weight), (1080, 3));
                seen.fetch_add(1, Ordering::SeqCst) >= 2
            });
    let (status, _, _) = send(
        &mut admin,
        post(r#"{"address": "http://127.0.0.1:1080", "weight": 3}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(polls.load(Ordering::SeqCst), 3);
}

/// A balancer whose set changes all the time: `wait_until`'s condition is asked again after
/// each change.
struct Changing;

impl BalancerView for Changing {
    fn endpoints(&self) -> Vec<Arc<Endpoint<Weighted<BackendAddr>>>> {
        Vec::new()
    }

    fn retired(&self) -> Vec<Arc<Endpoint<Weighted<BackendAddr>>>> {
        Vec::new()
    }

    fn changed(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::task::yield_now())
    }
}

#[test]
fn futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let (mut admin, _) = admin();
    let fut = admin.call(post("{}"));
    is_send(&fut);
    fn assert_future<F: Future + Send>(_: F) {}
    assert_future(fut);
}

/// A balancer as the admin API sees it: the registered backends among `endpoints`, and the
/// others that still have requests in flight.
struct FakeBalancer {
    registry: TestRegistry,
    endpoints: Vec<Arc<Endpoint<Weighted<BackendAddr>>>>,
}

impl BalancerView for FakeBalancer {
    fn endpoints(&self) -> Vec<Arc<Endpoint<Weighted<BackendAddr>>>> {
        let registered = self.registry.backends();
        let endpoints = self.endpoints.iter();
        endpoints
            .filter(|e| registered.iter().any(|(u, _)| u == e.key().key()))
            .cloned()
            .collect()
    }

    fn retired(&self) -> Vec<Arc<Endpoint<Weighted<BackendAddr>>>> {
        let live = self.endpoints();
        let endpoints = self.endpoints.iter();
        endpoints
            .filter(|e| e.in_flight() > 0 && !live.iter().any(|l| Arc::ptr_eq(l, e)))
            .cloned()
            .collect()
    }
}

fn endpoint(
    uri: &str,
    weight: u32,
    in_flight: usize,
    served: u64,
) -> Arc<Endpoint<Weighted<BackendAddr>>> {
    let e = Arc::new(Endpoint::new(
        Weighted::new(uri.parse().unwrap(), weight),
        weight,
    ));
    for _ in 0..in_flight {
        e.stats().start();
    }
    for _ in 0..served {
        e.stats().record_served();
    }
    e
}

/// An admin over two registered backends, `:1080` (weight 2, 3 requests in flight) and
/// `:1081` (weight 1, idle), with a balancer that holds them.
fn admin_with_balancer() -> (Admin<BackendAddr, impl Probe<BackendAddr>>, TestRegistry) {
    let registry: TestRegistry = Registry::new(|uri: &BackendAddr| uri.clone());
    registry.register("http://127.0.0.1:1080".parse().unwrap(), 2);
    registry.register("http://127.0.0.1:1081".parse().unwrap(), 1);
    let balancer = FakeBalancer {
        registry: registry.clone(),
        endpoints: vec![
            endpoint("http://127.0.0.1:1080", 2, 3, 40),
            endpoint("http://127.0.0.1:1081", 1, 0, 41),
        ],
    };
    let admin = Admin::new(registry.clone(), probe()).balancer(balancer);
    (admin, registry)
}

#[tokio::test]
async fn delete_drains_a_backend_with_requests_in_flight() {
    let (mut admin, registry) = admin_with_balancer();
    let (status, json, _) = send(
        &mut admin,
        delete(r#"{"address": "HTTP://127.0.0.1:1080/", "weight": 2}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json,
        json!({"status": "success", "data": {"server": "http://127.0.0.1:1080", "state": "draining", "in_flight": 3}})
    );
    assert_eq!(
        registry.backends(),
        vec![("http://127.0.0.1:1081".parse().unwrap(), 1)]
    );

    // Listed as draining, after the registered backends.
    let (status, json, _) = send(&mut admin, get("/backends")).await;
    assert_eq!(status, StatusCode::OK);
    let states: Vec<_> = json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["address"].as_str().unwrap(),
                b["state"].as_str().unwrap(),
                b["in_flight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("http://127.0.0.1:1081", "healthy", 0),
            ("http://127.0.0.1:1080", "draining", 3)
        ]
    );
}

#[tokio::test]
async fn delete_of_an_idle_backend_removes_it() {
    let (mut admin, registry) = admin_with_balancer();
    let (status, json, _) = send(
        &mut admin,
        delete(r#"{"address": "http://127.0.0.1:1081"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json,
        json!({"status": "success", "data": {"server": "http://127.0.0.1:1081", "state": "removed", "in_flight": 0}})
    );
    assert_eq!(registry.len(), 1);
    let (_, json, _) = send(&mut admin, get("/backends")).await;
    assert_eq!(json["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn delete_without_a_balancer_reports_draining_with_unknown_requests() {
    let (mut admin, registry) = admin();
    registry.register("http://127.0.0.1:1080".parse().unwrap(), 1);
    let (status, json, _) = send(
        &mut admin,
        delete(r#"{"address": "http://127.0.0.1:1080"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json,
        json!({"status": "success", "data": {"server": "http://127.0.0.1:1080", "state": "draining", "in_flight": null}})
    );
    assert!(registry.is_empty());
}

#[tokio::test(start_paused = true)]
async fn delete_waits_for_the_balancer_to_drop_the_backend_but_not_forever() {
    /// A balancer that never applies the removal.
    struct Stuck(Vec<Arc<Endpoint<Weighted<BackendAddr>>>>);
    impl BalancerView for Stuck {
        fn endpoints(&self) -> Vec<Arc<Endpoint<Weighted<BackendAddr>>>> {
            self.0.clone()
        }
        fn retired(&self) -> Vec<Arc<Endpoint<Weighted<BackendAddr>>>> {
            Vec::new()
        }
    }
    let registry: TestRegistry = Registry::new(|uri: &BackendAddr| uri.clone());
    registry.register("http://127.0.0.1:1080".parse().unwrap(), 1);
    let mut admin = Admin::new(registry.clone(), probe())
        .timeout(Duration::from_millis(250))
        .balancer(Stuck(vec![endpoint("http://127.0.0.1:1080", 1, 0, 0)]));
    let started = tokio::time::Instant::now();
    let (status, json, _) = send(
        &mut admin,
        delete(r#"{"address": "http://127.0.0.1:1080"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["data"]["state"], "removed");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(300),
        "{waited:?}"
    );
}

#[tokio::test]
async fn delete_of_an_unknown_backend_is_404_and_bad_bodies_are_refused() {
    let (mut admin, registry) = admin_with_balancer();
    let (status, json, _) = send(&mut admin, delete(r#"{"address": "http://127.0.0.1:9"}"#)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(title(&json), "http://127.0.0.1:9 is not registered.");
    for (body, code, needle) in [
        ("", 400, "empty body"),
        ("{", 400, "malformed JSON"),
        (r#"{"weight": 1}"#, 400, "missing field \"address\""),
        (r#"{"address": "ftp://x"}"#, 400, "invalid address"),
        (
            r#"{"address": "http://127.0.0.1:1080", "now": true}"#,
            403,
            "\"now\"",
        ),
    ] {
        let (status, json, _) = send(&mut admin, delete(body)).await;
        assert_eq!(status.as_u16(), code, "{body}: {json}");
        assert!(title(&json).contains(needle), "{body}: {json}");
    }
    let mut req = delete(r#"{"address": "http://127.0.0.1:1080"}"#);
    req.headers_mut()
        .insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
    let (status, _, _) = send(&mut admin, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(registry.len(), 2);
}

#[tokio::test]
async fn backends_lists_every_field_with_the_balancers_counters() {
    let (mut admin, _) = admin_with_balancer();
    let (status, json, res) = send(&mut admin, get("/backends")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        json,
        json!({"status": "success", "data": [
            {"address": "http://127.0.0.1:1080", "weight": 2, "state": "healthy", "in_flight": 3,
             "served": 40, "failures": 0, "last_check": null, "last_error": null, "ejections": 0,
             "ejected_until": null, "slow_start_remaining_ms": null},
            {"address": "http://127.0.0.1:1081", "weight": 1, "state": "healthy", "in_flight": 0,
             "served": 41, "failures": 0, "last_check": null, "last_error": null, "ejections": 0,
             "ejected_until": null, "slow_start_remaining_ms": null},
        ]})
    );
    // Without a balancer: the registry alone, zero counters.
    let (mut bare, registry) = self::admin();
    registry.register("http://127.0.0.1:1080".parse().unwrap(), 4);
    let (_, json, _) = send(&mut bare, get("/backends")).await;
    assert_eq!(json["data"][0]["weight"], 4);
    assert_eq!(json["data"][0]["served"], 0);
}

/// Requests refused by the access check change nothing and never reach the probe.
fn counting_admin() -> (
    Admin<BackendAddr, impl Probe<BackendAddr>>,
    TestRegistry,
    Arc<AtomicUsize>,
) {
    let registry: TestRegistry = Registry::new(|uri: &BackendAddr| uri.clone());
    registry.register("http://127.0.0.1:1081".parse().unwrap(), 1);
    let probes = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&probes);
    let probe = probe_fn(move |_: &BackendAddr| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(()) }
    });
    (Admin::new(registry.clone(), probe), registry, probes)
}

#[tokio::test]
async fn non_loopback_peers_are_403_without_a_token() {
    let (mut admin, registry, probes) = counting_admin();
    let before = registry.backends();
    for req in [
        request(
            Method::POST,
            "/register",
            r#"{"address": "http://127.0.0.1:1080"}"#,
            "10.0.0.1:5000",
        ),
        request(
            Method::DELETE,
            "/register",
            r#"{"address": "http://127.0.0.1:1081"}"#,
            "10.0.0.1:5000",
        ),
        request(Method::GET, "/backends", "", "[2001:db8::1]:5000"),
    ] {
        let (status, json, _) = send(&mut admin, req).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(title(&json).contains("local clients only"), "{json}");
    }
    assert_eq!(registry.backends(), before);
    assert_eq!(probes.load(Ordering::SeqCst), 0);

    // Unless their network is trusted.
    let mut admin = admin.trusted_peers(["10.0.0.0/8".parse().unwrap()]);
    let req = request(Method::GET, "/backends", "", "10.0.0.1:5000");
    assert_eq!(send(&mut admin, req).await.0, StatusCode::OK);
    let req = request(Method::GET, "/backends", "", "127.0.0.1:5000");
    assert_eq!(send(&mut admin, req).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn with_a_token_every_request_needs_it() {
    let (admin, registry, probes) = counting_admin();
    let mut admin = admin.token("s3cret".parse::<AdminToken>().unwrap());
    let before = registry.backends();
    let with = |req: Request<Full<Bytes>>, auth: Option<&str>| {
        let mut req = req;
        if let Some(auth) = auth {
            req.headers_mut()
                .insert(header::AUTHORIZATION, auth.parse().unwrap());
        }
        req
    };
    let register = || {
        request(
            Method::POST,
            "/register",
            r#"{"address": "http://127.0.0.1:1080"}"#,
            "127.0.0.1:1",
        )
    };
    let drain = || {
        request(
            Method::DELETE,
            "/register",
            r#"{"address": "http://127.0.0.1:1081"}"#,
            "10.0.0.1:1",
        )
    };
    for auth in [
        None,
        Some("Bearer s3cre"),
        Some("Bearer s3cret2"),
        Some("Basic s3cret"),
    ] {
        for req in [register(), drain(), get("/backends")] {
            let (status, json, res) = send(&mut admin, with(req, auth)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
            assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Bearer");
            let expected = if auth.is_none() {
                "missing admin token"
            } else {
                "wrong admin token"
            };
            assert!(title(&json).starts_with(expected), "{json}");
        }
    }
    assert_eq!(registry.backends(), before);
    assert_eq!(probes.load(Ordering::SeqCst), 0);

    // The right token works from any peer.
    let ok = Some("Bearer s3cret");
    assert_eq!(
        send(&mut admin, with(register(), ok)).await.0,
        StatusCode::OK
    );
    assert_eq!(send(&mut admin, with(drain(), ok)).await.0, StatusCode::OK);
    assert_eq!(
        registry.backends(),
        vec![("http://127.0.0.1:1080".parse().unwrap(), 1)]
    );
}

#[tokio::test]
async fn only_allowed_backends_are_registered_and_checked() {
    let (admin, registry, probes) = counting_admin();
    let mut admin = admin.allow_backends(["127.0.0.1/32".parse().unwrap()]);
    for (address, needle) in [
        (
            "http://127.0.0.2:1080",
            "backend address 127.0.0.2 is not in the allowed networks (127.0.0.1/32)",
        ),
        (
            "http://localhost:1080",
            "backend host \"localhost\" is a name",
        ),
    ] {
        let body = format!(r#"{{"address": "{address}"}}"#);
        let (status, json, _) = send(&mut admin, post(body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(title(&json).starts_with(needle), "{json}");
    }
    assert_eq!(probes.load(Ordering::SeqCst), 0);
    assert_eq!(registry.len(), 1);
    let (status, _, _) = send(&mut admin, post(r#"{"address": "http://127.0.0.1:1080"}"#)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(probes.load(Ordering::SeqCst), 1);
    assert_eq!(registry.len(), 2);
}

#[tokio::test]
async fn the_status_page_is_html_and_its_numbers_need_a_source() {
    let (admin, _) = admin();
    let mut admin = admin.token("s3cret".parse::<AdminToken>().unwrap());
    // The page takes the token from its query, as a browser opens it.
    let res = ServiceExt::<Request<Full<Bytes>>>::ready(&mut admin)
        .await
        .unwrap()
        .call(get("/status?token=s3cret"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    assert!(res.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"<!DOCTYPE html>"));
    // Wrong or missing token: refused, as any admin request.
    let (status, json, _) = send(&mut admin, get("/status?token=nope")).await;
    assert_eq!(
        (status, title(&json)),
        (StatusCode::UNAUTHORIZED, "wrong admin token")
    );
    let (status, _, _) = send(&mut admin, get("/status")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The JSON takes the header only.
    let (status, _, _) = send(&mut admin, get("/status.json?token=s3cret")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut req = get("/status.json");
    req.headers_mut()
        .insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
    let (status, json, _) = send(&mut admin, req).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no status source: {json}");
    let mut req = request(Method::POST, "/status", "", "127.0.0.1:1");
    req.headers_mut()
        .insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
    let (status, _, res) = send(&mut admin, req).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()[header::ALLOW], "GET");
}

#[cfg(feature = "metrics")]
#[tokio::test]
async fn metrics_are_served_to_admin_peers_only_in_the_openmetrics_format() {
    use std::sync::Arc;

    let (admin, backends) = admin();
    // Without a registry, there is nothing to render.
    let (status, json, _) = send(&mut admin.clone(), get("/metrics")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{json}");

    let mut registry = prometheus_client::registry::Registry::default();
    let lb = crate::LoadBalance::new(backends.discover(), crate::Algo::RoundRobin);
    crate::metrics::BalancerMetrics::new(lb).register(&mut registry);
    let mut admin = admin.metrics(Arc::new(registry));
    let res = ServiceExt::<Request<Full<Bytes>>>::ready(&mut admin)
        .await
        .unwrap()
        .call(get("/metrics"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        crate::metrics::CONTENT_TYPE
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let text = std::str::from_utf8(&body).unwrap();
    assert!(
        text.contains("tower_lb_no_available_backend_total 0"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");

    // The same access rules as the rest of the API.
    let req = request(Method::GET, "/metrics", "", "10.0.0.1:5000");
    let (status, json, _) = send(&mut admin, req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(title(&json).contains("local clients only"), "{json}");
    let mut admin = admin.token("s3cret".parse::<AdminToken>().unwrap());
    assert_eq!(
        send(&mut admin, get("/metrics")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let req = request(Method::POST, "/metrics", "", "127.0.0.1:5000");
    let mut admin = admin.token(None);
    let (status, _, res) = send(&mut admin, req).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()[header::ALLOW], "GET");
    assert!(crate::admin::is_admin_path("/metrics"));
}
