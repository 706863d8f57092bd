//! The numbers of a running server, end to end: `Server::stats` read while real clients on
//! 127.0.0.1 are served, queued and refused, and a real backend answers.
mod support;

use std::time::Duration;

use http::StatusCode;
use tower_lb::proxy::ProxyClientBuilder;
use tower_lb::server::Config;

use support::{lb_with, start_streaming};

#[tokio::test]
async fn a_running_server_counts_answers_queue_timeouts_refusals_and_connections() {
    let queue_timeout = Duration::from_millis(200);
    let (backend, lb) = lb_with(
        Config::new()
            .queue_timeout(queue_timeout)
            .proxy_client(ProxyClientBuilder::new().max_conns_per_backend(1)),
    )
    .await;
    assert_eq!(lb.get("/").await.status, StatusCode::OK);
    assert_eq!(lb.get("/nothing-here").await.status, StatusCode::NOT_FOUND);

    // A streamed response holds the backend's only slot: the next request waits in the queue
    // for the queue timeout, then gets a 503.
    let streaming = start_streaming(&lb, "/stream?chunks=2&delay_ms=2000").await;
    let during = lb.stats.snapshot();
    assert_eq!(during.backends.len(), 1);
    assert_eq!(during.backends[0].in_flight, 1, "the stream is in flight");
    assert_eq!(lb.get("/").await.status, StatusCode::SERVICE_UNAVAILABLE);

    let after = lb.stats.snapshot();
    let queue = after.queue.expect("the server has a queue");
    assert_eq!((queue.queued, queue.timeouts, queue.waiting), (1, 1, 0));
    assert_eq!(after.no_backend, 1, "the 503 is a no-backend answer");
    let b = &after.backends[0];
    assert_eq!(b.key.key().to_string(), backend.url());
    assert_eq!(b.responses.success, 2, "GET / and the stream's head");
    assert_eq!(b.responses.client_error, 1, "the 404");
    assert_eq!(b.transport_failures, 0);
    let connections = after.connections.expect("the server counts connections");
    assert!(connections.accepted >= 2, "{connections:?}");
    assert!(
        connections.open >= 1,
        "the stream's connection is open: {connections:?}"
    );

    // Once the stream ends, nothing is in flight.
    drop(streaming);
    support::eventually("the stream to end", || async {
        (lb.stats.snapshot().backends[0].in_flight == 0).then_some(())
    })
    .await;
}
