//! The pooled keep-alive HTTP/1.1 (and HTTP/2, for `h2c://` backends) client that every
//! [`HttpBackend`](super::HttpBackend) shares.
//!
//! Its connection pool is our own ([`pool`](super::pool)), over hyper's connection-level
//! HTTP/1.1 and HTTP/2 clients, rather than hyper-util's legacy `Client`, whose checkout, check-in and
//! response bookkeeping cost more than the rest of the request path together.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http_body::Body;
use hyper::body::Incoming;

use super::live::Live;
use super::pool::{Pool, Settings};
use super::upgrade::Tunnels;
use crate::BoxError;

/// A pooled, keep-alive HTTP/1.1 client for forwarding requests to backends, and HTTP/2 to
/// `h2c://` backends (one multiplexed connection per backend, another when one carries
/// [`http2_max_streams`](ProxyClientBuilder::http2_max_streams) requests).
///
/// One `ProxyClient` is meant to be shared by all backends (clone it: clones share the
/// connection pool). It keeps idle keep-alive connections per backend (and per thread with a
/// runtime of its own, see [`pool_threads`](ProxyClientBuilder::pool_threads)), opens new ones with `TCP_NODELAY` within a connect timeout, and carries the
/// response timeout and per-backend concurrency cap that [`HttpBackend`](super::HttpBackend)
/// enforces. Build one with [`ProxyClient::builder`].
///
/// Those three change while the client runs, for every clone at once:
/// [`set_connect_timeout`](Self::set_connect_timeout),
/// [`set_response_timeout`](Self::set_response_timeout) and
/// [`set_max_conns_per_backend`](Self::set_max_conns_per_backend) apply to the requests that
/// start after them; a request in flight keeps the timeout it started with, and the pooled
/// connections stay.
///
/// It also keeps count of the [upgraded tunnels](super#upgrades) its backends carry.
///
/// `B` is the request body type: [`Incoming`] when forwarding what a hyper server received.
pub struct ProxyClient<B = Incoming> {
    pub(crate) pool: Pool<B>,
    /// The timeouts and the cap, shared with the pool's hosts.
    pub(crate) live: Arc<Live>,
    pub(crate) tunnels: Arc<Tunnels>,
}

impl<B> ProxyClient<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A client with the default settings of [`ProxyClientBuilder`].
    pub fn new() -> Self {
        ProxyClientBuilder::new().build()
    }
}

impl ProxyClient {
    /// Starts configuring a client.
    pub fn builder() -> ProxyClientBuilder {
        ProxyClientBuilder::new()
    }
}

impl<B> ProxyClient<B> {
    /// How long a backend may take to send its response head; `None` waits forever.
    pub fn response_timeout(&self) -> Option<Duration> {
        self.live.response_timeout()
    }

    /// How long a TCP connect to a backend may take; `None` leaves it to the OS.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.live.connect_timeout()
    }

    /// The most requests (and upgraded tunnels) in flight to one backend; `None` for no cap.
    pub fn max_conns_per_backend(&self) -> Option<usize> {
        self.live.max_conns_per_backend()
    }

    /// Changes the [response timeout](ProxyClientBuilder::response_timeout) of this client and
    /// all its clones, for the requests sent from now on; one in flight keeps the timeout it
    /// was sent with.
    pub fn set_response_timeout(&self, timeout: impl Into<Option<Duration>>) {
        self.live.set_response_timeout(timeout.into());
    }

    /// Changes the [connect timeout](ProxyClientBuilder::connect_timeout) of this client and
    /// all its clones, for the connections opened from now on; open and pooled connections
    /// stay, and a connect under way keeps the timeout it started with.
    pub fn set_connect_timeout(&self, timeout: impl Into<Option<Duration>>) {
        self.live.set_connect_timeout(timeout.into());
    }

    /// Changes the [per-backend cap](ProxyClientBuilder::max_conns_per_backend) of this
    /// client and all its clones (`None` or `0` for none), for the requests that ask for a
    /// backend from now on.
    ///
    /// The requests in flight stay: below a lowered cap, a backend takes new ones only once
    /// enough of them have ended. Requests sent while there was no cap are not counted under
    /// one set later. A caller waiting for a backend at the old cap (a
    /// [`Queue`](crate::queue::Queue), a balancer) is woken at once to meet the new one.
    pub fn set_max_conns_per_backend(&self, max: impl Into<Option<usize>>) {
        self.live.set_max_conns_per_backend(max.into());
    }

    /// Upgraded connections (WebSocket and the like) open now through this client.
    pub fn open_tunnels(&self) -> usize {
        self.tunnels.open()
    }

    /// Waits until no upgraded connection is open.
    pub async fn tunnels_closed(&self) {
        self.tunnels.closed().await;
    }

    /// Closes every upgraded connection open now, and any upgraded later; for the end of a
    /// graceful shutdown.
    pub fn close_tunnels(&self) {
        self.tunnels.close_all();
    }
}

impl<B> Default for ProxyClient<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<B> Clone for ProxyClient<B> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            live: Arc::clone(&self.live),
            tunnels: Arc::clone(&self.tunnels),
        }
    }
}

impl<B> fmt::Debug for ProxyClient<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyClient")
            .field("connect_timeout", &self.connect_timeout())
            .field("response_timeout", &self.response_timeout())
            .field("max_conns_per_backend", &self.max_conns_per_backend())
            .field("tunnels", &self.tunnels)
            .finish_non_exhaustive()
    }
}

/// Configures a [`ProxyClient`].
///
/// | setting                                  | default   |
/// |------------------------------------------|-----------|
/// | [`connect_timeout`](Self::connect_timeout)   | 1 s       |
/// | [`response_timeout`](Self::response_timeout) | 30 s      |
/// | [`pool_idle_timeout`](Self::pool_idle_timeout) | 20 s    |
/// | [`pool_max_idle_per_host`](Self::pool_max_idle_per_host) | 128 |
/// | [`pool_threads`](Self::pool_threads) | 1 |
/// | [`max_conns_per_backend`](Self::max_conns_per_backend) | no cap |
/// | [`backend_tls`](Self::backend_tls) (feature `tls`) | the system's roots ([`BackendTls::system`](crate::tls::BackendTls::system)) |
/// | [`http2_max_streams`](Self::http2_max_streams) | 100 |
///
/// `TCP_NODELAY` is always on.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_lb::proxy::ProxyClient;
///
/// let client: ProxyClient = ProxyClient::builder()
///     .connect_timeout(Duration::from_millis(500))
///     .response_timeout(Duration::from_secs(10))
///     .build();
/// assert_eq!(client.response_timeout(), Some(Duration::from_secs(10)));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ProxyClientBuilder {
    connect_timeout: Option<Duration>,
    response_timeout: Option<Duration>,
    pool_idle_timeout: Option<Duration>,
    pool_max_idle_per_host: usize,
    pool_threads: usize,
    max_conns_per_backend: Option<usize>,
    #[cfg(feature = "tls")]
    backend_tls: Option<crate::tls::BackendTls>,
    http2_max_streams: usize,
}

impl Default for ProxyClientBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ProxyClientBuilder {
    /// The default [`connect_timeout`](Self::connect_timeout): 1 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Option<Duration> = Some(Duration::from_secs(1));

    /// The default [`response_timeout`](Self::response_timeout): 30 s.
    pub const DEFAULT_RESPONSE_TIMEOUT: Option<Duration> = Some(Duration::from_secs(30));

    /// The default [`pool_idle_timeout`](Self::pool_idle_timeout): 20 s.
    pub const DEFAULT_POOL_IDLE_TIMEOUT: Option<Duration> = Some(Duration::from_secs(20));

    /// The default [`pool_max_idle_per_host`](Self::pool_max_idle_per_host): 128.
    pub const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 128;

    /// The default [`max_conns_per_backend`](Self::max_conns_per_backend): no cap.
    pub const DEFAULT_MAX_CONNS_PER_BACKEND: Option<usize> = None;

    /// The default [`http2_max_streams`](Self::http2_max_streams): 100, the least a server
    /// should allow (RFC 9113 §6.5.2) and what nginx, Go and tonic allow or more.
    pub const DEFAULT_HTTP2_MAX_STREAMS: usize = 100;

    /// The default settings.
    pub const fn new() -> Self {
        Self {
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            pool_idle_timeout: Self::DEFAULT_POOL_IDLE_TIMEOUT,
            pool_max_idle_per_host: Self::DEFAULT_POOL_MAX_IDLE_PER_HOST,
            pool_threads: 1,
            max_conns_per_backend: Self::DEFAULT_MAX_CONNS_PER_BACKEND,
            #[cfg(feature = "tls")]
            backend_tls: None,
            http2_max_streams: Self::DEFAULT_HTTP2_MAX_STREAMS,
        }
    }

    /// How `https://` backends are reached: the certificates trusted and the client
    /// certificate, if any. Without one, the system's roots are trusted
    /// ([`BackendTls::system`](crate::tls::BackendTls::system)).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn backend_tls(mut self, tls: impl Into<Option<crate::tls::BackendTls>>) -> Self {
        self.backend_tls = tls.into();
        self
    }

    /// How long a TCP connect to a backend may take before it fails with
    /// [`BackendTimeout`](super::BackendTimeout); `None` leaves it to the OS.
    pub fn connect_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.connect_timeout = timeout.into();
        self
    }

    /// How long the backend may take to send its response head once the request body is sent
    /// before the request fails with [`BackendTimeout`](super::BackendTimeout); `None` waits
    /// forever. While the request body is still being sent, the same limit applies to the
    /// time between two of its chunks, so a slow upload that keeps moving never times out.
    /// The response body that follows may take as long as it takes.
    pub fn response_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.response_timeout = timeout.into();
        self
    }

    /// How long an idle keep-alive connection stays in the pool; `None` keeps it until the
    /// backend closes it. Keep it below the backends' own keep-alive timeout.
    pub fn pool_idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.pool_idle_timeout = timeout.into();
        self
    }

    /// At most this many idle connections are kept per backend and worker thread (as nginx's
    /// `keepalive`); more are closed when their response ends. An idle connection holds about
    /// 24 KiB (hyper's read and write buffers and its request channel).
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// How many threads that each run a single-threaded runtime of their own (the workers of
    /// a thread-per-core server, such as the [`Server`](crate::server::Server)'s with
    /// [`Config::workers`](crate::server::Config::workers)) send requests through this client;
    /// default 1, `0` counts as 1.
    ///
    /// Each of the first `threads` to use the client keeps idle connections of its own, so
    /// that it only reuses connections its own runtime drives; more share those stacks in
    /// turn. The threads of multi-threaded runtimes, whose tasks move between threads, share
    /// one stack.
    pub fn pool_threads(mut self, threads: usize) -> Self {
        self.pool_threads = threads.max(1);
        self
    }

    /// At most this many requests in flight to one backend (each counts until its response
    /// body ends; an upgraded tunnel counts until it closes), like HAProxy's `maxconn` on a
    /// server; `None` (the default) or `0` for no cap.
    ///
    /// A backend at its cap is not ready ([`HttpBackend`](super::HttpBackend)'s `poll_ready` is
    /// `Pending`), so the balancer sends the request to another backend, or fails it with
    /// [`NoAvailableBackend`](crate::NoAvailableBackend) when all are at their cap.
    pub fn max_conns_per_backend(mut self, max: impl Into<Option<usize>>) -> Self {
        self.max_conns_per_backend = max.into().filter(|&max| max > 0);
        self
    }

    /// At most this many requests in flight on one HTTP/2 connection to an `h2c://` backend;
    /// one more opens another connection (`0` counts as 1). Keep it at or below the
    /// backends' `SETTINGS_MAX_CONCURRENT_STREAMS`: above it, hyper queues the extra requests
    /// on the connection until a stream ends.
    pub fn http2_max_streams(mut self, max: usize) -> Self {
        self.http2_max_streams = max.max(1);
        self
    }

    /// Gives `client` (and its clones) this builder's connect and response timeouts and
    /// per-backend cap, the settings that change while a client runs.
    #[cfg(feature = "server")]
    pub(crate) fn apply_live_to<B>(&self, client: &ProxyClient<B>) {
        let (connect, response, max) = self.live();
        client.set_connect_timeout(connect);
        client.set_response_timeout(response);
        client.set_max_conns_per_backend(max);
    }

    /// Whether `self` and `other` differ in their connect or response timeout or their cap.
    #[cfg(feature = "server")]
    pub(crate) fn live_differs(&self, other: &Self) -> bool {
        self.live() != other.live()
    }

    /// This builder with `other`'s connect and response timeouts and cap: what a running
    /// client built from `self` is once [`apply_live_to`](Self::apply_live_to) gave it
    /// `other`'s.
    #[cfg(feature = "server")]
    pub(crate) fn with_live_of(self, other: &Self) -> Self {
        let (connect_timeout, response_timeout, max_conns_per_backend) = other.live();
        Self {
            connect_timeout,
            response_timeout,
            max_conns_per_backend,
            ..self
        }
    }

    /// The settings a running client changes: connect timeout, response timeout, cap.
    #[cfg(feature = "server")]
    fn live(&self) -> (Option<Duration>, Option<Duration>, Option<usize>) {
        (
            self.connect_timeout,
            self.response_timeout,
            self.max_conns_per_backend,
        )
    }

    /// Builds the client for request bodies of type `B`.
    pub fn build<B>(self) -> ProxyClient<B>
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let live = Arc::new(Live::new(
            self.connect_timeout,
            self.response_timeout,
            self.max_conns_per_backend,
        ));
        ProxyClient {
            pool: Pool::new(
                Settings {
                    idle_timeout: self.pool_idle_timeout,
                    max_idle: self.pool_max_idle_per_host,
                    threads: self.pool_threads,
                    max_streams: self.http2_max_streams,
                },
                Arc::clone(&live),
                #[cfg(feature = "tls")]
                self.backend_tls,
            ),
            live,
            tunnels: Tunnels::new(),
        }
    }
}
