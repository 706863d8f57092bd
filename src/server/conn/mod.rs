//! Client connections: accepting under a cap, timeouts for slow and idle clients, and the
//! graceful shutdown of them all.
//!
//! **Timeouts** (HAProxy's `timeout http-request` and `timeout http-keep-alive`, nginx's
//! `client_header_timeout` and `keepalive_timeout`) are kept by [`TimedIo`], a thin wrapper
//! around the socket that hyper reads through, with the help of [`Tracked`], which wraps the
//! connection's service and counts its requests in flight (until each response body ends):
//!
//! - a new connection must deliver a complete request head within the *header timeout*;
//! - once a response is done, the connection may sit idle for the *idle timeout*; from the
//!   first byte of the next request, that request's head must be complete within the header
//!   timeout;
//! - while a request is in flight, no timeout of ours applies (the backend timeouts do);
//! - when a timeout strikes, a client that sent part of a head gets `408 Request Timeout`
//!   (JSend body) and the connection is closed; a client that sent nothing (an idle keep-alive
//!   connection, or a pre-connect) is closed silently;
//! - HTTP/2 connections (prior knowledge) have only the idle timeout, counted while no stream
//!   is open; an upgraded connection (WebSocket tunnel) has none.
//!
//! hyper's own `header_read_timeout` is not used: in hyper 1 it starts as soon as the
//! connection is ready for the next request head, so it bounds the idle time between
//! keep-alive requests too, and it closes the connection without a response.
//!
//! **Idle connections** give hyper's state back: an HTTP/1 connection idle for [`PARK_AFTER`]
//! after a response is taken out of hyper (its 8 KiB read and write buffers and the rest are
//! freed) and waits on the bare socket, under the same idle timeout; its next request gets a
//! new hyper connection. Busy keep-alive connections never park. See [`Connection::serve`].
//!
//! **The connection cap** ([`Config::max_connections`](super::Config::max_connections)), as
//! HAProxy's `maxconn`: at the cap the server stops accepting, so new connections wait in the
//! kernel's listen backlog until one closes. Each connection holds its place until its socket
//! closes, tunnels included.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};

use super::service::Client;
use crate::BoxError;

/// What a connection is allowed; from the [`Config`](super::Config).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_header_size: usize,
    pub(crate) max_connections: Option<usize>,
}

/// The server's connections: accepts under the cap, serves each on its own task, and shuts
/// them all down.
pub(crate) struct Connections {
    builders: Arc<Builders>,
    settings: Settings,
    cap: Option<Arc<Semaphore>>,
    /// Where the shutdown stands; every connection's task holds a receiver, so the receiver
    /// count is the number of connections open.
    stage: watch::Sender<Stage>,
    /// Connections parked now: idle, with no hyper state.
    parked: Arc<AtomicUsize>,
    client: Client,
}

/// hyper's connection builders, one per protocol.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

/// Where a graceful shutdown stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Serving,
    /// Finish the requests in flight, close idle connections.
    Draining,
    /// The grace period is over: close everything.
    Cut,
}

impl Connections {
    pub(crate) fn new(settings: Settings, client: Client) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            // Ours are kept by `TimedIo`; see the module docs.
            .header_read_timeout(None)
            // hyper answers `431` to a longer request head. Its read buffer alone is not an
            // exact limit: a head that arrives in a few large reads may fit in what it
            // reserved beyond the maximum.
            .max_header_size(settings.max_header_size)
            .max_buf_size(settings.max_header_size)
            // One buffer per write (`send`) rather than `writev` of the head and the body:
            // less kernel time per response, measured; bodies are copied once into it.
            .writev(false);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(settings.max_header_size).unwrap_or(u32::MAX));
        Self {
            builders: Arc::new(Builders { http1, http2 }),
            settings,
            cap: settings
                .max_connections
                .map(|max| Arc::new(Semaphore::new(max))),
            stage: watch::Sender::new(Stage::Serving),
            parked: Arc::default(),
            client,
        }
    }

    /// The connections of another worker: same settings and client, the same connection
    /// cap (one count for the whole server), a graceful shutdown of their own.
    pub(crate) fn sibling(&self) -> Self {
        Self {
            builders: Arc::clone(&self.builders),
            settings: self.settings,
            cap: self.cap.clone(),
            stage: watch::Sender::new(Stage::Serving),
            parked: Arc::default(),
            client: self.client.clone(),
        }
    }

    /// A place for one more connection: waits while the server is at its connection cap.
    pub(crate) async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        match &self.cap {
            Some(cap) => Arc::clone(cap).acquire_owned().await.ok(),
            None => None,
        }
    }

    /// Connections open now (upgraded ones excluded).
    pub(crate) fn count(&self) -> usize {
        self.stage.receiver_count()
    }

    /// Idle keep-alive connections parked now, without hyper's buffers.
    pub(crate) fn parked(&self) -> usize {
        self.parked.load(Ordering::Relaxed)
    }

    /// Serves `stream` with `service` on a task of its own.
    pub(crate) fn serve<S, B>(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        permit: Option<OwnedSemaphorePermit>,
        service: S,
    ) where
        S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
            + Send
            + Unpin
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "TCP_NODELAY not set");
        }
        let state = Arc::new(ConnState::default());
        let io = TimedIo::new(stream, Arc::clone(&state), self.settings, permit);
        let service = Tracked {
            inner: service,
            state,
        };
        let connection = Connection {
            builders: Arc::clone(&self.builders),
            stage: self.stage.subscribe(),
            parked: Arc::clone(&self.parked),
            peer,
        };
        tokio::spawn(connection.serve(io, service));
    }

    /// Shuts down gracefully: idle connections close at once; those with requests in flight
    /// (and open tunnels) get up to `grace` to finish, then are closed.
    pub(crate) async fn shutdown(self, grace: Duration) {
        let Self { stage, client, .. } = self;
        tracing::info!(
            connections = stage.receiver_count(),
            tunnels = client.open_tunnels(),
            "shutting down",
        );
        stage.send_replace(Stage::Draining);
        let finished = async {
            stage.closed().await;
            client.tunnels_closed().await;
        };
        if tokio::time::timeout(grace, finished).await.is_err() {
            tracing::warn!(
                grace = ?grace,
                connections = stage.receiver_count(),
                tunnels = client.open_tunnels(),
                "requests still in flight at the end of the grace period were cut",
            );
            stage.send_replace(Stage::Cut);
            client.close_tunnels();
            // The tasks only have to notice.
            let _ = tokio::time::timeout(Duration::from_secs(1), stage.closed()).await;
        }
    }
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("settings", &self.settings)
            .field("open", &self.count())
            .field("parked", &self.parked())
            .finish_non_exhaustive()
    }
}

/// How long a keep-alive connection waits for its next request before it gives its buffers
/// back (see [`Connection::serve`]): long enough that a busy connection never parks, short
/// enough that a burst of connections going idle does not pile up buffers.
const PARK_AFTER: Duration = Duration::from_millis(100);

/// One client connection's task.
struct Connection {
    builders: Arc<Builders>,
    stage: watch::Receiver<Stage>,
    parked: Arc<AtomicUsize>,
    peer: SocketAddr,
}

/// What woke a connection that waited for its next bytes.
enum Woke {
    Readable,
    /// Its deadline passed, or the server is shutting down: close it.
    Close,
}

impl Connection {
    /// Serves the connection until it ends.
    ///
    /// The first bytes tell HTTP/2 with prior knowledge from HTTP/1 (the auto-detection of
    /// hyper-util's `auto` builder, without its wrapper around every read and write). An
    /// HTTP/1 connection idle for [`PARK_AFTER`] between two requests is taken back from
    /// hyper, which frees its read and write buffers (8 KiB each) and the rest of its state,
    /// and served anew when bytes arrive: an idle keep-alive connection costs this task and
    /// its socket's registration, a few KiB, rather than hyper's 16 KiB and more.
    async fn serve<S, B>(mut self, mut io: TimedIo, mut service: Tracked<S>)
    where
        S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
            + Send
            + Unpin
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // Nothing of hyper's until the client sends something, within the header timeout.
        if let Woke::Close = self.wait(&mut io).await {
            return;
        }
        match sniff_http2(&io).await {
            Ok(false) => {}
            Ok(true) => {
                // Until it ends, with a graceful shutdown (`GOAWAY`) when the server drains.
                let conn = self
                    .builders
                    .http2
                    .serve_connection(TokioIo::new(io), service);
                let mut conn = std::pin::pin!(conn);
                let mut watching = true;
                if *self.stage.borrow() != Stage::Serving {
                    conn.as_mut().graceful_shutdown();
                }
                loop {
                    let event = tokio::select! {
                        biased;
                        result = conn.as_mut() => Event::Served(Some(result)),
                        changed = self.stage.changed(), if watching => Event::Stage(changed.is_ok()),
                    };
                    match event {
                        Event::Served(result) => {
                            if let Some(Err(error)) = result {
                                tracing::debug!(peer = %self.peer, %error, "connection ended with an error");
                            }
                            return;
                        }
                        Event::Stage(false) => watching = false,
                        Event::Stage(true) => match *self.stage.borrow_and_update() {
                            Stage::Serving => {}
                            Stage::Draining => conn.as_mut().graceful_shutdown(),
                            Stage::Cut => return,
                        },
                    }
                }
            }
            Err(error) => {
                tracing::debug!(peer = %self.peer, %error, "connection failed");
                return;
            }
        }
        let state = Arc::clone(&service.state);
        loop {
            let mut conn = Box::new(
                self.builders
                    .http1
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades(),
            );
            let mut draining = false;
            let mut watching = true;
            if *self.stage.borrow() != Stage::Serving {
                Pin::new(&mut *conn).graceful_shutdown();
                draining = true;
            }
            let parked = loop {
                let event = tokio::select! {
                    biased;
                    served = std::future::poll_fn(|cx| match Pin::new(&mut *conn).poll(cx) {
                        Poll::Ready(result) => Poll::Ready(Some(result)),
                        // hyper waits for the next request, with nothing buffered either way.
                        Poll::Pending if !draining && state.take_park() => Poll::Ready(None),
                        Poll::Pending => Poll::Pending,
                    }) => Event::Served(served),
                    changed = self.stage.changed(), if watching => Event::Stage(changed.is_ok()),
                };
                match event {
                    Event::Served(Some(result)) => {
                        if let Err(error) = result {
                            tracing::debug!(peer = %self.peer, %error, "connection ended with an error");
                        }
                        return;
                    }
                    Event::Served(None) => break conn,
                    Event::Stage(false) => watching = false,
                    Event::Stage(true) => match *self.stage.borrow_and_update() {
                        Stage::Serving => {}
                        Stage::Draining => {
                            Pin::new(&mut *conn).graceful_shutdown();
                            draining = true;
                        }
                        Stage::Cut => {
                            tracing::debug!(peer = %self.peer, "connection closed at the end of the grace period");
                            return;
                        }
                    },
                }
            };
            // Idle: hyper gives the socket back, and what it read past the last request.
            let Some(parts) = (*parked).into_parts() else {
                return;
            };
            let http1::Parts {
                io: parked_io,
                read_buf,
                service: parked_service,
                ..
            } = parts;
            io = parked_io.into_inner();
            service = parked_service;
            if !read_buf.is_empty() {
                io.unread(read_buf);
                continue;
            }
            // Empty, but it may still hold hyper's whole read buffer.
            drop(read_buf);
            self.parked.fetch_add(1, Ordering::Relaxed);
            let woke = self.wait(&mut io).await;
            self.parked.fetch_sub(1, Ordering::Relaxed);
            if let Woke::Close = woke {
                return;
            }
        }
    }

    /// Waits for the connection's next bytes, until its deadline passes or the server shuts
    /// down.
    async fn wait(&mut self, io: &mut TimedIo) -> Woke {
        if *self.stage.borrow() != Stage::Serving {
            return Woke::Close;
        }
        let mut watching = true;
        loop {
            let event = tokio::select! {
                biased;
                woke = std::future::poll_fn(|cx| io.poll_next_bytes(cx)) => return woke,
                changed = self.stage.changed(), if watching => changed.is_ok(),
            };
            if !event {
                watching = false;
            } else if *self.stage.borrow_and_update() != Stage::Serving {
                return Woke::Close;
            }
        }
    }
}

/// What a connection's task woke up for.
enum Event {
    /// hyper finished with the connection (`Some`), or it is idle and may be parked.
    Served(Option<hyper::Result<()>>),
    /// The shutdown stage changed (`false`: the server is gone).
    Stage(bool),
}

/// Whether the connection's first bytes are the HTTP/2 preface, without consuming them. A
/// few bytes that could be either (`P`, `PR`, `PRI`) are looked at again shortly, until the
/// header timeout.
async fn sniff_http2(io: &TimedIo) -> io::Result<bool> {
    let mut buf = [0; H2_SNIFF];
    loop {
        let n = io.inner.peek(&mut buf).await?;
        if n == 0 || buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_SNIFF {
            return Ok(true);
        }
        if io
            .deadline()
            .is_none_or(|deadline| Instant::now() >= deadline)
        {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What a connection's IO and service share.
#[derive(Debug, Default)]
pub(crate) struct ConnState {
    /// Requests whose response has not ended (low 32 bits), and requests dispatched so far,
    /// wrapping (high 32 bits): one atomic operation at each end of a request.
    counts: AtomicU64,
    /// A `101` went out: the connection is a tunnel now.
    upgraded: AtomicBool,
    /// The connection has been idle for [`PARK_AFTER`], its last response flushed: its task
    /// may take it back from hyper.
    park: AtomicBool,
}

/// One more request dispatched and in flight.
const STARTED: u64 = 1 + (1 << 32);

impl ConnState {
    /// Requests in flight, and requests dispatched so far (wrapping).
    fn counts(&self) -> (u32, u32) {
        let counts = self.counts.load(Ordering::Acquire);
        (counts as u32, (counts >> 32) as u32)
    }

    /// Whether the connection may be parked now; clears the request.
    fn take_park(&self) -> bool {
        self.park.load(Ordering::Relaxed)
            && self.park.swap(false, Ordering::AcqRel)
            && self.counts().0 == 0
    }
}

/// The answers the server writes itself, with JSend bodies (`fail`: the client's request was
/// wrong). Each closes the connection.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\n\
content-type: application/json\r\n\
content-length: 52\r\n\
connection: close\r\n\
\r\n\
{\"status\":\"fail\",\"data\":{\"title\":\"request timeout\"}}";
const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
content-type: application/json\r\n\
content-length: 48\r\n\
connection: close\r\n\
\r\n\
{\"status\":\"fail\",\"data\":{\"title\":\"bad request\"}}";
const HEADERS_TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
content-type: application/json\r\n\
content-length: 68\r\n\
connection: close\r\n\
\r\n\
{\"status\":\"fail\",\"data\":{\"title\":\"request header fields too large\"}}";
const URI_TOO_LONG: &[u8] = b"HTTP/1.1 414 URI Too Long\r\n\
content-type: application/json\r\n\
content-length: 49\r\n\
connection: close\r\n\
\r\n\
{\"status\":\"fail\",\"data\":{\"title\":\"uri too long\"}}";

/// Our answer in place of the one hyper writes on its own (with an empty body) when it cannot
/// parse a request head.
fn own_answer(hyper_wrote: &[u8]) -> Option<&'static [u8]> {
    match hyper_wrote.get(..13)? {
        b"HTTP/1.1 400 " => Some(BAD_REQUEST),
        b"HTTP/1.1 431 " => Some(HEADERS_TOO_LARGE),
        b"HTTP/1.1 414 " => Some(URI_TOO_LONG),
        _ => None,
    }
}

/// The HTTP/2 connection preface (RFC 9113 §3.4) that tells HTTP/2 with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Enough of the preface to tell: no HTTP/1 method is `PRI`.
const H2_SNIFF: usize = 4;

/// Where a connection stands, for its timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for, or reading, a request head, due by `deadline`; `started` once a byte of it
    /// arrived.
    Head { deadline: Instant, started: bool },
    /// Keep-alive, between two requests: the next must start by `deadline`.
    Idle { deadline: Instant },
    /// A request in flight: no timeout.
    Busy,
    /// HTTP/2: idle from `idle` (when no stream is open).
    H2 { idle: Option<Instant> },
    /// Upgraded: bytes pass through.
    Tunnel,
}

/// The client's socket, with the timeouts of the [module docs](self).
///
/// Its one timer is armed lazily: moving a deadline later (the usual case, from one request to
/// the next) changes nothing, and when the timer fires early it is set again for the deadline
/// of the moment. So a busy keep-alive connection resets its timer about once per timeout,
/// not twice per request.
pub(crate) struct TimedIo {
    inner: TcpStream,
    state: Arc<ConnState>,
    phase: Phase,
    // Requests dispatched, as of the last look.
    seen: u32,
    // Our own answer being written, and how much of it is.
    answer: Option<(&'static [u8], usize)>,
    // Bytes of the HTTP/2 preface seen so far; `usize::MAX` once the protocol is known.
    sniffed: usize,
    sleep: Pin<Box<Sleep>>,
    // When `sleep` fires.
    armed: Instant,
    // When an idle connection may be parked (`Phase::Idle` only).
    park_at: Option<Instant>,
    // Everything written has been flushed.
    flushed: bool,
    // Bytes read by a previous hyper connection and not used, served first.
    unread: Bytes,
    settings: Settings,
    // The connection's place under the server's cap.
    _permit: Option<OwnedSemaphorePermit>,
}

/// What the timer says.
enum Timer {
    /// The phase's deadline passed.
    Expired,
    /// The connection has been idle long enough to be parked.
    Park,
}

impl TimedIo {
    fn new(
        inner: TcpStream,
        state: Arc<ConnState>,
        settings: Settings,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        let deadline = Instant::now() + settings.header_timeout;
        Self {
            inner,
            state,
            phase: Phase::Head {
                deadline,
                started: false,
            },
            seen: 0,
            answer: None,
            sniffed: 0,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            armed: deadline,
            park_at: None,
            flushed: true,
            unread: Bytes::new(),
            settings,
            _permit: permit,
        }
    }

    /// Serves `bytes` to the next reads, before the socket's.
    fn unread(&mut self, bytes: Bytes) {
        self.unread = bytes;
    }

    /// Moves to the phase the service's state implies (before a read, after a write).
    fn update(&mut self) {
        let (in_flight, dispatched) = self.state.counts();
        let busy = in_flight > 0;
        // A request may have come and gone since the last look.
        let new_request = dispatched != self.seen;
        self.seen = dispatched;
        self.phase = match self.phase {
            Phase::Tunnel => Phase::Tunnel,
            _ if self.state.upgraded.load(Ordering::Acquire) => Phase::Tunnel,
            Phase::H2 { .. } if busy => Phase::H2 { idle: None },
            Phase::H2 { idle: None } => {
                self.idle_until(Instant::now() + self.settings.idle_timeout)
            }
            Phase::H2 { idle: Some(_) } if new_request => {
                self.idle_until(Instant::now() + self.settings.idle_timeout)
            }
            Phase::Head { .. } | Phase::Idle { .. } | Phase::Busy if busy => Phase::Busy,
            Phase::Head { .. } | Phase::Idle { .. } if !new_request => self.phase,
            Phase::Head { .. } | Phase::Idle { .. } | Phase::Busy => {
                let now = Instant::now();
                self.park_at = Some(self.arm(now + PARK_AFTER));
                Phase::Idle {
                    deadline: self.arm(now + self.settings.idle_timeout),
                }
            }
            phase => phase,
        };
    }

    fn idle_until(&mut self, deadline: Instant) -> Phase {
        Phase::H2 {
            idle: Some(self.arm(deadline)),
        }
    }

    /// Makes sure the timer fires by `deadline`; returns it.
    fn arm(&mut self, deadline: Instant) -> Instant {
        if deadline < self.armed {
            self.sleep.as_mut().reset(deadline);
            self.armed = deadline;
        }
        deadline
    }

    /// Polls the timer for the current phase: `Expired` once its deadline has passed, `Park`
    /// once an idle connection may be parked (once per idle period).
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<Timer> {
        loop {
            let Some(deadline) = self.deadline() else {
                return Poll::Pending;
            };
            let next = self.park_at.map_or(deadline, |park| park.min(deadline));
            if next < self.armed {
                self.sleep.as_mut().reset(next);
                self.armed = next;
            }
            ready!(self.sleep.as_mut().poll(cx));
            let now = Instant::now();
            if now >= deadline {
                return Poll::Ready(Timer::Expired);
            }
            if self.park_at.is_some_and(|park| now >= park) {
                self.park_at = None;
                if self.flushed {
                    return Poll::Ready(Timer::Park);
                }
            }
            // Fired for an earlier deadline: on to the current one.
            let next = self.park_at.map_or(deadline, |park| park.min(deadline));
            self.sleep.as_mut().reset(next);
            self.armed = next;
        }
    }

    /// For a connection no hyper connection serves: `Readable` when bytes (or the end of the
    /// stream) arrive, `Close` when the phase's deadline passes first.
    fn poll_next_bytes(&mut self, cx: &mut Context<'_>) -> Poll<Woke> {
        if !self.unread.is_empty() {
            return Poll::Ready(Woke::Readable);
        }
        loop {
            // Readiness alone may be stale (a new socket starts out readable): look.
            let mut byte = [0; 1];
            if self
                .inner
                .poll_peek(cx, &mut ReadBuf::new(&mut byte))
                .is_ready()
            {
                // Bytes, the end of the stream or an error: hyper's to handle.
                return Poll::Ready(Woke::Readable);
            }
            match ready!(self.poll_timer(cx)) {
                Timer::Expired => {
                    tracing::debug!(phase = ?self.phase, "connection timed out before a request");
                    return Poll::Ready(Woke::Close);
                }
                // Parked already.
                Timer::Park => {}
            }
        }
    }

    /// Bytes arrived.
    fn received(&mut self, bytes: &[u8]) {
        if self.sniffed != usize::MAX {
            self.sniff(bytes);
        }
        match self.phase {
            Phase::Head { deadline, .. } => {
                self.phase = Phase::Head {
                    deadline,
                    started: true,
                }
            }
            Phase::Idle { .. } => {
                self.park_at = None;
                self.phase = Phase::Head {
                    deadline: self.arm(Instant::now() + self.settings.header_timeout),
                    started: true,
                }
            }
            _ => {}
        }
    }

    /// Looks for the HTTP/2 preface at the start of the connection.
    fn sniff(&mut self, bytes: &[u8]) {
        let want = &H2_PREFACE[self.sniffed..H2_SNIFF];
        let n = want.len().min(bytes.len());
        if bytes[..n] != want[..n] {
            self.sniffed = usize::MAX;
            return;
        }
        self.sniffed += n;
        if self.sniffed == H2_SNIFF {
            self.sniffed = usize::MAX;
            self.phase = Phase::H2 { idle: None };
        }
    }

    /// The deadline of the current phase, if it has one.
    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Head { deadline, .. } | Phase::Idle { deadline } => Some(deadline),
            Phase::H2 { idle } => idle,
            Phase::Busy | Phase::Tunnel => None,
        }
    }

    /// After a write or flush: a response that just ended starts the idle time now, and its
    /// timer is registered here, since hyper may not read again until the client sends
    /// something (it only re-reads after a response when its own header timeout is on).
    #[inline]
    fn after_write(&mut self, cx: &mut Context<'_>) {
        let before = self.deadline();
        self.update();
        let after = self.deadline();
        if after.is_some() && after != before && self.sleep.as_mut().poll(cx).is_ready() {
            // Already past (a zero timeout): the read side must see it.
            cx.waker().wake_by_ref();
        }
    }

    /// Whether hyper is writing its own answer to a head it could not parse (no request was
    /// dispatched since the head began); if so, ours replaces it.
    fn answers_itself(&mut self, hyper_wrote: &[u8]) -> bool {
        if self.answer.is_some() {
            // Whatever follows hyper's answer (nothing, normally) is dropped with it.
            return true;
        }
        if !matches!(self.phase, Phase::Head { .. }) {
            return false;
        }
        self.update();
        if !matches!(self.phase, Phase::Head { .. }) {
            return false;
        }
        match own_answer(hyper_wrote) {
            Some(answer) => {
                tracing::debug!("unparsable request head: answered with JSend");
                self.answer = Some((answer, 0));
                true
            }
            None => false,
        }
    }

    /// Writes the rest of our own answer.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((answer, written)) = &mut self.answer {
            if *written == answer.len() {
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &answer[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// The deadline passed with nothing to read.
    fn expire(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.phase {
            Phase::Head { started: true, .. } => {
                tracing::debug!("request head timed out: 408");
                // Best effort: a fresh connection's send buffer always has room for it.
                let _ = Pin::new(&mut self.inner).poll_write(cx, REQUEST_TIMEOUT);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head timed out",
                )))
            }
            _ => {
                tracing::debug!("idle connection timed out");
                // End of stream: hyper closes an idle connection quietly.
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.phase == Phase::Tunnel {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        this.update();
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            let bytes = this.unread.split_to(n);
            buf.put_slice(&bytes);
            this.received(&bytes);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let bytes = &buf.filled()[before..];
                if !bytes.is_empty() {
                    this.received(bytes);
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => {}
        }
        loop {
            match ready!(this.poll_timer(cx)) {
                Timer::Expired => return this.expire(cx),
                // The connection's task takes it from here (and, in tests, nobody does: the
                // read goes on waiting).
                Timer::Park => this.state.park.store(true, Ordering::Release),
            }
        }
    }
}

impl AsyncWrite for TimedIo {
    #[inline]
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.phase != Phase::Tunnel && this.answers_itself(buf) {
            // Taken as written; ours goes out now or with the flush.
            let _ = this.poll_answer(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        this.flushed = false;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    #[inline]
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        if this.phase != Phase::Tunnel && this.answers_itself(first) {
            let _ = this.poll_answer(cx)?;
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        this.flushed = false;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    #[inline]
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.answer.is_some() {
            ready!(this.poll_answer(cx))?;
        }
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            this.flushed = true;
        }
        if this.phase != Phase::Tunnel {
            this.after_write(cx);
        }
        flushed
    }

    #[inline]
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.answer.is_some() {
            ready!(this.poll_answer(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl fmt::Debug for TimedIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimedIo")
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

/// A connection's service, counting its requests in flight until their response bodies end.
#[derive(Debug)]
pub(crate) struct Tracked<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<ConnBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    #[inline]
    fn call(&self, req: Request<Incoming>) -> Self::Future {
        TrackedFuture {
            inner: self.inner.call(req),
            guard: Some(InFlight::start(&self.state)),
        }
    }
}

/// One request in flight on a connection.
#[derive(Debug)]
pub(crate) struct InFlight {
    state: Arc<ConnState>,
}

impl InFlight {
    fn start(state: &Arc<ConnState>) -> Self {
        state.counts.fetch_add(STARTED, Ordering::AcqRel);
        Self {
            state: Arc::clone(state),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.counts.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project! {
    /// The response future of [`Tracked`].
    #[derive(Debug)]
    pub(crate) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ConnBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx))?;
        let guard = this.guard.take();
        if let Some(guard) = &guard {
            if res.status() == StatusCode::SWITCHING_PROTOCOLS {
                guard.state.upgraded.store(true, Ordering::Release);
            }
        }
        Poll::Ready(Ok(res.map(|inner| ConnBody { inner, guard })))
    }
}

pin_project! {
    /// A response body that keeps its request counted until it ends.
    #[derive(Debug)]
    pub(crate) struct ConnBody<B> {
        #[pin]
        inner: B,
        guard: Option<InFlight>,
    }
}

impl<B: Body> Body for ConnBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            *this.guard = None;
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const SETTINGS: Settings = Settings {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_header_size: 64 * 1024,
        max_connections: None,
    };

    /// A client socket and the server side wrapped in a `TimedIo`.
    async fn pair() -> (TcpStream, TimedIo, Arc<ConnState>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let state = Arc::new(ConnState::default());
        let io = TimedIo::new(server, Arc::clone(&state), SETTINGS, None);
        (client, io, state)
    }

    async fn read(io: &mut TimedIo) -> io::Result<Vec<u8>> {
        let mut buf = [0; 1024];
        let n = io.read(&mut buf).await?;
        Ok(buf[..n].to_vec())
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_ends_quietly_at_the_header_timeout() {
        let (mut client, mut io, _) = pair().await;
        let start = Instant::now();
        assert_eq!(read(&mut io).await.unwrap(), b"");
        assert_eq!(start.elapsed(), SETTINGS.header_timeout);
        drop(io);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "no response to a client that sent nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn half_a_head_gets_a_408_at_the_header_timeout_from_the_connect() {
        let (mut client, mut io, _) = pair().await;
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(4)).await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert_eq!(read(&mut io).await.unwrap(), b"GET / HTTP/1.1\r\n");
        let err = read(&mut io).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // Counted from the connect, not from the first byte.
        assert_eq!(start.elapsed(), SETTINGS.header_timeout);
        drop(io);
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, REQUEST_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_response_the_idle_timeout_applies_then_the_header_timeout_from_the_first_byte()
    {
        let (mut client, mut io, state) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        read(&mut io).await.unwrap();
        // The service took the request: no timeout while it is in flight.
        let in_flight = InFlight::start(&state);
        let busy = tokio::time::timeout(Duration::from_secs(3600), read(&mut io)).await;
        assert!(busy.is_err(), "no timeout while a request is in flight");
        // The response ends and is flushed: idle from now.
        drop(in_flight);
        io.flush().await.unwrap();
        assert!(matches!(io.phase, Phase::Idle { .. }), "{:?}", io.phase);
        let idle_from = Instant::now();
        tokio::time::sleep(Duration::from_secs(30)).await;
        client.write_all(b"GET").await.unwrap();
        read(&mut io).await.unwrap();
        // The next head has its own header timeout, from its first byte.
        let first_byte = Instant::now();
        assert_eq!(
            read(&mut io).await.unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
        assert_eq!(first_byte.elapsed(), SETTINGS.header_timeout);
        assert!(idle_from.elapsed() < SETTINGS.idle_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_keep_alive_connection_ends_quietly_at_the_idle_timeout() {
        let (_client, mut io, state) = pair().await;
        drop(InFlight::start(&state));
        io.phase = Phase::Busy;
        io.flush().await.unwrap();
        let start = Instant::now();
        assert_eq!(read(&mut io).await.unwrap(), b"");
        assert_eq!(start.elapsed(), SETTINGS.idle_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn http2_has_only_the_idle_timeout_and_tunnels_none() {
        let (mut client, mut io, state) = pair().await;
        client.write_all(&H2_PREFACE[..2]).await.unwrap();
        read(&mut io).await.unwrap();
        client.write_all(&H2_PREFACE[2..]).await.unwrap();
        read(&mut io).await.unwrap();
        assert_eq!(io.phase, Phase::H2 { idle: None });
        // No header timeout: the idle timeout, counted while no stream is open.
        let start = Instant::now();
        assert_eq!(read(&mut io).await.unwrap(), b"");
        assert_eq!(start.elapsed(), SETTINGS.idle_timeout);

        let (mut client, mut io, state2) = pair().await;
        drop(state);
        state2.upgraded.store(true, Ordering::Release);
        let waited = tokio::time::timeout(Duration::from_secs(3600), read(&mut io)).await;
        assert!(waited.is_err(), "a tunnel has no timeout");
        client.write_all(b"raw").await.unwrap();
        assert_eq!(read(&mut io).await.unwrap(), b"raw");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_came_and_went_unseen_does_not_leave_its_head_timeout_armed() {
        let (mut client, mut io, state) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        read(&mut io).await.unwrap();
        assert!(matches!(io.phase, Phase::Head { started: true, .. }));
        // Dispatched, answered and ended without the IO reading in between.
        drop(InFlight::start(&state));
        io.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        io.flush().await.unwrap();
        assert!(matches!(io.phase, Phase::Idle { .. }), "{:?}", io.phase);
        let start = Instant::now();
        assert_eq!(read(&mut io).await.unwrap(), b"", "closed quietly, no 408");
        assert_eq!(start.elapsed(), SETTINGS.idle_timeout);
    }

    #[tokio::test]
    async fn hyper_answers_to_unparsable_heads_are_replaced_and_responses_are_not() {
        let (mut client, mut io, _) = pair().await;
        client.write_all(b"GARBAGE\r\n\r\n").await.unwrap();
        read(&mut io).await.unwrap();
        let hyper_answer =
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        io.write_all(hyper_answer).await.unwrap();
        io.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, BAD_REQUEST);

        // A backend's own 400, to a request that was dispatched, goes out as it is, even
        // when the request ended before the IO looked.
        let (mut client, mut io, state) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        read(&mut io).await.unwrap();
        drop(InFlight::start(&state));
        let backend_answer = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\nno";
        io.write_all(backend_answer).await.unwrap();
        io.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, backend_answer);
    }

    #[tokio::test]
    async fn http1_methods_are_not_taken_for_the_http2_preface() {
        for reads in [
            &[&b"P"[..], b"OST / HTTP/1.1\r\n"][..],
            &[b"PUT / HTTP/1.1\r\n"],
            &[b"PR", b"OPFIND"],
            &[b"GET / HTTP/1.1\r\n"],
        ] {
            let (_client, mut io, _) = pair().await;
            for bytes in reads {
                io.received(bytes);
            }
            assert_eq!(io.sniffed, usize::MAX, "{reads:?}");
            assert!(
                matches!(io.phase, Phase::Head { started: true, .. }),
                "{reads:?}"
            );
        }
        let (_client, mut io, _) = pair().await;
        io.received(b"PR");
        assert_eq!(io.sniffed, 2);
        io.received(b"I * HTTP/2.0");
        assert_eq!(io.phase, Phase::H2 { idle: None });
    }

    /// Answers `ok` to everything.
    #[derive(Debug, Clone)]
    struct Ok200;

    impl hyper::service::Service<Request<Incoming>> for Ok200 {
        type Response = Response<http_body_util::Full<Bytes>>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn call(&self, _: Request<Incoming>) -> Self::Future {
            std::future::ready(Ok(Response::new(Bytes::from_static(b"ok").into())))
        }
    }

    /// A server connection served by `connections`, and its client side.
    async fn served(connections: &Connections) -> TcpStream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        connections.serve(server, peer, None, Ok200);
        client
    }

    async fn get_on(client: &mut TcpStream) -> String {
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\nok") {
            let mut buf = [0; 256];
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(answer).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_keep_alive_connection_is_parked_and_serves_its_next_request() {
        let connections = Connections::new(SETTINGS, crate::proxy::ProxyClient::new());
        let mut client = served(&connections).await;
        assert!(get_on(&mut client).await.starts_with("HTTP/1.1 200 OK"));
        assert_eq!(connections.parked(), 0, "not idle long enough yet");
        tokio::time::sleep(PARK_AFTER + Duration::from_millis(10)).await;
        assert_eq!(connections.parked(), 1);
        assert_eq!(connections.count(), 1, "still open");
        // Served anew, as if nothing happened.
        assert!(get_on(&mut client).await.starts_with("HTTP/1.1 200 OK"));
        assert_eq!(connections.parked(), 0);
        assert!(get_on(&mut client).await.starts_with("HTTP/1.1 200 OK"));
        // A parked connection still ends at the idle timeout, counted from its last response.
        let idle_from = Instant::now();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "closed quietly");
        assert_eq!(idle_from.elapsed(), SETTINGS.idle_timeout);
        assert_eq!(connections.parked(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_parked_connection_closes_at_once_when_the_server_shuts_down() {
        let connections = Connections::new(SETTINGS, crate::proxy::ProxyClient::new());
        let mut client = served(&connections).await;
        assert!(get_on(&mut client).await.starts_with("HTTP/1.1 200 OK"));
        tokio::time::sleep(PARK_AFTER * 2).await;
        assert_eq!(connections.parked(), 1);
        let started = Instant::now();
        connections.shutdown(Duration::from_secs(30)).await;
        assert!(started.elapsed() < Duration::from_secs(1));
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn our_own_answers_are_well_formed_jsend() {
        for (answer, status, title) in [
            (REQUEST_TIMEOUT, "408 Request Timeout", "request timeout"),
            (BAD_REQUEST, "400 Bad Request", "bad request"),
            (
                HEADERS_TOO_LARGE,
                "431 Request Header Fields Too Large",
                "request header fields too large",
            ),
            (URI_TOO_LONG, "414 URI Too Long", "uri too long"),
        ] {
            let text = std::str::from_utf8(answer).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(
                head.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{head}"
            );
            assert!(
                head.contains(&format!("content-length: {}\r\n", body.len())),
                "{head}"
            );
            assert!(
                head.contains("content-type: application/json\r\n"),
                "{head}"
            );
            assert!(head.ends_with("connection: close"), "{head}");
            let body: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(
                body,
                serde_json::json!({"status": "fail", "data": {"title": title}})
            );
        }
        assert_eq!(
            own_answer(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            Some(HEADERS_TOO_LARGE)
        );
        assert_eq!(own_answer(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(own_answer(b"HTTP/1.1 4"), None);
    }
}
