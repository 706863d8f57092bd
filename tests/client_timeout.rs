//! Client inactivity on real sockets: a client that stops reading its response is cut off at
//! the client timeout, and an idle HTTP/2 client gets `GOAWAY` before its connection closes.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::StreamBody;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};
use tower_lb::server::Config;

use support::{DEADLINE, read_head, start};

/// An HTTP/1.1 backend whose every response body never ends: 64 KiB chunks for as long as
/// they are taken.
async fn endless_backend() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                TokioIo::new(stream),
                hyper::service::service_fn(|_req: Request<Incoming>| async {
                    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                    let frames = futures_util::stream::repeat_with(move || {
                        Ok::<_, Infallible>(Frame::data(chunk.clone()))
                    });
                    Ok::<_, Infallible>(Response::new(StreamBody::new(frames)))
                }),
            ));
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_client_that_stops_reading_a_large_response_is_cut_off_after_the_client_timeout() {
    let backend = endless_backend().await;
    let client_timeout = Duration::from_millis(300);
    let lb = start(
        Config::new()
            .health_interval(Duration::from_secs(3600))
            .health_path("/")
            .client_timeout(client_timeout)
            .backend(backend.parse().unwrap()),
    )
    .await;
    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: lb\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    // The client reads nothing for a while: the socket buffers fill, the balancer's writes
    // block, and it gives up on the client.
    let stalled = Instant::now();
    tokio::time::sleep(client_timeout * 4).await;
    // What was buffered is still there, then the end: the body was cut short.
    let mut buf = vec![0; 256 * 1024];
    let mut read = 0usize;
    let ended = timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read += n,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the connection was not cut: {read} bytes read and more coming"
    );
    assert!(read > 0, "the buffered part of the body arrives");
    assert!(stalled.elapsed() >= client_timeout);
    // The balancer itself is fine.
    let reply = support::send(
        &support::client(),
        http::Method::GET,
        &lb.url("/backends"),
        None,
        Bytes::new(),
    )
    .await;
    assert!(reply.status.is_success(), "{}", reply.status);
}

/// The HTTP/2 frame types read from `stream` until it closes, within [`DEADLINE`].
async fn frames_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut types = Vec::new();
    timeout(DEADLINE, async {
        loop {
            let mut header = [0u8; 9];
            if stream.read_exact(&mut header).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            types.push(header[3]);
            let mut payload = vec![0; len];
            if stream.read_exact(&mut payload).await.is_err() {
                return;
            }
        }
    })
    .await
    .expect("the idle connection is closed in time");
    types
}

const GOAWAY: u8 = 0x7;

#[tokio::test]
async fn an_idle_http2_client_gets_goaway_before_the_connection_closes() {
    let idle = Duration::from_millis(300);
    let lb = start(
        Config::new()
            .idle_timeout(idle)
            .client_header_timeout(Duration::from_secs(1)),
    )
    .await;
    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    // The connection preface and an empty SETTINGS frame; then nothing.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let start = Instant::now();
    let types = frames_until_closed(&mut stream).await;
    assert!(start.elapsed() >= idle);
    let goaway = types.iter().position(|&t| t == GOAWAY);
    assert!(goaway.is_some(), "no GOAWAY before the close: {types:?}");
}
