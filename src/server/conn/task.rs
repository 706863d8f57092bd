//! [`Connection`]: one client connection's task, from its first bytes to its end. It tells
//! HTTP/2 from HTTP/1, hands the connection to hyper, parks an idle HTTP/1 connection without
//! hyper's state, and follows the server's graceful shutdown.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::ConnService;
use super::connections::{Builders, Stage};
use super::sniff::{self, Protocol};
use super::state::ConnState;
use super::timed_io::{TimedIo, Woke};
use super::tracked::Tracked;
use crate::stats::OpenConnection;

/// One client connection's task.
pub(super) struct Connection {
    pub(super) builders: Arc<Builders>,
    pub(super) stage: watch::Receiver<Stage>,
    pub(super) parked: Arc<AtomicUsize>,
    pub(super) peer: SocketAddr,
    /// Counts the connection as open until its task ends.
    pub(super) _open: OpenConnection,
}

/// hyper's HTTP/1 connection, as a connection's task runs it.
type Http1<T, S> = http1::UpgradeableConnection<TokioIo<TimedIo<T>>, Tracked<S>>;

/// What a connection's task woke up for.
enum Event {
    /// hyper finished with the connection (`Some`), or it is idle and may be parked.
    Served(Option<hyper::Result<()>>),
    /// The shutdown stage changed (`false`: the server is gone).
    Stage(bool),
}

impl Connection {
    /// Serves the connection until it ends.
    ///
    /// Its first bytes are read ahead (and replayed to hyper) to tell HTTP/2 with prior
    /// knowledge from HTTP/1 ([`sniff`]). An HTTP/1 connection idle for
    /// [`PARK_AFTER`](super::state::PARK_AFTER) between two requests is taken back from
    /// hyper, which frees its read and write buffers (8 KiB each) and the rest of its state,
    /// and served anew when bytes arrive: an idle keep-alive connection costs this task and
    /// its stream, a few KiB, rather than hyper's 16 KiB and more.
    pub(super) async fn serve<T, S>(mut self, mut io: TimedIo<T>, mut service: Tracked<S>)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: ConnService,
    {
        // Nothing of hyper's until the client sends something, within the header timeout.
        match self.protocol(&mut io).await {
            Some(Protocol::Http1) => {}
            Some(Protocol::Http2) => {
                io.serve_http2();
                let state = Arc::clone(service.state());
                // On the heap: hyper's HTTP/2 connection is larger than the rest of the task,
                // which every HTTP/1 connection, parked ones included, would carry.
                Box::pin(self.serve_http2(io, service, &state)).await;
                return;
            }
            None => return,
        }
        // The stream and the service go to hyper and come back when the connection is idle,
        // kept in this one place (the task's size is what an idle connection costs).
        let state = Arc::clone(service.state());
        loop {
            let conn = Box::new(
                self.builders
                    .http1
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades(),
            );
            // Idle: hyper gives the stream back, and what it read past the last request.
            let Some(parts) = self.serve_http1(conn, &state).await else {
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
            match woke {
                // The next request has begun: hyper's again, from the bytes read ahead.
                Some(Woke::Bytes) => {}
                Some(Woke::Expired) => {
                    tracing::debug!(peer = %self.peer, "idle connection timed out");
                    return;
                }
                Some(Woke::Ended) | None => return,
            }
        }
    }

    /// Reads the connection's first bytes until they tell its protocol; `None` when there is
    /// nothing to serve (the client sent nothing in time, or the server is shutting down).
    async fn protocol<T>(&mut self, io: &mut TimedIo<T>) -> Option<Protocol>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            match self.wait(io).await? {
                Woke::Bytes => {}
                // Nothing to answer: closed quietly.
                Woke::Ended if io.read_ahead().is_empty() => return None,
                Woke::Expired if io.read_ahead().is_empty() => {
                    tracing::debug!(peer = %self.peer, "connection timed out before a request");
                    return None;
                }
                // A beginning (`P`, `PR`, `PRI`) that went no further: hyper's HTTP/1 sees
                // it end, or answers `408`.
                Woke::Ended | Woke::Expired => return Some(Protocol::Http1),
            }
            if let Some(protocol) = sniff::protocol(io.read_ahead()) {
                return Some(protocol);
            }
        }
    }

    /// Serves HTTP/2 until the connection ends, with a graceful shutdown (`GOAWAY`) when the
    /// server drains, or when the connection reaches its idle timeout.
    async fn serve_http2<T, S>(mut self, io: TimedIo<T>, service: Tracked<S>, state: &ConnState)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: ConnService,
    {
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
                served = std::future::poll_fn(|cx| match conn.as_mut().poll(cx) {
                    Poll::Ready(result) => Poll::Ready(Some(result)),
                    // Idle for the idle timeout: `GOAWAY`, then hyper closes.
                    Poll::Pending if state.take_goaway() => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }) => Event::Served(served),
                changed = self.stage.changed(), if watching => Event::Stage(changed.is_ok()),
            };
            match event {
                Event::Served(None) => conn.as_mut().graceful_shutdown(),
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

    /// Serves HTTP/1 until the connection ends (`None`), or until it is idle and may be
    /// parked: then hyper's parts, `None` if it has none to give back.
    async fn serve_http1<T, S>(
        &mut self,
        mut conn: Box<Http1<T, S>>,
        state: &ConnState,
    ) -> Option<http1::Parts<TokioIo<TimedIo<T>>, Tracked<S>>>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: ConnService,
    {
        let mut draining = false;
        let mut watching = true;
        if *self.stage.borrow() != Stage::Serving {
            Pin::new(&mut *conn).graceful_shutdown();
            draining = true;
        }
        loop {
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
                    return None;
                }
                Event::Served(None) => return conn.into_parts(),
                Event::Stage(false) => watching = false,
                Event::Stage(true) => match *self.stage.borrow_and_update() {
                    Stage::Serving => {}
                    Stage::Draining => {
                        Pin::new(&mut *conn).graceful_shutdown();
                        draining = true;
                    }
                    Stage::Cut => {
                        tracing::debug!(peer = %self.peer, "connection closed at the end of the grace period");
                        return None;
                    }
                },
            }
        }
    }

    /// Waits for the connection's next bytes ([`TimedIo::poll_next_bytes`]); `None` if the
    /// server shuts down first.
    async fn wait<T>(&mut self, io: &mut TimedIo<T>) -> Option<Woke>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        if *self.stage.borrow() != Stage::Serving {
            return None;
        }
        let mut watching = true;
        loop {
            let event = tokio::select! {
                biased;
                woke = std::future::poll_fn(|cx| io.poll_next_bytes(cx)) => return Some(woke),
                changed = self.stage.changed(), if watching => changed.is_ok(),
            };
            if !event {
                watching = false;
            } else if *self.stage.borrow_and_update() != Stage::Serving {
                return None;
            }
        }
    }
}
