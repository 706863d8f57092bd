//! Measures how long a registration on one balancer takes to be served by another, through a
//! real etcd on loopback: `cargo run -p scale_out --bin propagation [-- ROUNDS]` (default 100).
//!
//! Each round starts a backend, registers it with `POST /register` on instance A, and polls
//! instance B with `GET /` (a new connection each time) until B answers from that backend;
//! then deregisters it and waits until B has drained it. It prints, over the rounds, the time
//! from A's `200` (etcd has the key, A serves it) to B's first answer from the backend, and
//! from the `POST` being sent (A's check of the backend included). Not a timed test: the
//! figures depend on the machine and its load.

use std::time::{Duration, Instant};

use scale_out::{Etcd, Lb};

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(100, |n| n.parse().expect("ROUNDS is a number"));
    eprintln!("building lb --features etcd …");
    scale_out::lb_binary();
    let etcd = Etcd::start().await;
    let prefix = "/propagation/backends/";
    let a = Lb::spawn(&etcd.url(), prefix, &[]).await;
    let b = Lb::spawn(&etcd.url(), prefix, &[]).await;

    let (mut from_ack, mut from_post) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let backend = backend_server::spawn("127.0.0.1:0".parse().unwrap())
            .await
            .expect("start a backend");
        let name = backend.addr().to_string();
        let posted = Instant::now();
        let (status, body) = a.register(&backend.url(), 1).await;
        assert_eq!(status, 200, "round {round}: {body}");
        let acked = Instant::now();
        scale_out::eventually("B serves the new backend", || async {
            (b.pick().await.ok()? == name).then_some(())
        })
        .await;
        let served = Instant::now();
        from_ack.push(served - acked);
        from_post.push(served - posted);

        let (status, body) = a.deregister(&backend.url()).await;
        assert_eq!(status, 200, "round {round}: {body}");
        scale_out::eventually("B drains it", || async {
            (b.pick().await == Err(503)).then_some(())
        })
        .await;
        backend.shutdown().await.expect("stop the backend");
    }
    println!("{rounds} registrations on A, first request served by B:");
    report("from A's 200 (write acknowledged)", &mut from_ack);
    report("from POST /register sent to A", &mut from_post);
}

fn report(what: &str, times: &mut [Duration]) {
    times.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = ms(times[times.len() / 2]);
    let p90 = ms(times[times.len() * 9 / 10]);
    let max = ms(times[times.len() - 1]);
    println!("  {what}: median {median:.1} ms, p90 {p90:.1} ms, max {max:.1} ms");
}
