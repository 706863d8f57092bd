//! A small, fast HTTP server to balance over, and to test and benchmark the balancer against.
//!
//! It speaks HTTP/1.1 with keep-alive (and HTTP/2 with prior knowledge) through hyper, with
//! `TCP_NODELAY` and no allocation on its hot path beyond hyper's own. Every response to `/`
//! names the server that sent it, so a test can tell which backend the balancer chose.
//!
//! # Routes
//!
//! Routes accept any method; `HEAD` gets the `GET` response without its body.
//!
//! | route                              | response                                                        |
//! |------------------------------------|-----------------------------------------------------------------|
//! | `/`                                | `200 Hello from Rust server at 127.0.0.1:1081\n` (its own listen address) |
//! | `/health`                          | `200 OK`                                                        |
//! | `/echo`                            | `200`, the request body streamed back; `x-echo-method`, `x-echo-path` (path and query as received) and every `x-test-*` request header echoed |
//! | `/status/{code}`                   | that status (200–999) with body `status {code}\n` (empty for 204 and 304); other codes `400` |
//! | `/stream?chunks=N&delay_ms=D`      | `200`, a chunked body of `N` chunks `chunk {i}\n`, the first at once and then one every `D` ms (defaults 3 and 100) |
//! | `/sleep?ms=N`                      | `200 slept {N} ms\n` after `N` ms                                |
//! | `/headers`                         | `200`, the request headers as a JSON object, name → value, repeated headers joined with `", "` |
//! | `/bytes?n=N`                       | `200`, a body of `N` bytes `x`, with `Content-Length`          |
//! | `/upload?ms=N`                     | reads the whole request body, waits `N` ms (default 0), then `200 received {n} bytes\n` |
//! | `/ws`                              | with `Connection: upgrade` and `Upgrade: websocket`: `101 Switching Protocols`, then every byte the client sends is echoed back raw (no WebSocket framing) until it closes; without them, `426 Upgrade Required` |
//! | anything else                      | `404 not found\n`                                               |
//!
//! A missing or malformed `ms` (of `/sleep`) or `n`, or a malformed `chunks`, `delay_ms` or `ms`
//! (of `/upload`), is a `400`.
//!
//! # Examples
//!
//! In-process, as tests and examples use it:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let backend = backend_server::spawn("127.0.0.1:0".parse().unwrap()).await?;
//! println!("backend at {}", backend.url());
//! assert_eq!(backend.stats().connections(), 0);
//! backend.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Or with your own listener and shutdown signal:
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:1080").await?;
//! backend_server::serve(listener, async {
//!     tokio::signal::ctrl_c().await.ok();
//! })
//! .await
//! # }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Sleep;

/// Serves on `listener` until `shutdown` completes, then stops accepting and waits for the
/// requests in flight to finish. Idle keep-alive connections are closed at once.
///
/// Short for `Server::new(listener).run(shutdown)`.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    Server::new(listener).run(shutdown).await
}

/// Binds `addr` with `SO_REUSEADDR` and a listen backlog of 4096.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Binds `addr` and serves on a new task; the returned [`Handle`] stops it.
///
/// Bind to port 0 for a free port and read it from [`Handle::addr`].
pub async fn spawn(addr: SocketAddr) -> io::Result<Handle> {
    spawn_on(bind(addr)?)
}

/// Like [`spawn`], on a listener already bound (so that no one can take its address between
/// a check and the bind). Must be called within a tokio runtime.
pub fn spawn_on(listener: TcpListener) -> io::Result<Handle> {
    let server = Server::new(listener);
    let addr = server.local_addr()?;
    let stats = server.stats();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        // Sent, or the handle dropped: either way, shut down.
        let _ = rx.await;
    }));
    Ok(Handle {
        addr,
        stats,
        shutdown: Some(tx),
        task: Some(task),
    })
}

/// A server on a listener, configured before [`run`](Server::run).
#[derive(Debug)]
#[must_use]
pub struct Server {
    listener: TcpListener,
    stats: Stats,
    grace: Option<Duration>,
}

impl Server {
    /// A server on `listener`, with fresh [`Stats`] and no limit on the graceful shutdown.
    pub fn new(listener: TcpListener) -> Self {
        Self {
            listener,
            stats: Stats::default(),
            grace: None,
        }
    }

    /// Counts into `stats` instead of fresh counters.
    pub fn with_stats(mut self, stats: Stats) -> Self {
        self.stats = stats;
        self
    }

    /// How long requests in flight may take to finish after shutdown starts; the connections
    /// still open then are closed. `None` (the default) waits for them all.
    pub fn grace_period(mut self, grace: impl Into<Option<Duration>>) -> Self {
        self.grace = grace.into();
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The server's counters; clones share them.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Serves until `shutdown` completes, then shuts down gracefully: stops accepting,
    /// closes idle connections, and waits for requests in flight (up to the
    /// [`grace_period`](Self::grace_period)).
    ///
    /// Connections run on tasks of their own; dropping this future (e.g. aborting its task)
    /// closes them all at once.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let Self {
            listener,
            stats,
            grace,
        } = self;
        let addr = listener.local_addr()?;
        let ctx = Arc::new(Ctx {
            hello: Bytes::from(format!("Hello from Rust server at {addr}\n")),
            stats,
        });

        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().keep_alive(true).pipeline_flush(true);
        let graceful = GracefulShutdown::new();
        let mut connections = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);

        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _peer)) => stream,
                        Err(err) => {
                            // Out of file descriptors, or a connection reset while queued: back
                            // off a little rather than spin, and keep serving.
                            if !is_connection_error(&err) {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    ctx.stats.inner.connections.fetch_add(1, Ordering::Relaxed);
                    let ctx = Arc::clone(&ctx);
                    let svc = service_fn(move |req| respond(req, Arc::clone(&ctx)));
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .into_owned();
                    let conn = graceful.watch(conn);
                    connections.spawn(async move {
                        // A client that goes away mid-request is not the server's problem.
                        let _ = conn.await;
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }

        drop(listener);
        match grace {
            None => graceful.shutdown().await,
            Some(grace) => {
                // On timeout the remaining connections are aborted with `connections`.
                let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
            }
        }
        Ok(())
    }
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Counters of a running server, shared by clones.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
}

impl Stats {
    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }
}

/// A server started by [`spawn`].
///
/// Dropping the handle starts a graceful shutdown, as [`shutdown`](Handle::shutdown) does
/// without waiting for it.
#[derive(Debug)]
pub struct Handle {
    addr: SocketAddr,
    stats: Stats,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Handle {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Shuts down gracefully and waits until every connection is closed.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| Err(io::Error::other(e))),
            None => Ok(()),
        }
    }

    /// Stops at once: closes the listener and every connection, in flight or not, as if the
    /// process died.
    pub async fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// What every request handler shares.
struct Ctx {
    hello: Bytes,
    stats: Stats,
}

static X_ECHO_METHOD: HeaderName = HeaderName::from_static("x-echo-method");
static X_ECHO_PATH: HeaderName = HeaderName::from_static("x-echo-path");
static TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
static APPLICATION_OCTET_STREAM: HeaderValue = HeaderValue::from_static("application/octet-stream");

async fn respond(req: Request<Incoming>, ctx: Arc<Ctx>) -> Result<Response<Body>, Infallible> {
    ctx.stats.inner.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path();
    let res = match path {
        "/" => text(StatusCode::OK, ctx.hello.clone()),
        "/health" => text(StatusCode::OK, Bytes::from_static(b"OK")),
        "/echo" => echo(req),
        "/stream" => stream(req.uri().query()),
        "/sleep" => match param(req.uri().query(), "ms") {
            Some(Ok(ms)) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(StatusCode::OK, format!("slept {ms} ms\n").into())
            }
            _ => bad_request("expected ?ms=N\n"),
        },
        "/upload" => match param(req.uri().query(), "ms").unwrap_or(Ok(0)) {
            Ok(ms) => {
                let mut body = req.into_body();
                let mut received = 0u64;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(frame) => {
                            received += frame.data_ref().map_or(0, |d| d.len() as u64);
                        }
                        Err(_) => return Ok(bad_request("request body failed\n")),
                    }
                }
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(
                    StatusCode::OK,
                    format!("received {received} bytes\n").into(),
                )
            }
            Err(()) => bad_request("expected ?ms=N\n"),
        },
        "/headers" => headers_json(&req),
        "/ws" => upgrade_echo(req),
        "/bytes" => match param(req.uri().query(), "n") {
            Some(Ok(n)) => {
                let mut res = Response::new(Body::Fill { remaining: n });
                res.headers_mut()
                    .insert(header::CONTENT_TYPE, APPLICATION_OCTET_STREAM.clone());
                res
            }
            _ => bad_request("expected ?n=N\n"),
        },
        _ => match path.strip_prefix("/status/") {
            Some(code) => status(code),
            None => text(StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
        },
    };
    Ok(res)
}

fn text(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut res = Response::new(Body::Full(Some(body)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, TEXT_PLAIN.clone());
    res
}

fn bad_request(message: &'static str) -> Response<Body> {
    text(
        StatusCode::BAD_REQUEST,
        Bytes::from_static(message.as_bytes()),
    )
}

fn echo(req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let mut res = Response::new(Body::Echo(body));
    let headers = res.headers_mut();
    headers.insert(
        &X_ECHO_METHOD,
        HeaderValue::from_str(parts.method.as_str()).expect("methods are valid header values"),
    );
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    headers.insert(
        &X_ECHO_PATH,
        HeaderValue::from_str(path).expect("paths are valid header values"),
    );
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        headers.insert(header::CONTENT_TYPE, ct.clone());
    }
    for (name, value) in &parts.headers {
        if name.as_str().starts_with("x-test-") {
            headers.append(name, value.clone());
        }
    }
    res
}

/// `/ws`: a connection upgrade to a raw echo of every byte, for testing tunnels through a proxy.
fn upgrade_echo(mut req: Request<Incoming>) -> Response<Body> {
    let asks_upgrade = req.headers().get(header::CONNECTION).is_some_and(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    let protocol = match req.headers().get(header::UPGRADE) {
        Some(protocol) if asks_upgrade => protocol.clone(),
        _ => {
            return text(
                StatusCode::UPGRADE_REQUIRED,
                Bytes::from_static(b"upgrade required\n"),
            );
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let (mut read, mut write) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut read, &mut write).await;
        }
    });
    let mut res = Response::new(Body::Full(None));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    res.headers_mut().insert(header::UPGRADE, protocol);
    res
}

fn status(code: &str) -> Response<Body> {
    let Some(status) = code
        .parse::<u16>()
        .ok()
        .filter(|c| *c >= 200)
        .and_then(|c| StatusCode::from_u16(c).ok())
    else {
        return bad_request("expected /status/{code} with 200 <= code <= 999\n");
    };
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        let mut res = Response::new(Body::Full(None));
        *res.status_mut() = status;
        return res;
    }
    text(status, format!("status {}\n", status.as_u16()).into())
}

fn stream(query: Option<&str>) -> Response<Body> {
    let chunks = param(query, "chunks").unwrap_or(Ok(3));
    let delay = param(query, "delay_ms").unwrap_or(Ok(100));
    let (Ok(chunks), Ok(delay)) = (chunks, delay) else {
        return bad_request("expected ?chunks=N&delay_ms=D\n");
    };
    let mut res = Response::new(Body::Stream(Chunks {
        next: 0,
        total: chunks,
        delay: Duration::from_millis(delay),
        sleep: None,
    }));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, TEXT_PLAIN.clone());
    res
}

fn headers_json(req: &Request<Incoming>) -> Response<Body> {
    let headers = req.headers();
    // Each name once, its values joined as a proxy would fold them.
    let object: serde_json::Map<String, serde_json::Value> = headers
        .keys()
        .map(|name| {
            let values: Vec<_> = headers
                .get_all(name)
                .iter()
                .map(|value| String::from_utf8_lossy(value.as_bytes()))
                .collect();
            (name.as_str().to_owned(), values.join(", ").into())
        })
        .collect();
    let body = serde_json::to_vec(&object).expect("a map of strings always serializes");
    let mut res = Response::new(Body::Full(Some(body.into())));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, APPLICATION_JSON.clone());
    res
}

/// The value of query parameter `name`: `None` if absent, `Some(Err)` if not a number.
fn param(query: Option<&str>, name: &str) -> Option<Result<u64, ()>> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| v.parse().map_err(drop))
    })
}

/// The response body of every route.
enum Body {
    Full(Option<Bytes>),
    Echo(Incoming),
    Stream(Chunks),
    Fill { remaining: u64 },
}

struct Chunks {
    next: u64,
    total: u64,
    delay: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

static FILL: [u8; 64 * 1024] = [b'x'; 64 * 1024];

impl HttpBody for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Body::Echo(incoming) => Pin::new(incoming).poll_frame(cx),
            Body::Fill { remaining } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let n = (*remaining).min(FILL.len() as u64) as usize;
                *remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&FILL[..n])))))
            }
            Body::Stream(chunks) => {
                if chunks.next == chunks.total {
                    return Poll::Ready(None);
                }
                if let Some(sleep) = chunks.sleep.as_mut() {
                    std::task::ready!(sleep.as_mut().poll(cx));
                }
                let i = chunks.next;
                chunks.next += 1;
                if chunks.next < chunks.total {
                    let deadline = tokio::time::Instant::now() + chunks.delay;
                    match chunks.sleep.as_mut() {
                        Some(sleep) => sleep.as_mut().reset(deadline),
                        None => chunks.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                }
                Poll::Ready(Some(Ok(Frame::data(format!("chunk {i}\n").into()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(data) => data.is_none(),
            Body::Echo(incoming) => incoming.is_end_stream(),
            Body::Fill { remaining } => *remaining == 0,
            Body::Stream(chunks) => chunks.next == chunks.total,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Body::Echo(incoming) => incoming.size_hint(),
            Body::Fill { remaining } => SizeHint::with_exact(*remaining),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Body::Full(_) => "Body::Full",
            Body::Echo(_) => "Body::Echo",
            Body::Stream(_) => "Body::Stream",
            Body::Fill { .. } => "Body::Fill",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_parse() {
        assert_eq!(param(Some("ms=5"), "ms"), Some(Ok(5)));
        assert_eq!(param(Some("a=1&ms=7&b"), "ms"), Some(Ok(7)));
        assert_eq!(param(Some("ms=x"), "ms"), Some(Err(())));
        assert_eq!(param(Some("ms"), "ms"), Some(Err(())));
        assert_eq!(param(Some("a=1"), "ms"), None);
        assert_eq!(param(None, "ms"), None);
    }

    #[test]
    fn status_route_validates_codes() {
        assert_eq!(status("201").status(), StatusCode::CREATED);
        assert_eq!(status("204").status(), StatusCode::NO_CONTENT);
        assert_eq!(status("100").status(), StatusCode::BAD_REQUEST);
        assert_eq!(status("1000").status(), StatusCode::BAD_REQUEST);
        assert_eq!(status("abc").status(), StatusCode::BAD_REQUEST);
    }
}
