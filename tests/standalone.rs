//! The standalone balancer end to end: an in-process `Server`, `backend_server` backends and a
//! hyper client, all on 127.0.0.1.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use http::StatusCode;
use support::{backend, backend_on, backends, eventually, name, spec, specs, start};
use tower_lb::health::Health;
use tower_lb::server::Config;
use tower_lb::{Algo, BackendAddr};

#[tokio::test]
async fn no_backend_is_503_with_the_jsend_error() {
    let lb = start(Config::new()).await;
    for path in ["/", "/anything?x=1"] {
        let reply = lb.get(path).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.content_type(), "application/json");
        assert_eq!(
            reply.body,
            r#"{"status":"error","data":"error no available server"}"#
        );
    }
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_rotates_exactly_over_three_backends() {
    let backends = backends(3).await;
    let config = Config::new()
        .algo(Algo::RoundRobin)
        .backends_from(specs(&backends));
    let lb = start(config).await;

    let picks = lb.picks(12).await;
    let mut first: Vec<_> = picks[..3].to_vec();
    first.sort();
    let mut names: Vec<_> = backends.iter().map(name).collect();
    names.sort();
    assert_eq!(first, names, "each backend once per round: {picks:?}");
    for (i, pick) in picks.iter().enumerate().skip(3) {
        assert_eq!(pick, &picks[i % 3], "the same order every round: {picks:?}");
    }
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_follows_the_smooth_sequence() {
    let (heavy, b, c) = (backend().await, backend().await, backend().await);
    let config = Config::new().algo(Algo::WeightedRoundRobin).backends_from([
        spec(&heavy, 5),
        spec(&b, 1),
        spec(&c, 1),
    ]);
    let lb = start(config).await;

    let picks = lb.picks(14).await;
    let a = name(&heavy);
    // nginx's smooth WRR for 5, 1, 1: a a x a y a a, where x and y are the light backends in
    // the balancer's order.
    let (x, y) = (&picks[2], &picks[4]);
    let mut light = vec![x.clone(), y.clone()];
    light.sort();
    let mut expected_light = vec![name(&b), name(&c)];
    expected_light.sort();
    assert_eq!(light, expected_light, "{picks:?}");
    let period = [&a, &a, x, &a, y, &a, &a];
    for (i, pick) in picks.iter().enumerate() {
        assert_eq!(pick, period[i % 7], "request {i} of {picks:?}");
    }
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_backend_is_taken_out_and_put_back_when_it_recovers() {
    let (stays, flaps) = (backend().await, backend().await);
    let flaps_addr = flaps.addr();
    let flaps_uri: BackendAddr = spec(&flaps, 1).address().clone();
    let config = Config::new()
        .health_interval(Duration::from_secs(1))
        .health_timeout(Duration::from_millis(500))
        .backends_from([spec(&stays, 1), spec(&flaps, 1)]);
    let lb = start(config).await;
    let both = lb.picks(2).await;
    assert!(both.contains(&name(&flaps)) && both.contains(&name(&stays)));

    flaps.kill().await;
    lb.wait_health(&flaps_uri, Health::Unhealthy).await;
    // Out: every request goes to the other backend, none fails.
    assert_eq!(lb.picks(6).await, vec![name(&stays); 6]);

    let flaps = backend_on(flaps_addr).await;
    lb.wait_health(&flaps_uri, Health::Healthy).await;
    // In again: round robin reaches it within two requests.
    let picks = lb.picks(2).await;
    assert!(picks.contains(&name(&flaps)), "{picks:?}");
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_down_is_503_then_service_resumes() {
    let only = backend().await;
    let addr = only.addr();
    let uri = spec(&only, 1).address().clone();
    let config = Config::new()
        .health_interval(Duration::from_secs(1))
        .backend(spec(&only, 1));
    let lb = start(config).await;
    assert_eq!(lb.pick().await.unwrap(), addr.to_string());

    only.kill().await;
    lb.wait_health(&uri, Health::Unhealthy).await;
    let reply = lb.get("/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        reply.body,
        r#"{"status":"error","data":"error no available server"}"#
    );

    let _only = backend_on(addr).await;
    lb.wait_health(&uri, Health::Healthy).await;
    assert_eq!(lb.pick().await.unwrap(), addr.to_string());
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_the_backend_intact_with_forwarding_headers() {
    let b = backend().await;
    let lb = start(Config::new().backend(spec(&b, 1))).await;
    let reply = lb.get("/headers?x=1").await;
    assert_eq!(reply.status, StatusCode::OK);
    let headers = reply.json();
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{headers}");
    assert_eq!(headers["host"], lb.addr.to_string(), "{headers}");

    let reply = lb.get("/status/418").await;
    assert_eq!(reply.status.as_u16(), 418);
    assert_eq!(reply.body, "status 418\n");
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_request_in_flight_finish() {
    let b = backend().await;
    let lb = start(Config::new().backend(spec(&b, 1))).await;
    let slow = {
        let client = support::client();
        let url = lb.url("/sleep?ms=300");
        tokio::spawn(async move {
            support::send(&client, http::Method::GET, &url, None, Default::default()).await
        })
    };
    // Wait until the request is in flight at the balancer.
    eventually("the slow request is in flight", || async {
        lb.in_flight().values().any(|&n| n > 0).then_some(())
    })
    .await;
    let addr = lb.addr;
    lb.stop().await;
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "slept 300 ms\n");
    // And the listener is closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_serves_over_http() {
    let backends = backends(3).await;
    for algo in Algo::ALL {
        let config = Config::new()
            .algo(algo)
            .seed(7)
            .backends_from(specs(&backends));
        let lb = start(config).await;
        let mut counts = HashMap::new();
        for pick in lb.picks(30).await {
            *counts.entry(pick).or_insert(0) += 1;
        }
        let total: i32 = counts.values().sum();
        assert_eq!(total, 30, "{algo}");
        // Every name is one of ours; SIH and SRR keep one client on one backend.
        for name in counts.keys() {
            assert!(
                backends.iter().any(|b| b.addr().to_string() == *name),
                "{algo}: {name}"
            );
        }
        if matches!(algo, Algo::SourceIpHash | Algo::StickyRoundRobin) {
            assert_eq!(
                counts.len(),
                1,
                "{algo} keeps a client on one backend: {counts:?}"
            );
        }
        lb.stop().await;
    }
}
