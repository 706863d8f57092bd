//! Prometheus metrics: a balancer's [numbers](crate::stats), exported at scrape time.
//!
//! [`BalancerMetrics`] is a [`Collector`](prometheus_client::collector::Collector) for the
//! official Prometheus Rust client, [`prometheus-client`](prometheus_client): at every scrape
//! it takes the balancer's [snapshot](crate::stats) and writes it out. Nothing is counted
//! twice and the request path does no work for the exporter: the counters are the relaxed
//! atomics the balancer keeps anyway. The one exception is the response-time
//! [histograms](crate::stats::histogram) (two clock reads and two atomic adds per sample per
//! histogram): the balancer fills them only once asked, and [`BalancerMetrics::new`] asks
//! ([`Balance::record_response_times`](crate::Balance::record_response_times)).
//!
//! `prometheus-client` because it is the Prometheus project's own client, it has no global
//! registry (a library must not register into its user's process-wide state: the user owns a
//! [`Registry`] and mounts it wherever they serve
//! `/metrics`), it takes custom collectors that read values at scrape time, and it writes
//! the OpenMetrics text format, which Prometheus, VictoriaMetrics, the OpenTelemetry
//! collector and Grafana Agent read. The `metrics` facade with `metrics-exporter-prometheus`
//! would have meant recording every number again into the facade's own storage, on the
//! request path.
//!
//! The [`Server`](crate::server::Server) serves these at `GET /metrics` on its admin routes
//! (see [`admin`](crate::admin)), with its connections, queue, retries and health checks.
//!
//! # Metrics
//!
//! Names and labels follow HAProxy's exporter and Envoy: a `tower_lb_` prefix, `_total`
//! counters, `_seconds` histograms, and a `backend` label holding the backend's key as
//! displayed (for a [`BackendAddr`](crate::BackendAddr), its normalised address).
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `tower_lb_info` | info | `algorithm`, `version` | the algorithm (`custom` for a picker of your own) and tower-lb's version |
//! | `tower_lb_backends` | gauge | | backends in the set, ready or not |
//! | `tower_lb_no_available_backend_total` | counter | | requests answered `503`: no backend could take them |
//! | `tower_lb_discovery_changes_total` | counter | | backends added, updated or removed by discovery |
//! | `tower_lb_queue_waiting` | gauge | | requests waiting for a backend now (with a queue) |
//! | `tower_lb_queued_requests_total` | counter | | requests that had to wait (with a queue) |
//! | `tower_lb_queue_timeouts_total` | counter | | requests that waited the whole queue timeout (with a queue) |
//! | `tower_lb_retries_total` | counter | | retries sent (with a retry layer) |
//! | `tower_lb_retry_budget_exhausted_total` | counter | | retries not sent: the budget was empty (with a retry layer) |
//! | `tower_lb_client_connections_open` | gauge | | client connections open now (server) |
//! | `tower_lb_client_connections_accepted_total` | counter | | client connections accepted (server) |
//! | `tower_lb_backend_requests_total` | counter | `backend`, `code` | responses by status class: `1xx` … `5xx`, `other` |
//! | `tower_lb_backend_transport_failures_total` | counter | `backend` | requests that got no response head (refused, reset, timed out) |
//! | `tower_lb_backend_body_errors_total` | counter | `backend` | response bodies that failed after the head |
//! | `tower_lb_backend_requests_in_flight` | gauge | `backend` | requests whose response body has not ended |
//! | `tower_lb_backend_response_time_seconds` | histogram | `backend`, `le` | time to the response head; buckets 0.5 ms to 12.288 s |
//! | `tower_lb_backend_total_time_seconds` | histogram | `backend`, `le` | time to the end of the response body |
//! | `tower_lb_backend_state` | gauge | `backend`, `state` | `1` for the state it is in (`healthy`, `unhealthy`, `ejected`, `draining`), `0` for the others |
//! | `tower_lb_backend_checks_total` | counter | `backend` | active health checks run (with health checks) |
//! | `tower_lb_backend_check_failures_total` | counter | `backend` | active health checks failed (with health checks) |
//! | `tower_lb_backend_slow_start_remaining_seconds` | gauge | `backend` | how long its slow-start ramp still lasts, `0` at its full share (with health checks) |
//! | `tower_lb_backend_ejections_total` | counter | `backend` | ejections by outlier detection (with health checks) |
//! | `tower_lb_backend_retries_total` | counter | `backend` | retries sent to it |
//! | `tower_lb_backend_weight` | gauge | `backend` | its weight |
//!
//! A backend counts from when it joined the set: one removed and registered again starts
//! over, which Prometheus' `rate()` reads as a counter reset. Without health checks a backend
//! in the set is `healthy`; a backend in its slow-start ramp is `healthy` too, with
//! `tower_lb_backend_slow_start_remaining_seconds` above 0.
//!
//! # Examples
//!
//! A balancer in an axum app, with its metrics on the app's own `/metrics`:
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Router, extract::State, routing::get};
//! use prometheus_client::registry::Registry;
//! use tower::{discover::ServiceList, service_fn, Service, ServiceExt};
//! use tower_lb::{Algo, LoadBalance};
//! use tower_lb::metrics::{self, BalancerMetrics};
//!
//! async fn serve_metrics(State(registry): State<Arc<Registry>>) -> impl axum::response::IntoResponse {
//!     ([(http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)], metrics::render(&registry))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let backend = service_fn(|_: http::Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(()))
//! });
//! let mut lb = LoadBalance::new(ServiceList::new(vec![backend]), Algo::LeastConn);
//!
//! let mut registry = Registry::default();
//! BalancerMetrics::new(lb.clone()).register(&mut registry);
//! let app: Router = Router::new()
//!     .route("/metrics", get(serve_metrics))
//!     .with_state(Arc::new(registry));
//!
//! lb.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
//! let res = app.oneshot(http::Request::get("/metrics").body(axum::body::Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(res.headers()["content-type"], metrics::CONTENT_TYPE);
//! let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
//! let text = std::str::from_utf8(&body).unwrap();
//! assert!(text.contains(r#"tower_lb_backend_requests_total{backend="0",code="2xx"} 1"#));
//! assert!(text.contains(r#"tower_lb_backend_response_time_seconds_count{backend="0"} 1"#));
//! assert!(text.contains(r#"tower_lb_info{algorithm="LC",version="#));
//! # }
//! ```
//!
//! With health checks, a queue or retries, export a snapshot that has them with
//! [`BalancerMetrics::from_fn`]:
//!
//! ```
//! # use std::convert::Infallible;
//! # use prometheus_client::registry::Registry;
//! # use tower::{service_fn, Layer};
//! # use tower_lb::health::{HealthCheckLayer, probe_fn};
//! # use tower_lb::metrics::BalancerMetrics;
//! # use tower_lb::{Algo, LoadBalanceLayer, Registry as Backends, RetryLayer};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let backends = Backends::new(|_: &&'static str| service_fn(|_: http::Request<tower_lb::retry::RetryBody<http_body_util::Empty<bytes::Bytes>>>| async {
//! #     Ok::<_, Infallible>(http::Response::new(()))
//! # }));
//! let health = HealthCheckLayer::new(probe_fn(|_: &tower_lb::Weighted<&'static str>| async { Ok::<_, Infallible>(()) }));
//! let monitor = health.monitor();
//! let lb = LoadBalanceLayer::new(Algo::RoundRobin).layer(health.layer(backends.discover()));
//! let retry = RetryLayer::new().layer(lb.clone());
//! lb.record_response_times(true); // `from_fn` can't know which balancer to time
//!
//! let mut registry = Registry::default();
//! let counters = retry.counters().clone();
//! BalancerMetrics::from_fn(move || lb.snapshot_with(&monitor).with_retries(&counters))
//!     .register(&mut registry);
//! assert!(tower_lb::metrics::render(&registry).contains("tower_lb_retries_total 0"));
//! # }
//! ```

mod collector;

use prometheus_client::registry::Registry;

pub use self::collector::BalancerMetrics;

/// The `Content-Type` of [`render`]'s output: the OpenMetrics text format, 1.0.0.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `registry`'s metrics in the OpenMetrics text format (ending with `# EOF`), to serve with
/// [`CONTENT_TYPE`].
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a `String` cannot fail; a collector of tower-lb's does not either.
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::warn!(%error, "could not encode the metrics");
    }
    text
}

#[cfg(test)]
mod tests;
