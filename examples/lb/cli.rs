//! The command line: clap parsing, the original Go balancer's single-dash spelling, and the
//! [`Config`] it gives. Every default is read from the constants of [`Config`] and the layer
//! types it nests (`Config::DEFAULT_*`, `OutlierDetection::DEFAULT_*`,
//! `ProxyClientBuilder::DEFAULT_*`), so `--help` and the library agree; a test checks it.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use tower_lb::IpNet;
use tower_lb::admin::{AdminToken, BackendSpec};
use tower_lb::algo::chb::MIN_BALANCE_FACTOR;
use tower_lb::algo::{StickyCookie, StickyKey};
use tower_lb::discover::dns::{Dns, DnsTarget};
use tower_lb::health::OutlierDetection;
use tower_lb::proxy::ProxyClientBuilder;
use tower_lb::retry::RetryOn;
use tower_lb::server::Config;
use tower_lb::server::access_log::{Format as AccessLogFormat, Target as AccessLogTarget};
use tower_lb::tls::{BackendTls, CertPair, ServerTls};
use tower_lb::{Algo, ClientIp};

mod defaults;
mod parse;

pub(crate) use self::defaults::seconds;
use self::defaults::{algo_help, default_backend_alpn, default_eject_after, seconds_or_zero};
use self::parse::*;

/// An HTTP load balancer built from tower middleware.
///
/// Requests to any path but the admin routes (/register, /backends, /metrics, /status,
/// /status.json) are forwarded to a backend chosen by the algorithm; backends that fail
/// their health check are taken out until they pass again. POST /register with
/// {"address": "http://host:port", "weight": 5} adds a backend (or updates its weight) at run
/// time, DELETE /register with {"address": ...} drains one (no new requests, those in flight
/// finish), GET /backends lists them with their state and counters, GET /metrics serves
/// Prometheus metrics, GET /status is a live status page in the browser (open
/// /status?token=TOKEN with --admin-token). The admin API answers loopback clients only,
/// unless --admin-token is set.
#[derive(Debug, Parser)]
#[command(name = "lb", version, about, long_about)]
pub(crate) struct Args {
    /// Port to listen on.
    #[arg(long, default_value_t = Config::DEFAULT_PORT)]
    pub(crate) port: u16,

    /// Address to listen on.
    #[arg(long, default_value_t = Config::DEFAULT_ADDR.ip())]
    pub(crate) bind: IpAddr,

    // The help text is `algo_help`'s, read from `tower_lb::Algo::ALL`.
    #[arg(
        long,
        default_value_t = Config::DEFAULT_ALGO,
        value_parser = parse_algo,
        help = algo_help(false),
        long_help = algo_help(true)
    )]
    pub(crate) algo: Algo,

    /// Seconds between two health checks of a backend (fractions allowed).
    #[arg(short = 't', long, value_name = "SECONDS",
      default_value = seconds(Config::DEFAULT_HEALTH_INTERVAL), value_parser = parse_seconds)]
    pub(crate) health_interval: Duration,

    /// Path every health check asks for with GET; a 2xx answer is a pass.
    #[arg(long, value_name = "PATH", default_value = Config::DEFAULT_HEALTH_PATH)]
    pub(crate) health_path: String,

    /// Seconds a health check may take before it counts as failed (fractions allowed).
    #[arg(long, value_name = "SECONDS", default_value = seconds(Config::DEFAULT_HEALTH_TIMEOUT),
          value_parser = parse_seconds)]
    pub(crate) health_timeout: Duration,

    /// Check backends with gRPC's health check (grpc.health.v1.Health/Check) for SERVICE
    /// (none: the server as a whole) instead of GET --health-path; for h2c:// gRPC backends.
    #[arg(long, value_name = "SERVICE", num_args = 0..=1, default_missing_value = "")]
    pub(crate) health_grpc: Option<String>,

    /// A backend to register at start-up, as http://host:port (h2c://host:port for HTTP/2
    /// with prior knowledge, gRPC) with an optional =WEIGHT
    /// (1 to 1000, default 1); repeat for more. Validated like POST /register.
    #[arg(long = "backend", value_name = "URL[=WEIGHT]", value_parser = parse_backend)]
    pub(crate) backends: Vec<BackendSpec>,

    /// Start three demo backends on 127.0.0.1 (weights 3, 2 and 1) and register them.
    #[arg(long)]
    pub(crate) demo: bool,

    /// Threads serving connections, each with its own runtime and listening socket (the
    /// kernel spreads connections over them) [default: the number of CPU cores]; 1 serves
    /// them on the main thread, next to health checks and the admin API.
    #[arg(long, value_name = "N")]
    pub(crate) workers: Option<NonZeroUsize>,

    /// What SIH, CHB and SRR tell clients apart by: ip (the client IP, see --trust-proxy),
    /// header:NAME, cookie:NAME or path.
    #[arg(long, value_name = "KEY", default_value = "ip", value_parser = parse_hash_key)]
    pub(crate) hash_key: StickyKey,

    /// CHB: the most requests in flight a backend may hold, in percent of the average
    /// (per unit of weight), like HAProxy's hash-balance-factor; at least 100.
    #[arg(long, value_name = "PERCENT", default_value_t = Config::DEFAULT_HASH_BALANCE_FACTOR,
          value_parser = clap::value_parser!(u32).range(i64::from(MIN_BALANCE_FACTOR)..=10_000))]
    pub(crate) hash_balance_factor: u32,

    /// Sticky algorithms (SRR, SIH, CHB): set a cookie NAME naming the backend on
    /// responses (Set-Cookie: NAME=VALUE; Path=/; HttpOnly) and send requests carrying it
    /// to that backend while it is ready, like HAProxy's "cookie NAME insert". The value
    /// is opaque and the same on every balancer with the same backends and --sticky-secret.
    #[arg(long, value_name = "NAME", value_parser = parse_cookie_name)]
    pub(crate) sticky_cookie: Option<String>,

    /// The secret that keys --sticky-cookie's values (give every balancer of a fleet the
    /// same one); without it a fixed key is used, and anyone who knows a backend's address
    /// can compute its value.
    #[arg(long, value_name = "SECRET", requires = "sticky_cookie")]
    pub(crate) sticky_secret: Option<String>,

    /// Believe X-Forwarded-For from peers in this network (CIDR, e.g. 10.0.0.0/8), for the
    /// client IP of SIH, CHB and SRR; repeat for more. By default the header is ignored.
    #[arg(long = "trust-proxy", value_name = "CIDR")]
    pub(crate) trusted_proxies: Vec<IpNet>,

    /// Eject a backend after N failed requests in a row (connection errors, 502, 503,
    /// 504), as Envoy's outlier detection does; its health checks go on meanwhile.
    /// 0 turns passive checks off.
    #[arg(long, value_name = "N", default_value_t = default_eject_after())]
    pub(crate) eject_after: u32,

    /// Seconds the first ejection lasts; the n-th lasts n times as long.
    #[arg(long, value_name = "SECONDS", default_value = seconds(OutlierDetection::DEFAULT_BASE_EJECTION),
          value_parser = parse_seconds)]
    pub(crate) eject_time: Duration,

    /// The longest ejection, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = seconds(OutlierDetection::DEFAULT_MAX_EJECTION),
          value_parser = parse_seconds)]
    pub(crate) eject_max_time: Duration,

    /// The most backends ejected at once, in percent (one may always be, never the last
    /// available one).
    #[arg(long, value_name = "PERCENT", default_value_t = OutlierDetection::DEFAULT_MAX_EJECTION_PERCENT,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub(crate) eject_max_percent: u8,

    /// Ramp up the share of requests a backend takes over this many seconds after it
    /// joins or comes back, like HAProxy's slowstart; 0 turns it off.
    #[arg(long, value_name = "SECONDS", default_value = seconds(Config::DEFAULT_SLOW_START),
          value_parser = parse_seconds_or_zero)]
    pub(crate) slow_start: Duration,

    /// Require "Authorization: Bearer TOKEN" on admin requests (/register, /backends),
    /// from any client; without it only loopback clients may use them. Also read from
    /// the TOWER_LB_ADMIN_TOKEN environment variable, which, unlike a flag, other users
    /// cannot see in the process list.
    #[arg(long, value_name = "TOKEN")]
    pub(crate) admin_token: Option<AdminToken>,

    /// Serve the admin API on its own address (e.g. 127.0.0.1:9090) and only there: the
    /// main listener then forwards /register and /backends to the backends like any path.
    #[arg(long, value_name = "ADDR")]
    pub(crate) admin_bind: Option<SocketAddr>,

    /// Let POST /register add only backends whose host is an IP address in this network
    /// (CIDR, e.g. 10.0.0.0/8); host names are then refused. Repeat for more. By default
    /// any backend may be registered. --backend flags are not checked.
    #[arg(long = "allow-backend", value_name = "CIDR")]
    pub(crate) allowed_backends: Vec<IpNet>,

    /// Seconds a client may take to send a request head (request line and headers): from
    /// the connect for its first request, from the first byte for the next ones. Slower
    /// clients get 408 (or, if they sent nothing, are just disconnected), so slowloris
    /// clients hold a connection no longer than this.
    #[arg(long, value_name = "SECONDS", default_value = seconds(Config::DEFAULT_CLIENT_HEADER_TIMEOUT),
          value_parser = parse_seconds)]
    pub(crate) client_header_timeout: Duration,

    /// Seconds a keep-alive connection may sit idle between two requests (for HTTP/2:
    /// with no stream open) before it is closed.
    #[arg(long, value_name = "SECONDS", default_value = seconds(Config::DEFAULT_IDLE_TIMEOUT),
          value_parser = parse_seconds)]
    pub(crate) idle_timeout: Duration,

    /// Seconds a client may read nothing of a response being sent to it before the
    /// connection is cut (HAProxy's timeout client, nginx's send_timeout).
    #[arg(long, value_name = "SECONDS", default_value = seconds(Config::DEFAULT_CLIENT_TIMEOUT),
          value_parser = parse_seconds)]
    pub(crate) client_timeout: Duration,

    /// Seconds a TCP connect to a backend may take; then the request fails with 504.
    #[arg(long, value_name = "SECONDS",
          default_value = seconds_or_zero(ProxyClientBuilder::DEFAULT_CONNECT_TIMEOUT),
          value_parser = parse_seconds)]
    pub(crate) connect_timeout: Duration,

    /// Seconds a backend may take to send its response head once the request is sent;
    /// then the request fails with 504. While a request body is being sent, the most time
    /// between two of its chunks.
    #[arg(long, value_name = "SECONDS",
          default_value = seconds_or_zero(ProxyClientBuilder::DEFAULT_RESPONSE_TIMEOUT),
          value_parser = parse_seconds)]
    pub(crate) backend_timeout: Duration,

    /// Seconds requests in flight get to finish after SIGTERM or SIGINT (the listener
    /// closes at once, idle connections too); what is left is then cut. 0 cuts at once.
    #[arg(long, value_name = "SECONDS", default_value = seconds(Config::DEFAULT_SHUTDOWN_TIMEOUT),
          value_parser = parse_seconds_or_zero)]
    pub(crate) grace: Duration,

    /// Largest request head (request line and headers) in bytes, at least 8192; a larger
    /// one gets 431.
    #[arg(long, value_name = "BYTES", default_value_t = Config::DEFAULT_MAX_HEADER_SIZE,
          value_parser = parse_header_size)]
    pub(crate) max_header_size: usize,

    /// Most client connections open at once; at the cap new connections wait in the
    /// kernel's listen backlog until one closes. 0 for no cap.
    #[arg(long, value_name = "N", default_value_t = Config::DEFAULT_MAX_CONNECTIONS.unwrap_or(0))]
    pub(crate) max_connections: usize,

    /// Most requests in flight to one backend (each until its response body ends; an
    /// open WebSocket counts too). A backend at its cap gets no more requests until one
    /// ends; when all are, see --queue-timeout. 0 for no cap.
    #[arg(long, value_name = "N",
          default_value_t = ProxyClientBuilder::DEFAULT_MAX_CONNS_PER_BACKEND.unwrap_or(0))]
    pub(crate) max_conns_per_backend: usize,

    /// Seconds a request waits for a backend when none can take it (all at their cap,
    /// unhealthy or draining) before it fails with 503; 0 fails at once.
    #[arg(long, value_name = "SECONDS", default_value = seconds(Config::DEFAULT_QUEUE_TIMEOUT),
          value_parser = parse_seconds_or_zero)]
    pub(crate) queue_timeout: Duration,

    /// Retries of a request on other backends when a backend refuses the connection or
    /// closes it before any byte of a response (not after a --backend-timeout), or answers
    /// a status named in --retry-on. Only GET, HEAD, OPTIONS, PUT and DELETE requests without
    /// a body or with one up to --retry-buffer are retried, and retries add at most about
    /// 20 % to the load (plus 10 a second). 0 turns retries off.
    #[arg(long, value_name = "N", default_value_t = Config::DEFAULT_RETRIES)]
    pub(crate) retries: usize,

    /// Retry POST and PATCH requests too: only if the backends can take them twice, since
    /// one that closed the connection may have acted on the request.
    #[arg(long)]
    pub(crate) retry_non_idempotent: bool,

    /// What is retried, a comma list: connect-failure (refused, reset or closed before any
    /// response), 5xx, gateway-error (502, 503, 504) or a status from 500 to 599; e.g.
    /// connect-failure,503. Like HAProxy's retry-on and nginx's proxy_next_upstream.
    #[arg(long, value_name = "LIST", default_value = Config::DEFAULT_RETRY_ON.to_string())]
    pub(crate) retry_on: RetryOn,

    /// Request bodies up to this many bytes (by Content-Length) are buffered so the request
    /// can be retried; larger or chunked bodies are streamed and not retried. 0: only
    /// requests without a body are retried.
    #[arg(long, value_name = "BYTES", default_value_t = Config::DEFAULT_RETRY_BUFFER)]
    pub(crate) retry_buffer: usize,

    /// Take the backends from etcd at these endpoints (http://host:port, comma-separated)
    /// instead of --backend: every key under --etcd-prefix holds {"address": ..., "weight":
    /// ...}. POST and DELETE /register write there and answer once etcd has the change,
    /// so every balancer on the prefix serves it; each runs its own health checks. If
    /// etcd goes away the last set is kept.
    #[cfg(feature = "etcd")]
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',', value_parser = parse_etcd_endpoint,
          requires = "etcd_prefix", conflicts_with_all = ["backends", "demo"])]
    pub(crate) etcd: Vec<String>,

    /// The prefix of the backends' keys in etcd, e.g. /lb/backends/ (with --etcd).
    #[cfg(feature = "etcd")]
    #[arg(long, value_name = "PREFIX", requires = "etcd", value_parser = parse_etcd_prefix)]
    pub(crate) etcd_prefix: Option<String>,

    /// Attach the backends registered through this balancer to an etcd lease of this
    /// many seconds that it keeps alive: they are removed everywhere that long after it
    /// dies. By default they stay until DELETE /register.
    #[cfg(feature = "etcd")]
    #[arg(long, value_name = "SECONDS", requires = "etcd",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) etcd_lease_ttl: Option<u64>,
    /// Serve HTTPS (TLS 1.2 and 1.3, ALPN h2 and http/1.1) with this PEM certificate chain,
    /// paired with the --tls-key of the same rank; repeat both for more certificates,
    /// chosen by the client's SNI name (the first is the default). SIGHUP reloads them from
    /// disk; a file that does not load is logged and the old certificates kept.
    #[arg(long = "tls-cert", value_name = "FILE", requires = "tls_keys")]
    pub(crate) tls_certs: Vec<PathBuf>,

    /// The PEM private key of the --tls-cert of the same rank.
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_certs")]
    pub(crate) tls_keys: Vec<PathBuf>,

    /// Also listen on this port (same --bind address) for plain HTTP, answering every
    /// request with 308 to the same URL over https. Needs --tls-cert.
    #[arg(long, value_name = "PORT", requires = "tls_certs")]
    pub(crate) redirect_http: Option<u16>,

    /// Trust the CA certificates in this PEM file for https:// backends, besides the
    /// system's roots; repeat for more.
    #[arg(long = "backend-ca", value_name = "FILE")]
    pub(crate) backend_cas: Vec<PathBuf>,

    /// Present this PEM client certificate to https:// backends that ask for one (mutual
    /// TLS), with --backend-key.
    #[arg(long, value_name = "FILE", requires = "backend_key")]
    pub(crate) backend_cert: Option<PathBuf>,

    /// The PEM private key of --backend-cert.
    #[arg(long, value_name = "FILE", requires = "backend_cert")]
    pub(crate) backend_key: Option<PathBuf>,

    /// The ALPN protocols offered to https:// backends, in order of preference: a backend
    /// choosing h2 is spoken to over HTTP/2 (requests multiplexed on one connection, another
    /// opened at 100 streams), one choosing http/1.1 or nothing over HTTP/1.1. `http/1.1`
    /// alone keeps every https:// backend on HTTP/1.1.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = default_backend_alpn(),
        value_parser = ["h2", "http/1.1"],
    )]
    pub(crate) backend_alpn: Vec<String>,
    /// Backends from DNS: every A/AAAA address of NAME is a backend http://ADDR:PORT of
    /// weight 1, re-resolved at the records' TTL (see --dns-min-ttl); repeat for more. A
    /// failed resolution keeps the last set.
    #[arg(long = "dns", value_name = "NAME:PORT", value_parser = parse_dns)]
    pub(crate) dns: Vec<DnsTarget>,

    /// Backends from DNS SRV records (e.g. _http._tcp.web.example): each target's
    /// addresses on the record's port, the record's weight as the backend's weight (lowest
    /// priority only); repeat for more.
    #[arg(long = "dns-srv", value_name = "NAME")]
    pub(crate) dns_srv: Vec<String>,

    /// The DNS server to ask for --dns and --dns-srv names [default: the system's,
    /// /etc/resolv.conf].
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) dns_server: Option<SocketAddr>,

    /// Shortest time, in seconds, between two resolutions of a DNS name, whatever its TTL;
    /// also the wait before a failed resolution is retried.
    #[arg(long, value_name = "SECONDS", default_value = seconds(Dns::DEFAULT_MIN_TTL),
          value_parser = parse_seconds)]
    pub(crate) dns_min_ttl: Duration,

    /// Longest time, in seconds, between two resolutions of a DNS name, whatever its TTL.
    #[arg(long, value_name = "SECONDS", default_value = seconds(Dns::DEFAULT_MAX_TTL),
          value_parser = parse_seconds)]
    pub(crate) dns_max_ttl: Duration,

    /// Backends from a TOML ([[backends]] address, weight) or JSON ([{"address", "weight"}])
    /// file, re-read when it changes; a file that does not parse is logged and the last set
    /// kept.
    #[arg(long, value_name = "FILE")]
    pub(crate) backends_file: Option<PathBuf>,

    /// Read settings from a TOML file: each key is a flag's long name (port = 8080,
    /// algo = "WRR", backend = ["http://10.0.0.1:80=2"]); flags given here override it.
    /// Re-read on SIGHUP and when it changes: backends, weights, algorithm, health, retry,
    /// ejection and queue settings and the admin token change live.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Check a config file and exit: 0 and "ok" if it is valid, 2 and the reason if not.
    #[arg(long, value_name = "FILE")]
    pub(crate) check_config: Option<PathBuf>,
    /// Log every proxied request, one line each, to PATH (appended to; reopened on
    /// SIGUSR1 for log rotation) or to standard output with -. Off by default.
    #[arg(long, value_name = "PATH|-")]
    pub(crate) access_log: Option<PathBuf>,

    /// The access log's format: json (one JSON object per line) or combined (Apache's
    /// combined log format, then backend=, ttfb=, total= and retries=).
    #[arg(long, value_name = "FORMAT", default_value_t = Config::DEFAULT_ACCESS_LOG_FORMAT)]
    pub(crate) access_log_format: AccessLogFormat,
}

/// The environment variable read for the admin token when --admin-token is not given.
pub(crate) const ADMIN_TOKEN_ENV: &str = "TOWER_LB_ADMIN_TOKEN";

impl Args {
    /// Parses the command line, after [`normalize`], and the environment, exiting with
    /// status 2 on bad input.
    pub(crate) fn from_env() -> Self {
        let argv = normalize(std::env::args_os());
        let args = Self::parse_from(&argv);
        if let Some(path) = &args.check_config {
            std::process::exit(crate::config_file::check(path).into());
        }
        Self::from_argv(&argv).unwrap_or_else(|reason| {
            eprintln!("lb: {reason}");
            std::process::exit(2);
        })
    }

    /// The command line `argv` (normalised) over its `--config` file, then the admin token
    /// from the environment unless the command line gave one (the environment, like a flag,
    /// wins over the file). What a reload reads again.
    pub(crate) fn from_argv(argv: &[OsString]) -> Result<Self, String> {
        let on_command_line = Self::try_parse_from(argv).is_ok_and(|a| a.admin_token.is_some());
        let mut args = crate::config_file::merge(argv)?
            .checked()
            .map_err(|e| crate::config_file::reason(&e))?;
        if !on_command_line {
            let file_token = args.admin_token.take();
            args = args
                .token_from_env(std::env::var_os(ADMIN_TOKEN_ENV))
                .map_err(|e| crate::config_file::reason(&e))?;
            if args.admin_token.is_none() {
                args.admin_token = file_token;
            }
        }
        Ok(args)
    }

    /// Refuses flags that do not go together: a sticky cookie with an algorithm that is not
    /// sticky.
    pub(crate) fn checked(self) -> Result<Self, clap::Error> {
        if self.sticky_cookie.is_some() && !self.algo.is_sticky() {
            return Err(Self::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "--sticky-cookie needs a sticky algorithm (SRR, SIH or CHB), not {}",
                    self.algo
                ),
            ));
        }
        Ok(self)
    }

    /// Takes the admin token from `env` (the value of [`ADMIN_TOKEN_ENV`]) unless the
    /// flag gave one. An empty variable counts as unset.
    pub(crate) fn token_from_env(mut self, env: Option<OsString>) -> Result<Self, clap::Error> {
        let Some(env) = env.filter(|v| !v.is_empty()) else {
            return Ok(self);
        };
        if self.admin_token.is_none() {
            let token = env.to_str().and_then(|v| v.parse().ok()).ok_or_else(|| {
                Self::command().error(
                    clap::error::ErrorKind::ValueValidation,
                    format!("{ADMIN_TOKEN_ENV}: {}", tower_lb::admin::InvalidToken),
                )
            })?;
            self.admin_token = Some(token);
        }
        Ok(self)
    }

    /// Parses `argv` (program name first), after [`normalize`].
    #[cfg(test)]
    pub(crate) fn try_from_args<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        Self::try_parse_from(normalize(argv))?.checked()
    }

    /// The configuration with the TLS files loaded: the listener's certificates (and the
    /// redirect listener) and the backends' trusted roots and client certificate. A file
    /// that does not load is a usage error naming its flag and the file.
    pub(crate) fn with_tls(&self, mut config: Config) -> Result<Config, clap::Error> {
        let usage = |flags: &str, error: &dyn std::fmt::Display| {
            Self::command().error(
                clap::error::ErrorKind::ValueValidation,
                format!("{flags}: {error}"),
            )
        };
        if self.tls_certs.len() != self.tls_keys.len() {
            return Err(usage(
                "--tls-cert/--tls-key",
                &format!(
                    "{} certificates but {} keys: give them in pairs",
                    self.tls_certs.len(),
                    self.tls_keys.len()
                ),
            ));
        }
        if !self.tls_certs.is_empty() {
            let pairs = self.tls_certs.iter().zip(&self.tls_keys);
            let tls = ServerTls::from_pairs(pairs.map(|(cert, key)| CertPair::new(cert, key)))
                .map_err(|error| usage("--tls-cert/--tls-key", &error))?;
            config = config.tls(tls);
        }
        if let Some(port) = self.redirect_http {
            config = config.redirect_http(SocketAddr::new(self.bind, port));
        }
        let default_alpn = self
            .backend_alpn
            .iter()
            .map(String::as_bytes)
            .eq(BackendTls::DEFAULT_ALPN);
        if !self.backend_cas.is_empty() || self.backend_cert.is_some() || !default_alpn {
            let mut tls = BackendTls::builder()
                .alpn_protocols(self.backend_alpn.iter().map(|p| p.as_bytes().to_vec()));
            for ca in &self.backend_cas {
                tls = tls.ca_file(ca);
            }
            if let (Some(cert), Some(key)) = (&self.backend_cert, &self.backend_key) {
                tls = tls.client_cert(cert, key);
            }
            let tls = tls
                .build()
                .map_err(|error| usage("--backend-ca/--backend-cert/--backend-key", &error))?;
            let client = config.proxy_client.clone().backend_tls(tls);
            config = config.proxy_client(client);
        }
        Ok(config)
    }

    /// The worker threads to run.
    pub(crate) fn worker_threads(&self) -> usize {
        self.workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            NonZeroUsize::get,
        )
    }

    /// The server configuration, without the demo backends.
    pub(crate) fn config(&self) -> Config {
        let client_ip = if self.trusted_proxies.is_empty() {
            ClientIp::peer()
        } else {
            ClientIp::trusting(self.trusted_proxies.iter().copied())
        };
        let mut config =
            Config::new()
                .bind(SocketAddr::new(self.bind, self.port))
                .algo(self.algo)
                .client_ip(client_ip)
                .hash_key(self.hash_key.clone())
                .hash_balance_factor(self.hash_balance_factor)
                .sticky_cookie(self.sticky_cookie.as_deref().map(|name| {
                    let cookie = StickyCookie::new(name).expect("checked by parse_cookie_name");
                    match &self.sticky_secret {
                        Some(secret) => cookie.secret(secret),
                        None => cookie,
                    }
                }))
                .health_interval(self.health_interval)
                .health_path(self.health_path.clone())
                .health_timeout(self.health_timeout)
                .backends_from(self.backends.iter().cloned())
                .outlier_detection((self.eject_after > 0).then_some(self.eject_after).map(
                    |failures| {
                        OutlierDetection::new()
                            .consecutive_failures(failures)
                            .base_ejection(self.eject_time)
                            .max_ejection(self.eject_max_time)
                            .max_ejection_percent(self.eject_max_percent)
                    },
                ))
                .slow_start(self.slow_start)
                .admin_token(self.admin_token.clone())
                .client_header_timeout(self.client_header_timeout)
                .idle_timeout(self.idle_timeout)
                .client_timeout(self.client_timeout)
                .shutdown_timeout(self.grace)
                .max_header_size(self.max_header_size)
                .max_connections(self.max_connections)
                .queue_timeout(self.queue_timeout)
                .retries(self.retries)
                .retry_non_idempotent(self.retry_non_idempotent)
                .retry_on(self.retry_on)
                .retry_buffer(self.retry_buffer)
                .workers(self.worker_threads())
                .proxy_client(
                    ProxyClientBuilder::new()
                        .connect_timeout(self.connect_timeout)
                        .response_timeout(self.backend_timeout)
                        .max_conns_per_backend(self.max_conns_per_backend),
                )
                .dns_ttl(self.dns_min_ttl, self.dns_max_ttl);
        for target in &self.dns {
            config = config.dns(target.clone());
        }
        for name in &self.dns_srv {
            config = config.dns(DnsTarget::srv(name.clone()));
        }
        if let Some(server) = self.dns_server {
            config = config.dns_server(server);
        }
        if let Some(path) = &self.backends_file {
            config = config.backends_file(path.clone());
        }
        if let Some(service) = &self.health_grpc {
            config = config.health_grpc(service.clone());
        }
        if let Some(addr) = self.admin_bind {
            config = config.admin_bind(addr);
        }
        config = config
            .access_log(self.access_log.clone().map(AccessLogTarget::from_arg))
            .access_log_format(self.access_log_format);
        for &network in &self.allowed_backends {
            config = config.allow_backend(network);
        }
        #[cfg(feature = "etcd")]
        if let Some(prefix) = &self.etcd_prefix {
            config = config.etcd(
                tower_lb::server::EtcdConfig::new(self.etcd.iter().cloned(), prefix.clone())
                    .lease_ttl(self.etcd_lease_ttl.map(Duration::from_secs)),
            );
        }
        config
    }
}

/// Rewrites the Go spelling of long flags (`-algo WRR`, `-port=8081`) to clap's
/// (`--algo WRR`, `--port=8081`). Short flags (`-t 5`), values and everything after `--`
/// are left alone.
pub(crate) fn normalize<I, T>(argv: I) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let command = Args::command();
    let flags: Vec<(&str, bool)> = command
        .get_arguments()
        .filter_map(|arg| Some((arg.get_long()?, arg.get_action().takes_values())))
        .chain([("help", false), ("version", false)])
        .collect();
    let shorts_with_value: Vec<char> = command
        .get_arguments()
        .filter(|arg| arg.get_action().takes_values())
        .filter_map(|arg| arg.get_short())
        .collect();

    let mut out = Vec::new();
    let mut argv = argv.into_iter().map(Into::into);
    out.extend(argv.next()); // the program name
    let mut value_next = false;
    while let Some(arg) = argv.next() {
        let Some(s) = arg.to_str() else {
            value_next = false;
            out.push(arg);
            continue;
        };
        if std::mem::take(&mut value_next) {
            out.push(arg);
            continue;
        }
        if s == "--" {
            out.push(arg);
            out.extend(argv);
            break;
        }
        let (dashes, flag) = match (s.strip_prefix("--"), s.strip_prefix('-')) {
            (Some(long), _) => (2, long),
            (None, Some(flag)) => (1, flag),
            (None, None) => {
                out.push(arg);
                continue;
            }
        };
        let (name, inline_value) = match flag.split_once('=') {
            Some((name, _)) => (name, true),
            None => (flag, false),
        };
        if let Some(&(_, takes_value)) = flags.iter().find(|&&(n, _)| n == name) {
            value_next = !inline_value && takes_value;
            out.push(if dashes == 1 {
                format!("-{s}").into()
            } else {
                arg
            });
        } else {
            let mut chars = flag.chars();
            value_next = dashes == 1
                && chars.next().is_some_and(|c| shorts_with_value.contains(&c))
                && chars.next().is_none();
            out.push(arg);
        }
    }
    out
}

#[cfg(test)]
mod tests;
