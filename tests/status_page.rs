//! The status page in a real browser: headless Debian chromium, driven through chromedriver
//! with fantoccini, against a real balancer and real backends.
//!
//! Needs the apt packages `chromium` and `chromium-driver` (`.ci/run` installs them); fails
//! with a message naming them when `/usr/bin/chromium` or `/usr/bin/chromedriver` is missing.
//! Keeps a screenshot of the page in `$CARGO_TARGET_TMPDIR/status-page.png`.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fantoccini::{Client, ClientBuilder, Locator};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tower_lb::server::Config;

use support::{DEADLINE, Lb, free_port};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const TOKEN: &str = "br0wser-t0ken";
const CHECK_INTERVAL: Duration = Duration::from_millis(300);

/// A chromedriver process, killed when dropped.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver on a free loopback port and waits (bounded) until it listens.
async fn chromedriver() -> Chromedriver {
    for binary in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(binary).exists(),
            "{binary} is missing: the status page test needs a headless browser; install the \
             apt packages chromium chromium-driver (apt-get install chromium chromium-driver)"
        );
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
    let driver = Chromedriver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    support::eventually("chromedriver listens", || async move {
        tokio::net::TcpStream::connect(addr).await.ok().map(drop)
    })
    .await;
    driver
}

/// A headless chromium session. Without the background-networking flags, chromium's own
/// connections out are refused on a closed network and slow it down.
async fn browser(driver: &Chromedriver, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1900,520",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let mut builder = ClientBuilder::new(HttpConnector::new());
    let connect = builder.capabilities(caps).connect(&driver.url);
    tokio::time::timeout(DEADLINE * 3, connect)
        .await
        .expect("chromium starts within 30 s")
        .expect("a chromium session")
}

/// The backends' rows as the page shows them: address, state and requests.
async fn rows(page: &Client) -> Vec<(String, String, u64)> {
    let script = "return [...document.querySelectorAll('#backends tbody tr')].map(tr => \
                  [tr.dataset.address, tr.dataset.state, \
                   Number(tr.querySelector('.requests').textContent)]);";
    let value = tokio::time::timeout(DEADLINE, page.execute(script, vec![]))
        .await
        .expect("the page answers a script")
        .expect("the script runs");
    serde_json::from_value(value).expect("rows of [address, state, requests]")
}

/// Polls the page's rows until `check` holds, within [`DEADLINE`].
async fn wait_rows(
    page: &Client,
    what: &str,
    check: impl Fn(&[(String, String, u64)]) -> bool,
) -> Vec<(String, String, u64)> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let rows = rows(page).await;
        if check(&rows) {
            return rows;
        }
        if tokio::time::Instant::now() >= deadline {
            let source = page.source().await.unwrap_or_default();
            panic!("timed out waiting until {what}; the page shows {rows:?}:\n{source}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(page: &Client, css: &str) -> String {
    let el = tokio::time::timeout(DEADLINE, page.find(Locator::Css(css)))
        .await
        .expect("the page answers")
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"));
    el.text().await.expect("its text")
}

/// Waits until the element `css` has a text containing `needle`.
async fn wait_text(page: &Client, css: &str, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let text = text(page, css).await;
        if text.contains(needle) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {css} to say {needle:?}; it says {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn click(page: &Client, css: &str) {
    let el = page
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"));
    el.click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// `GET /backends` with the admin token, as a list of (address, state).
async fn api_backends(lb: &Lb) -> Vec<(String, String)> {
    let req = Request::builder()
        .method(Method::GET)
        .uri(lb.url("/backends"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = support::send_request(&lb.client, req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let data = reply.json()["data"].clone();
    let list: Vec<Value> = serde_json::from_value(data).unwrap();
    list.iter()
        .map(|b| {
            (
                b["address"].as_str().unwrap().to_owned(),
                b["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_backends_live_and_drains_with_the_token_only() {
    let backends = support::backends(3).await;
    let addresses: Vec<String> = backends.iter().map(|b| b.url()).collect();
    let config = Config::new()
        .backends_from(support::specs(&backends))
        .health_interval(CHECK_INTERVAL)
        .admin_token(Some(TOKEN.parse().unwrap()));
    let lb = Arc::new(support::start(config).await);

    // Traffic all along, so that counts and rates move.
    let stop_traffic = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn({
        let (lb, stop) = (Arc::clone(&lb), Arc::clone(&stop_traffic));
        async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = lb.get("/").await;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }
    });
    lb.picks(30).await;

    let driver = chromedriver().await;
    let profile = std::env::temp_dir().join(format!("tower-lb-status-{}", std::process::id()));
    let page = browser(&driver, &profile).await;

    // Without the token, the page itself is refused.
    page.goto(&lb.url("/status")).await.expect("open /status");
    let refused = page.source().await.unwrap();
    assert!(
        refused.contains("missing admin token"),
        "the page without a token shows the refusal: {refused}"
    );

    // With it: every backend, with requests counted.
    page.goto(&lb.url(&format!("/status?token={TOKEN}")))
        .await
        .expect("open /status?token=");
    let shown = wait_rows(&page, "every backend has requests", |rows| {
        addresses
            .iter()
            .all(|a| rows.iter().any(|(addr, _, n)| addr == a && *n > 0))
    })
    .await;
    assert!(
        shown.iter().all(|(_, state, _)| state == "healthy"),
        "{shown:?}"
    );
    assert_eq!(
        text(&page, "#algorithm").await,
        Config::DEFAULT_ALGO.to_string()
    );
    assert!(text(&page, "#version").await.starts_with('v'));
    let requests: u64 = text(&page, "#requests").await.parse().unwrap();
    assert!(requests >= 30, "the total counts the traffic: {requests}");
    let connections: u64 = text(&page, "#connections-accepted").await.parse().unwrap();
    assert!(connections > 0);
    // p50 / p99 from each backend's response-time histogram.
    let latency = text(
        &page,
        &format!("tr[data-address=\"{}\"] td.latency", addresses[2]),
    )
    .await;
    let (p50, p99) = latency
        .split_once(" / ")
        .unwrap_or_else(|| panic!("p50 / p99: {latency:?}"));
    for quantile in [p50, p99] {
        let ms: f64 = quantile.strip_suffix(" ms").unwrap().parse().unwrap();
        assert!(ms > 0.0, "{latency}");
    }

    // A killed backend turns unhealthy within a few check intervals.
    let mut backends = backends.into_iter();
    let killed = backends.next().unwrap();
    let killed_addr = addresses[0].clone();
    killed.kill().await;
    let rows = wait_rows(&page, "the killed backend is unhealthy", |rows| {
        rows.iter()
            .any(|(addr, state, _)| *addr == killed_addr && state == "unhealthy")
    })
    .await;
    let error = text(
        &page,
        &format!("tr[data-address=\"{killed_addr}\"] td.error"),
    )
    .await;
    assert!(
        !error.is_empty(),
        "the failed check's error is shown: {rows:?}"
    );
    // A few more polls, so that the sparklines have a line to draw.
    wait_text(&page, "#rate", ".").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let png = page.screenshot().await.expect("a screenshot");
    std::fs::write(screenshot_path(), &png).expect("save the screenshot");

    // Set weight, with the token: the admin API agrees.
    let weighted = addresses[2].clone();
    let input = page
        .find(Locator::Css(&format!(
            "tr[data-address=\"{weighted}\"] input.weight-input"
        )))
        .await
        .unwrap();
    input.clear().await.unwrap();
    input.send_keys("7").await.unwrap();
    click(
        &page,
        &format!("tr[data-address=\"{weighted}\"] button.set-weight"),
    )
    .await;
    let message = wait_text(&page, "#message", "weight of").await;
    assert!(message.contains(&format!("{weighted} is 7")), "{message}");
    assert_eq!(lb.registry.weight(&weighted.parse().unwrap()), Some(7));

    // Without the token, drain is refused and nothing changes.
    let drained = addresses[1].clone();
    let token_input = page.find(Locator::Id("token")).await.unwrap();
    token_input.clear().await.unwrap();
    let drain = format!("tr[data-address=\"{drained}\"] button.drain");
    click(&page, &drain).await;
    let message = wait_text(&page, "#message", "refused").await;
    assert!(message.contains("401"), "{message}");
    assert!(
        api_backends(&lb)
            .await
            .contains(&(drained.clone(), "healthy".to_owned())),
        "a refused drain changes nothing"
    );

    // With it, drain works and the admin API agrees.
    token_input.send_keys(TOKEN).await.unwrap();
    click(&page, &drain).await;
    let message = wait_text(&page, "#message", "drained").await;
    assert!(message.contains(&drained), "{message}");
    let listed = api_backends(&lb).await;
    assert!(
        !listed
            .iter()
            .any(|(addr, state)| *addr == drained && state != "draining"),
        "the API no longer serves the drained backend: {listed:?}"
    );
    wait_rows(&page, "the drained backend leaves the page", |rows| {
        rows.iter()
            .all(|(addr, state, _)| *addr != drained || state == "draining")
    })
    .await;

    stop_traffic.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    let _ = page.close().await;
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
    drop(backends);
}
