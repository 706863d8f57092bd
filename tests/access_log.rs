//! The access log of a real balancer: requests through it give parseable lines, in JSON and
//! in the combined format, with the right fields; a rename and a reopen start a new file.

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use tower_lb::server::Config;
use tower_lb::server::access_log::{Format, Target};

use support::Lb;

const REQUESTS: usize = 12;

/// A fresh directory for one test's log files.
fn dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("access-log-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn lb_logging(path: &Path, format: Format) -> (Vec<backend_server::Handle>, Lb) {
    let backends = support::backends(2).await;
    let config = Config::new()
        .backends_from(support::specs(&backends))
        .access_log(Target::File(path.to_owned()))
        .access_log_format(format);
    (backends, support::start(config).await)
}

/// `GET /?i=N` with a user agent and a referer; the body's length.
async fn get(lb: &Lb, i: usize) -> usize {
    let req = Request::builder()
        .method(Method::GET)
        .uri(lb.url(&format!("/?i={i}")))
        .header("user-agent", "access-log-test/1.0")
        .header("referer", "http://example.test/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = support::send_request(&lb.client, req).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.body.len()
}

/// The file's lines, once it has `n` of them (bounded).
async fn lines(path: &Path, n: usize) -> Vec<String> {
    support::eventually(&format!("{} has {n} lines", path.display()), || async {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        (lines.len() >= n && text.ends_with('\n')).then_some(lines)
    })
    .await
}

#[tokio::test]
async fn json_lines_have_every_field() {
    let dir = dir("json");
    let path = dir.join("access.log");
    let (backends, lb) = lb_logging(&path, Format::Json).await;
    let mut sizes = Vec::new();
    for i in 0..REQUESTS {
        sizes.push(get(&lb, i).await);
    }
    let lines = lines(&path, REQUESTS).await;
    assert_eq!(lines.len(), REQUESTS, "one line per request: {lines:#?}");
    let live: HashSet<String> = backends.iter().map(|b| b.url()).collect();
    let mut served = HashSet::new();
    for (i, line) in lines.iter().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["time"].as_str().unwrap().ends_with('Z'), "{line}");
        assert_eq!(v["client"], "127.0.0.1", "{line}");
        assert_eq!(v["method"], "GET", "{line}");
        assert_eq!(v["path"], format!("/?i={i}"), "{line}");
        assert_eq!(v["protocol"], "HTTP/1.1", "{line}");
        assert_eq!(v["status"], 200, "{line}");
        let backend = v["backend"].as_str().unwrap().to_owned();
        assert!(live.contains(&backend), "{line}");
        served.insert(backend);
        let (ttfb, total) = (
            v["ttfb_ms"].as_f64().unwrap(),
            v["total_ms"].as_f64().unwrap(),
        );
        assert!(ttfb > 0.0 && ttfb <= total, "{line}");
        assert_eq!(v["bytes"], sizes[i], "{line}");
        assert_eq!(v["retries"], 0, "{line}");
        assert_eq!(v["user_agent"], "access-log-test/1.0", "{line}");
        assert_eq!(v["referer"], "http://example.test/", "{line}");
    }
    assert_eq!(served, live, "round robin: both backends answered");
    lb.stop().await;
}

#[tokio::test]
async fn combined_lines_parse_as_apaches_format() {
    let dir = dir("combined");
    let path = dir.join("access.log");
    let (backends, lb) = lb_logging(&path, Format::Combined).await;
    let mut sizes = Vec::new();
    for i in 0..REQUESTS {
        sizes.push(get(&lb, i).await);
    }
    let live: HashSet<String> = backends.iter().map(|b| b.url()).collect();
    for (i, line) in lines(&path, REQUESTS).await.iter().enumerate() {
        // %h %l %u [%t] "%r" %>s %b "%{Referer}i" "%{User-agent}i" then key=value.
        let (host, rest) = line
            .split_once(" - - [")
            .unwrap_or_else(|| panic!("{line}"));
        assert_eq!(host, "127.0.0.1");
        let (time, rest) = rest.split_once("] \"").unwrap();
        assert_eq!(time.len(), "04/Dec/2026:21:40:00 +0000".len(), "{line}");
        assert!(time.ends_with(" +0000"), "{line}");
        let (request, rest) = rest.split_once("\" ").unwrap();
        assert_eq!(request, format!("GET /?i={i} HTTP/1.1"));
        let fields: Vec<&str> = rest.splitn(3, ' ').collect();
        assert_eq!(fields[0], "200", "{line}");
        assert_eq!(fields[1], sizes[i].to_string(), "{line}");
        let rest = fields[2];
        let rest = rest
            .strip_prefix("\"http://example.test/\" \"access-log-test/1.0\" ")
            .unwrap_or_else(|| panic!("referer and user agent: {line}"));
        let extra: Vec<(&str, &str)> = rest
            .split(' ')
            .map(|kv| kv.split_once('=').unwrap())
            .collect();
        let keys: Vec<&str> = extra.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["backend", "ttfb", "total", "retries"], "{line}");
        assert!(live.contains(extra[0].1), "{line}");
        let ttfb: f64 = extra[1].1.parse().unwrap();
        let total: f64 = extra[2].1.parse().unwrap();
        assert!(ttfb > 0.0 && ttfb <= total, "{line}");
        assert_eq!(extra[3].1, "0", "{line}");
    }
    lb.stop().await;
}

#[tokio::test]
async fn a_request_no_backend_answers_is_logged_with_its_503() {
    let dir = dir("503");
    let path = dir.join("access.log");
    let config = Config::new().access_log(Target::File(path.clone()));
    let lb = support::start(config).await;
    let reply = lb.get("/nobody").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let line = &lines(&path, 1).await[0];
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["status"], 503, "{line}");
    assert_eq!(v["backend"], Value::Null, "{line}");
    assert_eq!(v["path"], "/nobody", "{line}");
    assert_eq!(v["bytes"], reply.body.len(), "{line}");
    // Admin requests are not logged.
    assert_eq!(lb.get("/backends").await.status, StatusCode::OK);
    assert_eq!(lb.get("/x").await.status, StatusCode::SERVICE_UNAVAILABLE);
    let lines = lines(&path, 2).await;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("/backends")), "{lines:#?}");
    lb.stop().await;
}

#[tokio::test]
async fn a_rename_and_a_reopen_start_a_new_file() {
    let dir = dir("reopen");
    let path = dir.join("access.log");
    let rotated = dir.join("access.log.1");
    let (_backends, lb) = lb_logging(&path, Format::Json).await;
    for i in 0..3 {
        get(&lb, i).await;
    }
    lines(&path, 3).await;
    std::fs::rename(&path, &rotated).unwrap();
    let log = lb.access_log.as_ref().expect("the server's access log");
    log.reopen();
    support::eventually("the log is reopened at its path", || async {
        path.exists().then_some(())
    })
    .await;
    for i in 3..5 {
        get(&lb, i).await;
    }
    let new = lines(&path, 2).await;
    assert_eq!(new.len(), 2, "{new:#?}");
    assert!(new[0].contains("\"/?i=3\""), "{new:#?}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(
        old.lines().count(),
        3,
        "the rotated file keeps its lines: {old}"
    );
    assert_eq!(log.dropped(), 0);
    lb.stop().await;
}
