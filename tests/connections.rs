//! The standalone balancer's connection handling end to end: client timeouts (slowloris,
//! idle keep-alive), backend timeouts, header limits and malformed requests, the connection
//! cap, the per-backend cap and the queue, and graceful shutdown.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tower_lb::proxy::ProxyClientBuilder;
use tower_lb::server::Config;

use support::{
    DEADLINE, Lb, backend, eventually, lb_with, port_that_never_accepts, read_head, read_to_end,
    send, start, start_streaming,
};

const NO_SERVER: &str = r#"{"status":"error","data":"error no available server"}"#;
const BACKEND_TIMEOUT: &str = r#"{"status":"error","data":"error backend timeout"}"#;
const REQUEST_TIMEOUT: &str = r#"{"status":"fail","data":{"title":"request timeout"}}"#;
const BAD_REQUEST: &str = r#"{"status":"fail","data":{"title":"bad request"}}"#;
const HEADERS_TOO_LARGE: &str =
    r#"{"status":"fail","data":{"title":"request header fields too large"}}"#;

/// One whole response to a `GET {path}` on an open connection (the backend's bodies to these
/// paths have a `Content-Length`).
async fn get_on(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: lb\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(stream).await;
    let length: usize = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length: ").map(str::to_owned))
        .unwrap_or_else(|| panic!("no content-length in {head}"))
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0; length];
    timeout(DEADLINE, stream.read_exact(&mut body))
        .await
        .unwrap()
        .unwrap();
    head + std::str::from_utf8(&body).unwrap()
}

/// Whether `GET /` on `stream` is answered `200 OK`.
async fn served(stream: &mut TcpStream) -> bool {
    get_on(stream, "/").await.starts_with("HTTP/1.1 200 OK")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_do_not_slow_others_and_get_408_after_the_header_timeout() {
    let header_timeout = Duration::from_secs(1);
    let (_b, lb) = lb_with(Config::new().client_header_timeout(header_timeout)).await;

    // 200 clients send half a request head and stall.
    let stalled_at = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(lb.addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: lb\r\nX-Slow: ")
            .await
            .unwrap();
        stalled.push(stream);
    }

    // Meanwhile, other clients are served at once.
    let started = Instant::now();
    let normal = (0..100).map(|_| lb.get("/"));
    for reply in futures_util::future::join_all(normal).await {
        assert_eq!(reply.status, StatusCode::OK);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(900),
        "100 requests took {took:?} next to 200 stalled clients"
    );

    // Then each stalled client gets a 408 with a JSend body, and its connection is closed.
    let replies = stalled.iter_mut().map(read_to_end);
    for reply in futures_util::future::join_all(replies).await {
        let (head, body) = reply.split_once("\r\n\r\n").expect("a response");
        assert!(
            head.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{head}"
        );
        assert!(head.contains("content-type: application/json"), "{head}");
        assert_eq!(body, REQUEST_TIMEOUT);
    }
    let waited = stalled_at.elapsed();
    assert!(
        waited >= header_timeout && waited < header_timeout * 4,
        "closed after {waited:?}"
    );
    assert_eq!(lb.get("/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_closed_silently_after_the_header_timeout() {
    let header_timeout = Duration::from_millis(400);
    let (_b, lb) = lb_with(Config::new().client_header_timeout(header_timeout)).await;
    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    let connected = Instant::now();
    assert_eq!(read_to_end(&mut stream).await, "");
    assert!(connected.elapsed() >= header_timeout);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(500);
    let (_b, lb) = lb_with(
        Config::new()
            .idle_timeout(idle)
            .client_header_timeout(Duration::from_secs(10)),
    )
    .await;
    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    // Requests within the idle timeout of each other keep the connection.
    for _ in 0..3 {
        assert!(served(&mut stream).await);
        tokio::time::sleep(idle / 2).await;
    }
    assert!(served(&mut stream).await);
    let answered = Instant::now();
    // Then it is closed, without a response.
    assert_eq!(read_to_end(&mut stream).await, "");
    let waited = answered.elapsed();
    assert!(
        waited >= idle && waited < idle * 4,
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn idle_and_header_timeouts_are_counted_apart_on_keep_alive_connections() {
    let header_timeout = Duration::from_millis(300);
    let (_b, lb) = lb_with(
        Config::new()
            .client_header_timeout(header_timeout)
            .idle_timeout(Duration::from_secs(10)),
    )
    .await;
    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    assert!(served(&mut stream).await);
    // Idle for longer than the header timeout: still open, the idle timeout applies.
    tokio::time::sleep(header_timeout * 3).await;
    assert!(served(&mut stream).await);
    // A head started and left unfinished: 408 once the header timeout has passed.
    stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let reply = read_to_end(&mut stream).await;
    assert!(
        reply.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{reply}"
    );
    assert!(reply.ends_with(REQUEST_TIMEOUT), "{reply}");
    let waited = started.elapsed();
    assert!(
        waited >= header_timeout - Duration::from_millis(50) && waited < header_timeout * 5,
        "408 after {waited:?}"
    );
}

#[tokio::test]
async fn a_backend_that_does_not_accept_in_time_is_504() {
    let (addr, _fillers) = port_that_never_accepts().await;
    let lb = start(
        Config::new()
            // The health check hangs as well; it must not fail before the request does.
            .health_timeout(Duration::from_secs(60))
            .proxy_client(ProxyClientBuilder::new().connect_timeout(Duration::from_millis(200)))
            .backend(format!("http://{addr}").parse().unwrap()),
    )
    .await;
    let started = Instant::now();
    let reply = lb.get("/").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{reply:?}");
    assert_eq!(reply.body, BACKEND_TIMEOUT);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_reloaded_header_timeout_applies_to_connections_accepted_after() {
    let config = |header: Duration| {
        Config::new()
            .bind(([127, 0, 0, 1], 0))
            .client_header_timeout(header)
    };
    let lb = start(config(Duration::from_secs(30))).await;
    let mut before = TcpStream::connect(lb.addr).await.unwrap();
    // Accepted (its task runs) before the reload.
    eventually("the first connection is accepted", || async {
        let open = lb.stats.snapshot().connections.map_or(0, |c| c.open);
        (open == 1).then_some(())
    })
    .await;
    let reloaded = lb.reload.apply(config(Duration::from_millis(300)));
    assert!(
        reloaded.timeouts && reloaded.restart_needed.is_empty(),
        "{reloaded:?}"
    );

    let started = Instant::now();
    let mut after = TcpStream::connect(lb.addr).await.unwrap();
    assert_eq!(read_to_end(&mut after).await, "", "closed silently");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < DEADLINE,
        "{took:?}"
    );
    // The first one, silent as long, is still open under the timeout it was accepted with.
    let mut byte = [0; 1];
    assert!(
        timeout(Duration::from_millis(100), before.read(&mut byte))
            .await
            .is_err(),
        "the connection accepted before the reload is still open"
    );
}

#[tokio::test]
async fn a_backend_that_does_not_answer_in_time_is_504() {
    let (_b, lb) = lb_with(
        Config::new()
            .proxy_client(ProxyClientBuilder::new().response_timeout(Duration::from_millis(200))),
    )
    .await;
    let started = Instant::now();
    let reply = lb.get("/sleep?ms=3000").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{reply:?}");
    assert_eq!(reply.body, BACKEND_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(lb.get("/sleep?ms=10").await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_oversized_request_head_is_431_and_the_balancer_keeps_serving() {
    let (_b, lb) = lb_with(Config::new().max_header_size(16 * 1024)).await;

    // Just under the limit passes.
    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    let ok = format!(
        "GET / HTTP/1.1\r\nHost: lb\r\nX-Big: {}\r\n\r\n",
        "a".repeat(12 * 1024)
    );
    stream.write_all(ok.as_bytes()).await.unwrap();
    assert!(
        read_head(&mut stream)
            .await
            .starts_with("HTTP/1.1 200 OK\r\n")
    );

    // Over it: 431, and the connection is closed.
    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: lb\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    // The server may close before it has read everything; the reply is what counts.
    let _ = stream.write_all(big.as_bytes()).await;
    let reply = read_to_end(&mut stream).await;
    assert!(
        reply.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{reply:?}"
    );
    assert!(
        reply.contains("\r\ncontent-type: application/json\r\n"),
        "{reply:?}"
    );
    assert!(
        reply.ends_with(&format!("\r\n\r\n{HEADERS_TOO_LARGE}")),
        "{reply:?}"
    );
    // Too many headers is the same.
    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    let mut many = String::from("GET / HTTP/1.1\r\nHost: lb\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-H{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    let _ = stream.write_all(many.as_bytes()).await;
    let reply = read_to_end(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 431 "), "{reply:?}");
    assert!(reply.ends_with(HEADERS_TOO_LARGE), "{reply:?}");

    assert_eq!(lb.get("/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn malformed_requests_get_400_and_the_balancer_keeps_serving() {
    let (_b, lb) = lb_with(Config::new()).await;
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost lb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: lb\r\nContent-Length: abc\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: lb\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET / HTTP/7.1\r\nHost: lb\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ] {
        let mut stream = TcpStream::connect(lb.addr).await.unwrap();
        stream.write_all(garbage).await.unwrap();
        let reply = read_to_end(&mut stream).await;
        assert!(
            reply.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{garbage:?} got {reply:?}"
        );
        assert!(
            reply.ends_with(&format!("\r\n\r\n{BAD_REQUEST}")),
            "{reply:?}"
        );
    }
    assert_eq!(lb.get("/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_request_with_both_length_and_chunked_is_read_as_chunked_and_its_connection_closed() {
    // RFC 9112 §6.3: Transfer-Encoding wins and the connection must close after the
    // response, so nothing the client meant as a second request can be smuggled in.
    let (_b, lb) = lb_with(Config::new()).await;
    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: lb\r\nContent-Length: 3\r\n\
              Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
              GET /smuggled HTTP/1.1\r\nHost: lb\r\n\r\n",
        )
        .await
        .unwrap();
    let reply = read_to_end(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.contains("\r\nconnection: close\r\n"), "{reply}");
    assert!(
        reply.ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        "{reply}"
    );
    assert!(
        !reply.contains("smuggled") && reply.matches("HTTP/1.1").count() == 1,
        "{reply}"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let (_b, lb) = lb_with(Config::new().max_connections(2)).await;

    let mut first = TcpStream::connect(lb.addr).await.unwrap();
    let mut second = TcpStream::connect(lb.addr).await.unwrap();
    assert!(served(&mut first).await);
    assert!(served(&mut second).await);

    // The third connects (the kernel queues it) but is not served while two are open.
    let mut third = TcpStream::connect(lb.addr).await.unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: lb\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        timeout(Duration::from_millis(500), third.read(&mut byte))
            .await
            .is_err(),
        "a third connection was served"
    );

    // One closes: the third is served.
    drop(first);
    let head = read_head(&mut third).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
}

/// The backend whose request is in flight, per the balancer's counters.
fn busy_backend(lb: &Lb) -> Option<String> {
    lb.in_flight()
        .into_iter()
        .find(|(_, n)| *n > 0)
        .map(|(name, _)| name)
}

/// Starts `GET path` and returns once its response head has arrived, with the connection (the
/// body still streaming).
#[tokio::test]
async fn a_backend_at_its_cap_is_skipped_until_its_response_body_ends() {
    let (a, b) = (backend().await, backend().await);
    let lb = start(
        Config::new()
            .proxy_client(ProxyClientBuilder::new().max_conns_per_backend(1))
            .backend(a.url().parse().unwrap())
            .backend(b.url().parse().unwrap()),
    )
    .await;

    // One backend streams a response for a second: its head is in, its body is not over.
    let mut streaming = start_streaming(&lb, "/stream?chunks=2&delay_ms=1000").await;
    let busy = busy_backend(&lb).expect("one backend busy");
    let other = [a.addr(), b.addr()]
        .map(|a| a.to_string())
        .into_iter()
        .find(|a| *a != busy)
        .unwrap();

    // Every request goes to the other one meanwhile, round robin or not.
    assert_eq!(lb.picks(6).await, vec![other.clone(); 6]);

    // The body ends: the slot is free again and both take requests.
    assert!(
        read_to_end_of_chunks(&mut streaming)
            .await
            .contains("chunk 1")
    );
    eventually("the slot is released", || async {
        busy_backend(&lb).is_none().then_some(())
    })
    .await;
    let mut picks = lb.picks(4).await;
    picks.sort();
    picks.dedup();
    assert_eq!(picks.len(), 2, "both backends answer again: {picks:?}");
}

/// Reads a chunked body to its last chunk.
async fn read_to_end_of_chunks(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = async {
        while !out.ends_with(b"0\r\n\r\n") {
            out.push(stream.read_u8().await.unwrap());
        }
    };
    timeout(DEADLINE, read).await.expect("the body in time");
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn all_backends_at_their_cap_is_a_fast_503() {
    let (_b, lb) =
        lb_with(Config::new().proxy_client(ProxyClientBuilder::new().max_conns_per_backend(1)))
            .await;
    let _streaming = start_streaming(&lb, "/stream?chunks=2&delay_ms=5000").await;
    let started = Instant::now();
    let reply = lb.get("/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, NO_SERVER);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn with_a_queue_timeout_requests_wait_for_a_slot() {
    let (_b, lb) = lb_with(
        Config::new()
            .queue_timeout(Duration::from_secs(5))
            .proxy_client(ProxyClientBuilder::new().max_conns_per_backend(1)),
    )
    .await;
    let mut streaming = start_streaming(&lb, "/stream?chunks=2&delay_ms=500").await;
    let started = Instant::now();
    // Three wait; each is served when the one before it ends.
    let waiting = ["/sleep?ms=100", "/sleep?ms=100", "/"].map(|path| lb.get(path));
    let (replies, _) = tokio::join!(futures_util::future::join_all(waiting), async {
        read_to_end_of_chunks(&mut streaming).await
    });
    for reply in replies {
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_queued_request_fails_with_503_when_the_queue_timeout_passes() {
    let queue_timeout = Duration::from_millis(300);
    let (_b, lb) = lb_with(
        Config::new()
            .queue_timeout(queue_timeout)
            .proxy_client(ProxyClientBuilder::new().max_conns_per_backend(1)),
    )
    .await;
    let _streaming = start_streaming(&lb, "/stream?chunks=2&delay_ms=5000").await;
    let started = Instant::now();
    let reply = lb.get("/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, NO_SERVER);
    let took = started.elapsed();
    assert!(
        took >= queue_timeout && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight_and_closes_idle_connections() {
    let (_backend, mut lb) = lb_with(Config::new().shutdown_timeout(Duration::from_secs(5))).await;
    let addr = lb.addr;

    // An idle keep-alive connection, and ten requests in flight.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert!(served(&mut idle).await);
    let client = support::client();
    let url = format!("http://{addr}/sleep?ms=500");
    let in_flight: Vec<_> = (0..10)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move { send(&client, Method::GET, &url, None, Bytes::new()).await })
        })
        .collect();
    // In flight at the balancer: read and sent on. (The backend's own request count would
    // include the health checks, and could be reached before the last request was read.)
    eventually("the requests are in flight", || async {
        (lb.in_flight().values().sum::<usize>() >= 10).then_some(())
    })
    .await;

    let stopping = Instant::now();
    lb.signal_stop();
    // The idle connection is closed at once.
    assert_eq!(read_to_end(&mut idle).await, "");
    assert!(stopping.elapsed() < Duration::from_millis(400));
    // No new connections.
    eventually("the listener is closed", || async {
        TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
    // Every request in flight completes.
    for request in in_flight {
        let reply = request.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "slept 500 ms\n");
    }
    lb.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn requests_still_in_flight_at_the_end_of_the_grace_period_are_cut() {
    let grace = Duration::from_millis(300);
    let (_backend, lb) = lb_with(Config::new().shutdown_timeout(grace)).await;
    let mut slow = TcpStream::connect(lb.addr).await.unwrap();
    slow.write_all(b"GET /sleep?ms=5000 HTTP/1.1\r\nHost: lb\r\n\r\n")
        .await
        .unwrap();
    eventually("the request is in flight", || async {
        (lb.in_flight().values().sum::<usize>() >= 1).then_some(())
    })
    .await;
    let stopping = Instant::now();
    lb.stop().await;
    let took = stopping.elapsed();
    assert!(took >= grace && took < Duration::from_secs(3), "{took:?}");
    assert_eq!(read_to_end(&mut slow).await, "", "the request was cut");
}
