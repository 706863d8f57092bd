use super::*;

#[test]
fn every_key_is_a_flag_and_becomes_it() {
    let flags = parse(
        r#"
port = 9000
algo = "WRR"
health-interval = 1.5
backend = ["http://127.0.0.1:1080=5", "http://127.0.0.1:1081"]
retry-non-idempotent = true
demo = false
dns-srv = ["_http._tcp.web.test"]
"#,
    )
    .unwrap();
    let argv: Vec<String> = flags
        .iter()
        .flat_map(|(k, vs)| {
            if vs.is_empty() {
                vec![format!("--{k}")]
            } else {
                vs.iter().map(|v| format!("--{k}={v}")).collect()
            }
        })
        .collect();
    assert!(argv.contains(&"--port=9000".to_owned()), "{argv:?}");
    assert!(
        argv.contains(&"--health-interval=1.5".to_owned()),
        "{argv:?}"
    );
    assert!(
        argv.contains(&"--retry-non-idempotent".to_owned()),
        "{argv:?}"
    );
    assert!(!argv.iter().any(|a| a.starts_with("--demo")), "{argv:?}");
    assert_eq!(
        argv.iter().filter(|a| a.starts_with("--backend=")).count(),
        2
    );
}

/// Every flag but the file flags themselves has a key: a new flag without one fails here.
#[test]
fn every_flag_has_a_key() {
    let keys = serde_json::to_value(ConfigFile::default()).unwrap();
    let known: Vec<&str> = [
        "port",
        "bind",
        "algo",
        "health-interval",
        "health-path",
        "health-timeout",
        "backend",
        "demo",
        "workers",
        "trust-proxy",
        "eject-after",
        "eject-time",
        "eject-max-time",
        "eject-max-percent",
        "slow-start",
        "admin-token",
        "admin-bind",
        "allow-backend",
        "client-header-timeout",
        "idle-timeout",
        "connect-timeout",
        "backend-timeout",
        "grace",
        "max-header-size",
        "max-connections",
        "max-conns-per-backend",
        "queue-timeout",
        "retries",
        "retry-non-idempotent",
        "dns",
        "dns-srv",
        "dns-server",
        "dns-min-ttl",
        "dns-max-ttl",
        "backends-file",
        "health-grpc",
        "client-timeout",
        "retry-on",
        "retry-buffer",
        "hash-key",
        "hash-balance-factor",
        "sticky-cookie",
        "sticky-secret",
        "access-log",
        "access-log-format",
        "tls-cert",
        "tls-key",
        "redirect-http",
        "backend-ca",
        "backend-cert",
        "backend-key",
        "backend-alpn",
        "etcd",
        "etcd-prefix",
        "etcd-lease-ttl",
    ]
    .to_vec();
    assert!(keys.as_object().unwrap().is_empty());
    for arg in Args::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if ["config", "check-config", "help", "version"].contains(&long) {
            continue;
        }
        assert!(known.contains(&long), "--{long} has no config file key");
        let text = if arg.get_action().takes_values() {
            format!("{long} = []")
        } else {
            format!("{long} = false")
        };
        // The key exists (maybe with another type than this probe's).
        let error = parse(&text).err().unwrap_or_default();
        assert!(!error.contains("unknown field"), "{long}: {error}");
    }
}

#[test]
fn unknown_key_names_the_key_and_line() {
    let error = parse("port = 9000\n\nhelth-interval = 3\n").unwrap_err();
    assert!(error.contains("helth-interval"), "{error}");
    assert!(error.contains("line 3"), "{error}");
}

#[test]
fn bad_value_names_the_key_line_and_reason() {
    let error = parse("algo = \"WRR\"\nhealth-interval = 0\n").unwrap_err();
    assert!(
        error.contains("line 2") && error.contains("health-interval"),
        "{error}"
    );
    assert!(error.contains("out of range"), "{error}");
    let error = parse("port = \"http\"\n").unwrap_err();
    assert!(
        error.contains("line 1") && error.contains("port"),
        "{error}"
    );
    let error = parse("algo = \"fastest\"\n").unwrap_err();
    assert!(
        error.contains("algo") && error.contains("fastest"),
        "{error}"
    );
}

#[test]
fn flags_override_the_file() {
    let dir = std::env::temp_dir().join(format!("tower-lb-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lb.toml");
    std::fs::write(
        &path,
        "port = 9000\nalgo = \"WRR\"\nretries = 5\nbackend = [\"http://127.0.0.1:1080=5\"]\n",
    )
    .unwrap();
    let argv = |extra: &[&str]| -> Vec<OsString> {
        ["lb", "--config", path.to_str().unwrap()]
            .iter()
            .chain(extra)
            .map(OsString::from)
            .collect()
    };
    let args = merge(&argv(&[])).unwrap();
    assert_eq!(
        (args.port, args.algo, args.retries),
        (9000, tower_lb::Algo::WeightedRoundRobin, 5)
    );
    assert_eq!(args.backends.len(), 1);

    let args = merge(&argv(&[
        "--port",
        "9001",
        "--backend",
        "http://127.0.0.1:2000",
    ]))
    .unwrap();
    assert_eq!(args.port, 9001, "the flag wins");
    assert_eq!(args.retries, 5, "the file fills what the flags do not give");
    let backends: Vec<String> = args.backends.iter().map(|b| b.to_string()).collect();
    assert_eq!(
        backends,
        ["http://127.0.0.1:2000"],
        "a repeated flag replaces the file's list"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
