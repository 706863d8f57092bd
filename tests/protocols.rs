//! The standalone balancer end to end, by protocol: WebSocket-style upgrades tunnelled to the
//! backend, HTTP/2 clients (h2c, prior knowledge) to HTTP/1.1 backends, and HTTP/1.0 clients.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tower_lb::server::Config;

use support::{DEADLINE, lb_with, read_head, read_to_end};

/// Reads exactly `n` bytes.
async fn read_exact(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    timeout(DEADLINE, stream.read_exact(&mut buf))
        .await
        .expect("bytes in time")
        .expect("read");
    buf
}

const UPGRADE: &str =
    "GET /ws HTTP/1.1\r\nHost: lb\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";

#[tokio::test]
async fn websocket_upgrade_is_tunnelled_to_the_backend_both_ways() {
    let (_b, lb) = lb_with(Config::new()).await;

    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    stream.write_all(UPGRADE.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await.to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 101 switching protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");

    // Bytes go to the backend's echo and come back, in both directions, several times.
    for message in ["hello", "through the balancer", &"x".repeat(100_000)] {
        stream.write_all(message.as_bytes()).await.unwrap();
        let echoed = read_exact(&mut stream, message.len()).await;
        assert_eq!(echoed, message.as_bytes());
    }
    // The client closes its side: the tunnel closes the backend's, which closes back.
    stream.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut stream).await, "");

    // Tunnels do not disturb ordinary requests.
    assert_eq!(lb.get("/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_upgrade_the_backend_declines_is_an_ordinary_response() {
    let (_b, lb) = lb_with(Config::new()).await;

    // `/` ignores the upgrade: the client gets the 200 and the connection stays HTTP.
    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: lb\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_head(&mut stream).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(!head.contains("upgrade"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a content length")
        .trim()
        .parse()
        .unwrap();
    let body = read_exact(&mut stream, length).await;
    assert!(body.starts_with(b"Hello from Rust server at "));
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let rest = read_to_end(&mut stream).await;
    assert!(
        rest.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{rest}"
    );
}

#[tokio::test]
async fn an_open_tunnel_is_closed_at_the_end_of_the_grace_period() {
    let (_b, lb) = lb_with(Config::new().shutdown_timeout(Duration::from_millis(300))).await;

    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    stream.write_all(UPGRADE.as_bytes()).await.unwrap();
    assert!(
        read_head(&mut stream)
            .await
            .to_ascii_lowercase()
            .starts_with("http/1.1 101")
    );
    stream.write_all(b"ping").await.unwrap();
    assert_eq!(read_exact(&mut stream, 4).await, b"ping");

    let stopping = Instant::now();
    lb.stop().await;
    let took = stopping.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "the tunnel had its grace: {took:?}"
    );
    assert_eq!(read_to_end(&mut stream).await, "", "the tunnel is closed");
}

#[tokio::test]
async fn http2_client_reaches_http1_backends() {
    let (b, lb) = lb_with(Config::new()).await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<Bytes>>();

    let mut answers = Vec::new();
    for path in ["/", "/headers"] {
        let req = Request::get(lb.url(path)).body(Empty::new()).unwrap();
        let res = timeout(DEADLINE, client.request(req))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(res.version(), Version::HTTP_2);
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        answers.push(String::from_utf8(body.to_vec()).unwrap());
    }
    assert_eq!(
        answers[0],
        format!("Hello from Rust server at {}\n", b.addr())
    );
    // The backend got HTTP/1.1 with the client's `:authority` as `Host`.
    let headers: serde_json::Value = serde_json::from_str(&answers[1]).unwrap();
    assert_eq!(headers["host"], lb.addr.to_string());
    assert_eq!(headers["x-forwarded-host"], lb.addr.to_string());

    // Many streams at once on the one connection.
    let requests = (0..20).map(|_| {
        let req = Request::get(lb.url("/sleep?ms=50"))
            .body(Empty::new())
            .unwrap();
        client.request(req)
    });
    for res in timeout(DEADLINE, futures_util::future::join_all(requests))
        .await
        .unwrap()
    {
        assert_eq!(res.unwrap().status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn http10_client_gets_a_complete_response_and_the_connection_closed() {
    let (b, lb) = lb_with(Config::new()).await;
    let greeting = format!("Hello from Rust server at {}\n", b.addr());

    // Without keep-alive, the connection closes after one response.
    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let response = read_to_end(&mut stream).await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", greeting.len())),
        "{head}"
    );
    assert_eq!(body, greeting);

    // A body of unknown length (chunked from the backend) cannot be chunked to an HTTP/1.0
    // client: it ends where the connection does.
    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    stream
        .write_all(b"GET /stream?chunks=3&delay_ms=10 HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let response = read_to_end(&mut stream).await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert_eq!(body, "chunk 0\nchunk 1\nchunk 2\n");
}

#[tokio::test]
async fn http10_client_that_asks_for_keep_alive_keeps_its_connection() {
    let (b, lb) = lb_with(Config::new()).await;
    let greeting = format!("Hello from Rust server at {}\n", b.addr());

    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    for _ in 0..3 {
        stream
            .write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let head = read_head(&mut stream).await.to_ascii_lowercase();
        assert!(head.starts_with("http/1.0 200 ok\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: keep-alive\r\n"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", greeting.len())),
            "{head}"
        );
        assert_eq!(
            read_exact(&mut stream, greeting.len()).await,
            greeting.as_bytes()
        );
    }
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let last = read_to_end(&mut stream).await;
    assert!(
        last.starts_with("HTTP/1.0 200 OK\r\n") && last.ends_with(&greeting),
        "{last}"
    );
}

#[tokio::test]
async fn http2_request_with_oversized_headers_gets_431_and_the_connection_survives() {
    let (_b, lb) = lb_with(Config::new().max_header_size(16 * 1024)).await;
    // One HTTP/2 connection, both requests on it.
    let stream = TcpStream::connect(lb.addr).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);

    let req = Request::get(lb.url("/"))
        .header("x-big", "a".repeat(32 * 1024))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = timeout(DEADLINE, h2.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(res.version(), Version::HTTP_2);

    // The stream was refused, not the connection: the next request on it is served.
    let req = Request::get(lb.url("/")).body(Empty::new()).unwrap();
    let res = timeout(DEADLINE, h2.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(400);
    let (_b, lb) = lb_with(Config::new().idle_timeout(idle)).await;
    let stream = TcpStream::connect(lb.addr).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    // Streams keep it busy, then it idles.
    let req = Request::get(lb.url("/sleep?ms=600"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = timeout(DEADLINE, h2.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.into_body().collect().await.unwrap();
    let idle_from = Instant::now();
    timeout(DEADLINE, conn)
        .await
        .expect("the server closes the idle connection")
        .unwrap()
        .ok();
    let waited = idle_from.elapsed();
    assert!(
        waited >= idle - Duration::from_millis(50) && waited < idle * 5,
        "{waited:?}"
    );
}
