use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::access_log;
use crate::admin::{AdminToken, BackendSpec};
use crate::algo::{StickyCookie, StickyKey};
use crate::client_ip::ClientIp;
#[cfg(feature = "dns")]
use crate::discover::dns::{Dns, DnsTarget};
use crate::health::{HealthCheckLayer, HttpProbe, OutlierDetection};
use crate::proxy::ProxyClientBuilder;
use crate::retry::{RetryLayer, RetryOn};
use crate::tls::ServerTls;
use crate::{Algo, IpNet};

/// Everything a [`Server`](super::Server) needs to know. See the [module docs](super).
///
/// | setting | default |
/// |---|---|
/// | [`bind`](Self::bind) | `0.0.0.0:8080` ([`DEFAULT_ADDR`](Self::DEFAULT_ADDR)) |
/// | [`algo`](Self::algo) | [`Algo::RoundRobin`] ([`DEFAULT_ALGO`](Self::DEFAULT_ALGO)) |
/// | [`client_ip`](Self::client_ip) | the TCP peer ([`ClientIp::peer`]) |
/// | [`hash_key`](Self::hash_key) | the client IP |
/// | [`hash_balance_factor`](Self::hash_balance_factor) | 125 % ([`DEFAULT_HASH_BALANCE_FACTOR`](Self::DEFAULT_HASH_BALANCE_FACTOR)) |
/// | [`sticky_cookie`](Self::sticky_cookie) | none |
/// | [`health_interval`](Self::health_interval) | 10 s ([`DEFAULT_HEALTH_INTERVAL`](Self::DEFAULT_HEALTH_INTERVAL)) |
/// | [`health_path`](Self::health_path) | `/health` ([`DEFAULT_HEALTH_PATH`](Self::DEFAULT_HEALTH_PATH)) |
/// | [`health_timeout`](Self::health_timeout) | 2 s ([`DEFAULT_HEALTH_TIMEOUT`](Self::DEFAULT_HEALTH_TIMEOUT)) |
/// | [`backend`](Self::backend) | none |
/// | [`proxy_client`](Self::proxy_client) | [`ProxyClientBuilder::new`]: 1 s connect, 30 s response timeout, no per-backend cap |
/// | [`shutdown_timeout`](Self::shutdown_timeout) | 30 s ([`DEFAULT_SHUTDOWN_TIMEOUT`](Self::DEFAULT_SHUTDOWN_TIMEOUT)) |
/// | [`client_header_timeout`](Self::client_header_timeout) | 10 s ([`DEFAULT_CLIENT_HEADER_TIMEOUT`](Self::DEFAULT_CLIENT_HEADER_TIMEOUT)) |
/// | [`idle_timeout`](Self::idle_timeout) | 60 s ([`DEFAULT_IDLE_TIMEOUT`](Self::DEFAULT_IDLE_TIMEOUT)) |
/// | [`client_timeout`](Self::client_timeout) | 60 s ([`DEFAULT_CLIENT_TIMEOUT`](Self::DEFAULT_CLIENT_TIMEOUT)) |
/// | [`max_header_size`](Self::max_header_size) | 64 KiB ([`DEFAULT_MAX_HEADER_SIZE`](Self::DEFAULT_MAX_HEADER_SIZE)) |
/// | [`max_connections`](Self::max_connections) | 10 000 ([`DEFAULT_MAX_CONNECTIONS`](Self::DEFAULT_MAX_CONNECTIONS)) |
/// | [`queue_timeout`](Self::queue_timeout) | 0: fail fast ([`DEFAULT_QUEUE_TIMEOUT`](Self::DEFAULT_QUEUE_TIMEOUT)) |
/// | [`retries`](Self::retries) | 2 ([`DEFAULT_RETRIES`](Self::DEFAULT_RETRIES)) |
/// | [`retry_non_idempotent`](Self::retry_non_idempotent) | `false` |
/// | [`retry_on`](Self::retry_on) | `connect-failure` ([`DEFAULT_RETRY_ON`](Self::DEFAULT_RETRY_ON)) |
/// | [`retry_buffer`](Self::retry_buffer) | 64 KiB ([`DEFAULT_RETRY_BUFFER`](Self::DEFAULT_RETRY_BUFFER)) |
/// | [`workers`](Self::workers) | 1: connections are served on the runtime [`Server::run`](super::Server::run) runs on |
/// | [`seed`](Self::seed) | random |
/// | [`outlier_detection`](Self::outlier_detection) | on: [`OutlierDetection::new`], 5 failures in a row eject for 30 s ([`DEFAULT_OUTLIER_DETECTION`](Self::DEFAULT_OUTLIER_DETECTION)) |
/// | [`slow_start`](Self::slow_start) | off ([`DEFAULT_SLOW_START`](Self::DEFAULT_SLOW_START)) |
/// | [`admin_token`](Self::admin_token) | none: the admin API serves loopback peers only |
/// | [`admin_bind`](Self::admin_bind) | none: the admin API is on the main listener |
/// | [`allow_backend`](Self::allow_backend) | any backend may be registered |
/// | [`tls`](Self::tls) | none: plain HTTP |
/// | [`redirect_http`](Self::redirect_http) | none |
/// | `dns` (feature `dns`) | none |
/// | `dns_server` (feature `dns`) | the system's resolvers (`/etc/resolv.conf`) |
/// | `dns_ttl` (feature `dns`) | 5 s to 30 s (`Dns::DEFAULT_MIN_TTL`, `Dns::DEFAULT_MAX_TTL`) |
/// | [`backends_file`](Self::backends_file) | none |
/// | [`access_log`](Self::access_log) | off |
/// | [`access_log_format`](Self::access_log_format) | JSON lines ([`DEFAULT_ACCESS_LOG_FORMAT`](Self::DEFAULT_ACCESS_LOG_FORMAT)) |
///
/// Each default is written once, as a `DEFAULT_*` constant here or on the layer it configures
/// ([`HealthCheckLayer`](crate::HealthCheckLayer), [`OutlierDetection`],
/// [`RetryLayer`](crate::RetryLayer), [`ProxyClientBuilder`]); the standalone balancer's
/// command line (`examples/lb`) reads the same constants, and a test there fails if its
/// defaults and [`Config::new`] drift apart.
///
/// Passive health checks (outlier ejection) are on by default here, though
/// [`HealthCheckLayer`](crate::HealthCheckLayer) leaves them off: the layer is a building
/// block whose user chooses, this is the standalone balancer, whose command line has had them
/// on since its first release (`--eject-after 5`, as its README documents). With retries
/// they take a dead backend out within a few requests rather than at its next active check,
/// up to a [`health_interval`](Self::health_interval) later (`tests/retry.rs`), as HAProxy's
/// `observe layer7` with `error-limit` or Envoy's `consecutive_5xx` do when turned on.
/// In front of an application that answers `503` on purpose (load shedding), turn them off
/// with [`outlier_detection(None)`](Self::outlier_detection) (`--eject-after 0`).
///
/// ```
/// use std::time::Duration;
/// use tower_lb::Algo;
/// use tower_lb::server::Config;
///
/// let config = Config::new()
///     .bind(([127, 0, 0, 1], 0))
///     .algo(Algo::WeightedRoundRobin)
///     .health_interval(Duration::from_secs(1))
///     .backend("http://127.0.0.1:1080=5".parse().unwrap());
/// assert_eq!(config.backends.len(), 1);
/// ```
///
/// Build it with the setters; read it through the fields, which the setters name.
#[derive(Debug, Clone)]
#[must_use]
#[non_exhaustive]
pub struct Config {
    /// The address to listen on.
    pub addr: SocketAddr,
    /// The balancing algorithm.
    pub algo: Algo,
    /// How to find a client's IP.
    pub client_ip: ClientIp,
    /// What `SIH`, `CHB` and `SRR` tell clients apart by; `None` for the client IP.
    pub hash_key: Option<StickyKey>,
    /// `CHB`'s cap on a backend's load, in percent of the average.
    pub hash_balance_factor: u32,
    /// The sticky cookie set and followed, if any.
    pub sticky_cookie: Option<StickyCookie>,
    /// Time between two health checks of a backend.
    pub health_interval: Duration,
    /// The path health checks ask for.
    pub health_path: String,
    /// How long a health check may take.
    pub health_timeout: Duration,
    /// The service gRPC health checks ask about (`""`: the server as a whole), or `None` for
    /// HTTP checks of [`health_path`](Self::health_path).
    pub health_grpc: Option<String>,
    /// Backends registered at start-up.
    pub backends: Vec<BackendSpec>,
    /// How requests are forwarded to backends.
    pub proxy_client: ProxyClientBuilder,
    /// How long a graceful shutdown waits for requests in flight.
    pub shutdown_timeout: Duration,
    /// The seed of the random choices, if fixed.
    pub seed: Option<u64>,
    /// Passive health checks (outlier ejection), `None` when off.
    pub outlier_detection: Option<OutlierDetection>,
    /// The slow-start window; zero when off.
    pub slow_start: Duration,
    /// The token every admin request must carry, if any.
    pub admin_token: Option<AdminToken>,
    /// The address of a separate admin listener, if any.
    pub admin_addr: Option<SocketAddr>,
    /// The networks a backend registered through the admin API must be in; empty for any.
    pub allowed_backends: Vec<IpNet>,
    /// How long a client may take to send a request head.
    pub client_header_timeout: Duration,
    /// How long a keep-alive connection may sit idle between two requests.
    pub idle_timeout: Duration,
    /// How long a client may read nothing of a response being sent to it.
    pub client_timeout: Duration,
    /// The largest request head accepted, in bytes.
    pub max_header_size: usize,
    /// The most client connections open at once, if capped.
    pub max_connections: Option<usize>,
    /// How long a request waits for a ready backend when none is; zero to fail at once.
    pub queue_timeout: Duration,
    /// At most this many retries of a request on other backends; zero disables retries.
    pub retries: usize,
    /// Whether `POST` and `PATCH` are retried too.
    pub retry_non_idempotent: bool,
    /// What is retried: connect failures, response statuses.
    pub retry_on: RetryOn,
    /// Request bodies up to this many bytes are buffered so they can be retried.
    pub retry_buffer: usize,
    /// Threads that serve connections, each with its own runtime and listening socket; 1 for
    /// none of its own.
    pub workers: usize,
    /// Backends from etcd, and registrations written there, if set.
    #[cfg(feature = "etcd")]
    pub etcd: Option<EtcdConfig>,
    /// TLS on the main listener, if any.
    pub tls: Option<ServerTls>,
    /// The address of a plain listener that redirects to `https://`, if any.
    pub redirect_http: Option<SocketAddr>,
    /// Names whose DNS records are backends.
    #[cfg(feature = "dns")]
    pub dns: Vec<DnsTarget>,
    /// The DNS server asked, if not the system's.
    #[cfg(feature = "dns")]
    pub dns_server: Option<SocketAddr>,
    /// The shortest time between two resolutions of a name.
    #[cfg(feature = "dns")]
    pub dns_min_ttl: Duration,
    /// The longest time between two resolutions of a name.
    #[cfg(feature = "dns")]
    pub dns_max_ttl: Duration,
    /// A watched file of backends, if any.
    pub backends_file: Option<PathBuf>,
    /// Where proxied requests are logged, one line each; `None` for no access log.
    pub access_log: Option<access_log::Target>,
    /// The access log's format.
    pub access_log_format: access_log::Format,
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

impl Config {
    /// The default port.
    pub const DEFAULT_PORT: u16 = 8080;

    /// The default address to listen on ([`bind`](Self::bind)): every IPv4 address, port
    /// [`DEFAULT_PORT`](Self::DEFAULT_PORT).
    pub const DEFAULT_ADDR: SocketAddr =
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), Self::DEFAULT_PORT);

    /// The default [`algo`](Self::algo): round robin.
    pub const DEFAULT_ALGO: Algo = Algo::RoundRobin;

    /// The default [`hash_balance_factor`](Self::hash_balance_factor), `CHB`'s:
    /// [`chb::DEFAULT_BALANCE_FACTOR`](crate::algo::chb::DEFAULT_BALANCE_FACTOR).
    pub const DEFAULT_HASH_BALANCE_FACTOR: u32 = crate::algo::chb::DEFAULT_BALANCE_FACTOR;

    /// The default [`health_interval`](Self::health_interval), the health layer's:
    /// [`HealthCheckLayer::DEFAULT_INTERVAL`](crate::HealthCheckLayer::DEFAULT_INTERVAL).
    pub const DEFAULT_HEALTH_INTERVAL: Duration = HealthCheckLayer::DEFAULT_INTERVAL;

    /// The default [`health_path`](Self::health_path), the probe's:
    /// [`HttpProbe::DEFAULT_PATH`].
    pub const DEFAULT_HEALTH_PATH: &str = HttpProbe::DEFAULT_PATH;

    /// The default [`health_timeout`](Self::health_timeout), the health layer's:
    /// [`HealthCheckLayer::DEFAULT_TIMEOUT`](crate::HealthCheckLayer::DEFAULT_TIMEOUT).
    pub const DEFAULT_HEALTH_TIMEOUT: Duration = HealthCheckLayer::DEFAULT_TIMEOUT;

    /// The default [`shutdown_timeout`](Self::shutdown_timeout): 30 s.
    pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

    /// The default [`outlier_detection`](Self::outlier_detection): on, with the defaults of
    /// [`OutlierDetection::new`]; see above for why.
    pub const DEFAULT_OUTLIER_DETECTION: Option<OutlierDetection> = Some(OutlierDetection::new());

    /// The default [`slow_start`](Self::slow_start): off.
    pub const DEFAULT_SLOW_START: Duration = Duration::ZERO;

    /// The default [`client_header_timeout`](Self::client_header_timeout): 10 s.
    pub const DEFAULT_CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

    /// The default [`idle_timeout`](Self::idle_timeout): 60 s.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

    /// The default [`client_timeout`](Self::client_timeout): 60 s (nginx's `send_timeout`
    /// and HAProxy's recommended `timeout client` are of that order).
    pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

    /// The default [`max_header_size`](Self::max_header_size): 64 KiB.
    pub const DEFAULT_MAX_HEADER_SIZE: usize = 64 * 1024;

    /// The smallest [`max_header_size`](Self::max_header_size): 8 KiB, hyper's smallest read
    /// buffer.
    pub const MIN_MAX_HEADER_SIZE: usize = 8 * 1024;

    /// The default [`max_connections`](Self::max_connections): 10 000.
    pub const DEFAULT_MAX_CONNECTIONS: Option<usize> = Some(10_000);

    /// The default [`queue_timeout`](Self::queue_timeout): none, fail at once.
    pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::ZERO;

    /// The default [`retries`](Self::retries), the retry layer's:
    /// [`RetryLayer::DEFAULT_MAX_RETRIES`](crate::RetryLayer::DEFAULT_MAX_RETRIES).
    pub const DEFAULT_RETRIES: usize = RetryLayer::DEFAULT_MAX_RETRIES;

    /// The default [`access_log_format`](Self::access_log_format): JSON lines.
    pub const DEFAULT_ACCESS_LOG_FORMAT: access_log::Format = access_log::Format::Json;
    /// The default [`retry_on`](Self::retry_on): connect failures only.
    pub const DEFAULT_RETRY_ON: RetryOn = RetryOn::CONNECT_FAILURE;

    /// The default [`retry_buffer`](Self::retry_buffer), the retry layer's:
    /// [`RetryLayer::DEFAULT_BUFFER`](crate::RetryLayer::DEFAULT_BUFFER), 64 KiB.
    pub const DEFAULT_RETRY_BUFFER: usize = RetryLayer::DEFAULT_BUFFER;

    /// The defaults in the table above.
    pub fn new() -> Self {
        Self {
            addr: Self::DEFAULT_ADDR,
            algo: Self::DEFAULT_ALGO,
            client_ip: ClientIp::peer(),
            hash_key: None,
            hash_balance_factor: Self::DEFAULT_HASH_BALANCE_FACTOR,
            sticky_cookie: None,
            health_interval: Self::DEFAULT_HEALTH_INTERVAL,
            health_path: Self::DEFAULT_HEALTH_PATH.to_owned(),
            health_timeout: Self::DEFAULT_HEALTH_TIMEOUT,
            health_grpc: None,
            backends: Vec::new(),
            proxy_client: ProxyClientBuilder::new(),
            shutdown_timeout: Self::DEFAULT_SHUTDOWN_TIMEOUT,
            seed: None,
            outlier_detection: Self::DEFAULT_OUTLIER_DETECTION,
            slow_start: Self::DEFAULT_SLOW_START,
            admin_token: None,
            admin_addr: None,
            allowed_backends: Vec::new(),
            client_header_timeout: Self::DEFAULT_CLIENT_HEADER_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            client_timeout: Self::DEFAULT_CLIENT_TIMEOUT,
            max_header_size: Self::DEFAULT_MAX_HEADER_SIZE,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            queue_timeout: Self::DEFAULT_QUEUE_TIMEOUT,
            retries: Self::DEFAULT_RETRIES,
            retry_non_idempotent: false,
            retry_on: Self::DEFAULT_RETRY_ON,
            retry_buffer: Self::DEFAULT_RETRY_BUFFER,
            workers: 1,
            #[cfg(feature = "etcd")]
            etcd: None,
            tls: None,
            redirect_http: None,
            #[cfg(feature = "dns")]
            dns: Vec::new(),
            #[cfg(feature = "dns")]
            dns_server: None,
            #[cfg(feature = "dns")]
            dns_min_ttl: Dns::DEFAULT_MIN_TTL,
            #[cfg(feature = "dns")]
            dns_max_ttl: Dns::DEFAULT_MAX_TTL,
            backends_file: None,
            access_log: None,
            access_log_format: Self::DEFAULT_ACCESS_LOG_FORMAT,
        }
    }

    /// Serves the main listener over TLS with these certificates (chosen by SNI; see
    /// [`ServerTls`]), and nothing but TLS: a client that is not TLS, or fails its handshake,
    /// is closed (logged at debug, counted by [`ServerTls::handshake_failures`]). The
    /// handshake must end within [`client_header_timeout`](Self::client_header_timeout), and
    /// the request head within the same timeout again after it. HTTP/2 is chosen by ALPN
    /// (`h2`), HTTP/1.1 otherwise; forwarded requests carry `X-Forwarded-Proto: https`. The
    /// admin API on this listener (without [`admin_bind`](Self::admin_bind)) follows the same
    /// rules as on a plain one. [`ServerTls::reload`] on a clone (the server keeps one,
    /// [`Server::tls`](super::Server::tls)) swaps the certificates for the next handshakes.
    pub fn tls(mut self, tls: impl Into<Option<ServerTls>>) -> Self {
        self.tls = tls.into();
        self
    }

    /// A plain HTTP listener at `addr` that answers every request with `308 Permanent
    /// Redirect` to the same URL over `https://`, on the main listener's port (left out when
    /// it is 443). Port `0` picks a free one (see
    /// [`Server::redirect_addr`](super::Server::redirect_addr)). Meant with [`tls`](Self::tls).
    pub fn redirect_http(mut self, addr: impl Into<Option<SocketAddr>>) -> Self {
        self.redirect_http = addr.into();
        self
    }

    /// The address to listen on; port `0` picks a free one (see
    /// [`Server::local_addr`](super::Server::local_addr)).
    pub fn bind(mut self, addr: impl Into<SocketAddr>) -> Self {
        self.addr = addr.into();
        self
    }

    /// The balancing algorithm.
    pub fn algo(mut self, algo: Algo) -> Self {
        self.algo = algo;
        self
    }

    /// How to find a client's IP, for [`Algo::SourceIpHash`] and [`Algo::StickyRoundRobin`].
    pub fn client_ip(mut self, client_ip: ClientIp) -> Self {
        self.client_ip = client_ip;
        self
    }

    /// What [`Algo::SourceIpHash`], [`Algo::BoundedLoadHash`] and [`Algo::StickyRoundRobin`]
    /// tell clients apart by: the client IP (the default, found as
    /// [`client_ip`](Self::client_ip) says, whatever [`StickyKey::ClientIp`] holds), a
    /// header, a cookie or the path.
    pub fn hash_key(mut self, key: StickyKey) -> Self {
        self.hash_key = match key {
            StickyKey::ClientIp(_) => None,
            key => Some(key),
        };
        self
    }

    /// [`Algo::BoundedLoadHash`]'s cap on a backend's requests in flight, in percent of the
    /// average (at least 100).
    pub fn hash_balance_factor(mut self, percent: u32) -> Self {
        self.hash_balance_factor = percent;
        self
    }

    /// Sets a cookie naming the backend on responses, and sends requests carrying it there
    /// (see [`StickyCookie`]).
    pub fn sticky_cookie(mut self, cookie: Option<StickyCookie>) -> Self {
        self.sticky_cookie = cookie;
        self
    }

    /// Time between two health checks of a backend.
    pub fn health_interval(mut self, interval: Duration) -> Self {
        self.health_interval = interval;
        self
    }

    /// The path every health check (and the check at registration) asks for with `GET`;
    /// a `2xx` answer is a pass.
    pub fn health_path(mut self, path: impl Into<String>) -> Self {
        self.health_path = path.into();
        self
    }

    /// Checks backends with gRPC's health check, `grpc.health.v1.Health/Check` for `service`
    /// (`""`: the server as a whole), instead of `GET` [`health_path`](Self::health_path):
    /// for `h2c://` gRPC backends. See [`HttpProbe::grpc`].
    pub fn health_grpc(mut self, service: impl Into<String>) -> Self {
        self.health_grpc = Some(service.into());
        self
    }

    /// How long a health check may take before it counts as failed.
    pub fn health_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = timeout;
        self
    }

    /// A backend registered at start-up, without a check at registration: it takes traffic
    /// until its first health check, which runs at once, fails. Repeat for more.
    pub fn backend(mut self, backend: BackendSpec) -> Self {
        self.backends.push(backend);
        self
    }

    /// Backends registered at start-up; see [`backend`](Self::backend).
    pub fn backends_from(mut self, backends: impl IntoIterator<Item = BackendSpec>) -> Self {
        self.backends.extend(backends);
        self
    }

    /// The client that forwards requests: connect and response timeouts, connection pool.
    pub fn proxy_client(mut self, builder: ProxyClientBuilder) -> Self {
        self.proxy_client = builder;
        self
    }

    /// How long [`Server::run`](super::Server::run) waits, once asked to stop, for requests in
    /// flight to finish before it closes their connections.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Seeds the random choices of `PTC`, `LT` and `Random`, for reproducible runs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Passive health checks: a backend whose requests fail too often in a row (errors,
    /// `502`, `503`, `504`) is ejected for a while, as the
    /// [health module](crate::health#passive-health-checks-outlier-ejection) describes. On by
    /// default ([`DEFAULT_OUTLIER_DETECTION`](Self::DEFAULT_OUTLIER_DETECTION)); `None` turns
    /// them off.
    pub fn outlier_detection(mut self, outliers: impl Into<Option<OutlierDetection>>) -> Self {
        self.outlier_detection = outliers.into();
        self
    }

    /// Ramps up the share of requests a backend takes over `window` after it joins or comes
    /// back (see [`HealthCheckLayer::slow_start`](crate::HealthCheckLayer::slow_start));
    /// `Duration::ZERO` turns it off.
    pub fn slow_start(mut self, window: Duration) -> Self {
        self.slow_start = window;
        self
    }

    /// Requires `Authorization: Bearer <token>` on every admin request, from any peer
    /// (see [`Admin::token`](crate::admin::Admin::token)). Without one, only loopback peers
    /// may use the admin API.
    pub fn admin_token(mut self, token: impl Into<Option<AdminToken>>) -> Self {
        self.admin_token = token.into();
        self
    }

    /// Logs every proxied request to `target`, one line each, off the request path (see
    /// [`access_log`](super::access_log)); `None` (the default) for no access log.
    pub fn access_log(mut self, target: impl Into<Option<access_log::Target>>) -> Self {
        self.access_log = target.into();
        self
    }

    /// The access log's format (default [JSON lines](Self::DEFAULT_ACCESS_LOG_FORMAT)).
    pub fn access_log_format(mut self, format: access_log::Format) -> Self {
        self.access_log_format = format;
        self
    }

    /// Serves the admin API (`/register`, `/backends`) on its own listener at `addr`, and
    /// only there: the main listener then forwards those paths to the backends like any
    /// other. Port `0` picks a free one (see
    /// [`Server::admin_addr`](super::Server::admin_addr)).
    pub fn admin_bind(mut self, addr: impl Into<SocketAddr>) -> Self {
        self.admin_addr = Some(addr.into());
        self
    }

    /// Lets `POST /register` add only backends whose host is an IP address in `network`
    /// (see [`Admin::allow_backends`](crate::admin::Admin::allow_backends)); repeat for more.
    /// Backends configured here with [`backend`](Self::backend) are not checked.
    pub fn allow_backend(mut self, network: IpNet) -> Self {
        self.allowed_backends.push(network);
        self
    }

    /// How long a client may take to send a request head (the request line and headers):
    /// from the moment it connects for its first request, from the first byte for the next
    /// ones on a keep-alive connection. A client too slow gets `408 Request Timeout` and is
    /// disconnected (one that sent nothing is disconnected silently), so slow clients
    /// (slowloris) hold a connection for no longer than this. HAProxy's `timeout http-request`,
    /// nginx's `client_header_timeout`. See [connection handling](super#connections).
    pub fn client_header_timeout(mut self, timeout: Duration) -> Self {
        self.client_header_timeout = timeout;
        self
    }

    /// How long a keep-alive connection may sit idle after a response before the next
    /// request starts; then it is closed. For HTTP/2, how long a connection may have no
    /// stream open. HAProxy's `timeout http-keep-alive`, nginx's `keepalive_timeout`.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a client may read nothing while a response is being sent to it (the
    /// connection's writes blocked, its socket buffers full) before the connection is cut:
    /// HAProxy's `timeout client` on the sending side, nginx's `send_timeout`. A client that
    /// reads slowly but keeps reading is never cut.
    pub fn client_timeout(mut self, timeout: Duration) -> Self {
        self.client_timeout = timeout;
        self
    }

    /// The largest request head (request line and headers) accepted, in bytes; a larger one
    /// gets `431 Request Header Fields Too Large` and the connection is closed. At least
    /// [`MIN_MAX_HEADER_SIZE`](Self::MIN_MAX_HEADER_SIZE) (smaller values are raised to it).
    /// For HTTP/2, the limit of the decoded header list.
    pub fn max_header_size(mut self, bytes: usize) -> Self {
        self.max_header_size = bytes.max(Self::MIN_MAX_HEADER_SIZE);
        self
    }

    /// The most client connections open at once (`None` or `0`: no cap). At the cap the
    /// server stops accepting: new connections wait in the kernel's listen backlog until one
    /// closes, as with HAProxy's `maxconn`.
    pub fn max_connections(mut self, max: impl Into<Option<usize>>) -> Self {
        self.max_connections = max.into().filter(|&max| max > 0);
        self
    }

    /// How long a request waits for a backend when none is ready (all at their
    /// [cap](crate::proxy::ProxyClientBuilder::max_conns_per_backend), unhealthy or
    /// draining) before it fails with `503`; zero (the default) fails at once. HAProxy's
    /// `timeout queue`.
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.queue_timeout = timeout;
        self
    }

    /// At most this many more attempts per request, each on a backend not tried yet, when a
    /// backend refused the connection or closed it before any byte of a response (or answered
    /// a status named in [`retry_on`](Self::retry_on)); zero disables retries. Only `GET`,
    /// `HEAD`, `OPTIONS`, `PUT` and `DELETE` requests without a body or with one up to
    /// [`retry_buffer`](Self::retry_buffer) are retried, within a budget of about 20 % extra
    /// load; see [`retry`](crate::retry).
    pub fn retries(mut self, retries: usize) -> Self {
        self.retries = retries;
        self
    }

    /// Whether `POST` and `PATCH` requests are retried too. Off by default: a backend that
    /// closed the connection may have acted on the request before it did.
    pub fn retry_non_idempotent(mut self, enabled: bool) -> Self {
        self.retry_non_idempotent = enabled;
        self
    }

    /// What is retried ([`RetryOn`]: connect failures, and response statuses such as `503`);
    /// HAProxy's `retry-on`, nginx's `proxy_next_upstream`.
    pub fn retry_on(mut self, on: RetryOn) -> Self {
        self.retry_on = on;
        self
    }

    /// Request bodies up to this many bytes (by `Content-Length`) are read whole before the
    /// first attempt so they can be sent again on a retry; see
    /// [`RetryLayer::buffer`](crate::RetryLayer::buffer).
    pub fn retry_buffer(mut self, bytes: usize) -> Self {
        self.retry_buffer = bytes;
        self
    }

    /// How many threads serve client connections (at least 1). With 1 (the default), they
    /// are served on the runtime [`Server::run`](super::Server::run) runs on, however many
    /// threads it has. With `n > 1`, [`Server::run`](super::Server::run) starts `n` threads,
    /// each with a single-threaded tokio runtime and a listening socket of its own on the same
    /// address (`SO_REUSEPORT`: the kernel spreads new connections over them), as nginx's
    /// worker processes and HAProxy's threads do: a connection, its requests and the backend
    /// connections they use stay on one thread, with no handoff between threads. The runtime
    /// `run` runs on keeps the health checks, the admin listener of
    /// [`admin_bind`](Self::admin_bind) and the shutdown; a single-threaded one is enough.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    #[cfg(feature = "dns")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
    /// Backends from DNS: the A/AAAA records of a [`DnsTarget::Host`] or the SRV records of
    /// a [`DnsTarget::Srv`], re-resolved at their TTL (see [`dns`](crate::discover::dns)).
    /// Repeat for more. Each name's set is reconciled on its own; names should not share
    /// backends with each other or with [`backend`](Self::backend).
    pub fn dns(mut self, target: DnsTarget) -> Self {
        self.dns.push(target);
        self
    }

    #[cfg(feature = "dns")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
    /// The DNS server to ask for [`dns`](Self::dns) names, instead of the system's.
    pub fn dns_server(mut self, server: impl Into<SocketAddr>) -> Self {
        self.dns_server = Some(server.into());
        self
    }

    #[cfg(feature = "dns")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
    /// The bounds of the time between two resolutions of a [`dns`](Self::dns) name: its
    /// TTL, but at least `min` and at most `max`.
    pub fn dns_ttl(mut self, min: Duration, max: Duration) -> Self {
        self.dns_min_ttl = min;
        self.dns_max_ttl = max;
        self
    }

    /// Backends from a TOML or JSON file, re-read when it changes (see
    /// [`file`](crate::discover::file)).
    pub fn backends_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.backends_file = Some(path.into());
        self
    }

    /// Takes the backends from etcd instead of [`backend`](Self::backend): the server's
    /// registry follows the keys under the prefix ([`EtcdSync`](crate::discover::EtcdSync)),
    /// and `POST`/`DELETE /register` write there
    /// ([`Admin::etcd`](crate::admin::Admin::etcd)), so every balancer following the prefix
    /// serves the change. Each balancer runs its own health checks. Backends set with
    /// [`backend`](Self::backend) are ignored.
    #[cfg(feature = "etcd")]
    #[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
    pub fn etcd(mut self, etcd: impl Into<Option<EtcdConfig>>) -> Self {
        self.etcd = etcd.into();
        self
    }
}

/// Where a [`Server`](super::Server) finds its backends in etcd. See [`Config::etcd`] and
/// [`discover::etcd`](crate::discover::etcd).
#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub struct EtcdConfig {
    /// The etcd endpoints, such as `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// The prefix of the backends' keys, such as `/lb/backends/`.
    pub prefix: String,
    /// The TTL of the lease registrations are attached to; `None` for none.
    pub lease_ttl: Option<Duration>,
}

#[cfg(feature = "etcd")]
impl EtcdConfig {
    /// The backends under `prefix` on the etcd cluster at `endpoints`, without a lease.
    pub fn new(
        endpoints: impl IntoIterator<Item = impl Into<String>>,
        prefix: impl Into<String>,
    ) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: prefix.into(),
            lease_ttl: None,
        }
    }

    /// Attaches registrations made through this server to a lease of `ttl` (whole seconds)
    /// that it keeps alive, so they expire `ttl` after it dies
    /// ([`EtcdRegistrations::lease_ttl`](crate::discover::EtcdRegistrations::lease_ttl)).
    pub fn lease_ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.lease_ttl = ttl.into();
        self
    }
}
