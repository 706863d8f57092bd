//! Forwarding: a transparent HTTP reverse proxy to one backend, as a `tower::Service`.
//!
//! [`HttpBackend`] sends each request to one backend through a shared, pooled keep-alive
//! [`ProxyClient`] and returns the backend's response. It is the per-backend service a
//! [`Registry`](crate::Registry) builds for a balancer.
//!
//! What it changes, and nothing else (the behaviour of HAProxy's `mode http` and nginx's
//! `proxy_pass`, following RFC 9110 §7.6):
//!
//! - **Target**: scheme and authority become the backend's; the path and query are kept byte
//!   for byte, after the backend's path prefix if its base URI has one. Requests go out as
//!   HTTP/1.1 whatever the client spoke (HTTP/1.0, 1.1 or 2), or as HTTP/2 to an `h2c://`
//!   backend ([`BackendScheme::H2c`](crate::BackendScheme)) and to an `https://` one that
//!   chose `h2` by ALPN (feature `tls`): the `Host` becomes `:authority`, and requests share
//!   one connection as streams.
//! - **Hop-by-hop headers** are removed from the request and from the response: `Connection`
//!   and every header it names, `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`,
//!   `Proxy-Authorization`, `Proxy-Connection`; except that an upgrade request keeps
//!   `Connection: upgrade` and `Upgrade` (see [Upgrades](#upgrades)), and `TE: trailers` is
//!   kept (gRPC servers ask for it; response trailers are passed back as they come).
//! - **Forwarding headers**: the client's `Host` is kept (an HTTP/2 client's `:authority`
//!   becomes `Host`); `X-Forwarded-For` gets the peer IP (from the [`PeerAddr`](crate::PeerAddr)
//!   or axum `ConnectInfo` extension) appended to whatever the client sent; `X-Forwarded-Host`
//!   is set to the `Host` and `X-Forwarded-Proto` to `http` (`https` when the request carries
//!   the [`ClientTls`] extension), replacing client-sent values.
//!
//! Bodies stream both ways and are never buffered: the response body ([`BackendBody`]) is the
//! backend's [`Incoming`](hyper::body::Incoming), so each chunk reaches the client as the
//! backend sends it. Status and the remaining headers are returned as the backend sent them.
//!
//! # Limits
//!
//! [`ProxyClientBuilder`] sets how long a backend may take to accept the connection
//! (`connect_timeout`) and to send its response head (`response_timeout`); either failing is
//! a `504`. [`max_conns_per_backend`](ProxyClientBuilder::max_conns_per_backend) caps the
//! requests in flight to each backend (HAProxy's per-server `maxconn`): a backend at its cap
//! is not ready, so a balancer sends the request elsewhere. Each request holds its place
//! until its response body ends.
//!
//! # Upgrades
//!
//! An HTTP/1.1 request with `Connection: upgrade` and `Upgrade` (a WebSocket handshake, say)
//! is forwarded with those two headers. If the backend answers `101 Switching Protocols`, the
//! client gets the `101` and a task joins the two connections, copying bytes both ways until
//! either side closes (HAProxy's and nginx's tunnel mode); any other answer is returned as
//! usual. The serving connection must support upgrades (hyper's
//! `serve_connection_with_upgrades`; axum does). A tunnel holds its backend's place under the
//! cap while open; [`ProxyClient::open_tunnels`] counts them and
//! [`ProxyClient::close_tunnels`] ends them at shutdown.
//!
//! Failures are typed, and [`error_response`] turns any balancer or proxy error into the JSend
//! response the client should get: [`BackendUnavailable`] (refused, reset or closed before a
//! response: 502), [`BackendTimeout`] (connect or response-head timeout: 504), and the
//! balancer's [`NoAvailableBackend`](crate::NoAvailableBackend) (503). For a gRPC request
//! ([`is_grpc`]), [`grpc_error_response`] gives the gRPC status instead (`UNAVAILABLE`,
//! `DEADLINE_EXCEEDED`) in a `200` without body, as gRPC clients expect.
//!
//! # Examples
//!
//! ```no_run
//! use std::convert::Infallible;
//! use http_body_util::Either;
//! use hyper::body::Incoming;
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use hyper_util::server::conn::auto;
//! use tower::Service;
//! use tower_lb::PeerAddr;
//! use tower_lb::proxy::{HttpBackend, ProxyClient, error_response};
//!
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! let client = ProxyClient::builder().build();
//! let backend = HttpBackend::new("http://127.0.0.1:1080".parse().unwrap(), client);
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! loop {
//!     let (stream, peer) = listener.accept().await?;
//!     let backend = backend.clone();
//!     let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
//!         req.extensions_mut().insert(PeerAddr(peer));
//!         let res = backend.clone().call(req);
//!         async move {
//!             // Errors become JSend responses.
//!             Ok::<_, Infallible>(match res.await {
//!                 Ok(res) => res.map(Either::Left),
//!                 Err(err) => error_response(&err).map(Either::Right),
//!             })
//!         }
//!     });
//!     tokio::spawn(async move {
//!         let _ = auto::Builder::new(TokioExecutor::new())
//!             .serve_connection(TokioIo::new(stream), svc)
//!             .await;
//!     });
//! }
//! # }
//! ```

mod body;
mod client;
mod error;
pub mod future;
mod grpc;
mod headers;
mod limit;
mod live;
mod pool;
mod sender;
mod served_by;
mod service;
mod upgrade;

pub use self::body::BackendBody;
pub use self::client::{ProxyClient, ProxyClientBuilder};
pub use self::error::{NO_AVAILABLE_SERVER, error_response};
pub use self::grpc::{
    GRPC_DEADLINE_EXCEEDED, GRPC_UNAVAILABLE, grpc_error_response, grpc_status, is_grpc,
};
pub use self::headers::ClientTls;
pub use self::served_by::ServedBy;
pub use self::service::HttpBackend;
pub(crate) use self::service::check;
pub use crate::{BackendTimeout, BackendUnavailable};
