use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::{Value, json};
use tower::{Service, ServiceExt};

use super::*;
use crate::Registry;
use crate::health::{Probe, probe_fn};

type TestRegistry = Registry<Uri, Uri>;

/// A probe that passes for port 1080 and fails for every other.
fn probe() -> impl Probe<Uri> {
    probe_fn(|uri: &Uri| {
        let alive = uri.port_u16() == Some(1080);
        async move {
            if alive {
                Ok(())
            } else {
                Err("connection refused")
            }
        }
    })
}

fn admin() -> (Admin<Uri, impl Probe<Uri>>, TestRegistry) {
    let registry = Registry::new(|uri: &Uri| uri.clone());
    (Admin::new(registry.clone(), probe()), registry)
}

fn post(body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post("/register")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.into()))
        .unwrap()
}

async fn send<S, B>(svc: &mut S, req: Request<B>) -> (StatusCode, Value, Response<()>)
where
    S: Service<Request<B>, Response = Response<Full<Bytes>>, Error = Infallible>,
{
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
    let uri: Uri = "http://127.0.0.1:1080".parse().unwrap();
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
    let registry: TestRegistry = Registry::new(|uri: &Uri| uri.clone());
    let hangs = probe_fn(|_: &Uri| std::future::pending::<Result<(), Infallible>>());
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
    for method in ["GET", "PUT", "DELETE", "HEAD"] {
        let req = Request::builder()
            .method(method)
            .uri("/register")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, json, res) = send(&mut admin, req).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers()[header::ALLOW], "POST");
        assert!(title(&json).contains(method), "{json}");
    }
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
    let registry: TestRegistry = Registry::new(|uri: &Uri| uri.clone());
    let polls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&polls);
    let mut admin = Admin::new(registry, probe()).wait_until(move |uri, weight| {
        assert_eq!((uri.port_u16(), weight), (Some(1080), 3));
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

#[test]
fn futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let (mut admin, _) = admin();
    let fut = admin.call(post("{}"));
    is_send(&fut);
    fn assert_future<F: Future + Send>(_: F) {}
    assert_future(fut);
}
