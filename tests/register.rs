//! `POST /register` end to end: an in-process `Server`, `backend_server` backends and a hyper
//! client on 127.0.0.1. Every answer of the contract, and the balancer keeps serving after
//! each bad request.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode, header};
use serde_json::json;
use support::{Lb, Reply, backend, closed_port, send, start};
use tower_lb::health::Health;
use tower_lb::server::Config;
use tower_lb::{Algo, BackendAddr};

/// A balancer with one backend registered through `/register`, which must keep serving.
async fn lb_with_a_backend() -> (Lb, backend_server::Handle) {
    let b = backend().await;
    let lb = start(Config::new()).await;
    let reply = lb
        .register(&format!(r#"{{"address": "{}"}}"#, b.url()))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    (lb, b)
}

/// The balancer still forwards to `b`.
async fn still_serves(lb: &Lb, b: &backend_server::Handle) {
    assert_eq!(lb.pick().await.unwrap(), b.addr().to_string());
}

/// A JSend `fail` with `status`, `Content-Type: application/json`, and its title.
fn fail_title(reply: &Reply, status: StatusCode) -> String {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.content_type(), "application/json", "{reply:?}");
    let json = reply.json();
    assert_eq!(json["status"], "fail", "{json}");
    json["data"]["title"]
        .as_str()
        .unwrap_or_else(|| panic!("no title: {json}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_backend_is_registered_and_serves_at_once() {
    let b = backend().await;
    let lb = start(Config::new()).await;
    assert_eq!(lb.get("/").await.status, StatusCode::SERVICE_UNAVAILABLE);

    let reply = lb
        .register(&format!(r#"{{"address": "{}", "weight": 5}}"#, b.url()))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.content_type(), "application/json");
    assert_eq!(
        reply.body,
        format!(
            r#"{{"status":"success","data":{{"server":"{}","weight":5}}}}"#,
            b.url()
        )
    );
    // The very next request is served by it: no wait for a health-check interval.
    still_serves(&lb, &b).await;
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_defaults_to_one_and_addresses_are_normalised() {
    let b = backend().await;
    let lb = start(Config::new()).await;
    let reply = lb
        .register(&format!(r#"{{"address": "{}/"}}"#, b.url()))
        .await;
    assert_eq!(
        reply.json(),
        json!({"status": "success", "data": {"server": b.url(), "weight": 1}})
    );
    let reply = lb
        .register(&format!(
            r#"{{"address": "{}", "weight": 2}}"#,
            b.url().to_uppercase()
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json()["data"]["server"], b.url());
    // One backend, with the new weight.
    let uri: BackendAddr = b.url().parse().unwrap();
    assert_eq!(lb.registry.backends(), vec![(uri, 2)]);
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_400_and_the_balancer_keeps_serving() {
    let (lb, b) = lb_with_a_backend().await;
    for (body, needle) in [
        ("", "empty body"),
        ("{", "malformed JSON"),
        ("not json", "malformed JSON"),
        ("[1, 2]", "JSON object"),
        (r#"{"address": 8080}"#, "\"address\" must be a string"),
        (
            r#"{"address": "http://127.0.0.1:1", "weight": "5"}"#,
            "\"weight\" must be an integer",
        ),
        (
            r#"{"address": "http://127.0.0.1:1", "weight": 2.5}"#,
            "\"weight\" must be an integer",
        ),
        (r#"{"weight": 5}"#, "missing field \"address\""),
        (r#"{"address": "ftp://x"}"#, "invalid address \"ftp://x\""),
        (
            r#"{"address": "127.0.0.1:1080"}"#,
            "invalid address \"127.0.0.1:1080\"",
        ),
        (r#"{"address": "http://"}"#, "invalid address \"http://\""),
        (r#"{"address": "http://x:99999"}"#, "invalid address"),
        (
            r#"{"address": "http://127.0.0.1:1", "weight": 0}"#,
            "between 1 and 1000, got 0",
        ),
        (
            r#"{"address": "http://127.0.0.1:1", "weight": 1001}"#,
            "between 1 and 1000, got 1001",
        ),
        (
            r#"{"address": "http://127.0.0.1:1", "weight": -3}"#,
            "between 1 and 1000",
        ),
    ] {
        let reply = lb.register(body).await;
        let title = fail_title(&reply, StatusCode::BAD_REQUEST);
        assert!(title.contains(needle), "{body:?}: {title:?}");
        still_serves(&lb, &b).await;
    }
    assert_eq!(lb.registry.len(), 1);
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_field_is_403_and_named() {
    let (lb, b) = lb_with_a_backend().await;
    let reply = lb
        .register(&format!(
            r#"{{"address": "{}", "weight": 2, "region": "eu"}}"#,
            b.url()
        ))
        .await;
    let title = fail_title(&reply, StatusCode::FORBIDDEN);
    assert!(title.contains("\"region\""), "{title}");
    // Nothing changed.
    assert_eq!(lb.registry.backends()[0].1, 1);
    still_serves(&lb, &b).await;
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_that_is_not_alive_is_404() {
    let (lb, b) = lb_with_a_backend().await;
    let port = closed_port().await;
    let reply = lb
        .register(&format!(r#"{{"address": "http://127.0.0.1:{port}"}}"#))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.content_type(), "application/json");
    assert_eq!(
        reply.body,
        format!(
            r#"{{"status":"fail","data":{{"title":"http://127.0.0.1:{port} not alive, registration failed."}}}}"#
        )
    );
    assert_eq!(lb.registry.len(), 1);
    still_serves(&lb, &b).await;
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_failing_its_health_check_is_404() {
    let b = backend().await;
    // Alive, but its health path answers 500: the check at registration uses that path.
    let lb = start(Config::new().health_path("/status/500")).await;
    let reply = lb
        .register(&format!(r#"{{"address": "{}"}}"#, b.url()))
        .await;
    let title = fail_title(&reply, StatusCode::NOT_FOUND);
    assert_eq!(
        title,
        format!("{} not alive, registration failed.", b.url())
    );
    assert!(lb.registry.is_empty());
    assert_eq!(lb.get("/").await.status, StatusCode::SERVICE_UNAVAILABLE);
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_64_kib_is_413() {
    let (lb, b) = lb_with_a_backend().await;
    let body = format!(
        r#"{{"address": "{}", "weight": 3{}}}"#,
        b.url(),
        " ".repeat(65 * 1024)
    );
    let reply = lb.register(&body).await;
    let title = fail_title(&reply, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(title.contains("65536 bytes"), "{title}");
    assert_eq!(lb.registry.backends()[0].1, 1);
    still_serves(&lb, &b).await;
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_405_with_allow() {
    let (lb, b) = lb_with_a_backend().await;
    for method in [Method::GET, Method::PUT, Method::PATCH] {
        let reply = send(
            &lb.client,
            method.clone(),
            &lb.url("/register"),
            None,
            Bytes::new(),
        )
        .await;
        let title = fail_title(&reply, StatusCode::METHOD_NOT_ALLOWED);
        assert!(title.contains(method.as_str()), "{title}");
        assert_eq!(reply.headers[header::ALLOW], "POST, DELETE");
        still_serves(&lb, &b).await;
    }
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_content_type_is_415() {
    let (lb, b) = lb_with_a_backend().await;
    let body = format!(r#"{{"address": "{}", "weight": 4}}"#, b.url());
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let reply = send(
            &lb.client,
            Method::POST,
            &lb.url("/register"),
            Some(content_type),
            Bytes::from(body.clone()),
        )
        .await;
        let title = fail_title(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(title.contains("application/json"), "{title}");
        still_serves(&lb, &b).await;
    }
    assert_eq!(lb.registry.backends()[0].1, 1);
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_again_updates_the_weight() {
    let (heavy, light) = (backend().await, backend().await);
    let lb = start(Config::new().algo(Algo::WeightedRoundRobin)).await;
    for b in [&heavy, &light] {
        let reply = lb
            .register(&format!(r#"{{"address": "{}", "weight": 1}}"#, b.url()))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let count = |picks: &[String], b: &backend_server::Handle| {
        picks.iter().filter(|p| **p == b.addr().to_string()).count()
    };
    let picks = lb.picks(8).await;
    assert_eq!(
        (count(&picks, &heavy), count(&picks, &light)),
        (4, 4),
        "{picks:?}"
    );

    let reply = lb
        .register(&format!(r#"{{"address": "{}", "weight": 3}}"#, heavy.url()))
        .await;
    assert_eq!(reply.json()["data"]["weight"], 3);
    // Applied by the time the answer came: 3 to 1 over whole periods.
    let picks = lb.picks(8).await;
    assert_eq!(
        (count(&picks, &heavy), count(&picks, &light)),
        (6, 2),
        "{picks:?}"
    );
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_backend_is_checked_every_interval() {
    let b = backend().await;
    let addr = b.addr();
    let lb = start(Config::new().health_interval(Duration::from_secs(1))).await;
    let reply = lb
        .register(&format!(r#"{{"address": "{}"}}"#, b.url()))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let uri: BackendAddr = b.url().parse().unwrap();

    b.kill().await;
    lb.wait_health(&uri, Health::Unhealthy).await;
    assert_eq!(lb.get("/").await.status, StatusCode::SERVICE_UNAVAILABLE);

    let _b = support::backend_on(addr).await;
    lb.wait_health(&uri, Health::Healthy).await;
    assert_eq!(lb.pick().await.unwrap(), addr.to_string());
    lb.stop().await;
}
