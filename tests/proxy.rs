//! `tower_lb::proxy` end to end: a real backend (`backend_server`), an `HttpBackend` served by a
//! small hyper server, and a hyper client, all on 127.0.0.1.

mod support;

use std::convert::Infallible;
use std::hash::{DefaultHasher, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use support::{DEADLINE, HttpClient, client, read_to_end};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tower::Service;
use tower_lb::proxy::{
    BackendTimeout, BackendUnavailable, HttpBackend, ProxyClient, ProxyClientBuilder,
    error_response,
};
use tower_lb::{BoxError, PeerAddr};

/// Serves `backend` on 127.0.0.1:0 the way the standalone balancer does: the peer address as
/// an extension, errors as JSend responses. Returns the proxy's address.
async fn serve_proxy(backend: HttpBackend) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let backend = backend.clone();
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(PeerAddr(peer));
                let res = backend.clone().call(req);
                async move {
                    Ok::<_, Infallible>(match res.await {
                        Ok(res) => res.map(Either::Left),
                        Err(err) => error_response(&err).map(Either::Right),
                    })
                }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A backend_server and a proxy in front of it.
struct Setup {
    backend: backend_server::Handle,
    proxy: SocketAddr,
}

impl Setup {
    async fn new() -> Self {
        Self::with_client(ProxyClient::builder()).await
    }

    async fn with_client(client: ProxyClientBuilder) -> Self {
        let backend = support::backend().await;
        let http = HttpBackend::new(backend.url().parse().unwrap(), client.build());
        let proxy = serve_proxy(http).await;
        Self { backend, proxy }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

async fn send_with(client: &HttpClient, req: Request<Full<Bytes>>) -> Reply {
    timeout(DEADLINE, async {
        let res = client.request(req).await.unwrap();
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

async fn send(req: Request<Full<Bytes>>) -> Reply {
    send_with(&client(), req).await
}

async fn get(url: String) -> Reply {
    send(Request::get(url).body(Full::default()).unwrap()).await
}

fn json(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

/// An `HttpBackend` forwarding to `http://{addr}` with a default client.
fn http_backend<B>(addr: impl std::fmt::Display) -> HttpBackend<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    HttpBackend::new(
        format!("http://{addr}").parse().unwrap(),
        ProxyClient::new(),
    )
}

/// The error `GET path` fails with on `http`, as a middleware would see it.
async fn call_err(http: &mut HttpBackend<Full<Bytes>>, path: &str) -> BoxError {
    http.call(Request::get(path).body(Full::default()).unwrap())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn methods_path_and_query_are_forwarded_byte_for_byte() {
    let s = Setup::new().await;
    let path = "/echo?a=1&a=2&b=%2F&c=%7e&&d=&e=x%20y;f";
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let body = format!("body of {method}");
        let req = Request::builder()
            .method(method.clone())
            .uri(s.url(path))
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let res = send(req).await;
        assert_eq!(res.status, 200, "{method}");
        assert_eq!(res.headers["x-echo-method"], method.as_str());
        assert_eq!(res.headers["x-echo-path"], path);
        assert_eq!(res.body, body);
    }
}

#[tokio::test]
async fn custom_headers_pass_and_hop_by_hop_request_headers_are_stripped() {
    let s = Setup::new().await;
    let req = Request::get(s.url("/headers"))
        .header("x-custom", "yes")
        .header("x-multi", "1")
        .header("x-multi", "2")
        .header("connection", "x-foo")
        .header("x-foo", "1")
        .header("keep-alive", "timeout=5")
        .header("te", "gzip, trailers")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("proxy-connection", "keep-alive")
        .header("x-forwarded-proto", "https")
        .body(Full::default())
        .unwrap();
    let res = send(req).await;
    assert_eq!(res.status, 200);
    let seen = json(&res.body);
    assert_eq!(seen["x-custom"], "yes");
    assert_eq!(seen["x-multi"], "1, 2");
    for stripped in [
        "x-foo",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(
            seen.get(stripped).is_none(),
            "{stripped} reached the backend: {seen}"
        );
    }
    // Of `TE`, only `trailers` goes on (the balancer passes trailers back; gRPC needs it).
    assert_eq!(seen["te"], "trailers");
    // The client's Host is kept, and named again in X-Forwarded-Host.
    assert_eq!(seen["host"], s.proxy.to_string());
    assert_eq!(seen["x-forwarded-host"], s.proxy.to_string());
    assert_eq!(seen["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn hop_by_hop_response_headers_never_reach_the_client() {
    // A backend that answers every request with hop-by-hop headers of its own.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let response = "HTTP/1.1 200 OK\r\n\
                            Content-Length: 2\r\n\
                            Connection: x-bar\r\n\
                            X-Bar: secret\r\n\
                            Keep-Alive: timeout=5\r\n\
                            Proxy-Connection: keep-alive\r\n\
                            Upgrade: h2c\r\n\
                            Trailer: x-sum\r\n\
                            X-Kept: yes\r\n\r\nok";
                        if stream.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    let proxy = serve_proxy(http_backend(addr)).await;
    let res = get(format!("http://{proxy}/")).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body, "ok");
    assert_eq!(res.headers["x-kept"], "yes");
    for stripped in [
        "x-bar",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "trailer",
    ] {
        assert!(
            !res.headers.contains_key(stripped),
            "{stripped} reached the client: {:?}",
            res.headers
        );
    }
    let connection = res.headers.get("connection").map(|v| v.to_str().unwrap());
    assert!(
        !connection.unwrap_or("").contains("x-bar"),
        "{connection:?}"
    );
}

#[tokio::test]
async fn one_mib_body_is_echoed_intact() {
    let s = Setup::new().await;
    // A deterministic pseudo-random MiB (xorshift), so that any reordering or loss shows.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let body: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let hash = |bytes: &[u8]| {
        let mut h = DefaultHasher::new();
        h.write(bytes);
        h.finish()
    };
    let req = Request::post(s.url("/echo"))
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let res = send(req).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body.len(), body.len());
    assert_eq!(hash(&res.body), hash(&body));
}

#[tokio::test]
async fn status_is_passed_through() {
    let s = Setup::new().await;
    let res = get(s.url("/status/201")).await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.body, "status 201\n");
    let res = get(s.url("/status/404")).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.body, "status 404\n");
    let res = get(s.url("/no/such/route")).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.body, "not found\n");
}

#[tokio::test]
async fn head_gets_headers_without_body() {
    let s = Setup::new().await;
    let client = client();
    let res = send_with(
        &client,
        Request::head(s.url("/bytes?n=1000"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.headers["content-length"], "1000");
    assert!(res.body.is_empty());
    // The connection is still usable afterwards.
    let res = send_with(
        &client,
        Request::get(s.url("/bytes?n=10"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(res.body, "xxxxxxxxxx");
}

#[tokio::test]
async fn x_forwarded_for_appends_the_peer() {
    let s = Setup::new().await;
    let res = get(s.url("/headers")).await;
    assert_eq!(json(&res.body)["x-forwarded-for"], "127.0.0.1");

    let req = Request::get(s.url("/headers"))
        .header("x-forwarded-for", "203.0.113.9, 198.51.100.2")
        .body(Full::default())
        .unwrap();
    let res = send(req).await;
    assert_eq!(
        json(&res.body)["x-forwarded-for"],
        "203.0.113.9, 198.51.100.2, 127.0.0.1"
    );
}

#[tokio::test]
async fn streamed_response_chunks_arrive_as_the_backend_sends_them() {
    let s = Setup::new().await;
    let start = Instant::now();
    let res = timeout(
        DEADLINE,
        client().request(
            Request::get(s.url("/stream?chunks=3&delay_ms=500"))
                .body(Full::default())
                .unwrap(),
        ),
    )
    .await
    .unwrap()
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
    // The backend sends the last chunk 1 s in; the first must not wait for it.
    assert!(frames[0].0 < Duration::from_millis(400), "{frames:?}");
    assert!(frames[2].0 >= Duration::from_millis(900), "{frames:?}");
}

#[tokio::test]
async fn backend_connections_are_kept_alive_and_reused() {
    let s = Setup::new().await;
    // Fresh client connections each time: reuse must come from the proxy's pool.
    for _ in 0..20 {
        let res = get(s.url("/")).await;
        assert_eq!(
            res.body,
            format!("Hello from Rust server at {}\n", s.backend.addr())
        );
    }
    assert_eq!(s.backend.stats().requests(), 20);
    assert_eq!(s.backend.stats().connections(), 1);
}

#[tokio::test]
async fn refused_backend_is_502_jsend() {
    let port = support::closed_port().await;
    let backend = format!("127.0.0.1:{port}");
    // The typed error, as a middleware would see it.
    let err = call_err(&mut http_backend(&backend), "/").await;
    let unavailable = err.downcast_ref::<BackendUnavailable>().unwrap();
    assert_eq!(unavailable.backend().port_u16(), Some(port));

    let proxy = serve_proxy(http_backend(&backend)).await;
    let res = get(format!("http://{proxy}/")).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    assert_eq!(res.headers["content-type"], "application/json");
    assert_eq!(
        res.body,
        r#"{"status":"error","data":"error backend unavailable"}"#
    );
}

#[tokio::test]
async fn slow_backend_is_504_jsend_after_the_response_timeout() {
    let s = Setup::with_client(ProxyClient::builder().response_timeout(Duration::from_millis(300)))
        .await;
    let start = Instant::now();
    let res = get(s.url("/sleep?ms=3000")).await;
    let took = start.elapsed();
    assert_eq!(res.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.headers["content-type"], "application/json");
    assert_eq!(
        res.body,
        r#"{"status":"error","data":"error backend timeout"}"#
    );
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(2000), "{took:?}");

    // The typed error, as a middleware would see it.
    let mut http = HttpBackend::new(
        s.backend.url().parse().unwrap(),
        ProxyClient::builder()
            .response_timeout(Duration::from_millis(100))
            .build(),
    );
    let err = call_err(&mut http, "/sleep?ms=3000").await;
    let timeout = err.downcast_ref::<BackendTimeout>().unwrap();
    assert!(!timeout.is_connect());
}

#[tokio::test]
async fn a_response_timeout_set_while_running_applies_to_the_next_requests_and_keeps_the_pool() {
    let backend = support::backend().await;
    let client: ProxyClient<Full<Bytes>> = ProxyClient::builder()
        .response_timeout(Duration::from_secs(5))
        .build();
    let http = HttpBackend::new(backend.url().parse().unwrap(), client.clone());
    let get = |path: &str| {
        http.clone()
            .call(Request::get(path).body(Full::default()).unwrap())
    };
    let body = |res: http::Response<_>| async move {
        let res: http::Response<tower_lb::proxy::BackendBody<Full<Bytes>>> = res;
        assert_eq!(res.status(), StatusCode::OK);
        res.into_body().collect().await.unwrap().to_bytes()
    };
    let res = timeout(DEADLINE, get("/sleep?ms=300"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body(res).await, "slept 300 ms\n");

    // Sent with the 5 s timeout; the timeout changes while it waits.
    let in_flight = get("/sleep?ms=600");
    client.set_response_timeout(Duration::from_millis(200));
    assert_eq!(client.response_timeout(), Some(Duration::from_millis(200)));
    let res = timeout(DEADLINE, in_flight).await.unwrap().unwrap();
    assert_eq!(
        body(res).await,
        "slept 600 ms\n",
        "kept the timeout it was sent with"
    );

    // The next request takes the new timeout, on the same pooled connection.
    let err = timeout(DEADLINE, get("/sleep?ms=1000"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(!err.downcast_ref::<BackendTimeout>().unwrap().is_connect());
    assert_eq!(
        backend.stats().connections(),
        1,
        "the pooled connection was reused"
    );

    // And a clone of the client, made before, shares the setting.
    client.set_response_timeout(None);
    assert_eq!(http.client().response_timeout(), None);
    let res = timeout(DEADLINE, get("/sleep?ms=300"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body(res).await, "slept 300 ms\n");
}

#[tokio::test]
async fn a_connect_timeout_set_while_running_applies_to_the_next_connect() {
    let (addr, _fillers) = support::port_that_never_accepts().await;
    let client: ProxyClient<Full<Bytes>> = ProxyClient::builder()
        .connect_timeout(Duration::from_millis(200))
        .build();
    let mut http = HttpBackend::new(format!("http://{addr}").parse().unwrap(), client.clone());
    let started = Instant::now();
    let err = timeout(DEADLINE, call_err(&mut http, "/")).await.unwrap();
    assert!(err.downcast_ref::<BackendTimeout>().unwrap().is_connect());
    assert!(started.elapsed() < Duration::from_millis(1500));

    client.set_connect_timeout(Duration::from_millis(1500));
    let started = Instant::now();
    let err = timeout(DEADLINE, call_err(&mut http, "/")).await.unwrap();
    assert!(err.downcast_ref::<BackendTimeout>().unwrap().is_connect());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "the new timeout: {took:?}"
    );
}

#[tokio::test]
async fn http10_and_http2_clients_are_forwarded_as_http11() {
    let s = Setup::new().await;

    // HTTP/1.0 by hand.
    let mut stream = TcpStream::connect(s.proxy).await.unwrap();
    stream
        .write_all(b"GET /headers HTTP/1.0\r\nHost: old.example\r\n\r\n")
        .await
        .unwrap();
    let raw = read_to_end(&mut stream).await;
    assert!(raw.starts_with("HTTP/1.0 200 OK\r\n"), "{raw}");
    let body = raw.split_once("\r\n\r\n").unwrap().1;
    let seen: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(seen["host"], "old.example");

    // HTTP/2 with prior knowledge: `:authority` becomes the backend's Host.
    let h2: HttpClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = Request::get(s.url("/headers"))
        .version(Version::HTTP_2)
        .body(Full::default())
        .unwrap();
    let res = send_with(&h2, req).await;
    assert_eq!(res.status, 200);
    let seen = json(&res.body);
    assert_eq!(seen["host"], s.proxy.to_string());
    assert_eq!(seen["x-forwarded-host"], s.proxy.to_string());
}

#[tokio::test]
async fn base_path_is_prepended() {
    let backend = support::backend().await;
    let http = HttpBackend::new(
        format!("{}/status", backend.url()).parse().unwrap(),
        ProxyClient::new(),
    );
    let proxy = serve_proxy(http).await;
    let res = get(format!("http://{proxy}/202")).await;
    assert_eq!(res.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn expect_100_continue_uploads_go_through() {
    let s = Setup::new().await;
    let mut stream = TcpStream::connect(s.proxy).await.unwrap();
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
              Expect: 100-continue\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    // The client waits for the go-ahead before sending its body.
    let mut head = [0u8; 25];
    timeout(DEADLINE, stream.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").await.unwrap();
    let raw = read_to_end(&mut stream).await;
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert!(raw.ends_with("\r\n\r\nhello"), "{raw}");
}

/// Sends a chunked POST by hand, one chunk every `gap`, then reads the whole response.
/// `stall` stops after the first chunk instead. Returns (response, time from start to end of
/// upload, total time).
async fn chunked_upload(
    proxy: SocketAddr,
    path: &str,
    chunks: usize,
    gap: Duration,
) -> (String, Duration, Duration) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for i in 0..chunks {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        // The proxy may give up on a stalled upload and close: stop writing then.
        if stream.write_all(b"1\r\nx\r\n").await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let uploaded = start.elapsed();
    (read_to_end(&mut stream).await, uploaded, start.elapsed())
}

#[tokio::test]
async fn response_timeout_starts_when_a_moving_upload_ends() {
    let s = Setup::with_client(ProxyClient::builder().response_timeout(Duration::from_millis(300)))
        .await;
    // 8 chunks 100 ms apart: the upload alone takes longer than the timeout, but keeps moving;
    // then the backend answers 150 ms after the body ends.
    let (res, uploaded, total) =
        chunked_upload(s.proxy, "/upload?ms=150", 8, Duration::from_millis(100)).await;
    assert!(uploaded >= Duration::from_millis(700), "{uploaded:?}");
    assert!(res.starts_with("HTTP/1.1 200 OK\r\n"), "{res}");
    assert!(res.ends_with("received 8 bytes\n"), "{res}");
    assert!(total >= Duration::from_millis(850), "{total:?}");

    // A backend slower than the timeout after the upload still times out.
    let (res, uploaded, total) =
        chunked_upload(s.proxy, "/upload?ms=3000", 4, Duration::from_millis(100)).await;
    assert!(res.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"), "{res}");
    assert!(
        total >= uploaded + Duration::from_millis(250),
        "{uploaded:?} {total:?}"
    );
    assert!(total < Duration::from_millis(2500), "{total:?}");
}

#[tokio::test]
async fn stalled_upload_times_out() {
    let s = Setup::with_client(ProxyClient::builder().response_timeout(Duration::from_millis(300)))
        .await;
    // One chunk, then nothing.
    let start = Instant::now();
    let mut stream = TcpStream::connect(s.proxy).await.unwrap();
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n",
        )
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut raw = Vec::new();
    let expected = r#"{"status":"error","data":"error backend timeout"}"#;
    while !String::from_utf8_lossy(&raw).ends_with(expected) {
        let n = timeout(DEADLINE, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..n]);
    }
    let took = start.elapsed();
    let res = String::from_utf8(raw).unwrap();
    assert!(res.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"), "{res}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(2000), "{took:?}");
}

#[tokio::test]
async fn backend_closing_before_responding_is_502_unavailable() {
    // Accepts, reads the request, and hangs up without a word.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            drop(stream);
        }
    });
    let err = call_err(&mut http_backend(addr), "/").await;
    assert!(err.is::<BackendUnavailable>(), "{err:?}");
    let res = error_response(&err);
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
}
