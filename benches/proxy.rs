//! What one request costs through the whole standalone balancer: a keep-alive HTTP/1.1 client,
//! [`Server`] (connection handling, retry, queue, balancer, health check, proxy and its
//! connection pool) and an in-process `backend_server`, all over loopback.
//!
//! Group `proxy`:
//!
//! - `direct`: `GET /` from the client straight to the backend: the client's and the backend's
//!   share, to subtract;
//! - `tower-lb`: the same request through the balancer (round robin over one backend);
//! - `tower-lb-3`: through the balancer over three backends.
//!
//! Everything runs on one single-threaded tokio runtime, as the balancer does with
//! `--workers 1`, so the time of a request is the CPU time of the whole path (the kernel's
//! loopback work included) with no handoff between threads. Requests are sent one after the
//! other on one connection; `iter_custom` times a batch of them inside the runtime, so the
//! runtime's own entry costs nothing per request.
//!
//! ```text
//! cargo bench --bench proxy                # full run
//! cargo bench --bench proxy -- --quick     # a few seconds
//! ```

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::runtime::Runtime;
use tower_lb::admin::BackendSpec;
use tower_lb::server::{Config, Server};

/// A keep-alive connection to `addr`, driven by a task on the current runtime.
async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// `GET /` on `sender`, read whole.
async fn get(sender: &mut SendRequest<Empty<Bytes>>, host: &str) -> Bytes {
    sender.ready().await.unwrap();
    let req = Request::get("/")
        .header(http::header::HOST, host)
        .body(Empty::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.into_body().collect().await.unwrap().to_bytes()
}

/// A balancer over `backends` on 127.0.0.1, running on the current runtime.
async fn balancer(backends: &[backend_server::Handle]) -> SocketAddr {
    let config = Config::new()
        .bind(([127, 0, 0, 1], 0))
        .backends_from(
            backends
                .iter()
                .map(|b| BackendSpec::new(&b.url(), 1).unwrap()),
        )
        // No health check during the run.
        .health_interval(Duration::from_secs(3600));
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.run(std::future::pending()));
    addr
}

/// Times `iters` requests on one connection to `to`.
fn requests(rt: &Runtime, to: SocketAddr, iters: u64) -> Duration {
    rt.block_on(async {
        let host = to.to_string();
        let mut sender = connect(to).await;
        // The connection, and the balancer's backend connections, are warm before timing.
        for _ in 0..16 {
            get(&mut sender, &host).await;
        }
        let start = Instant::now();
        for _ in 0..iters {
            black_box(get(&mut sender, &host).await);
        }
        start.elapsed()
    })
}

fn proxy(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (backends, one, three) = rt.block_on(async {
        let mut backends = Vec::new();
        for _ in 0..3 {
            backends.push(
                backend_server::spawn("127.0.0.1:0".parse().unwrap())
                    .await
                    .unwrap(),
            );
        }
        let one = balancer(&backends[..1]).await;
        let three = balancer(&backends).await;
        (backends, one, three)
    });

    let mut group = c.benchmark_group("proxy");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let direct = backends[0].addr();
    group.bench_function("direct", |b| {
        b.iter_custom(|iters| requests(&rt, direct, iters))
    });
    group.bench_function("tower-lb", |b| {
        b.iter_custom(|iters| requests(&rt, one, iters))
    });
    group.bench_function("tower-lb-3", |b| {
        b.iter_custom(|iters| requests(&rt, three, iters))
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    proxy(&mut c);
    c.final_summary();
}
