use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::server::conn::sniff::{self, H2_PREFACE, Protocol};
use crate::server::conn::tracked::InFlight;

const SETTINGS: Settings = Settings {
    header_timeout: Duration::from_secs(10),
    idle_timeout: Duration::from_secs(60),
    client_timeout: Duration::from_secs(60),
    max_header_size: 64 * 1024,
    max_connections: None,
};

/// A client socket and the server side wrapped in a `TimedIo`.
async fn pair() -> (TcpStream, TimedIo<TcpStream>, Arc<ConnState>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let state = Arc::new(ConnState::default());
    let io = TimedIo::new(server, Arc::clone(&state), SETTINGS, None);
    (client, io, state)
}

/// The same over an in-memory pipe: no socket at all.
fn duplex() -> (DuplexStream, TimedIo<DuplexStream>, Arc<ConnState>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let state = Arc::new(ConnState::default());
    let io = TimedIo::new(server, Arc::clone(&state), SETTINGS, None);
    (client, io, state)
}

async fn read<T: AsyncRead + AsyncWrite + Unpin>(io: &mut TimedIo<T>) -> io::Result<Vec<u8>> {
    let mut buf = [0; 1024];
    let n = io.read(&mut buf).await?;
    Ok(buf[..n].to_vec())
}

/// What the connection's task does while no hyper connection serves it.
async fn next_bytes<T: AsyncRead + AsyncWrite + Unpin>(io: &mut TimedIo<T>) -> Woke {
    std::future::poll_fn(|cx| io.poll_next_bytes(cx)).await
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_ends_quietly_at_the_header_timeout() {
    let (mut client, mut io, _) = pair().await;
    let start = Instant::now();
    assert_eq!(read(&mut io).await.unwrap(), b"");
    assert_eq!(start.elapsed(), SETTINGS.header_timeout);
    drop(io);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "no response to a client that sent nothing");
}

#[tokio::test(start_paused = true)]
async fn half_a_head_gets_a_408_at_the_header_timeout_from_the_connect() {
    let (mut client, mut io, _) = pair().await;
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    assert_eq!(read(&mut io).await.unwrap(), b"GET / HTTP/1.1\r\n");
    let err = read(&mut io).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    // Counted from the connect, not from the first byte.
    assert_eq!(start.elapsed(), SETTINGS.header_timeout);
    drop(io);
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, Answer::RequestTimeout.bytes());
}

#[tokio::test(start_paused = true)]
async fn after_a_response_the_idle_timeout_applies_then_the_header_timeout_from_the_first_byte() {
    let (mut client, mut io, state) = pair().await;
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    read(&mut io).await.unwrap();
    // The service took the request: no timeout while it is in flight.
    let in_flight = InFlight::start(&state);
    let busy = tokio::time::timeout(Duration::from_secs(3600), read(&mut io)).await;
    assert!(busy.is_err(), "no timeout while a request is in flight");
    // The response ends and is flushed: idle from now.
    drop(in_flight);
    io.flush().await.unwrap();
    assert!(matches!(io.phase, Phase::Idle { .. }), "{:?}", io.phase);
    let idle_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
    client.write_all(b"GET").await.unwrap();
    read(&mut io).await.unwrap();
    // The next head has its own header timeout, from its first byte.
    let first_byte = Instant::now();
    assert_eq!(
        read(&mut io).await.unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );
    assert_eq!(first_byte.elapsed(), SETTINGS.header_timeout);
    assert!(idle_from.elapsed() < SETTINGS.idle_timeout);
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_ends_quietly_at_the_idle_timeout() {
    let (_client, mut io, state) = pair().await;
    drop(InFlight::start(&state));
    io.phase = Phase::Busy;
    io.flush().await.unwrap();
    let start = Instant::now();
    assert_eq!(read(&mut io).await.unwrap(), b"");
    assert_eq!(start.elapsed(), SETTINGS.idle_timeout);
}

#[tokio::test(start_paused = true)]
async fn http2_has_only_the_idle_timeout_and_tunnels_none() {
    let (mut client, mut io, state) = pair().await;
    // The preface in two pieces, read ahead and told as the connection's task does.
    client.write_all(&H2_PREFACE[..2]).await.unwrap();
    assert_eq!(next_bytes(&mut io).await, Woke::Bytes);
    assert_eq!(sniff::protocol(io.read_ahead()), None);
    client.write_all(&H2_PREFACE[2..]).await.unwrap();
    assert_eq!(next_bytes(&mut io).await, Woke::Bytes);
    assert_eq!(sniff::protocol(io.read_ahead()), Some(Protocol::Http2));
    io.serve_http2();
    assert_eq!(
        io.phase,
        Phase::H2 {
            idle: None,
            goaway: false
        }
    );
    assert_eq!(read(&mut io).await.unwrap(), H2_PREFACE, "replayed");
    // No header timeout: the idle timeout, counted while no stream is open. Then the task is
    // asked for `GOAWAY` (which closes the connection), and a client that still holds it open
    // is closed a header timeout later.
    let start = Instant::now();
    assert!(!state.take_goaway());
    assert_eq!(read(&mut io).await.unwrap(), b"");
    assert!(state.take_goaway(), "GOAWAY asked at the idle timeout");
    assert_eq!(
        start.elapsed(),
        SETTINGS.idle_timeout + SETTINGS.header_timeout
    );

    let (mut client, mut io, state2) = pair().await;
    drop(state);
    state2.upgrade();
    let waited = tokio::time::timeout(Duration::from_secs(3600), read(&mut io)).await;
    assert!(waited.is_err(), "a tunnel has no timeout");
    client.write_all(b"raw").await.unwrap();
    assert_eq!(read(&mut io).await.unwrap(), b"raw");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_reads_nothing_of_its_response_is_cut_off_at_the_client_timeout() {
    let (client, mut io, state) = duplex();
    let _in_flight = InFlight::start(&state);
    // The pipe holds 64 KiB; the client reads none of it.
    let chunk = vec![b'x'; 16 * 1024];
    let start = Instant::now();
    let mut written = 0;
    let error = loop {
        match io.write(&chunk).await {
            Ok(n) => written += n,
            Err(error) => break error,
        }
    };
    assert_eq!(written, 64 * 1024);
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(start.elapsed(), SETTINGS.client_timeout);
    drop(client);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_reads_slowly_is_never_cut_off() {
    let (mut client, mut io, state) = duplex();
    let _in_flight = InFlight::start(&state);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0; 16 * 1024];
        let mut total = 0;
        // Takes 16 KiB every half client timeout.
        while total < 256 * 1024 {
            tokio::time::sleep(SETTINGS.client_timeout / 2).await;
            total += client.read(&mut buf).await.unwrap();
        }
        total
    });
    let chunk = vec![b'x'; 16 * 1024];
    for _ in 0..16 {
        io.write_all(&chunk)
            .await
            .expect("a reading client is not cut off");
    }
    assert!(reader.await.unwrap() >= 256 * 1024);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_came_and_went_unseen_does_not_leave_its_head_timeout_armed() {
    let (mut client, mut io, state) = pair().await;
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    read(&mut io).await.unwrap();
    assert!(matches!(io.phase, Phase::Head { started: true, .. }));
    // Dispatched, answered and ended without the IO reading in between.
    drop(InFlight::start(&state));
    io.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    io.flush().await.unwrap();
    assert!(matches!(io.phase, Phase::Idle { .. }), "{:?}", io.phase);
    let start = Instant::now();
    assert_eq!(read(&mut io).await.unwrap(), b"", "closed quietly, no 408");
    assert_eq!(start.elapsed(), SETTINGS.idle_timeout);
}

#[tokio::test]
async fn hyper_answers_to_unparsable_heads_are_replaced_and_responses_are_not() {
    let (mut client, mut io, _) = pair().await;
    client.write_all(b"GARBAGE\r\n\r\n").await.unwrap();
    read(&mut io).await.unwrap();
    let hyper_answer =
        b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
    io.write_all(hyper_answer).await.unwrap();
    io.shutdown().await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, Answer::BadRequest.bytes());

    // A backend's own 400, to a request that was dispatched, goes out as it is, even
    // when the request ended before the IO looked.
    let (mut client, mut io, state) = pair().await;
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    read(&mut io).await.unwrap();
    drop(InFlight::start(&state));
    let backend_answer = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\nno";
    io.write_all(backend_answer).await.unwrap();
    io.shutdown().await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, backend_answer);
}

#[tokio::test(start_paused = true)]
async fn the_timeouts_hold_over_any_byte_stream() {
    // Silent: closed quietly at the header timeout.
    let (mut client, mut io, _) = duplex();
    let start = Instant::now();
    assert_eq!(read(&mut io).await.unwrap(), b"");
    assert_eq!(start.elapsed(), SETTINGS.header_timeout);
    drop(io);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());

    // Half a head: 408 at the header timeout.
    let (mut client, mut io, _) = duplex();
    client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    assert_eq!(read(&mut io).await.unwrap(), b"GET / HTTP/1.1\r\n");
    let err = read(&mut io).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(start.elapsed(), SETTINGS.header_timeout * 2);
    drop(io);
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, Answer::RequestTimeout.bytes());
}

#[tokio::test(start_paused = true)]
async fn the_408_is_flushed_through_a_stream_that_buffers_its_writes() {
    // As TLS does: bytes written go out on a flush.
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let buffered = tokio::io::BufWriter::new(server);
    let mut io = TimedIo::new(buffered, Arc::default(), SETTINGS, None);
    client.write_all(b"GET / HT").await.unwrap();
    read(&mut io).await.unwrap();
    assert_eq!(
        read(&mut io).await.unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );
    drop(io);
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, Answer::RequestTimeout.bytes());
}

#[tokio::test(start_paused = true)]
async fn bytes_read_ahead_start_the_head_and_are_replayed_first() {
    let (mut client, mut io, _) = duplex();
    client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    assert_eq!(next_bytes(&mut io).await, Woke::Bytes);
    assert_eq!(io.read_ahead(), b"GET / HTTP/1.1\r\n");
    assert!(
        matches!(io.phase, Phase::Head { started: true, .. }),
        "an HTTP/1 head is not taken for HTTP/2: {:?}",
        io.phase
    );
    // More bytes read ahead are kept after the first.
    client.write_all(b"Host: x\r\n").await.unwrap();
    assert_eq!(next_bytes(&mut io).await, Woke::Bytes);
    assert_eq!(io.read_ahead(), b"GET / HTTP/1.1\r\nHost: x\r\n");
    // Replayed to reads smaller than what waits, then the stream's own bytes.
    let mut buf = [0; 4];
    io.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"GET ");
    assert_eq!(read(&mut io).await.unwrap(), b"/ HTTP/1.1\r\nHost: x\r\n");
    assert!(io.read_ahead().is_empty());
    client.write_all(b"\r\n").await.unwrap();
    assert_eq!(read(&mut io).await.unwrap(), b"\r\n");
}

#[tokio::test(start_paused = true)]
async fn waiting_for_next_bytes_keeps_the_phase_deadlines() {
    // Before a request: the header timeout from the connect, and nothing read.
    let (client, mut io, state) = duplex();
    let start = Instant::now();
    assert_eq!(next_bytes(&mut io).await, Woke::Expired);
    assert_eq!(start.elapsed(), SETTINGS.header_timeout);
    assert!(io.read_ahead().is_empty());
    drop((client, io, state));

    // Parked after a response: the idle timeout from its end; the next request's first
    // bytes end the wait and start its own header timeout.
    let (mut client, mut io, state) = duplex();
    drop(InFlight::start(&state));
    io.flush().await.unwrap();
    assert!(matches!(io.phase, Phase::Idle { .. }), "{:?}", io.phase);
    let idle_from = Instant::now();
    let waited = tokio::time::timeout(Duration::from_secs(30), next_bytes(&mut io)).await;
    assert!(waited.is_err(), "nothing yet, not parked away either");
    client.write_all(b"GET").await.unwrap();
    assert_eq!(next_bytes(&mut io).await, Woke::Bytes);
    let first_byte = Instant::now();
    assert_eq!(
        io.phase,
        Phase::Head {
            deadline: first_byte + SETTINGS.header_timeout,
            started: true
        }
    );
    assert!(idle_from.elapsed() < SETTINGS.idle_timeout);

    let (_client, mut io, state) = duplex();
    drop(InFlight::start(&state));
    io.flush().await.unwrap();
    let idle_from = Instant::now();
    assert_eq!(next_bytes(&mut io).await, Woke::Expired);
    assert_eq!(idle_from.elapsed(), SETTINGS.idle_timeout);

    // The client goes away.
    let (client, mut io, _) = duplex();
    drop(client);
    assert_eq!(next_bytes(&mut io).await, Woke::Ended);
}
