//! The standalone balancer's `--config` file, through the `lb` program itself: errors and
//! exit statuses, `--check-config`, and live reloads under load.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;
use support::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tower-lb-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to `path` at once (a rename), as an editor or a deployment tool would, so
/// a reload never reads half a file.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn lb(args: &[&str]) -> Output {
    let mut child = Command::new(lb_binary())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: these invocations exit at once.
    for _ in 0..200 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    panic!("lb {args:?} did not exit");
}

#[test]
fn check_config_exits_0_for_a_valid_file_and_2_with_the_reason() {
    let dir = temp_dir("check-config");
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "port = 9000\nalgo = \"WRR\"\nbackend = [\"http://127.0.0.1:1080=5\"]\nhealth-interval = 1.5\n",
    )
    .unwrap();
    let out = lb(&["--check-config", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ok"),
        "{out:?}"
    );

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "port = 9000\n\nhelth-interval = 3\n").unwrap();
    let out = lb(&["--check-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("helth-interval") && stderr.contains("line 3"),
        "{stderr}"
    );

    let bad_value = dir.join("bad-value.toml");
    std::fs::write(&bad_value, "retries = 2\nbackend = [\"ftp://x\"]\n").unwrap();
    let out = lb(&["--check-config", bad_value.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("backend") && stderr.contains("line 2"),
        "{stderr}"
    );

    let out = lb(&["--check-config", dir.join("missing.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing.toml"),
        "{out:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unknown_key_at_start_up_is_exit_2_naming_the_key_and_line() {
    let dir = temp_dir("bad-start");
    let path = dir.join("lb.toml");
    std::fs::write(
        &path,
        "bind = \"127.0.0.1\"\nport = 0\nalgorithm = \"WRR\"\n",
    )
    .unwrap();
    let out = lb(&["--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("algorithm") && stderr.contains("line 3"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A running `lb` whose log goes to a file.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn log(&self) -> String {
        let mut text = String::new();
        std::fs::File::open(&self.log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    fn count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(
    port: u16,
    backends: &[(&backend_server::Handle, u32)],
    algo: &str,
    timeout: f64,
) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|(b, w)| format!("\"{}={w}\"", b.url()))
        .collect();
    format!(
        "bind = \"127.0.0.1\"\nport = {port}\nworkers = 2\nalgo = \"{algo}\"\nbackend = [{}]\n\
         health-interval = 1\nbackend-timeout = {timeout}\nqueue-timeout = {timeout}\nretries = 2\n",
        list.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_reloads_under_load_fail_no_request_and_a_bad_file_keeps_the_config() {
    let dir = temp_dir("reload");
    let backends = backends(4).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dir.join("lb.toml");
    write_atomically(
        &path,
        &config_text(port, &[(&backends[0], 1), (&backends[1], 1)], "RR", 5.0),
    );
    let lb = spawn_lb(&path, dir.join("lb.log"), port).await;
    let url = format!("http://127.0.0.1:{port}/");
    let client = client();

    // Load: four clients in a loop, each request's status checked, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (client, url, stop, ok, failed) = (
            client.clone(),
            url.clone(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
        );
        loops.push(tokio::spawn(async move {
            let mut served = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                let res = tokio::time::timeout(DEADLINE, async {
                    let res = client.get(url.parse().unwrap()).await.ok()?;
                    let status = res.status();
                    let body = res.into_body().collect().await.ok()?.to_bytes();
                    (status == 200).then(|| greeter(&body))
                })
                .await;
                match res {
                    Ok(Some(backend)) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        served.insert(backend);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            served
        }));
    }

    // Ten reloads: other backends and weights, another algorithm, other timeouts.
    let algos = [
        "WRR", "LC", "P2C", "RR", "SIH", "LT", "WRR", "Random", "LC", "RR",
    ];
    for (i, algo) in algos.iter().enumerate() {
        let set: Vec<(&backend_server::Handle, u32)> = match i % 3 {
            0 => vec![(&backends[1], 2), (&backends[2], 1)],
            1 => vec![(&backends[2], 3), (&backends[3], 1), (&backends[0], 1)],
            _ => vec![(&backends[3], 1), (&backends[1], 5)],
        };
        write_atomically(&path, &config_text(port, &set, algo, 5.0 + i as f64));
        let before = lb.count("reload applied");
        lb.hangup();
        eventually("the reload is applied", || async {
            (lb.count("reload applied") > before).then_some(())
        })
        .await;
        // Let requests run on the new configuration for a while.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // The tenth set (i = 9).
    let last_backends = [name(&backends[1]), name(&backends[2])];
    eventually("the last set serves", || async {
        let res = client.get(url.parse().unwrap()).await.ok()?;
        let body = res.into_body().collect().await.ok()?.to_bytes();
        last_backends.contains(&greeter(&body)).then_some(())
    })
    .await;

    // A bad file on reload: logged with the reason, the running configuration kept.
    write_atomically(&path, "bind = \"127.0.0.1\"\nretries = 2\nretrys = 3\n");
    let refused = lb.count("configuration refused");
    lb.hangup();
    eventually("the bad file is refused", || async {
        (lb.count("configuration refused") > refused).then_some(())
    })
    .await;
    let log_text = lb.log();
    let line = log_text
        .lines()
        .rev()
        .find(|l| l.contains("configuration refused"))
        .unwrap();
    assert!(line.contains("retrys") && line.contains("line 3"), "{line}");
    for _ in 0..20 {
        let res = client.get(url.parse().unwrap()).await.unwrap();
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(
            last_backends.contains(&greeter(&body)),
            "served by the kept configuration"
        );
    }

    // A setting that cannot change live is logged as needing a restart.
    let mut text = config_text(port, &[(&backends[1], 2), (&backends[2], 1)], "RR", 5.0);
    text = text.replace("workers = 2", "workers = 3");
    write_atomically(&path, &text);
    lb.hangup();
    eventually("workers needs a restart", || async {
        lb.log()
            .lines()
            .any(|l| l.contains("takes a restart") && l.contains("workers"))
            .then_some(())
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    let mut served = std::collections::BTreeSet::new();
    for l in loops {
        served.extend(l.await.unwrap());
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    // The reload cost, from the log (not asserted: timings vary with the machine).
    let mut costs: Vec<u64> = lb
        .log()
        .lines()
        .filter(|l| l.contains("reload applied") && l.contains("SIGHUP"))
        .filter_map(|l| {
            l.split("elapsed_us=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    costs.sort_unstable();
    eprintln!(
        "reloads: {} under load, {ok} requests served, {failed} failed; SIGHUP to applied: median {} us, max {} us",
        costs.len(),
        costs.get(costs.len() / 2).copied().unwrap_or_default(),
        costs.last().copied().unwrap_or_default(),
    );
    assert_eq!(failed, 0, "no request fails across the reloads");
    assert!(ok > 100, "the load ran: {ok} requests");
    assert_eq!(
        served.len(),
        4,
        "every backend served at some point: {served:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_backends_file_is_reconciled_and_a_bad_one_keeps_the_set() {
    let dir = temp_dir("backends-file");
    let backends = backends(3).await;
    let path = dir.join("backends.toml");
    let entry = |b: &backend_server::Handle, w: u32| {
        format!("[[backends]]\naddress = \"{}\"\nweight = {w}\n\n", b.url())
    };
    write_atomically(&path, &(entry(&backends[0], 1) + &entry(&backends[1], 2)));
    let lb = start(tower_lb::server::Config::new().backends_file(&path)).await;
    let set = |lb: &Lb| -> Vec<(String, u32)> {
        let mut set: Vec<_> = lb
            .registry
            .backends()
            .into_iter()
            .map(|(a, w)| (format!("{}:{}", a.host(), a.port()), w))
            .collect();
        set.sort();
        set
    };
    let sorted = |mut v: Vec<(String, u32)>| {
        v.sort();
        v
    };
    let first = sorted(vec![(name(&backends[0]), 1), (name(&backends[1]), 2)]);
    eventually("the file's backends are registered", || async {
        (set(&lb) == first).then_some(())
    })
    .await;

    // Reweighted, one removed (drained), one added.
    write_atomically(&path, &(entry(&backends[1], 5) + &entry(&backends[2], 1)));
    let second = sorted(vec![(name(&backends[1]), 5), (name(&backends[2]), 1)]);
    eventually("the rewritten file is reconciled", || async {
        (set(&lb) == second).then_some(())
    })
    .await;
    let picks = lb.picks(6).await;
    assert!(!picks.contains(&name(&backends[0])), "{picks:?}");

    // A bad file: the set stays.
    write_atomically(
        &path,
        "[[backends]]\naddress = \"http://127.0.0.1:1\"\nwieght = 2\n",
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(set(&lb), second);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `Reload::apply` in process: what it changes live, what it reports as needing a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_live_settings_and_names_the_rest() {
    use http::{Method, StatusCode};
    use tower_lb::server::{Config, Server};

    let backends = backends(2).await;
    let base = || {
        Config::new()
            .bind(([127, 0, 0, 1], 0))
            .backend(spec(&backends[0], 1))
    };
    let server = Server::bind(base()).await.unwrap();
    let addr = server.local_addr();
    let reload = server.reload_handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let client = client();
    let get = |path: &str, token: Option<&str>| {
        let mut req = http::Request::builder()
            .method(Method::GET)
            .uri(format!("http://{addr}{path}"));
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        send_request(&client, req.body(Default::default()).unwrap())
    };
    assert_eq!(get("/backends", None).await.status, StatusCode::OK);

    // Backends only: reconciled, nothing rebuilt, nothing to restart.
    let reloaded = reload.apply(base().backend(spec(&backends[1], 3)));
    assert_eq!(reloaded.backends.len(), 1);
    assert!(!reloaded.rebuilt && reloaded.restart_needed.is_empty());

    // An admin token and an algorithm: live. Workers and the address: a restart.
    let reloaded = reload.apply(
        base()
            .backend(spec(&backends[1], 3))
            .algo(tower_lb::Algo::LeastConn)
            .admin_token("s3cret".parse::<tower_lb::admin::AdminToken>().unwrap())
            .workers(4)
            .bind(([127, 0, 0, 1], 1)),
    );
    assert!(reloaded.rebuilt && reloaded.backends.is_empty());
    assert_eq!(reloaded.restart_needed, ["addr", "workers"]);
    assert_eq!(
        get("/backends", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let listed = get("/backends", Some("s3cret")).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json()["data"].as_array().unwrap().len(), 2);
    assert_eq!(get("/", None).await.status, StatusCode::OK);

    // The client's timeouts and cap, and the client connections' timeouts: live. The pool's
    // settings: a restart.
    use tower_lb::proxy::ProxyClientBuilder;
    let live = || {
        base()
            .backend(spec(&backends[1], 3))
            .algo(tower_lb::Algo::LeastConn)
            .admin_token("s3cret".parse::<tower_lb::admin::AdminToken>().unwrap())
            .client_header_timeout(Duration::from_secs(3))
            .idle_timeout(Duration::from_secs(7))
            .client_timeout(Duration::from_secs(9))
    };
    let client_settings = ProxyClientBuilder::new()
        .connect_timeout(Duration::from_millis(700))
        .response_timeout(Duration::from_secs(2))
        .max_conns_per_backend(8);
    let reloaded = reload.apply(live().proxy_client(client_settings.clone()));
    assert!(reloaded.timeouts && !reloaded.rebuilt, "{reloaded:?}");
    assert!(reloaded.restart_needed.is_empty(), "{reloaded:?}");
    let reloaded = reload
        .apply(live().proxy_client(client_settings.pool_idle_timeout(Duration::from_secs(3))));
    assert!(!reloaded.timeouts, "{reloaded:?}");
    assert_eq!(reloaded.restart_needed, ["proxy_client"]);
    assert_eq!(get("/", None).await.status, StatusCode::OK);

    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}

/// Starts `lb --config path` with its log in `log`, and waits until it serves on `port`.
async fn spawn_lb(path: &Path, log: PathBuf, port: u16) -> Running {
    let child = Command::new(lb_binary())
        .args(["--config", path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let lb = Running { child, log };
    let url = format!("http://127.0.0.1:{port}/");
    let client = client();
    eventually("lb serves", || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let res = client.get(url.parse().unwrap()).await.ok()?;
            (res.status() == 200).then_some(())
        }
    })
    .await;
    lb
}

/// Rewrites the config file, sends SIGHUP and waits for the reload to be applied; returns
/// the log line that says so.
async fn reload_with(lb: &Running, path: &Path, text: &str) -> String {
    write_atomically(path, text);
    let before = lb.count("reload applied");
    lb.hangup();
    eventually("the reload is applied", || async {
        (lb.count("reload applied") > before).then_some(())
    })
    .await;
    lb.log()
        .lines()
        .rev()
        .find(|l| l.contains("reload applied"))
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_backend_timeout_applies_to_new_requests_and_spares_those_in_flight() {
    use http::StatusCode;

    let dir = temp_dir("reload-backend-timeout");
    let backend = backend().await;
    let port = free_port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let path = dir.join("lb.toml");
    let text = |timeout: f64| {
        format!(
            "bind = \"127.0.0.1\"\nport = {port}\nworkers = 2\nbackend = [\"{}\"]\n\
             backend-timeout = {timeout}\nretries = 0\n",
            backend.url()
        )
    };
    write_atomically(&path, &text(5.0));
    let lb = spawn_lb(&path, dir.join("lb.log"), port).await;

    // One keep-alive connection, used before and after the reload.
    let mut conn = connect(None, addr).await;
    let res = exchange(&mut conn, get_request(addr, "/sleep?ms=1500", &[])).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "within the 5 s timeout: {res:?}"
    );

    // A request sent before the reload, still waiting for its backend after it.
    let mut other = connect(None, addr).await;
    let in_flight = tokio::spawn(async move {
        let res = exchange(&mut other, get_request(addr, "/sleep?ms=3000", &[])).await;
        (res, other)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let line = reload_with(&lb, &path, &text(0.5)).await;
    assert!(line.contains("timeouts=true"), "{line}");
    assert!(
        !lb.log().contains("takes a restart"),
        "the backend timeout needs no restart:\n{}",
        lb.log()
    );
    assert!(
        !in_flight.is_finished(),
        "the reload came before its answer"
    );

    // The same request, on the same connection, now gets the balancer's 504.
    let res = exchange(&mut conn, get_request(addr, "/sleep?ms=1500", &[])).await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT, "{res:?}");
    assert_eq!(
        res.body(),
        r#"{"status":"error","data":"error backend timeout"}"#
    );
    // The connection is still open: the next request on it is answered.
    let res = exchange(&mut conn, get_request(addr, "/sleep?ms=10", &[])).await;
    assert_eq!(res.status(), StatusCode::OK);

    // The request in flight kept the 5 s it started with, and its connection stays too.
    let (res, mut other) = in_flight.await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{res:?}");
    assert_eq!(res.body(), "slept 3000 ms\n");
    let res = exchange(&mut other, get_request(addr, "/", &[])).await;
    assert_eq!(res.status(), StatusCode::OK);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_per_backend_cap_applies_to_the_next_requests() {
    use http::StatusCode;

    let dir = temp_dir("reload-cap");
    let backend = backend().await;
    let port = free_port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let path = dir.join("lb.toml");
    let text = |cap: usize| {
        format!(
            "bind = \"127.0.0.1\"\nport = {port}\nworkers = 2\nbackend = [\"{}\"]\n\
             max-conns-per-backend = {cap}\nqueue-timeout = 0\nretries = 0\n",
            backend.url()
        )
    };
    // Two requests at once on their own connections; the statuses, in the order sent.
    let two_at_once = || async move {
        let mut first = connect(None, addr).await;
        let mut second = connect(None, addr).await;
        let slow = tokio::spawn(async move {
            exchange(&mut first, get_request(addr, "/sleep?ms=1500", &[]))
                .await
                .status()
        });
        // The first has reached the backend by now.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let quick = exchange(&mut second, get_request(addr, "/", &[]))
            .await
            .status();
        (slow.await.unwrap(), quick)
    };
    write_atomically(&path, &text(0));
    let lb = spawn_lb(&path, dir.join("lb.log"), port).await;
    assert_eq!(
        two_at_once().await,
        (StatusCode::OK, StatusCode::OK),
        "no cap"
    );

    let line = reload_with(&lb, &path, &text(1)).await;
    assert!(line.contains("timeouts=true"), "{line}");
    assert_eq!(
        two_at_once().await,
        (StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE),
        "a cap of 1: the second finds the backend full and no queue"
    );

    reload_with(&lb, &path, &text(0)).await;
    assert_eq!(
        two_at_once().await,
        (StatusCode::OK, StatusCode::OK),
        "the cap lifted"
    );
    assert!(!lb.log().contains("takes a restart"), "{}", lb.log());
    std::fs::remove_dir_all(&dir).unwrap();
}
