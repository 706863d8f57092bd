//! Client connections: accepting under a cap, timeouts for slow and idle clients, and the
//! graceful shutdown of them all.
//!
//! **Timeouts** (HAProxy's `timeout http-request` and `timeout http-keep-alive`, nginx's
//! `client_header_timeout` and `keepalive_timeout`) are kept by
//! [`TimedIo`](timed_io::TimedIo), a thin wrapper around the connection's byte stream that
//! hyper reads through, with the help of [`Tracked`](tracked::Tracked), which wraps the
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
//! **The balancer's own answers** ([`answers`]): `408` above, and `400`, `414` and `431` with
//! a JSend body in place of the empty-bodied answer hyper writes to a request head it cannot
//! parse.
//!
//! **Idle connections** give hyper's state back: an HTTP/1 connection idle for
//! [`PARK_AFTER`](state::PARK_AFTER) after a response is taken out of hyper (its 8 KiB read
//! and write buffers and the rest are freed) and waits for its next bytes with a read of its
//! own, under the same idle timeout; what it reads is replayed to a new hyper connection.
//! Busy keep-alive connections never park. See [`Connection::serve`](task::Connection::serve).
//! The same read ahead, on a new connection, tells HTTP/2 from HTTP/1 ([`sniff`]).
//!
//! **Any byte stream**: the task, [`TimedIo`](timed_io::TimedIo) and the rest are generic over
//! `AsyncRead + AsyncWrite` (no peeking at a socket), so a TLS stream is served as a TCP one
//! is; [`Connections::serve`] sets what only a TCP socket has (`TCP_NODELAY`).
//!
//! **The connection cap** ([`Config::max_connections`](super::Config::max_connections)), as
//! HAProxy's `maxconn`: at the cap the server stops accepting, so new connections wait in the
//! kernel's listen backlog until one closes. Each connection holds its place until its stream
//! closes, tunnels included.
//!
//! One job per file: [`connections`] (the cap, the tasks, the shutdown), [`task`] (one
//! connection's task), [`sniff`] (HTTP/2 or HTTP/1), [`timed_io`] (the timeouts), [`answers`]
//! (the balancer's own answers), [`tracked`] (requests in flight) and [`state`] (what the last
//! two share).

mod answers;
mod connections;
mod sniff;
mod state;
mod task;
mod timed_io;
mod tracked;

pub(crate) use self::connections::{ClientTimeouts, Connections, Settings};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;

use crate::BoxError;

/// What a connection serves: hyper's `Service` for its requests, with a response body hyper
/// can send. Implemented for every such service; it names the bounds once.
pub(crate) trait ConnService:
    hyper::service::Service<
        Request<Incoming>,
        Response = Response<Self::ResBody>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Send
    + Unpin
    + 'static
{
    /// The response body.
    type ResBody: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> ConnService for S
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + Unpin + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type ResBody = B;
}

#[cfg(test)]
mod tests;
