//! The connection's task end to end: over TCP as the server runs it, and over an in-memory
//! pipe, as any byte stream (TLS, …) would be served.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::answers::Answer;
use super::state::PARK_AFTER;
use super::{Connections, Settings};

const SETTINGS: Settings = Settings {
    header_timeout: Duration::from_secs(10),
    idle_timeout: Duration::from_secs(60),
    client_timeout: Duration::from_secs(60),
    max_header_size: 64 * 1024,
    max_connections: None,
};

/// Answers `ok` to everything.
#[derive(Debug, Clone)]
struct Ok200;

impl hyper::service::Service<Request<Incoming>> for Ok200 {
    type Response = Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn call(&self, _: Request<Incoming>) -> Self::Future {
        std::future::ready(Ok(Response::new(Bytes::from_static(b"ok").into())))
    }
}

fn connections() -> Connections {
    Connections::new(SETTINGS, crate::proxy::ProxyClient::new())
}

/// A server connection served by `connections`, and its client side.
async fn served(connections: &Connections) -> TcpStream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, peer) = listener.accept().await.unwrap();
    connections.serve(server, peer, None, Ok200);
    client
}

/// The same over an in-memory pipe.
fn served_in_memory(connections: &Connections) -> DuplexStream {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
    connections.serve_io(server, peer, None, Ok200);
    client
}

async fn get_on<C: AsyncRead + AsyncWrite + Unpin>(client: &mut C) -> String {
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    answer_on(client).await
}

async fn answer_on<C: AsyncRead + Unpin>(client: &mut C) -> String {
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\nok") {
        let mut buf = [0; 256];
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(answer).unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_parked_and_serves_its_next_request() {
    let connections = connections();
    let mut client = served(&connections).await;
    assert!(get_on(&mut client).await.starts_with("HTTP/1.1 200 OK"));
    assert_eq!(connections.parked(), 0, "not idle long enough yet");
    tokio::time::sleep(PARK_AFTER + Duration::from_millis(10)).await;
    assert_eq!(connections.parked(), 1);
    assert_eq!(connections.count(), 1, "still open");
    // Served anew, as if nothing happened.
    assert!(get_on(&mut client).await.starts_with("HTTP/1.1 200 OK"));
    assert_eq!(connections.parked(), 0);
    assert!(get_on(&mut client).await.starts_with("HTTP/1.1 200 OK"));
    // A parked connection still ends at the idle timeout, counted from its last response.
    let idle_from = Instant::now();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "closed quietly");
    assert_eq!(idle_from.elapsed(), SETTINGS.idle_timeout);
    assert_eq!(connections.parked(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_parked_connection_closes_at_once_when_the_server_shuts_down() {
    let connections = connections();
    let mut client = served(&connections).await;
    assert!(get_on(&mut client).await.starts_with("HTTP/1.1 200 OK"));
    tokio::time::sleep(PARK_AFTER * 2).await;
    assert_eq!(connections.parked(), 1);
    let started = Instant::now();
    connections.shutdown(Duration::from_secs(30)).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test(start_paused = true)]
async fn any_byte_stream_is_served_parked_and_served_again() {
    let connections = connections();
    let mut client = served_in_memory(&connections);
    assert!(get_on(&mut client).await.starts_with("HTTP/1.1 200 OK"));
    tokio::time::sleep(PARK_AFTER * 2).await;
    assert_eq!(connections.parked(), 1);
    // The next request in two pieces: the first wakes the parked connection, and is
    // replayed to hyper with the rest.
    client.write_all(b"GET / HT").await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(connections.parked(), 0, "woken by its first bytes");
    client
        .write_all(b"TP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(answer_on(&mut client).await.starts_with("HTTP/1.1 200 OK"));
    // Closed quietly at the idle timeout.
    tokio::time::sleep(PARK_AFTER * 2).await;
    assert_eq!(connections.parked(), 1);
    let idle_from = Instant::now() - PARK_AFTER * 2;
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "closed quietly");
    assert!(idle_from.elapsed() >= SETTINGS.idle_timeout);
    assert_eq!(connections.parked(), 0);
    assert_eq!(connections.count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_sends_nothing_is_closed_quietly_at_the_header_timeout() {
    let connections = connections();
    let mut client = served_in_memory(&connections);
    let start = Instant::now();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "no answer to a client that sent nothing");
    assert_eq!(start.elapsed(), SETTINGS.header_timeout);
}

#[tokio::test(start_paused = true)]
async fn new_timeouts_apply_to_connections_accepted_after_and_a_worker_sibling_shares_them() {
    let connections = connections();
    let sibling = connections.sibling();
    let mut before = served_in_memory(&connections);
    connections.timeouts().set(
        Duration::from_secs(3),
        SETTINGS.idle_timeout,
        SETTINGS.client_timeout,
    );
    let mut after = served_in_memory(&sibling);
    let start = Instant::now();
    let mut rest = Vec::new();
    after.read_to_end(&mut rest).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(3),
        "the new header timeout"
    );
    before.read_to_end(&mut rest).await.unwrap();
    assert_eq!(
        start.elapsed(),
        SETTINGS.header_timeout,
        "a connection accepted before keeps the timeout it was accepted with"
    );
    assert!(rest.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_head_that_begins_as_the_http2_preface_is_http1_once_it_differs() {
    let connections = connections();
    let mut client = served_in_memory(&connections);
    client.write_all(b"P").await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    client
        .write_all(b"OST / HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    assert!(answer_on(&mut client).await.starts_with("HTTP/1.1 200 OK"));
}

#[tokio::test(start_paused = true)]
async fn a_preface_cut_short_gets_a_408_at_the_header_timeout() {
    let connections = connections();
    let mut client = served_in_memory(&connections);
    let start = Instant::now();
    client.write_all(b"PR").await.unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, Answer::RequestTimeout.bytes());
    assert_eq!(start.elapsed(), SETTINGS.header_timeout);
}

#[tokio::test(start_paused = true)]
async fn http2_with_prior_knowledge_is_served_over_any_byte_stream() {
    let connections = connections();
    let client = served_in_memory(&connections);
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(client))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..2 {
        let req = Request::get("http://x/")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.version(), http::Version::HTTP_2);
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "ok");
    }
    assert_eq!(connections.count(), 1);
    assert_eq!(connections.parked(), 0, "HTTP/2 is never parked");
}
