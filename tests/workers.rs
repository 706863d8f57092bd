//! A server with workers of its own (`Config::workers`): one thread, runtime and listening
//! socket each, sharing one balancer.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use http::StatusCode;
use support::{DEADLINE, backends, connect, exchange, get_request, greeter, specs, start};
use tower_lb::server::Config;

fn config_over(backends: &[backend_server::Handle], workers: usize) -> Config {
    Config::new()
        .workers(workers)
        .backends_from(specs(backends))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_spread_over_the_workers_which_share_the_balancer() {
    let backends = backends(3).await;
    let lb = start(config_over(&backends, 3)).await;

    // One connection at a time: a single worker would need one backend connection per
    // backend; each worker opens its own.
    let mut counts = BTreeMap::new();
    for _ in 0..60 {
        let mut conn = connect(None, lb.addr).await;
        let res = exchange(&mut conn, get_request(lb.addr, "/", &[])).await;
        assert_eq!(res.status(), StatusCode::OK, "{res:?}");
        *counts.entry(greeter(res.body())).or_insert(0) += 1;
    }
    // One round robin over the three backends, whichever worker took the connection.
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n == 20), "{counts:?}");
    let connections: u64 = backends.iter().map(|b| b.stats().connections()).sum();
    let health_checks = backends.len() as u64;
    assert!(
        connections > health_checks + 3,
        "{connections} backend connections: the 60 client connections all went to one worker"
    );
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_lets_every_worker_finish_its_requests() {
    let backends = backends(1).await;
    let lb = start(config_over(&backends, 2)).await;
    let addr = lb.addr;

    // Requests in flight on several connections, so on both workers.
    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut conn = connect(None, addr).await;
        slow.push(tokio::spawn(async move {
            exchange(&mut conn, get_request(addr, "/sleep?ms=300", &[])).await
        }));
    }
    // In flight at the balancer: read and sent on. (The backend's own request count would
    // include the health checks, and could be reached before the last request was read.)
    support::eventually("the requests are in flight", || async {
        (lb.in_flight().values().sum::<usize>() >= 8).then_some(())
    })
    .await;
    lb.stop().await;
    for res in slow {
        let res = tokio::time::timeout(DEADLINE, res).await.unwrap().unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{res:?}");
        assert_eq!(&res.body()[..], b"slept 300 ms\n");
    }
    // Every worker's listening socket is closed.
    let refused =
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
            .await
            .expect("connect answers at once");
    assert!(
        refused.is_err(),
        "the server still accepts after it stopped"
    );
}
