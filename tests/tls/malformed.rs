//! What must never take the TLS listener down: plain HTTP on the TLS port, truncated and
//! slow handshakes, a thousand idle TLS connections.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_lb::server::Config;

use super::pki::Pki;
use super::support::{self, DEADLINE};
use super::{Sender, tls_connect, tls_lb, tls_lb_with};

/// Reads until the server closes the connection; what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut buf)).await;
    match read {
        Ok(Ok(_)) | Ok(Err(_)) => buf,
        Err(_) => panic!("the connection was not closed within {DEADLINE:?}"),
    }
}

/// The balancer still answers a TLS client.
async fn still_serves(pki: &Pki, lb: &support::Lb, backend: &backend_server::Handle) {
    let tls = tls_connect(pki, lb.addr, "localhost", &[b"h2"])
        .await
        .unwrap();
    let (status, body) = Sender::new(tls).await.get("/").await;
    assert_eq!(status, 200);
    assert_eq!(support::greeter(&body), support::name(backend));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_and_truncated_handshakes_are_closed_and_counted() {
    let pki = Pki::new();
    let backend = support::backend().await;
    let (lb, tls) = tls_lb_with(&pki, Config::new().backend(support::spec(&backend, 1))).await;

    // Plain HTTP on the TLS port: not a TLS record, closed (rustls may send an alert first).
    let mut plain = TcpStream::connect(lb.addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut plain).await;
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");

    // A handshake cut short: the first bytes of a ClientHello, then the client leaves.
    let mut cut = TcpStream::connect(lb.addr).await.unwrap();
    cut.write_all(&[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ])
    .await
    .unwrap();
    drop(cut);

    // Garbage after a valid record header.
    let mut garbage = TcpStream::connect(lb.addr).await.unwrap();
    garbage
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00])
        .await
        .unwrap();
    let _ = read_until_closed(&mut garbage).await;

    support::eventually("three failed handshakes are counted", || async {
        (tls.handshake_failures() >= 3).then_some(())
    })
    .await;
    still_serves(&pki, &lb, &backend).await;
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handshake_is_cut_off_by_the_header_timeout() {
    let pki = Pki::new();
    let backend = support::backend().await;
    let config = Config::new()
        .backend(support::spec(&backend, 1))
        .client_header_timeout(Duration::from_millis(300));
    let (lb, tls) = tls_lb_with(&pki, config).await;

    // Half a record header, then nothing: closed after the timeout, not before.
    let mut slow = TcpStream::connect(lb.addr).await.unwrap();
    slow.write_all(&[0x16, 0x03]).await.unwrap();
    let started = tokio::time::Instant::now();
    let answer = read_until_closed(&mut slow).await;
    assert!(answer.is_empty(), "{answer:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    support::eventually("the timed-out handshake is counted", || async {
        (tls.handshake_failures() >= 1).then_some(())
    })
    .await;
    still_serves(&pki, &lb, &backend).await;
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_tls_connections_leave_the_balancer_serving() {
    let pki = Pki::new();
    let backend = support::backend().await;
    // Connections that never send a request are closed after the header timeout: longer
    // than opening a thousand takes here.
    let config = Config::new()
        .backend(support::spec(&backend, 1))
        .client_header_timeout(Duration::from_secs(120));
    let lb = tls_lb(&pki, config).await;
    let mut idle = Vec::with_capacity(1000);
    for _ in 0..1000 {
        idle.push(
            tls_connect(&pki, lb.addr, "localhost", &[b"http/1.1"])
                .await
                .unwrap(),
        );
    }
    support::eventually("a thousand connections are open", || async {
        (lb.stats.snapshot().connections.unwrap().open >= 1000).then_some(())
    })
    .await;
    still_serves(&pki, &lb, &backend).await;
    // And an idle one still works once it speaks.
    let (status, _) = Sender::new(idle.pop().unwrap()).await.get("/").await;
    assert_eq!(status, 200);
    drop(idle);
    lb.stop().await;
}
