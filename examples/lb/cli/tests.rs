use std::net::Ipv4Addr;

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
    assert_eq!(c.health_grpc, None);
    // `--health-grpc` alone asks about the server as a whole; with a name, that service.
    let grpc = |a: &[&str]| args(a).unwrap().config().health_grpc;
    assert_eq!(grpc(&["--health-grpc"]), Some(String::new()));
    assert_eq!(
        grpc(&["--health-grpc", "demo.Echo"]),
        Some("demo.Echo".into())
    );
    assert_eq!(
        grpc(&["--health-grpc", "--backend", "h2c://127.0.0.1:50051"]),
        Some(String::new())
    );
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
    assert_usage_errors(&[
        &["--port", "70000"],
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
    ]);
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
    assert_usage_errors(&[
        &["--eject-after", "-1"],
        &["--eject-after", "3", "--eject-time", "0"],
        &["--eject-after", "3", "--eject-max-percent", "101"],
        &["--slow-start", "-1"],
        &["--slow-start", "soon"],
        &["--admin-token", ""],
        &["--admin-token", "a b"],
        &["--admin-bind", "127.0.0.1"],
        &["--admin-bind", "localhost:9090"],
        &["--allow-backend", "10.0.0.1"],
    ]);
}

#[test]
fn connection_flags_default_and_reach_the_config() {
    type Body = http_body_util::Empty<bytes::Bytes>;
    let c = args(&[]).unwrap().config();
    assert_eq!(c.client_header_timeout, Duration::from_secs(10));
    assert_eq!(c.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.client_timeout, Duration::from_secs(60));
    assert_eq!(c.health_grpc, None);
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
        "--client-timeout",
        "3",
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
    assert_eq!(c.client_timeout, Duration::from_secs(3));
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
    assert_usage_errors(&[
        &["--client-header-timeout", "0"],
        &["--idle-timeout", "-1"],
        &["--connect-timeout", "soon"],
        &["--backend-timeout", "0"],
        &["--grace", "-5"],
        &["--max-header-size", "100"],
        &["--max-header-size", "99999999999"],
        &["--max-connections", "-1"],
        &["--max-conns-per-backend", "many"],
        &["--queue-timeout", "NaN"],
    ]);
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
        let entry = help_entry(&help, flag);
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

    assert_usage_errors(&[&["--retries", "-1"], &["--retries", "two"], &["--retries"]]);
    let help = Args::command().render_long_help().to_string();
    assert!(help.contains("--retries <N>"), "{help}");
    assert!(help.contains("--retry-non-idempotent"), "{help}");
}

#[test]
fn retry_on_and_retry_buffer_reach_the_config() {
    use tower_lb::retry::RetryOn;

    let config = args(&[]).unwrap().config();
    assert_eq!(config.retry_on, RetryOn::CONNECT_FAILURE);
    assert_eq!(config.retry_buffer, 64 * 1024);

    let config = args(&[
        "--retry-on",
        "connect-failure,503",
        "--retry-buffer",
        "1000",
    ])
    .unwrap()
    .config();
    assert_eq!(config.retry_on.to_string(), "connect-failure,503");
    assert_eq!(config.retry_buffer, 1000);
    let config = args(&["--retry-on=gateway-error"]).unwrap().config();
    assert_eq!(config.retry_on.to_string(), "502,503,504");

    assert_usage_errors(&[
        &["--retry-on", "teapot"],
        &["--retry-on", "404"],
        &["--retry-on"],
        &["--retry-buffer", "-1"],
        &["--retry-buffer", "64k"],
    ]);
    let help = Args::command().render_long_help().to_string();
    assert!(help.contains("--retry-on <LIST>"), "{help}");
    assert!(help.contains("[default: connect-failure]"), "{help}");
    assert!(help.contains("--retry-buffer <BYTES>"), "{help}");
    assert!(help.contains("[default: 65536]"), "{help}");
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
        "--access-log <PATH|->",
        "SIGUSR1",
        "--access-log-format <FORMAT>",
        "[default: json]",
        "GET /status",
    ] {
        assert!(help.contains(text), "{text} missing from\n{help}");
    }
    Args::command().debug_assert();
}

/// One home for each default: with no flags, the command line gives [`Config::new`], but for
/// `--workers` (the number of CPU cores here, 1 in the library, as documented).
#[test]
fn no_flags_give_the_library_defaults() {
    let cli = args(&[]).unwrap().config();
    let lib = Config::new().workers(cli.workers);
    assert_eq!(cli.addr, lib.addr);
    assert_eq!(cli.algo, lib.algo);
    assert_eq!(cli.client_ip.trusted(), lib.client_ip.trusted());
    assert_eq!(cli.health_interval, lib.health_interval);
    assert_eq!(cli.health_path, lib.health_path);
    assert_eq!(cli.health_timeout, lib.health_timeout);
    assert!(cli.backends.is_empty() && lib.backends.is_empty());
    assert_eq!(cli.shutdown_timeout, lib.shutdown_timeout);
    assert_eq!(cli.seed, lib.seed);
    assert_eq!(cli.outlier_detection, lib.outlier_detection);
    assert!(
        cli.outlier_detection.is_some(),
        "passive checks are on in both"
    );
    assert_eq!(cli.slow_start, lib.slow_start);
    assert_eq!(cli.admin_token, lib.admin_token);
    assert_eq!(cli.admin_addr, lib.admin_addr);
    assert_eq!(cli.allowed_backends, lib.allowed_backends);
    assert_eq!(cli.client_header_timeout, lib.client_header_timeout);
    assert_eq!(cli.idle_timeout, lib.idle_timeout);
    assert_eq!(cli.client_timeout, lib.client_timeout);
    assert_eq!(cli.health_grpc, lib.health_grpc);
    assert_eq!(cli.max_header_size, lib.max_header_size);
    assert_eq!(cli.max_connections, lib.max_connections);
    assert_eq!(cli.queue_timeout, lib.queue_timeout);
    assert_eq!(cli.retries, lib.retries);
    assert_eq!(cli.retry_non_idempotent, lib.retry_non_idempotent);
    assert_eq!(cli.access_log, lib.access_log);
    assert!(lib.access_log.is_none(), "the access log is off in both");
    assert_eq!(cli.access_log_format, lib.access_log_format);
    assert_eq!(cli.retry_on, lib.retry_on);
    assert_eq!(cli.retry_buffer, lib.retry_buffer);
    type Body = http_body_util::Empty<bytes::Bytes>;
    let (cli_client, lib_client) = (
        cli.proxy_client.clone().build::<Body>(),
        lib.proxy_client.clone().build::<Body>(),
    );
    assert_eq!(cli_client.connect_timeout(), lib_client.connect_timeout());
    assert_eq!(cli_client.response_timeout(), lib_client.response_timeout());
    assert_eq!(
        cli_client.max_conns_per_backend(),
        lib_client.max_conns_per_backend()
    );
    // Every field, including those added after this test: `Config` is `Debug`, not `Eq`.
    assert_eq!(format!("{cli:#?}"), format!("{lib:#?}"));
}

/// `--help` shows the library's defaults, rendered from the same constants.
#[test]
fn help_shows_the_library_defaults() {
    let help = Args::command().render_long_help().to_string();
    let entry = |flag: &str| {
        let name = format!("--{flag} ");
        let name = if help.contains(&name) {
            name
        } else {
            format!("--{flag}\n")
        };
        help_entry(&help, &name).to_owned()
    };
    let secs = |d: Duration| {
        let s = seconds(d);
        s.to_str().unwrap().to_owned()
    };
    let outliers = OutlierDetection::new();
    assert_eq!(Config::DEFAULT_OUTLIER_DETECTION, Some(outliers));
    let client = ProxyClientBuilder::new().build::<http_body_util::Empty<bytes::Bytes>>();
    for (flag, default) in [
        ("port", Config::DEFAULT_PORT.to_string()),
        ("bind", Config::DEFAULT_ADDR.ip().to_string()),
        ("algo", Config::DEFAULT_ALGO.to_string()),
        ("health-interval", secs(Config::DEFAULT_HEALTH_INTERVAL)),
        ("health-path", Config::DEFAULT_HEALTH_PATH.to_owned()),
        ("health-timeout", secs(Config::DEFAULT_HEALTH_TIMEOUT)),
        (
            "eject-after",
            OutlierDetection::DEFAULT_CONSECUTIVE_FAILURES.to_string(),
        ),
        ("eject-time", secs(OutlierDetection::DEFAULT_BASE_EJECTION)),
        (
            "eject-max-time",
            secs(OutlierDetection::DEFAULT_MAX_EJECTION),
        ),
        (
            "eject-max-percent",
            OutlierDetection::DEFAULT_MAX_EJECTION_PERCENT.to_string(),
        ),
        ("slow-start", secs(Config::DEFAULT_SLOW_START)),
        (
            "client-header-timeout",
            secs(Config::DEFAULT_CLIENT_HEADER_TIMEOUT),
        ),
        ("idle-timeout", secs(Config::DEFAULT_IDLE_TIMEOUT)),
        ("client-timeout", secs(Config::DEFAULT_CLIENT_TIMEOUT)),
        ("connect-timeout", secs(client.connect_timeout().unwrap())),
        ("backend-timeout", secs(client.response_timeout().unwrap())),
        ("grace", secs(Config::DEFAULT_SHUTDOWN_TIMEOUT)),
        (
            "max-header-size",
            Config::DEFAULT_MAX_HEADER_SIZE.to_string(),
        ),
        (
            "max-connections",
            Config::DEFAULT_MAX_CONNECTIONS.unwrap().to_string(),
        ),
        ("max-conns-per-backend", "0".to_owned()),
        ("queue-timeout", secs(Config::DEFAULT_QUEUE_TIMEOUT)),
        ("retries", Config::DEFAULT_RETRIES.to_string()),
        (
            "hash-balance-factor",
            Config::DEFAULT_HASH_BALANCE_FACTOR.to_string(),
        ),
        ("hash-key", "ip".to_owned()),
    ] {
        let entry = entry(flag);
        assert!(
            entry.contains(&format!("[default: {default}]")),
            "--{flag} should default to {default}:\n{entry}"
        );
    }
}

/// Defaults are rendered in the flags' own syntax and read back as the same duration.
#[test]
fn seconds_render_as_the_flags_spell_them() {
    for (duration, text) in [
        (Duration::from_secs(10), "10"),
        (Duration::from_millis(1500), "1.5"),
        (Duration::from_millis(250), "0.25"),
        (Duration::ZERO, "0"),
    ] {
        let rendered = seconds(duration);
        assert_eq!(rendered, text);
        assert_eq!(parse_seconds_or_zero(text), Ok(duration));
    }
}

/// Each argument list is refused as a usage error (exit code 2).
fn assert_usage_errors(cases: &[&[&str]]) {
    for argv in cases {
        let err = args(argv).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{argv:?}");
    }
}

/// The entry of `--help` that starts with `flag`, up to the next flag.
fn help_entry<'a>(help: &'a str, flag: &str) -> &'a str {
    let at = help
        .find(flag)
        .unwrap_or_else(|| panic!("{flag} missing from\n{help}"));
    let entry = &help[at..];
    &entry[..entry[2..].find("\n  -").map_or(entry.len(), |e| e + 2)]
}

#[test]
fn discovery_flags_default_and_reach_the_config() {
    let c = args(&[]).unwrap().config();
    assert!(c.dns.is_empty() && c.dns_server.is_none() && c.backends_file.is_none());
    assert_eq!(c.dns_min_ttl, Dns::DEFAULT_MIN_TTL);
    assert_eq!(c.dns_max_ttl, Dns::DEFAULT_MAX_TTL);
    let c = args(&[
        "--dns",
        "web.example:8080",
        "--dns-srv",
        "_http._tcp.api.example",
        "--dns",
        "other.example:80",
        "--dns-server",
        "127.0.0.1:5353",
        "--dns-min-ttl",
        "0.5",
        "--dns-max-ttl",
        "60",
        "--backends-file",
        "/etc/lb/backends.toml",
    ])
    .unwrap()
    .config();
    assert_eq!(
        c.dns,
        [
            DnsTarget::host("web.example", 8080),
            DnsTarget::host("other.example", 80),
            DnsTarget::srv("_http._tcp.api.example"),
        ]
    );
    assert_eq!(c.dns_server, Some("127.0.0.1:5353".parse().unwrap()));
    assert_eq!(
        (c.dns_min_ttl, c.dns_max_ttl),
        (Duration::from_millis(500), Duration::from_secs(60))
    );
    assert_eq!(
        c.backends_file.as_deref(),
        Some(std::path::Path::new("/etc/lb/backends.toml"))
    );
    assert_usage_errors(&[
        &["--dns", "web.example"],
        &["--dns", "web.example:0"],
        &["--dns-server", "localhost"],
        &["--dns-min-ttl", "0"],
    ]);
    let help = Args::command().render_long_help().to_string();
    for flag in [
        "dns",
        "dns-srv",
        "dns-server",
        "dns-min-ttl",
        "dns-max-ttl",
        "backends-file",
        "config",
        "check-config",
    ] {
        assert!(
            help.contains(&format!("--{flag} ")),
            "--{flag} missing from --help"
        );
    }
    assert!(help_entry(&help, "--dns-min-ttl <").contains("[default: 5]"));
    assert!(help_entry(&help, "--dns-max-ttl <").contains("[default: 30]"));
}

#[cfg(feature = "etcd")]
#[test]
fn etcd_flags_reach_the_config() {
    use std::time::Duration;
    use tower_lb::server::EtcdConfig;

    let cli = args(&[
        "--etcd",
        "http://127.0.0.1:2379,http://127.0.0.2:2379",
        "--etcd-prefix",
        "/lb/backends/",
        "--etcd-lease-ttl",
        "10",
    ])
    .unwrap()
    .config();
    assert_eq!(
        cli.etcd,
        Some(
            EtcdConfig::new(
                ["http://127.0.0.1:2379", "http://127.0.0.2:2379"],
                "/lb/backends/"
            )
            .lease_ttl(Duration::from_secs(10))
        )
    );
    let cli = args(&["--etcd", "http://127.0.0.1:2379", "--etcd-prefix", "/x/"])
        .unwrap()
        .config();
    assert_eq!(cli.etcd.unwrap().lease_ttl, None);
    assert_eq!(args(&[]).unwrap().config().etcd, None);
    let help = Args::command().render_long_help().to_string();
    for flag in [
        "--etcd <URL[,URL...]>",
        "--etcd-prefix <PREFIX>",
        "--etcd-lease-ttl <SECONDS>",
    ] {
        assert!(help.contains(flag), "{flag} missing from\n{help}");
    }
}

#[cfg(feature = "etcd")]
#[test]
fn bad_etcd_flags_are_usage_errors() {
    let etcd = "http://127.0.0.1:2379";
    assert_usage_errors(&[
        &["--etcd", etcd],
        &["--etcd-prefix", "/lb/"],
        &["--etcd-lease-ttl", "5"],
        &["--etcd", "127.0.0.1:2379", "--etcd-prefix", "/lb/"],
        &["--etcd", "ftp://127.0.0.1:2379", "--etcd-prefix", "/lb/"],
        &["--etcd", "http://127.0.0.1", "--etcd-prefix", "/lb/"],
        &["--etcd", etcd, "--etcd-prefix", ""],
        &[
            "--etcd",
            etcd,
            "--etcd-prefix",
            "/lb/",
            "--etcd-lease-ttl",
            "0",
        ],
        &[
            "--etcd",
            etcd,
            "--etcd-prefix",
            "/lb/",
            "--backend",
            "http://127.0.0.1:1",
        ],
        &["--etcd", etcd, "--etcd-prefix", "/lb/", "--demo"],
    ]);
}
/// A self-signed certificate for `localhost` and its key, written in a fresh directory.
fn cert_files(stem: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("tower-lb-cli-{}-{stem}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

#[test]
fn tls_flags_default_to_off_and_reach_the_config() {
    let a = args(&[]).unwrap();
    assert_eq!(a.backend_alpn, ["h2", "http/1.1"]);
    let config = a.with_tls(a.config()).unwrap();
    assert!(config.tls.is_none() && config.redirect_http.is_none());
    // No TLS client of its own: the system's roots, offering the same ALPN.
    assert!(
        !format!("{:?}", config.proxy_client).contains("BackendTls"),
        "{:?}",
        config.proxy_client
    );
    let a = args(&["--backend-alpn", "http/1.1"]).unwrap();
    let config = a.with_tls(a.config()).unwrap();
    assert!(
        format!("{:?}", config.proxy_client).contains(r#"alpn_protocols: ["http/1.1"]"#),
        "{:?}",
        config.proxy_client
    );

    let (cert, key) = cert_files("flags");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let a = args(&[
        "--bind",
        "127.0.0.1",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--redirect-http",
        "8081",
        "--backend-ca",
        cert,
        "--backend-cert",
        cert,
        "--backend-key",
        key,
    ])
    .unwrap();
    let config = a.with_tls(a.config()).unwrap();
    let tls = config.tls.as_ref().expect("TLS on");
    assert_eq!(tls.pairs().len(), 2);
    assert_eq!(tls.pairs()[0].cert, std::path::Path::new(cert));
    assert_eq!(
        config.redirect_http,
        Some("127.0.0.1:8081".parse().unwrap())
    );
    assert!(format!("{:?}", config.proxy_client).contains("client_auth: true"));
    assert!(
        format!("{:?}", config.proxy_client).contains(r#"alpn_protocols: ["h2", "http/1.1"]"#),
        "{:?}",
        config.proxy_client
    );
}

#[test]
fn bad_tls_flags_are_usage_errors_naming_the_file() {
    let (cert, key) = cert_files("bad");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    assert_usage_errors(&[
        &["--tls-cert", cert],
        &["--tls-key", key],
        &["--redirect-http", "8081"],
        &["--backend-cert", cert],
        &["--backend-key", key],
        &["--tls-cert", cert, "--tls-key", key, "--redirect-http", "x"],
        &["--backend-alpn", "h3"],
        &["--backend-alpn", "h2,spdy/3"],
    ]);
    for (argv, message) in [
        (
            vec!["--tls-cert", cert, "--tls-key", key, "--tls-cert", cert],
            "--tls-cert/--tls-key: 2 certificates but 1 keys: give them in pairs".to_owned(),
        ),
        (
            vec!["--tls-cert", key, "--tls-key", key],
            format!("--tls-cert/--tls-key: {key}: no certificate found"),
        ),
        (
            vec!["--tls-cert", cert, "--tls-key", "/nonexistent/key.pem"],
            "--tls-cert/--tls-key: /nonexistent/key.pem: No such file".to_owned(),
        ),
        (
            vec!["--backend-ca", key],
            format!("--backend-ca/--backend-cert/--backend-key: {key}: no certificate found"),
        ),
    ] {
        let a = args(&argv).unwrap();
        let err = a.with_tls(a.config()).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{argv:?}");
        assert!(err.to_string().contains(&message), "{argv:?}: {err}");
    }
}

#[test]
fn access_log_flags_reach_the_config() {
    use tower_lb::server::access_log::{Format, Target};
    let config = args(&["--access-log", "-"]).unwrap().config();
    assert_eq!(config.access_log, Some(Target::Stdout));
    assert_eq!(config.access_log_format, Format::Json);
    let config = args(&[
        "--access-log",
        "/tmp/lb.log",
        "--access-log-format",
        "combined",
    ])
    .unwrap()
    .config();
    assert_eq!(config.access_log, Some(Target::File("/tmp/lb.log".into())));
    assert_eq!(config.access_log_format, Format::Combined);
    let error = args(&["--access-log-format", "xml"]).unwrap_err();
    assert_eq!(error.exit_code(), 2);
    assert!(
        error
            .to_string()
            .contains("unknown access log format \"xml\": use json or combined"),
        "{error}"
    );
}

#[test]
fn hashing_and_sticky_cookie_flags_reach_the_config() {
    let c = args(&[
        "--algo",
        "CHB",
        "--hash-key",
        "header:X-Tenant",
        "--hash-balance-factor",
        "150",
        "--sticky-cookie",
        "srv",
        "--sticky-secret",
        "s3",
    ])
    .unwrap()
    .config();
    assert_eq!(c.algo, Algo::BoundedLoadHash);
    assert!(matches!(&c.hash_key, Some(StickyKey::Header(h)) if h == "x-tenant"));
    assert_eq!(c.hash_balance_factor, 150);
    let cookie = c.sticky_cookie.unwrap();
    assert_eq!(cookie.name(), "srv");
    let addr: tower_lb::BackendAddr = "http://127.0.0.1:1".parse().unwrap();
    assert_eq!(
        cookie.value_of(&addr),
        StickyCookie::new("srv")
            .unwrap()
            .secret("s3")
            .value_of(&addr)
    );
    for (spec, ok) in [("cookie:sid", true), ("path", true), ("ip", true)] {
        assert_eq!(args(&["--hash-key", spec]).is_ok(), ok, "{spec}");
    }
    // `ip` is the client IP as --trust-proxy says: the default.
    assert!(
        args(&["--hash-key", "IP"])
            .unwrap()
            .config()
            .hash_key
            .is_none()
    );
    assert!(matches!(
        args(&["--hash-key", "path"]).unwrap().config().hash_key,
        Some(StickyKey::Path)
    ));
}

#[test]
fn bad_hashing_and_sticky_cookie_values_are_usage_errors() {
    assert_usage_errors(&[
        &["--hash-key", "body"],
        &["--hash-key", "header:"],
        &["--hash-key", "cookie:a b"],
        &["--hash-key", "ip:x"],
        &["--hash-balance-factor", "99"],
        &["--hash-balance-factor", "x"],
        &["--algo", "SRR", "--sticky-cookie", "a;b"],
        &["--sticky-secret", "s"],
    ]);
    // A cookie with an algorithm that is not sticky.
    let err = args(&["--algo", "LC", "--sticky-cookie", "srv"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().contains("needs a sticky algorithm"),
        "{err}"
    );
    for algo in ["SRR", "SIH", "CHB"] {
        assert!(args(&["--algo", algo, "--sticky-cookie", "srv"]).is_ok());
    }
}
