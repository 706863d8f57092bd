//! The admin API end to end: draining with `DELETE /register` under load, `GET /backends`
//! and its states, the admin token, the separate admin listener, the backend allow-list and
//! the health flags, with an in-process `Server`, real backends and a hyper client on
//! 127.0.0.1.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::Full;
use serde_json::Value;
use support::{HttpClient, Lb, Reply, backend, backend_on, eventually, start};
use tower_lb::health::OutlierDetection;
use tower_lb::server::Config;
use tower_lb::{Algo, BackendAddr};

/// Sends an admin request to `base` (a balancer's or its admin listener's address), with a
/// JSON body and a bearer token if given.
async fn admin_request(
    client: &HttpClient,
    method: Method,
    base: SocketAddr,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{base}{path}"));
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = Bytes::copy_from_slice(body.unwrap_or("").as_bytes());
    support::send_request(client, req.body(Full::new(body)).unwrap()).await
}

fn address(url: &str) -> String {
    format!(r#"{{"address": "{url}"}}"#)
}

async fn register(lb: &Lb, url: &str) {
    let reply = lb.register(&address(url)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
}

async fn drain(lb: &Lb, url: &str) -> Reply {
    admin_request(
        &lb.client,
        Method::DELETE,
        lb.addr,
        "/register",
        Some(&address(url)),
        None,
    )
    .await
}

/// `GET /backends`: the list, after checking the envelope.
async fn backends(lb: &Lb) -> Vec<Value> {
    let reply = lb.get("/backends").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.content_type(), "application/json");
    let json = reply.json();
    assert_eq!(json["status"], "success", "{json}");
    json["data"].as_array().expect("a list").clone()
}

/// The entry of `url` in `GET /backends`, if listed.
async fn listed(lb: &Lb, url: &str) -> Option<Value> {
    backends(lb).await.into_iter().find(|b| b["address"] == url)
}

/// A backend that passes its health checks (`/health` is `200`) and answers `503` to
/// everything else: alive, but failing every request.
async fn overloaded_backend() -> (String, tokio::task::JoinHandle<()>) {
    use axum::Router;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/health", get(|| async { "OK" }))
        .fallback(|| async { (StatusCode::SERVICE_UNAVAILABLE, "overloaded\n") });
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

/// Drains one of two backends while clients keep sending requests and long requests are in
/// flight on it: no request fails, the long ones finish on it, no new one reaches it, and
/// `GET /backends` shows it draining and then gone.
async fn drain_under_load(algo: Algo) {
    const LONG_MS: u64 = 3000;
    const LONG: usize = 6;
    const LOAD: usize = 3000;
    // Health checks only at registration: the drained backend's request count then tells
    // whether anything reached it after the drain.
    let config = Config::new()
        .algo(algo)
        .health_interval(Duration::from_secs(3600));
    let lb = Arc::new(start(config).await);
    let (a, b) = (backend().await, backend().await);
    register(&lb, &a.url()).await;
    register(&lb, &b.url()).await;

    // Long requests first: round robin spreads them over both backends, sticky round robin
    // puts them all on the backend this client is placed on.
    let mut long = Vec::new();
    for _ in 0..LONG {
        let lb = Arc::clone(&lb);
        long.push(tokio::spawn(async move {
            lb.get(&format!("/sleep?ms={LONG_MS}")).await
        }));
    }
    eventually("the long requests are in flight", || async {
        let total: usize = lb.in_flight().values().sum();
        (total == LONG).then_some(())
    })
    .await;
    // Drain the backend with the most of them.
    let (drained_name, long_on_drained) =
        lb.in_flight().into_iter().max_by_key(|(_, n)| *n).unwrap();
    let (drained, kept) = if drained_name == support::name(&a) {
        (a, b)
    } else {
        (b, a)
    };
    assert!(long_on_drained >= LONG / 2, "{long_on_drained}");

    // Clients in a loop, from before the drain until after the long requests end.
    let done = Arc::new(AtomicUsize::new(0));
    let drained_flag = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (lb, done, drained_flag) = (
            Arc::clone(&lb),
            Arc::clone(&done),
            Arc::clone(&drained_flag),
        );
        let (drained_addr, kept_addr) = (drained.addr().to_string(), kept.addr().to_string());
        clients.push(tokio::spawn(async move {
            let mut after_drain = 0;
            while done.fetch_add(1, Ordering::Relaxed) < LOAD {
                let was_drained = drained_flag.load(Ordering::SeqCst);
                let picked = lb.pick().await.expect("no request fails during a drain");
                if was_drained {
                    after_drain += 1;
                    assert_eq!(picked, kept_addr, "a request sent after the drain");
                } else {
                    assert!(picked == kept_addr || picked == drained_addr, "{picked}");
                }
            }
            after_drain
        }));
    }
    // Let the load run for a moment before draining.
    eventually("some load has run", || async {
        (done.load(Ordering::Relaxed) >= LOAD / 20).then_some(())
    })
    .await;

    let reply = drain(&lb, &drained.url()).await;
    drained_flag.store(true, Ordering::SeqCst);
    // Requests picked just before the drain may still be on their way to the backend; once
    // only the long ones are left on it, its request count is final.
    eventually(
        "only the long requests are left on the drained backend",
        || async {
            let left: usize = lb.balancer.retired().iter().map(|e| e.in_flight()).sum();
            (left <= long_on_drained).then_some(())
        },
    )
    .await;
    let requests_at_drain = drained.stats().requests();
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let json = reply.json();
    assert_eq!(json["status"], "success");
    assert_eq!(json["data"]["server"], drained.url());
    assert_eq!(json["data"]["state"], "draining", "{json}");
    let reported = json["data"]["in_flight"].as_u64().unwrap() as usize;
    assert!(reported >= long_on_drained, "{json}");
    assert!(
        !lb.registry
            .contains(&drained.url().parse::<BackendAddr>().unwrap())
    );

    // Listed as draining while the long requests run.
    let entry = listed(&lb, &drained.url())
        .await
        .expect("listed while draining");
    assert_eq!(entry["state"], "draining", "{entry}");
    assert!(entry["in_flight"].as_u64().unwrap() >= 1, "{entry}");
    assert_eq!(listed(&lb, &kept.url()).await.unwrap()["state"], "healthy");

    // The long requests finish, on the drained backend too.
    for task in long {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.body, format!("slept {LONG_MS} ms\n"));
    }
    let after_drain: usize = futures_util::future::join_all(clients)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    assert!(done.load(Ordering::Relaxed) >= LOAD);
    assert!(after_drain > 0, "no request was sent after the drain");

    // Then gone, and it never got a new request.
    eventually("the drained backend leaves the list", || async {
        listed(&lb, &drained.url()).await.is_none().then_some(())
    })
    .await;
    assert_eq!(backends(&lb).await.len(), 1);
    assert_eq!(drained.stats().requests(), requests_at_drain);
    assert!(lb.balancer.retired().is_empty());
    assert!(
        lb.health
            .get(&drained.url().parse::<BackendAddr>().unwrap())
            .is_none()
    );
    Arc::into_inner(lb)
        .expect("every client is done")
        .stop()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_under_load_fails_no_request_round_robin() {
    drain_under_load(Algo::RoundRobin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_under_load_moves_sticky_clients() {
    drain_under_load(Algo::StickyRoundRobin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_of_an_unregistered_backend_is_404() {
    let lb = start(Config::new()).await;
    let b = backend().await;
    let reply = drain(&lb, &b.url()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
    assert_eq!(
        reply.json(),
        serde_json::json!({"status": "fail", "data": {"title": format!("{} is not registered.", b.url())}})
    );
    // An idle backend is removed at once.
    register(&lb, &b.url()).await;
    let reply = drain(&lb, &b.url()).await;
    assert_eq!(
        reply.json()["data"],
        serde_json::json!({"server": b.url(), "state": "removed", "in_flight": 0})
    );
    assert!(backends(&lb).await.is_empty());
    assert_eq!(lb.get("/").await.status, StatusCode::SERVICE_UNAVAILABLE);
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_lists_healthy_unhealthy_and_ejected_backends() {
    let outliers = OutlierDetection::new()
        .consecutive_failures(3)
        .base_ejection(Duration::from_secs(60));
    let config = Config::new()
        .health_interval(Duration::from_millis(100))
        .outlier_detection(outliers);
    let lb = start(config).await;
    let (healthy, stopped) = (backend().await, backend().await);
    let (overloaded, _task) = overloaded_backend().await;
    register(&lb, &healthy.url()).await;
    let reply = lb
        .register(&format!(
            r#"{{"address": "{}", "weight": 4}}"#,
            stopped.url()
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    register(&lb, &overloaded).await;

    // Every field, for a healthy backend that has been checked.
    let entry = eventually("a periodic check of the healthy backend", || async {
        listed(&lb, &healthy.url())
            .await
            .filter(|e| !e["last_check"].is_null())
    })
    .await;
    // (serde_json sorts the keys it reads.)
    let fields: Vec<&str> = entry
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = [
        "address",
        "weight",
        "state",
        "in_flight",
        "served",
        "failures",
        "last_check",
        "last_error",
        "ejections",
        "ejected_until",
        "slow_start_remaining_ms",
    ];
    expected.sort_unstable();
    assert_eq!(fields, expected);
    assert_eq!(entry["state"], "healthy");
    assert_eq!(entry["weight"], 1);
    assert_eq!(entry["last_error"], Value::Null);
    let last_check = entry["last_check"].as_str().unwrap();
    assert!(
        last_check.len() == 24 && last_check.ends_with('Z') && last_check.as_bytes()[10] == b'T',
        "not RFC 3339: {last_check}"
    );
    // Registration order, with the weights given.
    let order: Vec<_> = backends(&lb)
        .await
        .iter()
        .map(|b| {
            (
                b["address"].as_str().unwrap().to_owned(),
                b["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            (healthy.url(), 1),
            (stopped.url(), 4),
            (overloaded.clone(), 1)
        ]
    );

    // A stopped backend fails its checks.
    let stopped_url = stopped.url();
    stopped.kill().await;
    let entry = eventually("the stopped backend is unhealthy", || async {
        listed(&lb, &stopped_url)
            .await
            .filter(|e| e["state"] == "unhealthy")
    })
    .await;
    assert!(entry["last_error"].is_string(), "{entry}");

    // The overloaded one answers 503 to requests: ejected after 3 in a row.
    let entry = eventually("the overloaded backend is ejected", || async {
        let _ = lb.get("/").await;
        listed(&lb, &overloaded)
            .await
            .filter(|e| e["state"] == "ejected")
    })
    .await;
    assert_eq!(entry["ejections"], 1, "{entry}");
    assert!(
        entry["ejected_until"].as_str().unwrap().ends_with('Z'),
        "{entry}"
    );
    assert!(entry["served"].as_u64().unwrap() >= 3, "{entry}");
    assert_eq!(entry["last_error"], Value::Null, "its checks pass: {entry}");
    // Then every request goes to the healthy backend.
    for _ in 0..10 {
        assert_eq!(lb.pick().await.unwrap(), healthy.addr().to_string());
    }
    let served = listed(&lb, &healthy.url()).await.unwrap()["served"]
        .as_u64()
        .unwrap();
    assert!(served >= 10, "{served}");
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_shows_in_the_list() {
    let config = Config::new().slow_start(Duration::from_secs(30));
    let lb = start(config).await;
    let b = backend().await;
    register(&lb, &b.url()).await;
    let entry = listed(&lb, &b.url()).await.unwrap();
    let remaining = entry["slow_start_remaining_ms"].as_u64().expect("ramping");
    assert!(remaining > 20_000 && remaining <= 30_000, "{entry}");
    // The only backend takes every request while it ramps.
    assert_eq!(lb.pick().await.unwrap(), b.addr().to_string());
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_is_required_and_a_refusal_changes_nothing() {
    let token = "t0ken-for-tests";
    let lb =
        start(Config::new().admin_token(token.parse::<tower_lb::admin::AdminToken>().unwrap()))
            .await;
    let b = backend().await;
    let body = address(&b.url());
    for (given, expected) in [
        (
            None,
            "missing admin token: send Authorization: Bearer <token>",
        ),
        (Some("t0ken-for-test"), "wrong admin token"),
        (Some("t0ken-for-tests-"), "wrong admin token"),
    ] {
        for (method, path, body) in [
            (Method::POST, "/register", Some(body.as_str())),
            (Method::DELETE, "/register", Some(body.as_str())),
            (Method::GET, "/backends", None),
        ] {
            let reply = admin_request(&lb.client, method, lb.addr, path, body, given).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
            assert_eq!(reply.headers[header::WWW_AUTHENTICATE], "Bearer");
            assert_eq!(
                reply.json(),
                serde_json::json!({"status": "fail", "data": {"title": expected}})
            );
        }
    }
    assert!(lb.registry.is_empty());
    assert_eq!(
        b.stats().requests(),
        0,
        "a refused registration checks nothing"
    );

    let ok = Some(token);
    let reply = admin_request(
        &lb.client,
        Method::POST,
        lb.addr,
        "/register",
        Some(&body),
        ok,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let reply = admin_request(&lb.client, Method::GET, lb.addr, "/backends", None, ok).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["data"][0]["address"], b.url());
    // A wrong token cannot drain it either.
    let reply = admin_request(
        &lb.client,
        Method::DELETE,
        lb.addr,
        "/register",
        Some(&body),
        Some("x"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(lb.registry.len(), 1);
    let reply = admin_request(
        &lb.client,
        Method::DELETE,
        lb.addr,
        "/register",
        Some(&body),
        ok,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert!(lb.registry.is_empty());
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_bind_serves_the_admin_api_on_its_own_listener_only() {
    let lb = start(Config::new().admin_bind(([127, 0, 0, 1], 0))).await;
    let admin = lb.admin_addr.expect("an admin listener");
    assert_ne!(admin, lb.addr);
    let b = backend().await;

    let body = address(&b.url());
    let reply = admin_request(
        &lb.client,
        Method::POST,
        admin,
        "/register",
        Some(&body),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let reply = admin_request(&lb.client, Method::GET, admin, "/backends", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["data"][0]["address"], b.url());
    // Only admin routes there.
    let reply = admin_request(&lb.client, Method::GET, admin, "/", None, None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["status"], "fail");

    // On the main listener, the admin paths are forwarded like any other: the backend
    // answers them (backend_server has no such route).
    for (method, path) in [(Method::GET, "/backends"), (Method::POST, "/register")] {
        let requests = b.stats().requests();
        let reply = admin_request(&lb.client, method, lb.addr, path, Some(&body), None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
        assert_eq!(reply.body, "not found\n");
        assert_eq!(b.stats().requests(), requests + 1);
    }
    assert_eq!(lb.pick().await.unwrap(), b.addr().to_string());
    assert_eq!(lb.registry.len(), 1);
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_backend_refuses_addresses_outside_the_networks() {
    let config = Config::new().allow_backend("127.0.0.1/32".parse().unwrap());
    let lb = start(config).await;
    let outside = backend_on("127.0.0.2:0".parse().unwrap()).await;
    let reply = lb.register(&address(&outside.url())).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    assert_eq!(
        reply.json(),
        serde_json::json!({"status": "fail", "data": {"title":
            "backend address 127.0.0.2 is not in the allowed networks (127.0.0.1/32)"}})
    );
    let reply = lb.register(r#"{"address": "http://localhost:1080"}"#).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    assert!(lb.registry.is_empty());
    assert_eq!(outside.stats().requests(), 0, "not even checked");

    let inside = backend().await;
    register(&lb, &inside.url()).await;
    assert_eq!(lb.pick().await.unwrap(), inside.addr().to_string());
    lb.stop().await;
}
