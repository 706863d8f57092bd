//! `GET /status.json`: a snapshot of the server's numbers, shaped for the page.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::addr::BackendAddr;
use crate::admin::backends::rfc3339;
use crate::health::BackendState;
use crate::stats::{BackendSnapshot, BalancerSnapshot, HistogramSnapshot};
use crate::weight::Weighted;

type Snapshot = dyn Fn() -> BalancerSnapshot<Weighted<BackendAddr>> + Send + Sync;

/// Where the status page reads its numbers: a function that takes a snapshot (a
/// [`ServerStats::snapshot`](crate::server::ServerStats::snapshot)), and when the server
/// started, for its uptime. Give it to the admin API with
/// [`Admin::status`](crate::admin::Admin::status); the [`Server`](crate::server::Server)
/// does.
#[derive(Clone)]
pub struct StatusSource {
    snapshot: Arc<Snapshot>,
    started: Instant,
}

impl StatusSource {
    /// Reads the numbers with `snapshot`; the uptime counts from now.
    pub fn new(
        snapshot: impl Fn() -> BalancerSnapshot<Weighted<BackendAddr>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            snapshot: Arc::new(snapshot),
            started: Instant::now(),
        }
    }
}

impl fmt::Debug for StatusSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusSource")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// The `data` of `GET /status.json` (see the [module docs](super)).
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    version: &'static str,
    uptime_secs: u64,
    algorithm: Option<String>,
    connections_open: Option<u64>,
    connections_accepted: Option<u64>,
    requests: u64,
    in_flight: u64,
    no_backend: u64,
    retries: u64,
    retry_budget_exhausted: Option<u64>,
    queue_waiting: Option<u64>,
    queue_timeouts: Option<u64>,
    /// The upper bounds of the response-time buckets but the last (`+Inf`), in ms.
    latency_bounds_ms: Vec<f64>,
    backends: Vec<BackendStatus>,
}

/// One backend's row.
#[derive(Debug, Serialize)]
struct BackendStatus {
    address: String,
    state: &'static str,
    weight: u32,
    in_flight: u64,
    requests: u64,
    responses: BTreeMap<&'static str, u64>,
    failures: u64,
    body_errors: u64,
    retries: u64,
    ejections: u64,
    checks: u64,
    checks_failed: u64,
    last_check: Option<String>,
    last_error: Option<String>,
    slow_start_remaining_ms: Option<u64>,
    /// Time to the response head, since the backend joined; `null` before its first answer.
    latency_ms: Option<Latency>,
    /// The same histogram's samples per bucket (not cumulative), for the page to estimate
    /// quantiles over its last minute.
    response_time_buckets: Vec<u64>,
}

/// Response-time quantiles in milliseconds, estimated from the backend's histogram
/// ([`HistogramSnapshot::quantile`]).
#[derive(Debug, Serialize)]
struct Latency {
    p50: f64,
    p99: f64,
}

/// The report of `source` now.
pub(crate) fn report(source: &StatusSource) -> Report {
    let snapshot = (source.snapshot)();
    let backends: Vec<BackendStatus> = snapshot.backends.iter().map(backend).collect();
    Report {
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: source.started.elapsed().as_secs(),
        algorithm: snapshot.algorithm.map(|algo| algo.to_string()),
        connections_open: snapshot.connections.map(|c| c.open),
        connections_accepted: snapshot.connections.map(|c| c.accepted),
        requests: backends.iter().map(|b| b.requests).sum(),
        in_flight: snapshot.in_flight(),
        no_backend: snapshot.no_backend,
        retries: snapshot.retries.map_or_else(
            || snapshot.backends.iter().map(|b| b.retries).sum(),
            |r| r.retries,
        ),
        retry_budget_exhausted: snapshot.retries.map(|r| r.budget_exhausted),
        queue_waiting: snapshot.queue.map(|q| q.waiting),
        queue_timeouts: snapshot.queue.map(|q| q.timeouts),
        latency_bounds_ms: HistogramSnapshot::BOUNDS
            .iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect(),
        backends,
    }
}

fn backend(b: &BackendSnapshot<Weighted<BackendAddr>>) -> BackendStatus {
    let health = b.health.as_ref();
    let slow_start = health.and_then(|h| h.slow_start_remaining);
    let state = if b.removed {
        BackendState::Draining.as_str()
    } else {
        match b.state().unwrap_or_default() {
            BackendState::Healthy if slow_start.is_some() => "slow start",
            state => state.as_str(),
        }
    };
    BackendStatus {
        address: b.key.key().to_string(),
        state,
        weight: b.weight,
        in_flight: b.in_flight,
        requests: b.responses.total() + b.transport_failures,
        responses: b.responses.by_class().into_iter().collect(),
        failures: b.transport_failures,
        body_errors: b.body_errors,
        retries: b.retries,
        ejections: b.ejections(),
        checks: health.map_or(0, |h| h.checks),
        checks_failed: health.map_or(0, |h| h.checks_failed),
        last_check: health.and_then(|h| h.last_check).map(rfc3339),
        last_error: health.and_then(|h| h.last_error.clone()),
        slow_start_remaining_ms: slow_start
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        latency_ms: latency(&b.response_time),
        response_time_buckets: b.response_time.counts().to_vec(),
    }
}

fn latency(histogram: &HistogramSnapshot) -> Option<Latency> {
    let ms = |q| histogram.quantile(q).map(|d| d.as_secs_f64() * 1000.0);
    Some(Latency {
        p50: ms(0.5)?,
        p99: ms(0.99)?,
    })
}
