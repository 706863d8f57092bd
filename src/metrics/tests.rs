use std::convert::Infallible;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tower::discover::ServiceList;
use tower::{Layer, Service, ServiceExt, service_fn};

use super::*;
use crate::health::{Health, HealthCheckLayer, probe_fn};
use crate::{Algo, LoadBalance, LoadBalanceLayer, Registry as Backends, Weighted};

type Req = http::Request<()>;

fn answering(
    code: u16,
) -> impl Service<Req, Response = http::Response<()>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ Sync {
    service_fn(move |_: Req| async move {
        let mut res = http::Response::new(());
        *res.status_mut() = http::StatusCode::from_u16(code).unwrap();
        Ok::<_, Infallible>(res)
    })
}

fn rendered(metrics: BalancerMetrics) -> String {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    render(&registry)
}

/// The value of the sample `series` (name and labels as written), which must be there once.
fn value(text: &str, series: &str) -> f64 {
    let mut found = text
        .lines()
        .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '));
    let value = found
        .next()
        .unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert!(found.next().is_none(), "{series} twice");
    value.parse().unwrap()
}

#[tokio::test]
async fn backends_are_exported_with_their_responses_times_and_state() {
    let mut lb = LoadBalance::new(
        ServiceList::new(vec![answering(200), answering(503)]),
        Algo::RoundRobin,
    );
    // Made before the traffic: it turns the response-time histograms on.
    let metrics = BalancerMetrics::new(lb.clone());
    for _ in 0..3 {
        lb.ready().await.unwrap().call(Req::new(())).await.unwrap();
    }
    let text = rendered(metrics);
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(
        value(&text, r#"tower_lb_info{algorithm="RR",version="0.1.0"}"#),
        1.0
    );
    assert_eq!(value(&text, "tower_lb_backends"), 2.0);
    assert_eq!(
        value(
            &text,
            r#"tower_lb_backend_requests_total{backend="0",code="2xx"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"tower_lb_backend_requests_total{backend="1",code="5xx"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"tower_lb_backend_requests_total{backend="1",code="2xx"}"#
        ),
        0.0
    );
    assert_eq!(
        value(
            &text,
            r#"tower_lb_backend_response_time_seconds_count{backend="0"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"tower_lb_backend_response_time_seconds_bucket{le="+Inf",backend="0"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"tower_lb_backend_total_time_seconds_count{backend="1"}"#
        ),
        1.0
    );
    assert_eq!(
        text.matches("tower_lb_backend_response_time_seconds_bucket{")
            .count(),
        2 * 31
    );
    // Without health checks, a backend in the set is healthy.
    assert_eq!(
        value(
            &text,
            r#"tower_lb_backend_state{backend="0",state="healthy"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"tower_lb_backend_state{backend="0",state="unhealthy"}"#
        ),
        0.0
    );
    assert_eq!(value(&text, r#"tower_lb_backend_weight{backend="1"}"#), 1.0);
    // What the snapshot lacks is left out.
    for absent in [
        "tower_lb_queue",
        "tower_lb_retries",
        "tower_lb_client_connections",
        "tower_lb_backend_checks",
    ] {
        assert!(!text.contains(absent), "{absent} in\n{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn health_checks_are_exported_with_one_state_series_set() {
    let backends = Backends::new(|_: &&'static str| answering(200));
    backends.register("a", 3);
    let health = HealthCheckLayer::new(probe_fn(|_: &Weighted<&'static str>| async {
        Err::<(), _>("refused")
    }))
    .interval(Duration::from_secs(1));
    let monitor = health.monitor();
    let lb = LoadBalanceLayer::new(Algo::LeastConn).layer(health.layer(backends.discover()));
    let metrics = {
        let (lb, monitor) = (lb.clone(), monitor.clone());
        BalancerMetrics::from_fn(move || lb.snapshot_with(&monitor))
    };
    let states = |text: &str| -> Vec<f64> {
        ["healthy", "unhealthy", "ejected", "draining"]
            .map(|state| {
                value(
                    text,
                    &format!(r#"tower_lb_backend_state{{backend="a",state="{state}"}}"#),
                )
            })
            .to_vec()
    };
    assert_eq!(states(&rendered(metrics.clone())), [1.0, 0.0, 0.0, 0.0]);

    // The checks fail: the backend turns unhealthy and its failed checks are counted.
    let checked = monitor.checked();
    tokio::time::advance(Duration::from_secs(1)).await;
    checked.await;
    monitor.set_health(&"a", Health::Unhealthy);
    let text = rendered(metrics);
    assert_eq!(states(&text), [0.0, 1.0, 0.0, 0.0]);
    assert!(
        value(
            &text,
            r#"tower_lb_backend_check_failures_total{backend="a"}"#
        ) >= 1.0
    );
    assert_eq!(
        value(&text, r#"tower_lb_backend_ejections_total{backend="a"}"#),
        0.0
    );
    assert_eq!(value(&text, r#"tower_lb_backend_weight{backend="a"}"#), 3.0);
    assert_eq!(
        value(&text, r#"tower_lb_info{algorithm="LC",version="0.1.0"}"#),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn the_slow_start_ramp_is_exported_in_seconds() {
    let backends = Backends::new(|_: &&'static str| answering(200));
    backends.register("a", 1);
    let health = HealthCheckLayer::new(probe_fn(|_: &Weighted<&'static str>| async {
        Ok::<(), Infallible>(())
    }))
    .slow_start(Duration::from_secs(60));
    let monitor = health.monitor();
    let lb = LoadBalanceLayer::new(Algo::RoundRobin).layer(health.layer(backends.discover()));
    let metrics = BalancerMetrics::from_fn(move || lb.snapshot_with(&monitor));
    let series = r#"tower_lb_backend_slow_start_remaining_seconds{backend="a"}"#;

    let ramping = value(&rendered(metrics.clone()), series);
    assert!(ramping > 0.0 && ramping <= 60.0, "{ramping}");
    tokio::time::advance(Duration::from_secs(20)).await;
    let later = value(&rendered(metrics.clone()), series);
    assert!(later <= ramping - 20.0 + 1e-6, "{later} after {ramping}");
    tokio::time::advance(Duration::from_secs(41)).await;
    let text = rendered(metrics);
    assert_eq!(value(&text, series), 0.0);
    assert_eq!(
        value(
            &text,
            r#"tower_lb_backend_state{backend="a",state="healthy"}"#
        ),
        1.0
    );
}
