//! [`BalancerMetrics`]: a Prometheus collector that reads a balancer's snapshot at scrape time.

use std::fmt::{self, Display};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tower::discover::Discover;

use crate::Balance;
use crate::algo::Pick;
use crate::health::BackendState;
use crate::stats::{BackendSnapshot, BalancerSnapshot, HistogramSnapshot};

type Snapshot = dyn Fn() -> BalancerSnapshot<String> + Send + Sync;

/// The metrics of one balancer, read from its [snapshot](crate::stats) at every scrape. See
/// the [module docs](super) for the metrics and an example.
///
/// Register it in a [`Registry`] with [`register`](Self::register) (or
/// `Registry::register_collector`); the request path does no more work for it than it does
/// anyway. Cheap to clone.
#[derive(Clone)]
#[must_use]
pub struct BalancerMetrics {
    snapshot: Arc<Snapshot>,
}

impl BalancerMetrics {
    /// The metrics of `balancer`: its own and its backends' counters, without health, queue,
    /// retries or connections (see [`from_fn`](Self::from_fn) for those). The `backend` label
    /// is each backend's key as displayed (a [`BackendAddr`](crate::BackendAddr) is its
    /// normalised address). Turns on the balancer's response-time histograms
    /// ([`Balance::record_response_times`]).
    pub fn new<D, P>(balancer: Balance<D, P>) -> Self
    where
        D: Discover,
        D::Key: Clone + Display,
        P: Pick<D::Key>,
        Balance<D, P>: Send + Sync + 'static,
    {
        balancer.record_response_times(true);
        Self::from_fn(move || balancer.snapshot())
    }

    /// The metrics of whatever snapshot `snapshot` takes, called at every scrape: for
    /// instance a balancer's with its health checks, its queue and its retry layer,
    /// `move || lb.snapshot_with(&monitor).with_retries(retry.counters())`. The parts the
    /// snapshot lacks (`None`) are left out of the exposition. The response-time histograms
    /// stay empty unless the balancer records them: call
    /// [`Balance::record_response_times`]`(true)` on it.
    pub fn from_fn<K, F>(snapshot: F) -> Self
    where
        K: Display,
        F: Fn() -> BalancerSnapshot<K> + Send + Sync + 'static,
    {
        Self {
            snapshot: Arc::new(move || labelled(snapshot())),
        }
    }

    /// Registers these metrics in `registry`.
    pub fn register(self, registry: &mut Registry) {
        registry.register_collector(Box::new(self));
    }

    /// The snapshot the next scrape would export, with each backend's label as its key.
    pub fn snapshot(&self) -> BalancerSnapshot<String> {
        (self.snapshot)()
    }
}

impl fmt::Debug for BalancerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalancerMetrics").finish_non_exhaustive()
    }
}

/// `snapshot` with each backend's key displayed, the value of its `backend` label.
fn labelled<K: Display>(snapshot: BalancerSnapshot<K>) -> BalancerSnapshot<String> {
    let BalancerSnapshot {
        algorithm,
        backends,
        no_backend,
        discovery_changes,
        queue,
        retries,
        connections,
    } = snapshot;
    BalancerSnapshot {
        algorithm,
        backends: backends
            .into_iter()
            .map(|b| b.map_key(|key| key.to_string()))
            .collect(),
        no_backend,
        discovery_changes,
        queue,
        retries,
        connections,
    }
}

/// The states a backend is in, one `0`/`1` series each.
const STATES: [BackendState; 4] = [
    BackendState::Healthy,
    BackendState::Unhealthy,
    BackendState::Ejected,
    BackendState::Draining,
];

/// Where `backend` stands: draining once it has left the set, else what its health checks
/// say, else (no checks) healthy.
fn state(backend: &BackendSnapshot<String>) -> BackendState {
    if backend.removed {
        BackendState::Draining
    } else {
        backend.state().unwrap_or(BackendState::Healthy)
    }
}

impl Collector for BalancerMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snapshot = self.snapshot();
        encode_balancer(&snapshot, &mut encoder)?;
        encode_backends(&snapshot.backends, &mut encoder)
    }
}

/// One metric family: its descriptor, then `series` writes its samples.
fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric_type: MetricType,
    series: impl FnOnce(&mut MetricEncoder) -> fmt::Result,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, unit, metric_type)?;
    series(&mut metric)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    family(encoder, name, help, None, MetricType::Counter, |m| {
        m.encode_counter::<NoLabelSet, _, u64>(&value, None)
    })
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    family(encoder, name, help, None, MetricType::Gauge, |m| {
        m.encode_gauge(&(value as i64))
    })
}

fn encode_balancer(
    snapshot: &BalancerSnapshot<String>,
    encoder: &mut DescriptorEncoder,
) -> fmt::Result {
    let algorithm = snapshot
        .algorithm
        .map_or("custom", |algo| algo.short_name());
    family(
        encoder,
        "tower_lb",
        "The balancer: its algorithm and tower-lb's version",
        None,
        MetricType::Info,
        |m| {
            m.encode_info(&[
                ("algorithm", algorithm),
                ("version", env!("CARGO_PKG_VERSION")),
            ])
        },
    )?;
    gauge(
        encoder,
        "tower_lb_backends",
        "Backends in the balancer's set, ready or not",
        snapshot.backends.iter().filter(|b| !b.removed).count() as u64,
    )?;
    counter(
        encoder,
        "tower_lb_no_available_backend",
        "Requests answered 503 because no backend could take them, at once or within the queue timeout",
        snapshot.no_backend,
    )?;
    counter(
        encoder,
        "tower_lb_discovery_changes",
        "Backends added, updated (a new weight) or removed by service discovery, as applied",
        snapshot.discovery_changes,
    )?;
    if let Some(queue) = &snapshot.queue {
        gauge(
            encoder,
            "tower_lb_queue_waiting",
            "Requests waiting for a backend now",
            queue.waiting,
        )?;
        counter(
            encoder,
            "tower_lb_queued_requests",
            "Requests that had to wait for a backend",
            queue.queued,
        )?;
        counter(
            encoder,
            "tower_lb_queue_timeouts",
            "Requests that waited the whole queue timeout and were answered 503",
            queue.timeouts,
        )?;
    }
    if let Some(retries) = &snapshot.retries {
        counter(
            encoder,
            "tower_lb_retries",
            "Retries sent, each to a backend not tried yet",
            retries.retries,
        )?;
        counter(
            encoder,
            "tower_lb_retry_budget_exhausted",
            "Retries not sent because the retry budget was empty",
            retries.budget_exhausted,
        )?;
    }
    if let Some(connections) = &snapshot.connections {
        gauge(
            encoder,
            "tower_lb_client_connections_open",
            "Client connections open now",
            connections.open,
        )?;
        counter(
            encoder,
            "tower_lb_client_connections_accepted",
            "Client connections accepted",
            connections.accepted,
        )?;
    }
    Ok(())
}

/// A per-backend family: one series per backend, labelled `backend`.
fn per_backend<'a>(
    encoder: &mut DescriptorEncoder,
    backends: impl IntoIterator<Item = &'a BackendSnapshot<String>>,
    name: &str,
    help: &str,
    metric_type: MetricType,
    value: impl Fn(&BackendSnapshot<String>) -> u64,
) -> fmt::Result {
    family(encoder, name, help, None, metric_type, |m| {
        for backend in backends {
            let labels = [("backend", backend.key.as_str())];
            let mut series = m.encode_family(&labels)?;
            match metric_type {
                MetricType::Counter => {
                    series.encode_counter::<NoLabelSet, _, u64>(&value(backend), None)?
                }
                _ => series.encode_gauge(&(value(backend) as i64))?,
            }
        }
        Ok(())
    })
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    backends: &[BackendSnapshot<String>],
    name: &str,
    help: &str,
    of: impl Fn(&BackendSnapshot<String>) -> &HistogramSnapshot,
) -> fmt::Result {
    family(
        encoder,
        name,
        help,
        Some(&Unit::Seconds),
        MetricType::Histogram,
        |m| {
            for backend in backends {
                let histogram = of(backend);
                let buckets: Vec<(f64, u64)> = HistogramSnapshot::BOUNDS
                    .iter()
                    .map(Duration::as_secs_f64)
                    .chain([f64::MAX])
                    .zip(histogram.counts().iter().copied())
                    .collect();
                let labels = [("backend", backend.key.as_str())];
                m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                    histogram.sum().as_secs_f64(),
                    histogram.count(),
                    &buckets,
                    None,
                )?;
            }
            Ok(())
        },
    )
}

fn encode_backends(
    backends: &[BackendSnapshot<String>],
    encoder: &mut DescriptorEncoder,
) -> fmt::Result {
    family(
        encoder,
        "tower_lb_backend_requests",
        "Responses from the backend, by status class (code: 1xx to 5xx, other)",
        None,
        MetricType::Counter,
        |m| {
            for backend in backends {
                for (code, count) in backend.responses.by_class() {
                    let labels = [("backend", backend.key.as_str()), ("code", code)];
                    m.encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
                }
            }
            Ok(())
        },
    )?;
    per_backend(
        encoder,
        backends,
        "tower_lb_backend_transport_failures",
        "Requests that failed with no response head: connection refused or reset, timed out, closed early",
        MetricType::Counter,
        |b| b.transport_failures,
    )?;
    per_backend(
        encoder,
        backends,
        "tower_lb_backend_body_errors",
        "Response bodies that failed after the head",
        MetricType::Counter,
        |b| b.body_errors,
    )?;
    per_backend(
        encoder,
        backends,
        "tower_lb_backend_requests_in_flight",
        "Requests sent to the backend whose response body has not ended",
        MetricType::Gauge,
        |b| b.in_flight,
    )?;
    histogram(
        encoder,
        backends,
        "tower_lb_backend_response_time",
        "Time from sending a request to the backend to its response head",
        |b| &b.response_time,
    )?;
    histogram(
        encoder,
        backends,
        "tower_lb_backend_total_time",
        "Time from sending a request to the backend to the end of its response body",
        |b| &b.total_time,
    )?;
    family(
        encoder,
        "tower_lb_backend_state",
        "Where the backend stands: 1 for its state, 0 for the others",
        None,
        MetricType::Gauge,
        |m| {
            for backend in backends {
                let now = state(backend);
                for state in STATES {
                    let labels = [("backend", backend.key.as_str()), ("state", state.as_str())];
                    m.encode_family(&labels)?
                        .encode_gauge(&i64::from(state == now))?;
                }
            }
            Ok(())
        },
    )?;
    let checked = || backends.iter().filter(|b| b.health.is_some());
    if checked().next().is_some() {
        per_backend(
            encoder,
            checked(),
            "tower_lb_backend_checks",
            "Active health checks run",
            MetricType::Counter,
            |b| b.health.as_ref().map_or(0, |h| h.checks),
        )?;
        per_backend(
            encoder,
            checked(),
            "tower_lb_backend_check_failures",
            "Active health checks failed",
            MetricType::Counter,
            |b| b.health.as_ref().map_or(0, |h| h.checks_failed),
        )?;
        family(
            encoder,
            "tower_lb_backend_slow_start_remaining",
            "How long the backend's slow-start ramp still lasts; 0 when it takes its full share",
            Some(&Unit::Seconds),
            MetricType::Gauge,
            |m| {
                for backend in checked() {
                    let remaining = backend
                        .health
                        .as_ref()
                        .and_then(|h| h.slow_start_remaining)
                        .unwrap_or_default();
                    let labels = [("backend", backend.key.as_str())];
                    m.encode_family(&labels)?
                        .encode_gauge(&remaining.as_secs_f64())?;
                }
                Ok(())
            },
        )?;
        per_backend(
            encoder,
            checked(),
            "tower_lb_backend_ejections",
            "Times outlier detection ejected the backend",
            MetricType::Counter,
            |b| b.ejections(),
        )?;
    }
    per_backend(
        encoder,
        backends,
        "tower_lb_backend_retries",
        "Retries sent to the backend: requests another backend had been sent first",
        MetricType::Counter,
        |b| b.retries,
    )?;
    per_backend(
        encoder,
        backends,
        "tower_lb_backend_weight",
        "The backend's weight",
        MetricType::Gauge,
        |b| u64::from(b.weight),
    )
}
