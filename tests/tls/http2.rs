//! HTTP/2 to `https://` backends by ALPN: an HTTP/2-only TLS backend serves HTTP/1.1 and
//! HTTP/2 clients on one multiplexed connection; backends choosing `http/1.1` or no ALPN are
//! spoken to over HTTP/1.1; a backend that changes its mind is followed; gRPC calls (tonic's
//! health service over TLS) are spread over `https://` tonic backends.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::timeout;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as Status;
use tonic_health::pb::health_client::HealthClient;
use tower_lb::BackendAddr;
use tower_lb::health::Health;
use tower_lb::proxy::ProxyClientBuilder;
use tower_lb::server::Config;
use tower_lb::tls::BackendTls;

use super::backends::https_addr;
use super::pki::Pki;
use super::support::{self, DEADLINE};
use super::{Sender, curl_localhost, tls_connect, tls_lb};

/// A TLS server on 127.0.0.1 with a configuration that can be swapped (for connections
/// accepted afterwards), counting the TLS connections it accepted (handshake done) and those
/// open, and able to close them all gracefully (GOAWAY for HTTP/2).
struct TlsServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    config: Arc<Mutex<Arc<rustls::ServerConfig>>>,
    goaway: watch::Sender<u64>,
}

impl TlsServer {
    /// Serves `config`, each connection with the service `service` makes for it, given the
    /// protocol chosen by ALPN (`-` for none); HTTP/1.1 or HTTP/2, whichever the client speaks.
    async fn start<S, B>(
        config: Arc<rustls::ServerConfig>,
        service: impl Fn(String) -> S + Send + Sync + 'static,
    ) -> Self
    where
        S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Self {
            addr: listener.local_addr().unwrap(),
            accepted: Arc::default(),
            open: Arc::default(),
            config: Arc::new(Mutex::new(config)),
            goaway: watch::Sender::new(0),
        };
        let (accepted, open, config) = (
            Arc::clone(&server.accepted),
            Arc::clone(&server.open),
            Arc::clone(&server.config),
        );
        let goaway = server.goaway.subscribe();
        let service = Arc::new(service);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&config.lock().unwrap()));
                let mut goaway = goaway.clone();
                goaway.mark_unchanged();
                let (accepted, open, service) = (
                    Arc::clone(&accepted),
                    Arc::clone(&open),
                    Arc::clone(&service),
                );
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    open.fetch_add(1, Ordering::SeqCst);
                    let alpn = tls
                        .get_ref()
                        .1
                        .alpn_protocol()
                        .map_or("-".to_owned(), |p| String::from_utf8_lossy(p).into_owned());
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(tls), service(alpn));
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = goaway.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        server
    }

    /// A server answering every request with `<version> <uri> alpn=<protocol>`, after 50 ms
    /// for paths under `/slow`; an HTTP/1.1 `Upgrade` gets a `101` and its bytes echoed.
    async fn echo(config: Arc<rustls::ServerConfig>) -> Self {
        Self::start(config, |alpn: String| {
            hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let alpn = alpn.clone();
                async move {
                    if req.headers().contains_key("upgrade") {
                        let upgraded = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            let io = TokioIo::new(upgraded.await.unwrap());
                            let (mut read, mut write) = tokio::io::split(io);
                            let _ = tokio::io::copy(&mut read, &mut write).await;
                        });
                        let res = Response::builder()
                            .status(StatusCode::SWITCHING_PROTOCOLS)
                            .header("connection", "upgrade")
                            .header("upgrade", "websocket")
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        return Ok::<_, Infallible>(res);
                    }
                    if req.uri().path().starts_with("/slow") {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let body = format!("{:?} {} alpn={alpn}", req.version(), req.uri());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                }
            })
        })
        .await
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections accepted afterwards are configured with `config`.
    fn reconfigure(&self, config: Arc<rustls::ServerConfig>) {
        *self.config.lock().unwrap() = config;
    }

    /// Closes every open connection gracefully, and waits until they are closed.
    async fn close_connections(&self) {
        self.goaway.send_modify(|n| *n += 1);
        support::eventually("the backend's connections are closed", || async {
            (self.open.load(Ordering::SeqCst) == 0).then_some(())
        })
        .await;
    }
}

/// A client of `https://` backends trusting `pki`'s CA, offering the default ALPN.
fn backend_tls(pki: &Pki) -> BackendTls {
    BackendTls::builder().ca_file(&pki.ca_pem).build().unwrap()
}

/// Plain-HTTP balancer over the `https://` `backends`, checked once at start.
async fn lb_over(pki: &Pki, backends: &[&BackendAddr], config: Config) -> support::Lb {
    let mut config = config
        .health_interval(Duration::from_secs(3600))
        .proxy_client(ProxyClientBuilder::new().backend_tls(backend_tls(pki)));
    for backend in backends {
        config = config.backend(backend.to_string().parse().unwrap());
    }
    let lb = support::start(config).await;
    for backend in backends {
        lb.wait_health(backend, Health::Healthy).await;
    }
    lb
}

/// `n` HTTP/1.1 requests at once, each on a connection of its own, for `/slow/<i>` with
/// `Host: app.example`; the bodies, in order, each checked to be a `200`.
async fn http1_burst(lb: &support::Lb, n: usize) -> Vec<String> {
    let replies = futures_util::future::join_all((0..n).map(|i| {
        let url = lb.url(&format!("/slow/{i}"));
        async move {
            let req = Request::get(url)
                .header("host", "app.example")
                .body(Full::new(Bytes::new()))
                .unwrap();
            support::send_request(&support::client(), req).await
        }
    }))
    .await;
    replies
        .into_iter()
        .map(|reply| {
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            reply.body
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_clients_are_served_by_an_h2_only_tls_backend_on_one_connection() {
    let pki = Pki::new();
    let pair = pki.leaf("backend", &["localhost"]);
    let server = TlsServer::echo(pki.server_config_alpn(&pair, false, &[b"h2"])).await;
    let backend = https_addr(server.addr);
    let lb = lb_over(&pki, &[&backend], Config::new()).await;
    let bodies = http1_burst(&lb, 20).await;
    for (i, body) in bodies.iter().enumerate() {
        // HTTP/2 at the backend, `:scheme` https and `:authority` the client's Host.
        assert_eq!(
            body,
            &format!("HTTP/2.0 https://app.example/slow/{i} alpn=h2")
        );
    }
    assert_eq!(
        server.accepted(),
        1,
        "the health check and 20 concurrent requests share one TLS connection"
    );
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_and_http1_clients_of_the_tls_listener_reach_an_h2_tls_backend_on_one_connection() {
    let pki = Pki::new();
    let pair = pki.leaf("backend", &["localhost"]);
    let server = TlsServer::echo(pki.server_config_alpn(&pair, false, &[b"h2"])).await;
    let backend = https_addr(server.addr);
    let config = Config::new()
        .health_interval(Duration::from_secs(3600))
        .backend(backend.to_string().parse().unwrap())
        .proxy_client(ProxyClientBuilder::new().backend_tls(backend_tls(&pki)));
    let lb = tls_lb(&pki, config).await;
    lb.wait_health(&backend, Health::Healthy).await;

    // curl over HTTP/2 and HTTP/1.1 to the balancer's TLS listener.
    let port = lb.addr.port();
    for (flag, client_version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = curl_localhost(&pki, port, flag, "/curl").await;
        assert_eq!(
            out,
            format!("HTTP/2.0 https://localhost:{port}/curl alpn=h2\n{client_version}"),
            "curl {flag}"
        );
    }

    // Twenty streams at once on one HTTP/2 client connection.
    let tls = tls_connect(&pki, lb.addr, "localhost", &[b"h2"])
        .await
        .unwrap();
    let Sender::H2(sender) = Sender::new(tls).await else {
        panic!("the balancer's listener chose h2");
    };
    let bodies = futures_util::future::join_all((0..20).map(|i| {
        let mut sender = sender.clone();
        async move {
            let req = Request::get(format!("https://localhost/slow/{i}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let res = timeout(DEADLINE, sender.send_request(req))
                .await
                .expect("a response in time")
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res.into_body().collect().await.unwrap().to_bytes()
        }
    }))
    .await;
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(
            body,
            &format!("HTTP/2.0 https://localhost/slow/{i} alpn=h2")
        );
    }
    assert_eq!(server.accepted(), 1, "one TLS connection to the backend");
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_choosing_http1_or_no_alpn_are_spoken_to_over_http1() {
    let pki = Pki::new();
    let pair = pki.leaf("backend", &["localhost"]);
    let http1 = TlsServer::echo(pki.server_config_alpn(&pair, false, &[b"http/1.1"])).await;
    let none = TlsServer::echo(pki.server_config_alpn(&pair, false, &[])).await;
    let (a, b) = (https_addr(http1.addr), https_addr(none.addr));
    let lb = lb_over(&pki, &[&a, &b], Config::new()).await;
    let bodies = http1_burst(&lb, 10).await;
    let mut by_alpn = [0, 0];
    for (i, body) in bodies.iter().enumerate() {
        if body == &format!("HTTP/1.1 /slow/{i} alpn=http/1.1") {
            by_alpn[0] += 1;
        } else {
            assert_eq!(body, &format!("HTTP/1.1 /slow/{i} alpn=-"));
            by_alpn[1] += 1;
        }
    }
    assert_eq!(by_alpn, [5, 5], "round robin over both");
    // HTTP/1.1 carries one request at a time: requests at once open connections side by side.
    assert!(http1.accepted() >= 2, "{}", http1.accepted());
    assert!(none.accepted() >= 2, "{}", none.accepted());
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_changes_its_alpn_choice_is_followed_on_its_next_connection() {
    let pki = Pki::new();
    let pair = pki.leaf("backend", &["localhost"]);
    let h2 = pki.server_config_alpn(&pair, false, &[b"h2"]);
    let http1 = pki.server_config_alpn(&pair, false, &[b"http/1.1"]);
    let server = TlsServer::echo(Arc::clone(&h2)).await;
    let backend = https_addr(server.addr);
    let lb = lb_over(&pki, &[&backend], Config::new()).await;
    let get = || async {
        let reply = lb.get("/x").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body.split(' ').next().unwrap().to_owned()
    };
    assert_eq!(get().await, "HTTP/2.0");

    // Now HTTP/1.1 only; the HTTP/2 connection is closed with GOAWAY.
    server.reconfigure(http1);
    server.close_connections().await;
    assert_eq!(get().await, "HTTP/1.1");
    assert_eq!(get().await, "HTTP/1.1");

    // And back to HTTP/2.
    server.reconfigure(h2);
    server.close_connections().await;
    assert_eq!(get().await, "HTTP/2.0");
    assert_eq!(server.accepted(), 3, "one connection per protocol change");
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_to_an_h2_backend_goes_over_a_connection_offering_http1_alone() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    let pair = pki.leaf("backend", &["localhost"]);
    // A backend that chooses h2 when offered, and speaks HTTP/1.1 otherwise.
    let server = TlsServer::echo(pki.server_config_alpn(&pair, false, &[b"h2", b"http/1.1"])).await;
    let backend = https_addr(server.addr);
    let lb = lb_over(&pki, &[&backend], Config::new()).await;
    assert!(lb.get("/x").await.body.starts_with("HTTP/2.0 "));

    let mut stream = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: lb\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .await
        .unwrap();
    let head = support::read_head(&mut stream).await.to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 101 switching protocols\r\n"),
        "{head}"
    );
    stream.write_all(b"hello over TLS").await.unwrap();
    let mut echoed = [0; 14];
    timeout(DEADLINE, stream.read_exact(&mut echoed))
        .await
        .expect("the echo in time")
        .unwrap();
    assert_eq!(&echoed, b"hello over TLS");
    // Other requests stay on the HTTP/2 connection.
    assert!(lb.get("/x").await.body.starts_with("HTTP/2.0 "));
    assert_eq!(
        server.accepted(),
        2,
        "the HTTP/2 connection and the tunnel's"
    );
    drop(stream);
    lb.stop().await;
}

/// A tonic `grpc.health.v1.Health` server over TLS with ALPN `h2` only, counting the calls it
/// gets besides the balancer's checks.
async fn grpc_tls_server(
    pki: &Pki,
) -> (
    TlsServer,
    tonic_health::server::HealthReporter,
    Arc<AtomicUsize>,
) {
    let pair = pki.leaf("grpc", &["localhost"]);
    let (reporter, health) = tonic_health::server::health_reporter();
    let calls = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&calls);
    let server = TlsServer::start(pki.server_config_alpn(&pair, false, &[b"h2"]), move |_| {
        let (health, count) = (health.clone(), Arc::clone(&count));
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let probe = req
                .headers()
                .get("user-agent")
                .is_some_and(|ua| ua == "tower-lb-health-check");
            if !probe {
                count.fetch_add(1, Ordering::SeqCst);
            }
            tower::ServiceExt::oneshot(health.clone(), req.map(tonic::body::Body::new))
        })
    })
    .await;
    (server, reporter, calls)
}

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_and_server_streaming_calls_are_spread_over_https_tonic_backends() {
    let pki = Pki::new();
    let (a, a_reporter, a_calls) = grpc_tls_server(&pki).await;
    let (b, b_reporter, b_calls) = grpc_tls_server(&pki).await;
    let (a_addr, b_addr) = (https_addr(a.addr), https_addr(b.addr));
    // gRPC's own health check as the probe, over the same HTTP/2 connections.
    let lb = lb_over(&pki, &[&a_addr, &b_addr], Config::new().health_grpc("")).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", lb.addr))
        .unwrap()
        .connect_timeout(DEADLINE)
        .timeout(DEADLINE)
        .connect()
        .await
        .expect("connect to the balancer");
    let mut client = HealthClient::new(channel);

    for _ in 0..10 {
        let res = client.check(check("")).await.expect("a unary call");
        assert_eq!(res.into_inner().status(), Status::Serving);
    }
    let calls = |c: &Arc<AtomicUsize>| c.load(Ordering::SeqCst);
    assert_eq!([calls(&a_calls), calls(&b_calls)], [5, 5], "call by call");

    // Server streaming: a watch on each backend, its messages as they are sent.
    for reporter in [&a_reporter, &b_reporter] {
        reporter
            .set_service_status("demo.Echo", ServingStatus::Serving)
            .await;
    }
    let mut streams = Vec::new();
    for _ in 0..2 {
        let stream = client.watch(check("demo.Echo")).await.expect("a watch");
        streams.push(stream.into_inner());
    }
    assert_eq!(
        [calls(&a_calls), calls(&b_calls)],
        [6, 6],
        "a stream on each"
    );
    for stream in &mut streams {
        let first = timeout(DEADLINE, stream.message()).await.unwrap();
        assert_eq!(first.unwrap().unwrap().status(), Status::Serving);
    }
    for reporter in [&a_reporter, &b_reporter] {
        reporter
            .set_service_status("demo.Echo", ServingStatus::NotServing)
            .await;
    }
    for stream in &mut streams {
        let next = timeout(DEADLINE, stream.message()).await.unwrap();
        assert_eq!(next.unwrap().unwrap().status(), Status::NotServing);
    }
    // A gRPC error status and message come back in the trailers.
    let error = client
        .check(check("no.such.Service"))
        .await
        .expect_err("an unknown service");
    assert_eq!(error.code(), tonic::Code::NotFound, "{error:?}");
    assert_eq!(
        [a.accepted(), b.accepted()],
        [1, 1],
        "the probe and every call share one TLS connection per backend"
    );
    drop(streams);
    lb.stop().await;
}
