//! gRPC and HTTP/2 backends end to end: tonic servers (with tonic-health's `grpc.health.v1`
//! service, no protoc) behind the standalone balancer as `h2c://` backends, tonic clients in
//! front; an `h2c://` hyper backend serving HTTP/1.1 clients; the gRPC health probe.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::timeout;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as Status;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;
use tower_lb::BackendAddr;
use tower_lb::health::Health;
use tower_lb::server::Config;

use support::{DEADLINE, start};

/// A tonic server on 127.0.0.1 serving `grpc.health.v1.Health`, counting the calls it gets
/// (the balancer's health checks aside).
struct GrpcServer {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    reporter: HealthReporter,
    stop: Option<oneshot::Sender<()>>,
}

impl GrpcServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (reporter, service) = tonic_health::server::health_reporter();
        let calls = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&calls);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .layer(tower::util::MapRequestLayer::new(
                    move |req: http::Request<tonic::body::Body>| {
                        let probe = req
                            .headers()
                            .get("user-agent")
                            .is_some_and(|ua| ua == "tower-lb-health-check");
                        if !probe {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        req
                    },
                ))
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        Self {
            addr,
            calls,
            reporter,
            stop: Some(stop),
        }
    }

    fn h2c(&self) -> BackendAddr {
        format!("h2c://{}", self.addr).parse().unwrap()
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A tonic health client on one HTTP/2 connection to `addr`.
async fn health_client(addr: SocketAddr) -> HealthClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(DEADLINE)
        .timeout(DEADLINE)
        .connect()
        .await
        .expect("connect to the balancer");
    HealthClient::new(channel)
}

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

/// `n` servers, and a balancer (round robin, no health checks in the way) over them.
async fn grpc_lb(n: usize, config: Config) -> (Vec<GrpcServer>, support::Lb) {
    let mut servers = Vec::new();
    for _ in 0..n {
        servers.push(GrpcServer::start().await);
    }
    let mut config = config.health_interval(Duration::from_secs(3600));
    for s in &servers {
        config = config.backend(s.h2c().to_string().parse().unwrap());
    }
    let lb = start(config).await;
    for s in &servers {
        lb.wait_health(&s.h2c(), Health::Healthy).await;
    }
    (servers, lb)
}

#[tokio::test]
async fn unary_and_server_streaming_calls_on_one_connection_are_spread_over_three_tonic_servers() {
    let (servers, lb) = grpc_lb(3, Config::new()).await;
    let before: Vec<usize> = servers.iter().map(GrpcServer::calls).collect();
    // One client, one HTTP/2 connection to the balancer: balancing is per call.
    let mut client = health_client(lb.addr).await;
    for _ in 0..30 {
        let res = client.check(check("")).await.expect("a unary call");
        assert_eq!(res.into_inner().status(), Status::Serving);
    }
    let per_server: Vec<usize> = servers
        .iter()
        .zip(&before)
        .map(|(s, before)| s.calls() - before)
        .collect();
    assert_eq!(per_server, [10, 10, 10], "round robin, call by call");

    // Server streaming: each message reaches the client as the server sends it.
    for s in &servers {
        s.reporter
            .set_service_status("demo.Echo", ServingStatus::Serving)
            .await;
    }
    let before: Vec<usize> = servers.iter().map(GrpcServer::calls).collect();
    let mut streams = Vec::new();
    for _ in 0..3 {
        let stream = client.watch(check("demo.Echo")).await.expect("a watch");
        streams.push(stream.into_inner());
    }
    let per_server: Vec<usize> = servers
        .iter()
        .zip(&before)
        .map(|(s, before)| s.calls() - before)
        .collect();
    assert_eq!(per_server, [1, 1, 1], "one stream on each server");
    for stream in &mut streams {
        let first = timeout(DEADLINE, stream.message()).await.unwrap();
        assert_eq!(first.unwrap().unwrap().status(), Status::Serving);
    }
    for s in &servers {
        s.reporter
            .set_service_status("demo.Echo", ServingStatus::NotServing)
            .await;
    }
    for stream in &mut streams {
        let next = timeout(DEADLINE, stream.message()).await.unwrap();
        assert_eq!(next.unwrap().unwrap().status(), Status::NotServing);
    }
    // In flight at the balancer: one request per open stream, per backend.
    let in_flight: Vec<usize> = lb.in_flight().into_values().collect();
    assert_eq!(in_flight, [1, 1, 1]);
    drop(streams);
    support::eventually("the streams end at the balancer", || async {
        lb.in_flight().values().all(|&n| n == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_backends_grpc_status_and_message_reach_the_client() {
    let (_servers, lb) = grpc_lb(1, Config::new()).await;
    let mut client = health_client(lb.addr).await;
    // tonic-health answers NOT_FOUND for a service it does not know.
    let status = client.check(check("no.Such")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "service not registered");
}

/// Sends a raw `Check` through the balancer with hyper's HTTP/2 client and returns the
/// response head, body and trailers.
async fn raw_check(lb: SocketAddr) -> (http::response::Parts, Bytes, http::HeaderMap) {
    let stream = tokio::net::TcpStream::connect(lb).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::post(format!("http://{lb}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let res = timeout(DEADLINE, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let (parts, body) = res.into_parts();
    let collected = timeout(DEADLINE, body.collect()).await.unwrap().unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    (parts, collected.to_bytes(), trailers)
}

#[tokio::test]
async fn trailers_are_forwarded_from_an_h2c_backend_to_an_http2_client() {
    let (_servers, lb) = grpc_lb(1, Config::new()).await;
    let (head, body, trailers) = raw_check(lb.addr).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["content-type"], "application/grpc");
    // One message: SERVING.
    assert_eq!(&body[..], [0, 0, 0, 0, 2, 0x08, 1]);
    assert_eq!(trailers["grpc-status"], "0");
}

#[tokio::test]
async fn no_backend_is_unavailable_for_grpc_clients_with_200_and_grpc_status() {
    let lb = start(Config::new()).await;
    let mut client = health_client(lb.addr).await;
    let status = client.check(check("")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "no available server");

    let (head, body, _) = raw_check(lb.addr).await;
    assert_eq!(head.status, StatusCode::OK, "not a 503 with a JSend body");
    assert_eq!(head.headers["grpc-status"], "14");
    assert_eq!(head.headers["content-type"], "application/grpc");
    assert!(body.is_empty());
    // Other clients still get JSend.
    assert_eq!(lb.get("/").await.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_backend_timeout_is_deadline_exceeded_for_grpc_clients() {
    // An HTTP/2 backend that answers its health checks and nothing else.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(|req: Request<Incoming>| async move {
                        if req.uri().path() != "/health" {
                            std::future::pending::<()>().await;
                        }
                        Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
                    }),
                ),
            );
        }
    });
    let backend: BackendAddr = format!("h2c://{addr}").parse().unwrap();
    let config = Config::new()
        .health_interval(Duration::from_secs(3600))
        .backend(backend.to_string().parse().unwrap())
        .proxy_client(
            tower_lb::proxy::ProxyClientBuilder::new().response_timeout(Duration::from_millis(200)),
        );
    let lb = start(config).await;
    lb.wait_health(&backend, Health::Healthy).await;
    let mut client = health_client(lb.addr).await;
    let status = client.check(check("")).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(status.message(), "backend timeout");
}

#[tokio::test]
async fn the_grpc_health_probe_marks_a_not_serving_backend_down_and_back_up() {
    let a = GrpcServer::start().await;
    let b = GrpcServer::start().await;
    let config = Config::new()
        .health_grpc("demo.Echo")
        .health_interval(Duration::from_millis(100))
        .backend(a.h2c().to_string().parse().unwrap())
        .backend(b.h2c().to_string().parse().unwrap());
    for s in [&a, &b] {
        s.reporter
            .set_service_status("demo.Echo", ServingStatus::Serving)
            .await;
    }
    let lb = start(config).await;
    lb.wait_health(&a.h2c(), Health::Healthy).await;
    lb.wait_health(&b.h2c(), Health::Healthy).await;

    b.reporter
        .set_service_status("demo.Echo", ServingStatus::NotServing)
        .await;
    lb.wait_health(&b.h2c(), Health::Unhealthy).await;
    let error = lb.health.get(&b.h2c()).unwrap().last_error;
    assert_eq!(
        error.as_deref(),
        Some("gRPC health check answered NOT_SERVING")
    );
    // Every call goes to the serving one now.
    let mut client = health_client(lb.addr).await;
    let before = (a.calls(), b.calls());
    for _ in 0..6 {
        client.check(check("")).await.unwrap();
    }
    assert_eq!((a.calls(), b.calls()), (before.0 + 6, before.1));

    b.reporter
        .set_service_status("demo.Echo", ServingStatus::Serving)
        .await;
    lb.wait_health(&b.h2c(), Health::Healthy).await;
}

#[tokio::test]
async fn an_h2c_hyper_backend_serves_http1_clients_on_one_multiplexed_connection() {
    // An HTTP/2-only backend answering with the version it got, counting its connections.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(|req: Request<Incoming>| async move {
                        let answer = format!(
                            "{:?} {} host={}",
                            req.version(),
                            req.uri(),
                            req.uri().authority().map_or("", |a| a.as_str())
                        );
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(answer))))
                    }),
                ),
            );
        }
    });
    let backend: BackendAddr = format!("h2c://{addr}").parse().unwrap();
    let lb = start(
        Config::new()
            .health_path("/health")
            .backend(backend.to_string().parse().unwrap()),
    )
    .await;
    lb.wait_health(&backend, Health::Healthy).await;
    // Twenty HTTP/1.1 clients at once, each on a connection of its own.
    let replies = futures_util::future::join_all((0..20).map(|i| {
        let url = lb.url(&format!("/item/{i}?x=1"));
        async move {
            let client = support::client();
            let req = Request::get(url)
                .header("host", "app.example")
                .body(Full::new(Bytes::new()))
                .unwrap();
            support::send_request(&client, req).await
        }
    }))
    .await;
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.body,
            format!("HTTP/2.0 http://app.example/item/{i}?x=1 host=app.example")
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the health checks and all 20 requests share one HTTP/2 connection"
    );
}

#[tokio::test]
async fn least_connections_counts_the_streams_of_one_multiplexed_connection() {
    let (servers, lb) = grpc_lb(2, Config::new().algo(tower_lb::Algo::LeastConn)).await;
    for s in &servers {
        s.reporter
            .set_service_status("demo.Echo", ServingStatus::Serving)
            .await;
    }
    let mut client = health_client(lb.addr).await;
    // A long server-streaming call holds a stream on one server...
    let mut watch = client.watch(check("demo.Echo")).await.unwrap().into_inner();
    timeout(DEADLINE, watch.message()).await.unwrap().unwrap();
    let busy = servers.iter().position(|s| s.calls() == 1).unwrap();
    let before: Vec<usize> = servers.iter().map(GrpcServer::calls).collect();
    // ...so every unary call goes to the other, though both connections are open and idle.
    for _ in 0..8 {
        client.check(check("")).await.unwrap();
    }
    let got: Vec<usize> = servers
        .iter()
        .zip(&before)
        .map(|(s, before)| s.calls() - before)
        .collect();
    assert_eq!(got[busy], 0, "{got:?}");
    assert_eq!(got[1 - busy], 8, "{got:?}");
    drop(watch);
}

/// nginx serving HTTP/2 with prior knowledge (`listen … http2` without TLS) on a free port of
/// 127.0.0.1, answering with the protocol it got; stopped when dropped.
struct Nginx {
    child: std::process::Child,
    port: u16,
    dir: TempDir,
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Nginx {
    async fn start() -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir =
            std::env::temp_dir().join(format!("tower-lb-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d};\n proxy_temp_path {d};\n \
             fastcgi_temp_path {d};\n uwsgi_temp_path {d};\n scgi_temp_path {d};\n \
             server {{\n  listen 127.0.0.1:{port} http2;\n  \
             location / {{ return 200 \"nginx $server_protocol $http_host $request_uri\"; }}\n }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = std::process::Command::new("nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx is not installed: apt-get install nginx");
        let nginx = Self {
            child,
            port,
            dir: TempDir(dir),
        };
        support::eventually("nginx listens", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        })
        .await;
        nginx
    }
}

impl Drop for Nginx {
    /// `nginx -s stop` (SIGTERM to the master, which stops its workers; a SIGKILL would leave
    /// them behind), then the kill should it not have worked.
    fn drop(&mut self) {
        let stopped = std::process::Command::new("nginx")
            .arg("-c")
            .arg(self.dir.0.join("nginx.conf"))
            .arg("-p")
            .arg(&self.dir.0)
            .args(["-s", "stop"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn nginx_http2_listener_serves_http1_and_http2_clients_as_an_h2c_backend() {
    let nginx = Nginx::start().await;
    let backend: BackendAddr = format!("h2c://127.0.0.1:{}", nginx.port).parse().unwrap();
    let lb = start(
        Config::new()
            .health_path("/health")
            .backend(backend.to_string().parse().unwrap()),
    )
    .await;
    lb.wait_health(&backend, Health::Healthy).await;
    let reply = support::send_request(
        &support::client(),
        Request::get(lb.url("/a?b=1"))
            .header("host", "app.example")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "nginx HTTP/2.0 app.example /a?b=1");

    // An HTTP/2 client too.
    let h2 = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let res = timeout(
        DEADLINE,
        h2.request(
            Request::get(lb.url("/c"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, format!("nginx HTTP/2.0 {} /c", lb.addr));
}

/// An HTTP/2 backend for a client-streaming method: reads every gRPC message of the request,
/// then answers one `HealthCheckResponse` whose `status` field is how many it read, with
/// `grpc-status: 0` in the trailers.
async fn counting_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                // Length-prefixed messages: 1 flag byte, 4 length bytes, the message.
                let (mut count, mut rest) = (0u8, &body[..]);
                while rest.len() >= 5 {
                    let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
                    rest = &rest[5 + len..];
                    count += 1;
                }
                let message = Bytes::from(vec![0, 0, 0, 0, 2, 0x08, count]);
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", "0".parse().unwrap());
                let frames = futures_util::stream::iter([
                    Ok::<_, Infallible>(hyper::body::Frame::data(message)),
                    Ok(hyper::body::Frame::trailers(trailers)),
                ]);
                let res = Response::builder()
                    .header("content-type", "application/grpc")
                    .body(http_body_util::StreamBody::new(frames))
                    .unwrap();
                Ok::<_, Infallible>(res)
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    addr
}

#[tokio::test]
async fn a_client_streaming_call_reaches_its_backend_whole_and_its_answer_and_trailers_return() {
    let backend = counting_backend().await;
    let addr: BackendAddr = format!("h2c://{backend}").parse().unwrap();
    let lb = start(
        Config::new()
            .health_interval(Duration::from_secs(3600))
            .backend(addr.to_string().parse().unwrap()),
    )
    .await;
    lb.wait_health(&addr, Health::Healthy).await;
    let channel = Channel::from_shared(format!("http://{}", lb.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let requests = futures_util::stream::iter((0..5).map(|i| check(&format!("s{i}"))));
    let codec: tonic_prost::ProstCodec<HealthCheckRequest, tonic_health::pb::HealthCheckResponse> =
        tonic_prost::ProstCodec::default();
    let res = timeout(
        DEADLINE,
        grpc.client_streaming(
            tonic::Request::new(requests),
            http::uri::PathAndQuery::from_static("/test.Counter/Count"),
            codec,
        ),
    )
    .await
    .unwrap()
    .expect("the call succeeds: grpc-status 0 came back in the trailers");
    assert_eq!(res.into_inner().status, 5, "five messages streamed");
}
