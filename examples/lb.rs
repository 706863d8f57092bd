//! The standalone balancer: `tower-lb` as a program.
//!
//! ```text
//! cargo run --release --example lb -- --demo
//! curl localhost:8080/
//! curl --json '{"address": "http://127.0.0.1:1080", "weight": 5}' localhost:8080/register
//! curl localhost:8080/backends
//! curl -X DELETE --json '{"address": "http://127.0.0.1:1080"}' localhost:8080/register
//! ```
//!
//! Every flag is described by `--help`. The original Go balancer's single-dash spelling
//! (`-algo WRR`, `-port 8081`) is accepted too. Logs follow `RUST_LOG` (default `info`).

use std::io::IsTerminal;
use std::process::ExitCode;

use tower_lb::server::{Config, Server};
use tracing_subscriber::EnvFilter;

mod cli {
    use std::ffi::OsString;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::num::NonZeroUsize;
    use std::time::Duration;

    use clap::{CommandFactory, Parser};
    use tower_lb::IpNet;
    use tower_lb::admin::{AdminToken, BackendSpec};
    use tower_lb::health::OutlierDetection;
    use tower_lb::proxy::ProxyClientBuilder;
    use tower_lb::server::Config;
    use tower_lb::{Algo, ClientIp};

    /// An HTTP load balancer built from tower middleware.
    ///
    /// Requests to any path but /register and /backends are forwarded to a backend chosen by
    /// the algorithm; backends that fail their health check are taken out until they pass
    /// again. POST /register with {"address": "http://host:port", "weight": 5} adds a backend
    /// (or updates its weight) at run time, DELETE /register with {"address": ...} drains one
    /// (no new requests, those in flight finish), GET /backends lists them with their state
    /// and counters. The admin API answers loopback clients only, unless --admin-token is
    /// set.
    #[derive(Debug, Parser)]
    #[command(name = "lb", version, about, long_about)]
    pub(crate) struct Args {
        /// Port to listen on.
        #[arg(long, default_value_t = Config::DEFAULT_PORT)]
        pub(crate) port: u16,

        /// Address to listen on.
        #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
        pub(crate) bind: IpAddr,

        /// Balancing algorithm, case-insensitive: RR (round robin), WRR (weighted round robin),
        /// SRR (sticky round robin), LC (least connections), PTC or P2C (power of two
        /// choices), SIH (source IP hash), LT (least time), Random; long names such as
        /// least-conn work too.
        #[arg(long, default_value_t = Algo::RoundRobin, value_parser = parse_algo)]
        pub(crate) algo: Algo,

        /// Seconds between two health checks of a backend (fractions allowed).
        #[arg(short = 't', long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
        pub(crate) health_interval: Duration,

        /// Path every health check asks for with GET; a 2xx answer is a pass.
        #[arg(long, value_name = "PATH", default_value = "/health")]
        pub(crate) health_path: String,

        /// Seconds a health check may take before it counts as failed (fractions allowed).
        #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = parse_seconds)]
        pub(crate) health_timeout: Duration,

        /// A backend to register at start-up, as http://host:port with an optional =WEIGHT
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

        /// Believe X-Forwarded-For from peers in this network (CIDR, e.g. 10.0.0.0/8), for the
        /// client IP of SIH and SRR; repeat for more. By default the header is ignored.
        #[arg(long = "trust-proxy", value_name = "CIDR")]
        pub(crate) trusted_proxies: Vec<IpNet>,

        /// Eject a backend after N failed requests in a row (connection errors, 502, 503,
        /// 504), as Envoy's outlier detection does; its health checks go on meanwhile.
        /// 0 turns passive checks off.
        #[arg(long, value_name = "N", default_value_t = 5)]
        pub(crate) eject_after: u32,

        /// Seconds the first ejection lasts; the n-th lasts n times as long.
        #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
        pub(crate) eject_time: Duration,

        /// The longest ejection, in seconds.
        #[arg(long, value_name = "SECONDS", default_value = "300", value_parser = parse_seconds)]
        pub(crate) eject_max_time: Duration,

        /// The most backends ejected at once, in percent (one may always be, never the last
        /// available one).
        #[arg(long, value_name = "PERCENT", default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
        pub(crate) eject_max_percent: u8,

        /// Ramp up the share of requests a backend takes over this many seconds after it
        /// joins or comes back, like HAProxy's slowstart; 0 turns it off.
        #[arg(long, value_name = "SECONDS", default_value = "0", value_parser = parse_seconds_or_zero)]
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
        #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
        pub(crate) client_header_timeout: Duration,

        /// Seconds a keep-alive connection may sit idle between two requests (for HTTP/2:
        /// with no stream open) before it is closed.
        #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_seconds)]
        pub(crate) idle_timeout: Duration,

        /// Seconds a TCP connect to a backend may take; then the request fails with 504.
        #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_seconds)]
        pub(crate) connect_timeout: Duration,

        /// Seconds a backend may take to send its response head once the request is sent;
        /// then the request fails with 504. While a request body is being sent, the most time
        /// between two of its chunks.
        #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
        pub(crate) backend_timeout: Duration,

        /// Seconds requests in flight get to finish after SIGTERM or SIGINT (the listener
        /// closes at once, idle connections too); what is left is then cut. 0 cuts at once.
        #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds_or_zero)]
        pub(crate) grace: Duration,

        /// Largest request head (request line and headers) in bytes, at least 8192; a larger
        /// one gets 431.
        #[arg(long, value_name = "BYTES", default_value_t = Config::DEFAULT_MAX_HEADER_SIZE,
              value_parser = parse_header_size)]
        pub(crate) max_header_size: usize,

        /// Most client connections open at once; at the cap new connections wait in the
        /// kernel's listen backlog until one closes. 0 for no cap.
        #[arg(long, value_name = "N", default_value_t = 10_000)]
        pub(crate) max_connections: usize,

        /// Most requests in flight to one backend (each until its response body ends; an
        /// open WebSocket counts too). A backend at its cap gets no more requests until one
        /// ends; when all are, see --queue-timeout. 0 for no cap.
        #[arg(long, value_name = "N", default_value_t = 0)]
        pub(crate) max_conns_per_backend: usize,

        /// Seconds a request waits for a backend when none can take it (all at their cap,
        /// unhealthy or draining) before it fails with 503; 0 fails at once.
        #[arg(long, value_name = "SECONDS", default_value = "0", value_parser = parse_seconds_or_zero)]
        pub(crate) queue_timeout: Duration,

        /// Retries of a request on other backends when a backend refuses the connection or
        /// closes it before any byte of a response (not after a --backend-timeout). Only GET,
        /// HEAD, OPTIONS, PUT and DELETE requests without a body are retried, and retries add
        /// at most about 20 % to the load (plus 10 a second). 0 turns retries off.
        #[arg(long, value_name = "N", default_value_t = 2)]
        pub(crate) retries: usize,

        /// Retry POST and PATCH requests (without a body) too: only if the backends can take
        /// them twice, since one that closed the connection may have acted on the request.
        #[arg(long)]
        pub(crate) retry_non_idempotent: bool,
    }

    /// The environment variable read for the admin token when --admin-token is not given.
    pub(crate) const ADMIN_TOKEN_ENV: &str = "TOWER_LB_ADMIN_TOKEN";

    impl Args {
        /// Parses the command line, after [`normalize`], and the environment, exiting with
        /// status 2 on bad input.
        pub(crate) fn from_env() -> Self {
            let args = Self::parse_from(normalize(std::env::args_os()));
            args.token_from_env(std::env::var_os(ADMIN_TOKEN_ENV))
                .unwrap_or_else(|e| e.exit())
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
            Self::try_parse_from(normalize(argv))
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
            let mut config = Config::new()
                .bind(SocketAddr::new(self.bind, self.port))
                .algo(self.algo)
                .client_ip(client_ip)
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
                .shutdown_timeout(self.grace)
                .max_header_size(self.max_header_size)
                .max_connections(self.max_connections)
                .queue_timeout(self.queue_timeout)
                .retries(self.retries)
                .retry_non_idempotent(self.retry_non_idempotent)
                .workers(self.worker_threads())
                .proxy_client(
                    ProxyClientBuilder::new()
                        .connect_timeout(self.connect_timeout)
                        .response_timeout(self.backend_timeout)
                        .max_conns_per_backend(self.max_conns_per_backend),
                );
            if let Some(addr) = self.admin_bind {
                config = config.admin_bind(addr);
            }
            for &network in &self.allowed_backends {
                config = config.allow_backend(network);
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

    fn parse_algo(s: &str) -> Result<Algo, String> {
        s.parse()
            .map_err(|e: tower_lb::algo::UnknownAlgo| e.to_string())
    }

    fn parse_seconds(s: &str) -> Result<Duration, String> {
        let secs: f64 = s
            .parse()
            .map_err(|_| format!("{s:?} is not a number of seconds"))?;
        if !(secs > 0.0 && secs <= 86_400.0) {
            return Err(format!(
                "{s} is out of range: expected more than 0 and at most 86400 seconds"
            ));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    fn parse_seconds_or_zero(s: &str) -> Result<Duration, String> {
        match s.parse::<f64>() {
            Ok(0.0) => Ok(Duration::ZERO),
            _ => parse_seconds(s),
        }
    }

    fn parse_header_size(s: &str) -> Result<usize, String> {
        const MAX: usize = 16 * 1024 * 1024;
        let bytes: usize = s
            .parse()
            .map_err(|_| format!("{s:?} is not a number of bytes"))?;
        if !(Config::MIN_MAX_HEADER_SIZE..=MAX).contains(&bytes) {
            return Err(format!(
                "{s} is out of range: expected {} to {MAX} bytes",
                Config::MIN_MAX_HEADER_SIZE
            ));
        }
        Ok(bytes)
    }

    fn parse_backend(s: &str) -> Result<BackendSpec, String> {
        s.parse()
            .map_err(|e: tower_lb::admin::RegisterError| e.to_string())
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use clap::error::ErrorKind;

        fn args(argv: &[&str]) -> Result<Args, clap::Error> {
            Args::try_from_args(std::iter::once("lb").chain(argv.iter().copied()))
        }

        #[test]
        fn defaults() {
            let a = args(&[]).unwrap();
            assert_eq!(a.port, 8080);
            assert_eq!(a.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            assert_eq!(a.algo, Algo::RoundRobin);
            assert_eq!(a.health_interval, Duration::from_secs(10));
            assert_eq!(a.health_path, "/health");
            assert_eq!(a.health_timeout, Duration::from_secs(2));
            assert!(a.backends.is_empty() && !a.demo && a.workers.is_none());
            let config = a.config();
            assert_eq!(config.addr, "0.0.0.0:8080".parse().unwrap());
            assert_eq!(config.algo, Algo::RoundRobin);
            assert!(a.worker_threads() >= 1);
        }

        #[test]
        fn every_flag_reaches_the_config() {
            let a = args(&[
                "--port",
                "9000",
                "--bind",
                "127.0.0.1",
                "--algo",
                "least-conn",
                "-t",
                "1.5",
                "--health-path",
                "/ping",
                "--health-timeout",
                "0.5",
                "--backend",
                "http://127.0.0.1:1080=5",
                "--backend",
                "http://127.0.0.1:1081/",
                "--workers",
                "1",
                "--demo",
                "--trust-proxy",
                "10.0.0.0/8",
            ])
            .unwrap();
            assert!(a.demo);
            assert_eq!(a.worker_threads(), 1);
            let c = a.config();
            assert_eq!(c.workers, 1);
            assert_eq!(args(&["--workers", "3"]).unwrap().config().workers, 3);
            assert_eq!(c.addr, "127.0.0.1:9000".parse().unwrap());
            assert_eq!(c.algo, Algo::LeastConn);
            assert_eq!(c.health_interval, Duration::from_millis(1500));
            assert_eq!(c.health_path, "/ping");
            assert_eq!(c.health_timeout, Duration::from_millis(500));
            let backends: Vec<_> = c
                .backends
                .iter()
                .map(|b| (b.to_string(), b.weight()))
                .collect();
            assert_eq!(
                backends,
                [
                    ("http://127.0.0.1:1080".to_string(), 5),
                    ("http://127.0.0.1:1081".to_string(), 1)
                ]
            );
            assert_eq!(
                c.client_ip.trusted(),
                ["10.0.0.0/8".parse::<IpNet>().unwrap()]
            );
        }

        #[test]
        fn go_single_dash_spelling_works() {
            let a = args(&[
                "-algo",
                "WRR",
                "-port=8081",
                "-health-interval",
                "3",
                "-demo",
            ])
            .unwrap();
            assert_eq!(a.algo, Algo::WeightedRoundRobin);
            assert_eq!(a.port, 8081);
            assert_eq!(a.health_interval, Duration::from_secs(3));
            assert!(a.demo);
            // Short flags, values and what follows `--` are not rewritten.
            assert_eq!(
                normalize([
                    "lb",
                    "-t",
                    "5",
                    "--health-path",
                    "-algo",
                    "-bind",
                    "::1",
                    "--",
                    "-port"
                ]),
                [
                    "lb",
                    "-t",
                    "5",
                    "--health-path",
                    "-algo",
                    "--bind",
                    "::1",
                    "--",
                    "-port"
                ]
                .map(OsString::from)
            );
            let a = args(&["-health-path=/ping", "-port", "1"]).unwrap();
            assert_eq!((a.health_path.as_str(), a.port), ("/ping", 1));
        }

        #[test]
        fn algo_is_case_insensitive_and_errors_list_valid_names() {
            for (name, algo) in [
                ("wrr", Algo::WeightedRoundRobin),
                ("P2c", Algo::PowerOfTwoChoices),
                ("SIH", Algo::SourceIpHash),
            ] {
                assert_eq!(args(&["--algo", name]).unwrap().algo, algo);
            }
            let err = args(&["--algo", "fastest"]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ValueValidation);
            assert_eq!(err.exit_code(), 2);
            let msg = err.to_string();
            for algo in Algo::ALL {
                assert!(msg.contains(algo.short_name()), "{msg}");
            }
        }

        #[test]
        fn bad_values_are_usage_errors() {
            for argv in [
                &["--port", "70000"][..],
                &["--port", "http"],
                &["--bind", "localhost"],
                &["-t", "0"],
                &["-t", "-1"],
                &["-t", "soon"],
                &["--health-timeout", "NaN"],
                &["--workers", "0"],
                &["--backend", "127.0.0.1:1080"],
                &["--backend", "ftp://x"],
                &["--backend", "http://x=0"],
                &["--backend", "http://x=1001"],
                &["--backend", "http://x=heavy"],
                &["--trust-proxy", "10.0.0.0"],
                &["--no-such-flag"],
            ] {
                let err = args(argv).unwrap_err();
                assert_eq!(err.exit_code(), 2, "{argv:?}");
            }
            let msg = args(&["--backend", "ftp://x"]).unwrap_err().to_string();
            assert!(msg.contains("invalid address \"ftp://x\""), "{msg}");
        }

        #[test]
        fn admin_and_health_flags_default_to_off_but_passive_checks_are_on() {
            let c = args(&[]).unwrap().config();
            assert_eq!(c.outlier_detection, Some(OutlierDetection::new()));
            assert_eq!(c.slow_start, Duration::ZERO);
            assert_eq!(c.admin_token, None);
            assert_eq!(c.admin_addr, None);
            assert!(c.allowed_backends.is_empty());
        }

        #[test]
        fn admin_and_health_flags_reach_the_config() {
            let a = args(&[
                "--eject-after",
                "3",
                "--eject-time",
                "10",
                "--eject-max-time",
                "60",
                "--eject-max-percent",
                "34",
                "--slow-start",
                "7.5",
                "--admin-token",
                "s3cret",
                "--admin-bind",
                "127.0.0.1:9090",
                "--allow-backend",
                "10.0.0.0/8",
                "-allow-backend=127.0.0.1/32",
            ])
            .unwrap();
            let c = a.config();
            assert_eq!(
                c.outlier_detection,
                Some(
                    OutlierDetection::new()
                        .consecutive_failures(3)
                        .base_ejection(Duration::from_secs(10))
                        .max_ejection(Duration::from_secs(60))
                        .max_ejection_percent(34)
                )
            );
            assert_eq!(c.slow_start, Duration::from_millis(7500));
            assert_eq!(c.admin_token, Some("s3cret".parse().unwrap()));
            assert_eq!(c.admin_addr, Some("127.0.0.1:9090".parse().unwrap()));
            assert_eq!(
                c.allowed_backends,
                ["10.0.0.0/8", "127.0.0.1/32"].map(|n| n.parse::<IpNet>().unwrap())
            );
            // Passive checks are on by default with the defaults of the health layer.
            let c = args(&[]).unwrap().config();
            assert_eq!(c.outlier_detection, Some(OutlierDetection::new()));
            let c = args(&["--eject-after", "5"]).unwrap().config();
            assert_eq!(c.outlier_detection, Some(OutlierDetection::new()));
            let c = args(&["--eject-after", "0", "--eject-time", "10"])
                .unwrap()
                .config();
            assert_eq!(c.outlier_detection, None);
            // The token is never printed.
            assert!(!format!("{a:?} {:?}", a.config()).contains("s3cret"));
        }

        #[test]
        fn admin_token_comes_from_the_environment_unless_given() {
            let env = |v: &str| Some(OsString::from(v));
            let a = args(&[]).unwrap().token_from_env(env("from-env")).unwrap();
            assert_eq!(a.admin_token, Some("from-env".parse().unwrap()));
            let a = args(&["--admin-token", "from-flag"])
                .unwrap()
                .token_from_env(env("from-env"))
                .unwrap();
            assert_eq!(a.admin_token, Some("from-flag".parse().unwrap()));
            let a = args(&[]).unwrap().token_from_env(env("")).unwrap();
            assert_eq!(a.admin_token, None);
            let a = args(&[]).unwrap().token_from_env(None).unwrap();
            assert_eq!(a.admin_token, None);
            let err = args(&[])
                .unwrap()
                .token_from_env(env("two words"))
                .unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(ADMIN_TOKEN_ENV), "{err}");
        }

        #[test]
        fn bad_admin_and_health_values_are_usage_errors() {
            for argv in [
                &["--eject-after", "-1"][..],
                &["--eject-after", "3", "--eject-time", "0"],
                &["--eject-after", "3", "--eject-max-percent", "101"],
                &["--slow-start", "-1"],
                &["--slow-start", "soon"],
                &["--admin-token", ""],
                &["--admin-token", "a b"],
                &["--admin-bind", "127.0.0.1"],
                &["--admin-bind", "localhost:9090"],
                &["--allow-backend", "10.0.0.1"],
            ] {
                let err = args(argv).unwrap_err();
                assert_eq!(err.exit_code(), 2, "{argv:?}");
            }
        }

        #[test]
        fn connection_flags_default_and_reach_the_config() {
            type Body = http_body_util::Empty<bytes::Bytes>;
            let c = args(&[]).unwrap().config();
            assert_eq!(c.client_header_timeout, Duration::from_secs(10));
            assert_eq!(c.idle_timeout, Duration::from_secs(60));
            assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
            assert_eq!(c.max_header_size, 64 * 1024);
            assert_eq!(c.max_connections, Some(10_000));
            assert_eq!(c.queue_timeout, Duration::ZERO);
            let client = c.proxy_client.build::<Body>();
            assert_eq!(client.connect_timeout(), Some(Duration::from_secs(1)));
            assert_eq!(client.response_timeout(), Some(Duration::from_secs(30)));
            assert_eq!(client.max_conns_per_backend(), None);

            let c = args(&[
                "--client-header-timeout",
                "2.5",
                "--idle-timeout",
                "5",
                "--connect-timeout",
                "0.25",
                "--backend-timeout",
                "7",
                "--grace",
                "0",
                "--max-header-size",
                "16384",
                "--max-connections",
                "0",
                "--max-conns-per-backend",
                "32",
                "--queue-timeout",
                "1.5",
            ])
            .unwrap()
            .config();
            assert_eq!(c.client_header_timeout, Duration::from_millis(2500));
            assert_eq!(c.idle_timeout, Duration::from_secs(5));
            assert_eq!(c.shutdown_timeout, Duration::ZERO);
            assert_eq!(c.max_header_size, 16384);
            assert_eq!(c.max_connections, None);
            assert_eq!(c.queue_timeout, Duration::from_millis(1500));
            let client = c.proxy_client.build::<Body>();
            assert_eq!(client.connect_timeout(), Some(Duration::from_millis(250)));
            assert_eq!(client.response_timeout(), Some(Duration::from_secs(7)));
            assert_eq!(client.max_conns_per_backend(), Some(32));
        }

        #[test]
        fn bad_connection_values_are_usage_errors() {
            for argv in [
                &["--client-header-timeout", "0"][..],
                &["--idle-timeout", "-1"],
                &["--connect-timeout", "soon"],
                &["--backend-timeout", "0"],
                &["--grace", "-5"],
                &["--max-header-size", "100"],
                &["--max-header-size", "99999999999"],
                &["--max-connections", "-1"],
                &["--max-conns-per-backend", "many"],
                &["--queue-timeout", "NaN"],
            ] {
                let err = args(argv).unwrap_err();
                assert_eq!(err.exit_code(), 2, "{argv:?}");
            }
        }

        #[test]
        fn help_names_the_connection_flags_and_their_defaults() {
            let help = Args::command().render_long_help().to_string();
            for flag in [
                "--client-header-timeout <SECONDS>",
                "--idle-timeout <SECONDS>",
                "--connect-timeout <SECONDS>",
                "--backend-timeout <SECONDS>",
                "--grace <SECONDS>",
                "--max-header-size <BYTES>",
                "--max-connections <N>",
                "--max-conns-per-backend <N>",
                "--queue-timeout <SECONDS>",
            ] {
                let at = help
                    .find(flag)
                    .unwrap_or_else(|| panic!("{flag} missing from\n{help}"));
                let entry = &help[at..];
                let entry = &entry[..entry[2..].find("\n  -").map_or(entry.len(), |e| e + 2)];
                assert!(
                    entry.contains("[default: "),
                    "{flag} has no default:\n{entry}"
                );
            }
        }

        #[test]
        fn retry_flags_reach_the_config() {
            let config = args(&[]).unwrap().config();
            assert_eq!(config.retries, 2);
            assert!(!config.retry_non_idempotent);

            let config = args(&["--retries", "5", "--retry-non-idempotent"])
                .unwrap()
                .config();
            assert_eq!(config.retries, 5);
            assert!(config.retry_non_idempotent);

            let config = args(&["-retries=0"]).unwrap().config();
            assert_eq!(config.retries, 0, "Go spelling, and 0 turns retries off");

            for bad in [
                &["--retries", "-1"][..],
                &["--retries", "two"],
                &["--retries"],
            ] {
                let err = args(bad).unwrap_err();
                assert_eq!(err.exit_code(), 2, "{bad:?}");
            }
            let help = Args::command().render_long_help().to_string();
            assert!(help.contains("--retries <N>"), "{help}");
            assert!(help.contains("--retry-non-idempotent"), "{help}");
        }

        #[test]
        fn help_names_every_flag_and_its_default() {
            let help = Args::command().render_long_help().to_string();
            for text in [
                "--port",
                "[default: 8080]",
                "--bind",
                "[default: 0.0.0.0]",
                "--algo",
                "[default: RR]",
                "--health-interval",
                "[default: 10]",
                "--health-path",
                "[default: /health]",
                "--health-timeout",
                "[default: 2]",
                "--backend",
                "--demo",
                "--workers",
                "number of CPU cores",
                "--trust-proxy",
                "--eject-after",
                "--eject-time",
                "[default: 30]",
                "--eject-max-time",
                "[default: 300]",
                "--eject-max-percent",
                "[default: 50]",
                "--slow-start",
                "[default: 0]",
                "--admin-token",
                "TOWER_LB_ADMIN_TOKEN",
                "--admin-bind",
                "--allow-backend",
                "DELETE /register",
                "GET /backends",
            ] {
                assert!(help.contains(text), "{text} missing from\n{help}");
            }
            Args::command().debug_assert();
        }
    }
}

fn main() -> ExitCode {
    let args = cli::Args::from_env();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    // One thread per worker, each with its own runtime and listening socket
    // (`Config::workers`); this single-threaded one keeps health checks, the admin listener
    // and signals, and is the only one with `--workers 1`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = runtime
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|runtime| runtime.block_on(run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("lb: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: cli::Args) -> Result<(), String> {
    let config: Config = args.config();
    let addr = config.addr;
    let server = Server::bind(config)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    if args.demo {
        demo::start(&server)
            .await
            .map_err(|e| format!("cannot start the demo backends: {e}"))?;
    }
    let signal = shutdown_signal().map_err(|e| format!("cannot handle signals: {e}"))?;
    server
        .run(signal)
        .await
        .map_err(|e| format!("server failed: {e}"))
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C). The handlers are installed before it returns, so
/// a signal sent from then on is never missed (nor kills the process).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
    };
    #[cfg(not(unix))]
    let signals = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    Ok(async move {
        signals.await;
        tracing::info!("shutting down: no new connections, finishing requests in flight");
    })
}

/// The signal handling, with the real program's code path: `run` and a SIGTERM.
#[cfg(all(test, unix))]
mod signal_tests {
    use std::time::Duration;

    use bytes::Bytes;
    use clap::Parser;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    /// Sends SIGTERM to this process.
    fn sigterm() {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigterm_lets_requests_in_flight_finish_and_run_returns_ok() {
        let backend = backend_server::spawn("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let args = super::cli::Args::parse_from([
            "lb",
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--backend",
            &backend.url(),
            "--grace",
            "5",
        ]);
        let running = tokio::spawn(super::run(args));

        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let get = |path: &str| {
            let client = client.clone();
            let url = format!("http://127.0.0.1:{port}{path}").parse().unwrap();
            async move {
                let res = client.get(url).await?;
                let status = res.status();
                let body = res.into_body().collect().await?.to_bytes();
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
            }
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while get("/").await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "lb never answered");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let in_flight: Vec<_> = (0..5).map(|_| tokio::spawn(get("/sleep?ms=500"))).collect();
        while backend.stats().requests() < 6 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "requests never arrived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sigterm();
        for request in in_flight {
            let (status, body) = request.await.unwrap().expect("the request completes");
            assert_eq!(status, 200);
            assert_eq!(body, "slept 500 ms\n");
        }
        let result = tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("run returns after SIGTERM")
            .unwrap();
        assert_eq!(result, Ok(()), "run returns Ok, so main exits 0");
        assert!(get("/").await.is_err(), "the listener is closed");
    }
}

mod demo {
    use std::io;

    use tokio::net::TcpListener;
    use tower_lb::server::Server;

    /// Starts three backends on 127.0.0.1 and registers them with weights 3, 2 and 1.
    pub(crate) async fn start(server: &Server) -> io::Result<()> {
        for weight in [3, 2, 1] {
            let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
            let addr = listener.local_addr()?;
            tokio::spawn(backend_server::serve(
                listener,
                std::future::pending::<()>(),
            ));
            let uri = tower_lb::admin::parse_address(&format!("http://{addr}"))
                .expect("a socket address makes a valid backend address");
            server.registry().register(uri, weight);
            tracing::info!(backend = %addr, weight, "demo backend registered");
        }
        Ok(())
    }
}
