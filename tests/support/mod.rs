//! Shared helpers for end-to-end tests of the standalone balancer: an in-process
//! [`Server`] on 127.0.0.1:0, `backend_server` backends, a hyper client, and polling with a
//! deadline instead of sleeps.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_lb::admin::BackendSpec;
use tower_lb::health::{Health, HealthMonitor};
use tower_lb::server::access_log::AccessLog;
use tower_lb::server::{Backend, Balancer, Config, Reload, Server, ServerStats};
use tower_lb::{BackendAddr, Registry, Weighted};

/// Everything a test waits for is bounded by this.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A running balancer.
pub struct Lb {
    pub addr: SocketAddr,
    /// The separate admin listener, with `Config::admin_bind`.
    pub admin_addr: Option<SocketAddr>,
    pub registry: Registry<BackendAddr, Backend>,
    pub health: HealthMonitor<Weighted<BackendAddr>>,
    pub balancer: Balancer,
    /// The server's numbers, read while it runs.
    pub stats: ServerStats,
    /// The access log, with `Config::access_log`.
    pub access_log: Option<AccessLog>,
    /// Applies a new configuration while it runs.
    pub reload: Reload,
    pub client: HttpClient,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// Starts a [`Server`] with `config` on 127.0.0.1 and a free port.
pub async fn start(config: Config) -> Lb {
    let server = Server::bind(config.bind(([127, 0, 0, 1], 0)))
        .await
        .expect("bind the balancer");
    let (stop, stopped) = oneshot::channel::<()>();
    let addr = server.local_addr();
    let admin_addr = server.admin_addr();
    let registry = server.registry().clone();
    let health = server.health().clone();
    let balancer = server.balancer().clone();
    let stats = server.stats();
    let access_log = server.access_log().cloned();
    let reload = server.reload_handle();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Lb {
        addr,
        admin_addr,
        registry,
        health,
        balancer,
        stats,
        access_log,
        reload,
        client: client(),
        stop: Some(stop),
        task: Some(task),
    }
}

/// Starts a [`Server`] with `config` over one fresh [`backend`].
pub async fn lb_with(config: Config) -> (backend_server::Handle, Lb) {
    let b = backend().await;
    let lb = start(config.backend(b.url().parse().unwrap())).await;
    (b, lb)
}

impl Lb {
    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        send(
            &self.client,
            Method::GET,
            &self.url(path),
            None,
            Bytes::new(),
        )
        .await
    }

    /// `POST /register` with a JSON body.
    pub async fn register(&self, body: &str) -> Reply {
        send(
            &self.client,
            Method::POST,
            &self.url("/register"),
            Some("application/json"),
            Bytes::copy_from_slice(body.as_bytes()),
        )
        .await
    }

    /// The backend that answered `GET /` (its greeting), or the error status.
    pub async fn pick(&self) -> Result<String, Reply> {
        let reply = self.get("/").await;
        if reply.status != StatusCode::OK {
            return Err(reply);
        }
        Ok(greeter(reply.body.as_bytes()))
    }

    /// `n` backends picked in a row.
    pub async fn picks(&self, n: usize) -> Vec<String> {
        let mut picks = Vec::with_capacity(n);
        for _ in 0..n {
            picks.push(self.pick().await.expect("a backend answers"));
        }
        picks
    }

    /// Tells the server to stop gracefully, without waiting for it: [`Lb::stop`] waits.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Requests in flight at the balancer, by backend `host:port` (a backend's [`name`]).
    pub fn in_flight(&self) -> BTreeMap<String, usize> {
        self.balancer
            .endpoints()
            .iter()
            .map(|e| {
                let name = e.key().key().authority().to_string();
                (name, e.in_flight())
            })
            .collect()
    }

    /// Waits until the balancer reports `backend` with `health`.
    pub async fn wait_health(&self, backend: &BackendAddr, health: Health) {
        eventually(&format!("{backend} is {health}"), || async {
            (self.health.get(backend)?.status == health).then_some(())
        })
        .await;
    }

    /// Stops gracefully and waits for the server to return.
    pub async fn stop(mut self) {
        self.signal_stop();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("the server stops in time")
                .expect("the server task does not panic")
                .expect("the server returns Ok");
        }
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A keep-alive HTTP/1.1 client.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The `Content-Type`.
    pub fn content_type(&self) -> &str {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .map_or("", |v| v.to_str().unwrap())
    }
}

/// Sends one request and reads the whole response, within [`DEADLINE`].
pub async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    content_type: Option<&str>,
    body: Bytes,
) -> Reply {
    let mut req = Request::builder().method(method).uri(url);
    if let Some(ct) = content_type {
        req = req.header(http::header::CONTENT_TYPE, ct);
    }
    send_request(client, req.body(Full::new(body)).unwrap()).await
}

/// Sends `req` and reads the whole response, within [`DEADLINE`].
pub async fn send_request(client: &HttpClient, req: Request<Full<Bytes>>) -> Reply {
    let url = req.uri().to_string();
    let exchange = async {
        let res = client.request(req).await.expect("a response");
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("the whole body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8(body.to_vec()).expect("a UTF-8 body"),
        }
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("no response to {url} within {DEADLINE:?}"))
}

/// Polls `check` every 10 ms until it returns `Some`, panicking with `what` after
/// [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `lb` example, built once per test binary (`cargo build --example lb`), for tests that
/// run the program itself.
pub fn lb_binary() -> &'static std::path::Path {
    static BINARY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--example", "lb"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --example lb");
        assert!(status.success(), "cargo build --example lb failed");
        // target/debug/deps/TEST-HASH -> target/debug/examples/lb
        let exe = std::env::current_exe().unwrap();
        let binary = exe.parent().unwrap().parent().unwrap().join("examples/lb");
        assert!(binary.exists(), "{} missing", binary.display());
        binary
    })
}

/// A loopback port free now, for a program a test starts on it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A backend on 127.0.0.1 and a free port; its greeting names `addr`.
pub async fn backend() -> backend_server::Handle {
    backend_on("127.0.0.1:0".parse().unwrap()).await
}

/// `n` backends as [`backend`] starts them.
pub async fn backends(n: usize) -> Vec<backend_server::Handle> {
    let mut backends = Vec::with_capacity(n);
    for _ in 0..n {
        backends.push(backend().await);
    }
    backends
}

/// `handle` with `weight`, as the balancer's configuration takes it.
pub fn spec(handle: &backend_server::Handle, weight: u32) -> BackendSpec {
    BackendSpec::new(&handle.url(), weight).unwrap()
}

/// Each of `backends` with weight 1.
pub fn specs(backends: &[backend_server::Handle]) -> Vec<BackendSpec> {
    backends.iter().map(|b| spec(b, 1)).collect()
}

/// How `handle` names itself in its greeting (see [`greeter`]): its `host:port`.
pub fn name(handle: &backend_server::Handle) -> String {
    handle.addr().to_string()
}

/// A backend on `addr`.
pub async fn backend_on(addr: SocketAddr) -> backend_server::Handle {
    backend_server::spawn(addr).await.expect("start a backend")
}

/// Reads up to the end of a response head (`\r\n\r\n`), byte by byte so that nothing after
/// it is consumed, within [`DEADLINE`].
pub async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let mut head = Vec::new();
    let read = async {
        while !head.ends_with(b"\r\n\r\n") {
            let byte = stream.read_u8().await.expect("a response head");
            head.push(byte);
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("a head in time");
    String::from_utf8(head).expect("a UTF-8 head")
}

/// Reads until the peer closes, within [`DEADLINE`]; a reset counts as closed.
pub async fn read_to_end(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    match tokio::time::timeout(DEADLINE, stream.read_to_end(&mut out)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Err(e)) => panic!("read: {e}"),
        Err(_) => panic!("the connection was not closed within {DEADLINE:?}"),
    }
    String::from_utf8(out).expect("UTF-8")
}

/// A port on 127.0.0.1 where nothing listens.
pub async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// A port whose listen backlog is full: connects to it hang.
pub async fn port_that_never_accepts() -> (SocketAddr, Vec<TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    // Never accepted; leaked so that the socket stays open for the test.
    std::mem::forget(listener);
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_millis(100), TcpStream::connect(addr)).await
        {
            fillers.push(stream);
        }
    }
    (addr, fillers)
}

/// An HTTP/1.1 connection to `to`, its own, from `from` (any port) when given: all of
/// 127.0.0.0/8 is loopback on Linux, so 127.0.0.2, 127.0.0.3, … act as different clients.
pub async fn connect<B>(
    from: Option<std::net::IpAddr>,
    to: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    if let Some(ip) = from {
        socket
            .bind(SocketAddr::new(ip, 0))
            .unwrap_or_else(|e| panic!("bind {ip}: {e}"));
    }
    let connecting = async {
        let stream = socket.connect(to).await.expect("connect to the balancer");
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("an HTTP/1.1 handshake")
    };
    let (sender, conn) = tokio::time::timeout(DEADLINE, connecting)
        .await
        .unwrap_or_else(|_| panic!("no connection to {to} within {DEADLINE:?}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// Sends `req` on `sender` and reads the whole response, within [`DEADLINE`].
pub async fn exchange<B>(
    sender: &mut hyper::client::conn::http1::SendRequest<B>,
    req: Request<B>,
) -> http::Response<Bytes>
where
    B: http_body::Body + Send + 'static,
{
    let what = format!("{} {}", req.method(), req.uri());
    let exchange = async {
        sender.ready().await.expect("the connection is open");
        let res = sender.send_request(req).await.expect("a response");
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("the whole body").to_bytes();
        http::Response::from_parts(parts, body)
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("no response to {what} within {DEADLINE:?}"))
}

/// `GET {path}` with `Host: {to}` and these extra headers, with an empty body.
pub fn get_request(
    to: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Request<http_body_util::Empty<Bytes>> {
    let mut req = Request::get(path).header(http::header::HOST, to.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(http_body_util::Empty::new()).unwrap()
}

/// The backend a `backend_server` greeting names.
pub fn greeter(body: &[u8]) -> String {
    let body = std::str::from_utf8(body).expect("a UTF-8 greeting");
    body.trim()
        .strip_prefix("Hello from Rust server at ")
        .unwrap_or_else(|| panic!("not a greeting: {body:?}"))
        .to_owned()
}

/// The backend that answers `GET /` with these headers, asked on a new connection from `from`.
pub async fn pick_from(to: SocketAddr, from: std::net::IpAddr, headers: &[(&str, &str)]) -> String {
    let mut sender = connect(Some(from), to).await;
    let res = exchange(&mut sender, get_request(to, "/", headers)).await;
    assert_eq!(res.status(), StatusCode::OK, "{res:?}");
    greeter(res.body())
}

/// Starts a `GET path` on a raw connection to `lb` and reads its head (`200 OK`): a streamed
/// response whose body is still to come.
pub async fn start_streaming(lb: &Lb, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(lb.addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: lb\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    stream
}
