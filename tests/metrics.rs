//! `GET /metrics` end to end: an in-process `Server` over real backends, scraped over HTTP
//! and read with a Prometheus text parser (`prometheus-parse`).

mod support;

use std::time::Duration;

use http::{Method, Request, StatusCode, header};
use prometheus_parse::{Sample, Scrape, Value};
use support::{Lb, backends, eventually, specs, start};
use tower_lb::Algo;
use tower_lb::server::Config;

/// Scrapes `lb`'s `/metrics` and parses it.
async fn fetch(lb: &Lb) -> Scrape {
    let reply = lb.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.content_type(), tower_lb::metrics::CONTENT_TYPE);
    assert!(reply.body.ends_with("# EOF\n"), "{}", reply.body);
    parse(&reply.body)
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("a Prometheus exposition")
}

/// The samples of `metric` whose labels include every pair of `labels`.
fn samples<'a>(
    scrape: &'a Scrape,
    metric: &'a str,
    labels: &'a [(&str, &str)],
) -> impl Iterator<Item = &'a Sample> {
    scrape.samples.iter().filter(move |s| {
        s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
    })
}

/// The value of a counter, gauge or untyped sample (OpenMetrics' `_total` counters parse as
/// untyped with this parser).
fn number(sample: &Sample) -> f64 {
    match sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{} is not a number: {other:?}", sample.metric),
    }
}

/// The one sample of `metric` with `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let mut found = samples(scrape, metric, labels);
    let sample = found
        .next()
        .unwrap_or_else(|| panic!("no {metric} {labels:?}"));
    assert!(found.next().is_none(), "{metric} {labels:?} twice");
    number(sample)
}

fn sum(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    samples(scrape, metric, labels).map(number).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_requests_are_counted_per_backend_and_a_killed_backend_turns_unhealthy() {
    const N: usize = 40;
    let mut servers = backends(2).await;
    let names: Vec<String> = servers.iter().map(|b| b.url()).collect();
    let config = Config::new()
        .algo(Algo::RoundRobin)
        .health_interval(Duration::from_millis(100))
        .backends_from(specs(&servers));
    let lb = start(config).await;

    for _ in 0..N {
        let reply = lb.get("/").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }
    // Let a few health checks run: they are not traffic.
    eventually("both backends have been checked twice", || async {
        let scrape = fetch(&lb).await;
        let checks: Vec<f64> = names
            .iter()
            .map(|b| value(&scrape, "tower_lb_backend_checks_total", &[("backend", b)]))
            .collect();
        checks.iter().all(|&n| n >= 2.0).then_some(())
    })
    .await;

    let scrape = fetch(&lb).await;
    assert_eq!(
        sum(&scrape, "tower_lb_backend_requests_total", &[]),
        N as f64
    );
    for name in &names {
        let by = [("backend", name.as_str())];
        assert_eq!(
            value(
                &scrape,
                "tower_lb_backend_requests_total",
                &[by[0], ("code", "2xx")]
            ),
            (N / 2) as f64,
            "round robin: half each"
        );
        assert_eq!(
            value(&scrape, "tower_lb_backend_transport_failures_total", &by),
            0.0
        );
        assert_eq!(
            value(&scrape, "tower_lb_backend_requests_in_flight", &by),
            0.0
        );
        assert_eq!(value(&scrape, "tower_lb_backend_weight", &by), 1.0);
        assert_eq!(
            value(
                &scrape,
                "tower_lb_backend_state",
                &[by[0], ("state", "healthy")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &scrape,
                "tower_lb_backend_state",
                &[by[0], ("state", "unhealthy")]
            ),
            0.0
        );
        for histogram in [
            "tower_lb_backend_response_time_seconds",
            "tower_lb_backend_total_time_seconds",
        ] {
            let sample = samples(&scrape, histogram, &by).next().expect(histogram);
            let Value::Histogram(buckets) = &sample.value else {
                panic!("{histogram} is not a histogram: {sample:?}");
            };
            assert_eq!(buckets.len(), 31, "{buckets:?}");
            assert_eq!(buckets[0].less_than, 0.0005);
            let all = buckets
                .iter()
                .find(|b| b.less_than == f64::INFINITY)
                .unwrap();
            assert_eq!(all.count, (N / 2) as f64, "{histogram}: every response");
            assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
            assert_eq!(
                value(&scrape, &format!("{histogram}_count"), &by),
                (N / 2) as f64
            );
            assert!(value(&scrape, &format!("{histogram}_sum"), &by) > 0.0);
        }
    }
    assert_eq!(value(&scrape, "tower_lb_info", &[("algorithm", "RR")]), 1.0);
    assert_eq!(value(&scrape, "tower_lb_backends", &[]), 2.0);
    assert!(value(&scrape, "tower_lb_client_connections_accepted_total", &[]) >= 1.0);
    assert!(
        value(&scrape, "tower_lb_client_connections_open", &[]) >= 1.0,
        "this scrape's"
    );
    assert_eq!(
        value(&scrape, "tower_lb_no_available_backend_total", &[]),
        0.0
    );
    assert_eq!(value(&scrape, "tower_lb_retries_total", &[]), 0.0);
    assert_eq!(value(&scrape, "tower_lb_discovery_changes_total", &[]), 2.0);
    assert_eq!(value(&scrape, "tower_lb_queue_waiting", &[]), 0.0);

    // Kill one: within a few check intervals its health series flips.
    let killed = names[0].as_str();
    servers.remove(0).kill().await;
    let scrape = eventually("the killed backend is unhealthy", || async {
        let scrape = fetch(&lb).await;
        let unhealthy = value(
            &scrape,
            "tower_lb_backend_state",
            &[("backend", killed), ("state", "unhealthy")],
        );
        (unhealthy == 1.0).then_some(scrape)
    })
    .await;
    let by = [("backend", killed)];
    assert_eq!(
        value(
            &scrape,
            "tower_lb_backend_state",
            &[by[0], ("state", "healthy")]
        ),
        0.0
    );
    assert!(value(&scrape, "tower_lb_backend_check_failures_total", &by) >= 1.0);
    let alive = [("backend", names[1].as_str()), ("state", "healthy")];
    assert_eq!(value(&scrape, "tower_lb_backend_state", &alive), 1.0);
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_admin_access_rules() {
    // With a token: refused without it.
    let token = "metrics-t0ken";
    let lb =
        start(Config::new().admin_token(token.parse::<tower_lb::admin::AdminToken>().unwrap()))
            .await;
    let reply = lb.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert_eq!(reply.json()["status"], "fail");
    let req = Request::builder()
        .method(Method::GET)
        .uri(lb.url("/metrics"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Default::default())
        .unwrap();
    let reply = support::send_request(&lb.client, req).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let scrape = parse(&reply.body);
    assert_eq!(value(&scrape, "tower_lb_backends", &[]), 0.0);
    lb.stop().await;

    // With an admin listener: served there; on the main listener `/metrics` is the
    // backends' path like any other.
    let servers = backends(1).await;
    let lb = start(
        Config::new()
            .admin_bind(([127, 0, 0, 1], 0))
            .backends_from(specs(&servers)),
    )
    .await;
    let admin = lb.admin_addr.expect("an admin listener");
    let reply = support::send(
        &lb.client,
        Method::GET,
        &format!("http://{admin}/metrics"),
        None,
        Default::default(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(value(&parse(&reply.body), "tower_lb_backends", &[]), 1.0);
    let reply = lb.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
    assert_eq!(reply.body, "not found\n", "the backend's answer");
    let forwarded = lb.stats.snapshot().backends[0].responses;
    assert_eq!(forwarded.client_error, 1, "forwarded: {forwarded:?}");
    lb.stop().await;
}
