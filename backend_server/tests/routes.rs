//! The routes, served in-process on 127.0.0.1:0 and called with a hyper client.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(10);

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn start() -> backend_server::Handle {
    backend_server::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

async fn send(req: Request<Full<Bytes>>) -> Reply {
    timeout(DEADLINE, async {
        let res = client().request(req).await.unwrap();
        let (parts, body) = res.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    })
    .await
    .expect("request timed out")
}

async fn get(url: String) -> Reply {
    send(Request::get(url).body(Full::default()).unwrap()).await
}

#[tokio::test]
async fn root_names_the_server_and_health_is_ok() {
    let server = start().await;
    let res = get(server.url() + "/").await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.body,
        format!("Hello from Rust server at {}\n", server.addr())
    );
    assert_eq!(res.headers["content-type"], "text/plain; charset=utf-8");
    let res = get(server.url() + "/health").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body, "OK");
    let res = get(server.url() + "/missing").await;
    assert_eq!(res.status, 404);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn echo_returns_body_method_path_and_test_headers() {
    let server = start().await;
    let req = Request::builder()
        .method(Method::PUT)
        .uri(server.url() + "/echo?a=1&a=2&b=%2F")
        .header("x-test-one", "1")
        .header("x-test-one", "2")
        .header("x-other", "no")
        .body(Full::new(Bytes::from_static(b"hello body")))
        .unwrap();
    let res = send(req).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body, "hello body");
    assert_eq!(res.headers["x-echo-method"], "PUT");
    assert_eq!(res.headers["x-echo-path"], "/echo?a=1&a=2&b=%2F");
    let ones: Vec<_> = res.headers.get_all("x-test-one").iter().collect();
    assert_eq!(ones, ["1", "2"]);
    assert!(!res.headers.contains_key("x-other"));
}

#[tokio::test]
async fn status_route_sets_the_status() {
    let server = start().await;
    let res = get(server.url() + "/status/201").await;
    assert_eq!(res.status, 201);
    assert_eq!(res.body, "status 201\n");
    let res = get(server.url() + "/status/503").await;
    assert_eq!(res.status, 503);
    let res = get(server.url() + "/status/204").await;
    assert_eq!(res.status, 204);
    assert!(res.body.is_empty());
    let res = get(server.url() + "/status/99").await;
    assert_eq!(res.status, 400);
}

#[tokio::test]
async fn stream_sends_chunks_with_delays() {
    let server = start().await;
    let start = Instant::now();
    let res = client()
        .request(
            Request::get(server.url() + "/stream?chunks=3&delay_ms=200")
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = timeout(DEADLINE, body.frame()).await.unwrap() {
        if let Ok(data) = frame.unwrap().into_data() {
            frames.push((start.elapsed(), data));
        }
    }
    let data: Vec<_> = frames.iter().map(|(_, d)| d.clone()).collect();
    assert_eq!(data, ["chunk 0\n", "chunk 1\n", "chunk 2\n"]);
    assert!(frames[0].0 < Duration::from_millis(150), "{frames:?}");
    assert!(frames[2].0 >= Duration::from_millis(400), "{frames:?}");
}

#[tokio::test]
async fn sleep_waits_and_bytes_sends_n_bytes() {
    let server = start().await;
    let start = Instant::now();
    let res = get(server.url() + "/sleep?ms=200").await;
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(res.body, "slept 200 ms\n");
    assert_eq!(get(server.url() + "/sleep").await.status, 400);

    let n = 200_000;
    let res = get(format!("{}/bytes?n={n}", server.url())).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.headers["content-length"], n.to_string().as_str());
    assert_eq!(res.body.len(), n);
    assert!(res.body.iter().all(|b| *b == b'x'));
    assert_eq!(get(server.url() + "/bytes?n=-1").await.status, 400);
}

#[tokio::test]
async fn headers_route_returns_json() {
    let server = start().await;
    let req = Request::get(server.url() + "/headers")
        .header("x-a", "1")
        .header("x-a", "2")
        .header("x-quote", "say \"hi\"")
        .body(Full::default())
        .unwrap();
    let res = send(req).await;
    assert_eq!(res.headers["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(json["x-a"], "1, 2");
    assert_eq!(json["x-quote"], "say \"hi\"");
    assert_eq!(json["host"], server.addr().to_string());
}

#[tokio::test]
async fn stats_count_connections_and_requests() {
    let server = start().await;
    let client = client();
    for _ in 0..5 {
        let res = client
            .request(
                Request::get(server.url() + "/")
                    .body(Full::default())
                    .unwrap(),
            )
            .await
            .unwrap();
        res.into_body().collect().await.unwrap();
    }
    // One pooled client: keep-alive reuses a single connection.
    assert_eq!(server.stats().connections(), 1);
    assert_eq!(server.stats().requests(), 5);
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(backend_server::serve(listener, async {
        rx.await.ok();
    }));
    let in_flight = tokio::spawn(get(url.clone() + "/sleep?ms=300"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    tx.send(()).unwrap();
    let res = in_flight.await.unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(res.body, "slept 300 ms\n");
    timeout(DEADLINE, server)
        .await
        .expect("server did not stop")
        .unwrap()
        .unwrap();
    // The listener is closed.
    assert!(tokio::net::TcpStream::connect(&url[7..]).await.is_err());
}

#[tokio::test]
async fn kill_drops_connections_in_flight() {
    let server = start().await;
    let url = server.url();
    let in_flight = tokio::spawn(async move {
        client()
            .request(
                Request::get(url + "/sleep?ms=5000")
                    .body(Full::default())
                    .unwrap(),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let addr = server.addr();
    timeout(DEADLINE, server.kill()).await.unwrap();
    let res = timeout(DEADLINE, in_flight).await.unwrap().unwrap();
    assert!(res.is_err(), "the request should fail, got {res:?}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn upload_reads_the_whole_body_before_answering() {
    let server = start().await;
    let req = Request::post(server.url() + "/upload?ms=50")
        .body(Full::new(Bytes::from(vec![7u8; 300_000])))
        .unwrap();
    let start = Instant::now();
    let res = send(req).await;
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(res.status, 200);
    assert_eq!(res.body, "received 300000 bytes\n");
    assert_eq!(get(server.url() + "/upload?ms=x").await.status, 400);
}
