//! Client-side gRPC load balancing with tonic: one `HealthClient` over three tonic servers,
//! call by call, through tower-lb instead of `Channel::balance_list`.
//!
//! The stack, bottom up:
//!
//! - a [`Registry`] of backends (`h2c://host:port`), each a lazily connecting tonic
//!   [`Channel`] (one HTTP/2 connection per server): servers are added and removed at run time
//!   with `register` / `deregister`, as a discovery source would;
//! - [`HealthCheckLayer`] with gRPC's own health check ([`HttpProbe::grpc`]): a server that
//!   stops answering `SERVING` is taken out of rotation within an interval, before a call is
//!   lost on it;
//! - [`LoadBalanceLayer`] with least connections: the load signal is real, the calls in
//!   flight on each server (a streaming call counts until its response stream ends), so a
//!   slow or busy server gets fewer calls. `LoadBalance` is `Clone` and shares its state, so no
//!   `Buffer` is needed in front of it.
//!
//! Run it with `cargo run --example grpc_client`; it starts its three servers on 127.0.0.1
//! itself, and prints how the calls were spread. `cargo test --example grpc_client` runs the
//! same steps as a test.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::Layer;
use tower_lb::health::{Health, HealthCheckLayer, HttpProbe};
use tower_lb::{Algo, BackendAddr, LoadBalanceLayer, Registry};

/// A tonic server serving `grpc.health.v1.Health`, counting the calls it answers (health
/// checks aside).
struct Server {
    addr: BackendAddr,
    calls: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
}

impl Server {
    async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (_reporter, service) = tonic_health::server::health_reporter();
        let calls = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&calls);
        let (stop, stopped) = oneshot::channel::<()>();
        let counting = tower::util::MapRequestLayer::new(move |req: http::Request<_>| {
            if req
                .headers()
                .get("user-agent")
                .is_none_or(|ua| ua != "tower-lb-health-check")
            {
                count.fetch_add(1, Ordering::Relaxed);
            }
            req
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .layer(counting)
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        Ok(Self {
            addr: h2c(addr),
            calls,
            stop: Some(stop),
        })
    }

    /// Stops accepting calls and closes its connections, as a crashed server would.
    fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn h2c(addr: SocketAddr) -> BackendAddr {
    format!("h2c://{addr}").parse().expect("a valid address")
}

/// The calls each server answered, in the order they were started.
fn spread(servers: &[Server]) -> BTreeMap<usize, usize> {
    servers
        .iter()
        .enumerate()
        .map(|(i, s)| (i + 1, s.calls.swap(0, Ordering::Relaxed)))
        .collect()
}

/// What the walk-through saw: the calls each server answered at each step, and the calls
/// that failed.
#[derive(Debug, Default)]
struct Report {
    steps: Vec<(&'static str, BTreeMap<usize, usize>)>,
    failed: usize,
}

/// Runs the walk-through.
async fn run() -> Result<Report, Box<dyn std::error::Error>> {
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(Server::start().await?);
    }

    // Backends by address; each a tonic Channel, connected on first use.
    let registry = Registry::new(|addr: &BackendAddr| {
        let uri = addr.uri_with("/").expect("an address is a valid URI");
        Endpoint::from(uri)
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy()
    });
    let health = HealthCheckLayer::new(HttpProbe::new_grpc(""))
        .interval(Duration::from_millis(100))
        .timeout(Duration::from_millis(500));
    let monitor = health.monitor();
    let balancer = LoadBalanceLayer::new(Algo::LeastConn).layer(health.layer(registry.discover()));
    // tonic's generated client, over the balancer: every call is balanced on its own.
    let client: HealthClient<_> = HealthClient::new(balancer.clone());

    let mut report = Report::default();
    let calls = |n: usize| {
        let client = client.clone();
        async move {
            let calls = (0..n).map(|_| {
                let mut client = client.clone();
                async move { client.check(HealthCheckRequest::default()).await }
            });
            let results = futures_util::future::join_all(calls).await;
            results.iter().filter(|r| r.is_err()).count()
        }
    };

    registry.register(servers[0].addr.clone(), 1);
    registry.register(servers[1].addr.clone(), 1);
    while balancer.len() != 2 {
        tokio::task::yield_now().await;
    }
    report.failed += calls(60).await;
    report.steps.push(("servers 1, 2", spread(&servers)));

    // A third server joins at run time.
    registry.register(servers[2].addr.clone(), 1);
    while balancer.len() != 3 {
        tokio::task::yield_now().await;
    }
    report.failed += calls(90).await;
    report.steps.push(("server 3 added", spread(&servers)));

    // Server 2 dies: its health check fails and it leaves the rotation...
    servers[1].kill();
    let dead = servers[1].addr.clone();
    tokio::time::timeout(Duration::from_secs(10), async {
        while monitor
            .get(&dead)
            .is_some_and(|b| b.status == Health::Healthy)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;
    report.failed += calls(60).await;
    report.steps.push(("server 2 killed", spread(&servers)));

    // ...and is deregistered for good.
    registry.deregister(&dead);
    while balancer.len() != 2 {
        tokio::task::yield_now().await;
    }
    report.failed += calls(60).await;
    report
        .steps
        .push(("server 2 deregistered", spread(&servers)));
    Ok(report)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let report = run().await?;
    println!("calls answered by servers 1, 2 and 3:");
    for (step, spread) in &report.steps {
        println!("  {step:<24} {spread:?}");
    }
    println!("failed calls: {}", report.failed);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_are_spread_over_servers_added_at_run_time_and_a_dead_one_costs_none() {
        let report = super::run().await.expect("the walk-through runs");
        assert_eq!(report.failed, 0, "{report:?}");
        let step = |i: usize| -> Vec<usize> { report.steps[i].1.values().copied().collect() };
        // Every server got calls while it was in rotation, none outside it.
        let [a, b, c] = step(0)[..] else { panic!() };
        assert!(a > 0 && b > 0 && c == 0 && a + b == 60, "{report:?}");
        assert!(step(1).iter().all(|&n| n > 0), "{report:?}");
        assert_eq!(step(1).iter().sum::<usize>(), 90);
        for i in [2, 3] {
            let [a, b, c] = step(i)[..] else { panic!() };
            assert!(a > 0 && b == 0 && c > 0 && a + c == 60, "{report:?}");
        }
    }
}
