//! The standalone balancer under load and with odd requests, end to end: many concurrent
//! connections, keep-alive reuse towards the backends, requests and responses passed through
//! byte for byte, streaming, and malformed or oversized requests on raw sockets.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use support::{
    DEADLINE, Lb, backends, connect, exchange, get_request, greeter, name, specs, start,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tower_lb::server::Config;

/// A balancer over `n` fresh backends.
async fn lb_over(n: usize) -> (Lb, Vec<backend_server::Handle>) {
    let backends = backends(n).await;
    let lb = start(Config::new().backends_from(specs(&backends))).await;
    (lb, backends)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_connections_all_get_answers_from_every_backend() {
    let (lb, backends) = lb_over(3).await;

    let mut clients = JoinSet::new();
    for _ in 0..500 {
        let to = lb.addr;
        clients.spawn(async move {
            let mut conn = connect(None, to).await;
            let res = exchange(&mut conn, get_request(to, "/", &[])).await;
            assert_eq!(res.status(), StatusCode::OK, "{res:?}");
            greeter(res.body())
        });
    }
    let mut counts = BTreeMap::new();
    let all = async {
        while let Some(answer) = clients.join_next().await {
            *counts
                .entry(answer.expect("every request succeeds"))
                .or_insert(0) += 1;
        }
    };
    tokio::time::timeout(3 * DEADLINE, all)
        .await
        .expect("500 requests answered in time");
    assert_eq!(counts.values().sum::<usize>(), 500);
    let mut names: Vec<String> = backends.iter().map(name).collect();
    names.sort();
    assert_eq!(
        counts.keys().cloned().collect::<Vec<_>>(),
        names,
        "{counts:?}"
    );
    // Round robin: about a third each.
    assert!(counts.values().all(|&n| n >= 100), "{counts:?}");
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_keep_alive_client_connection_uses_few_backend_connections() {
    let (lb, backends) = lb_over(3).await;

    let mut conn = connect(None, lb.addr).await;
    let mut counts = BTreeMap::new();
    for _ in 0..1000 {
        let res = exchange(&mut conn, get_request(lb.addr, "/", &[])).await;
        assert_eq!(res.status(), StatusCode::OK, "{res:?}");
        *counts.entry(greeter(res.body())).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    // The balancer keeps its connections to the backends alive too: one each (plus health
    // checks), not one per request.
    let connections: u64 = backends.iter().map(|b| b.stats().connections()).sum();
    let requests: u64 = backends.iter().map(|b| b.stats().requests()).sum();
    assert!(requests >= 1000, "{requests} requests reached the backends");
    assert!(
        connections <= 10,
        "{connections} backend connections for 1,000 requests"
    );
    lb.stop().await;
}

/// `method path` with `body` and these headers, on `conn`.
async fn send(
    lb: &Lb,
    conn: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> http::Response<Bytes> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, lb.addr.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    exchange(conn, req.body(Full::new(body)).unwrap()).await
}

/// 1 MiB of bytes that are not a repeated pattern (xorshift), every byte value present.
fn noise(len: usize) -> Bytes {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_responses_pass_through_unchanged() {
    let (lb, _backends) = lb_over(1).await;
    let mut conn = connect(None, lb.addr).await;

    // A 1 MiB upload echoed back byte for byte.
    let big = noise(1 << 20);
    let res = send(
        &lb,
        &mut conn,
        Method::POST,
        "/echo",
        &[("content-type", "application/octet-stream")],
        big.clone(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-echo-method"], "POST");
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    assert_eq!(res.body().len(), big.len());
    assert!(res.body() == &big, "the echoed body differs");

    // Methods, path and query exactly as sent, and the test headers, repeated ones too.
    let path = "/echo?a=1&b=two%20words&c=%2F%3F%26&empty=&a=again&utf8=%C3%A9&plus=1+2";
    for method in [Method::PUT, Method::PATCH, Method::DELETE] {
        let body = Bytes::from(format!("payload of {method}"));
        let res = send(
            &lb,
            &mut conn,
            method.clone(),
            path,
            &[
                ("x-test-one", "first value"),
                ("x-test-multi", "a"),
                ("x-test-multi", "b, c"),
                ("x-test-punct", "k=v; q=\"quoted\", ~!@#$%^&*()"),
            ],
            body.clone(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{method}");
        let headers = res.headers();
        assert_eq!(headers["x-echo-method"], method.as_str());
        assert_eq!(
            headers["x-echo-path"].as_bytes(),
            path.as_bytes(),
            "{method}"
        );
        assert_eq!(headers["x-test-one"], "first value");
        let multi: Vec<&HeaderValue> = headers.get_all("x-test-multi").iter().collect();
        assert_eq!(multi, ["a", "b, c"], "{method}");
        assert_eq!(headers["x-test-punct"], "k=v; q=\"quoted\", ~!@#$%^&*()");
        assert_eq!(res.body(), &body, "{method}");
    }

    // Statuses and bodies of the backend are passed on, not replaced.
    for (path, status, body) in [
        ("/status/404", 404, "status 404\n"),
        ("/status/201", 201, "status 201\n"),
        ("/no/such/route", 404, "not found\n"),
    ] {
        let res = send(&lb, &mut conn, Method::GET, path, &[], Bytes::new()).await;
        assert_eq!(res.status().as_u16(), status, "{path}");
        assert_eq!(res.body(), body, "{path}");
    }
    let res = send(
        &lb,
        &mut conn,
        Method::GET,
        "/status/204",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.body().is_empty());

    // HEAD: the GET's status and headers, no body; the connection stays usable.
    let get = send(&lb, &mut conn, Method::GET, "/", &[], Bytes::new()).await;
    let head = send(&lb, &mut conn, Method::HEAD, "/", &[], Bytes::new()).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert!(head.body().is_empty(), "{head:?}");
    assert_eq!(
        head.headers().get("content-type"),
        get.headers().get("content-type")
    );
    assert_eq!(
        head.headers()["content-length"],
        get.body().len().to_string().as_str()
    );
    let again = send(&lb, &mut conn, Method::GET, "/", &[], Bytes::new()).await;
    assert_eq!(again.body(), get.body());
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chunks_arrive_as_the_backend_sends_them() {
    let (lb, _backends) = lb_over(1).await;
    let mut conn = connect(None, lb.addr).await;
    conn.ready().await.unwrap();
    let req = get_request(lb.addr, "/stream?chunks=3&delay_ms=400", &[]);

    let read = async {
        let res = conn.send_request(req).await.expect("a response");
        assert_eq!(res.status(), StatusCode::OK);
        let mut body = res.into_body();
        // Every piece of the body with the time it arrived.
        let mut arrivals = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("the body streams").into_data() {
                arrivals.push((Instant::now(), data));
            }
        }
        arrivals
    };
    let arrivals = tokio::time::timeout(DEADLINE, read)
        .await
        .expect("the stream ends in time");

    let whole: Vec<u8> = arrivals.iter().flat_map(|(_, d)| d.to_vec()).collect();
    assert_eq!(whole, b"chunk 0\nchunk 1\nchunk 2\n");
    // The first chunk comes alone, and the last one is sent 800 ms after it: a balancer
    // that buffered the response would deliver all at once.
    assert_eq!(arrivals[0].1, "chunk 0\n");
    let (first, last) = (arrivals[0].0, arrivals[arrivals.len() - 1].0);
    assert!(
        last - first >= Duration::from_millis(400),
        "the whole stream arrived within {:?}",
        last - first
    );
    lb.stop().await;
}

/// What a raw connection reads after sending `request`: the bytes until the balancer closes
/// (or resets) it, or until a whole response head arrived and 2 s passed. `None` if it did
/// neither within [`DEADLINE`].
async fn raw_exchange(lb: &Lb, request: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    // The balancer may answer and close before reading everything we write.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    let ended = tokio::time::timeout(DEADLINE, read).await.is_ok();
    (ended || answer.windows(4).any(|w| w == b"\r\n\r\n")).then_some(answer)
}

/// The status of a raw HTTP/1.1 response, or `None` for no answer at all (closed).
fn status_of(answer: &[u8]) -> Option<u16> {
    if answer.is_empty() {
        return None;
    }
    let head = String::from_utf8_lossy(answer);
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .unwrap_or_else(|| panic!("not an HTTP/1.1 response: {head:?}"));
    Some(status.parse().unwrap())
}

/// Sends `request` (`what` it is) on a raw connection: the balancer answers `status` or
/// closes the connection, and then still serves ordinary requests.
async fn refused_or_closed(
    lb: &Lb,
    backends: &[backend_server::Handle],
    what: &str,
    request: &[u8],
    status: u16,
) {
    let answer = raw_exchange(lb, request)
        .await
        .unwrap_or_else(|| panic!("{what}: neither an answer nor a close"));
    if let Some(got) = status_of(&answer) {
        assert_eq!(
            got,
            status,
            "{what}: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    // The balancer still serves ordinary requests.
    for _ in 0..backends.len() {
        let answered = lb.pick().await.expect("a normal request succeeds");
        assert!(backends.iter().any(|b| name(b) == answered), "{answered}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_or_a_close_and_the_balancer_keeps_serving() {
    let (lb, backends) = lb_over(2).await;
    let cases: [(&str, &[u8]); 6] = [
        (
            "binary garbage",
            b"\x00\x01\x02\x03 garbage \xff\xfe\r\n\r\n",
        ),
        (
            "a TLS client hello",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
        ),
        ("a bad request line", b"THIS IS NOT HTTP\r\n\r\n"),
        ("a bad version", b"GET / HTTP/7.2\r\nHost: x\r\n\r\n"),
        (
            "a space in a header name",
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
        ),
        (
            "a NUL in a header value",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
        ),
    ];
    for (what, request) in cases {
        refused_or_closed(&lb, &backends, what, request, 400).await;
    }
    // None of it was forwarded: the balancer served only the normal requests.
    let served: u64 = lb
        .balancer
        .endpoints()
        .iter()
        .map(|e| e.stats().served())
        .sum();
    assert_eq!(
        served as usize,
        6 * backends.len(),
        "only the normal requests"
    );
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431_or_a_close_and_the_balancer_keeps_serving() {
    let (lb, backends) = lb_over(2).await;
    let big_value = "a".repeat(100 * 1024);
    let one_big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big_value}\r\n\r\n");
    let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..500 {
        many.push_str(&format!("X-Many-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    for (what, request) in [("a 100 KiB header", one_big), ("500 headers", many)] {
        refused_or_closed(&lb, &backends, what, request.as_bytes(), 431).await;
    }
    lb.stop().await;
}
