//! The numbers of one backend.

use std::ops::AddAssign;
use std::time::{Duration, SystemTime};

use super::histogram::HistogramSnapshot;
use crate::balance::Endpoint;
use crate::health::{BackendState, HealthSnapshot};

/// Responses by status class, each a counter since the backend was added.
///
/// HAProxy's `hrsp_1xx` … `hrsp_5xx` and `hrsp_other`; Envoy's `upstream_rq_1xx` …
/// `upstream_rq_5xx`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Responses {
    /// `1xx`: in practice `101 Switching Protocols`, an upgrade.
    pub informational: u64,
    /// `2xx`.
    pub success: u64,
    /// `3xx`.
    pub redirection: u64,
    /// `4xx`.
    pub client_error: u64,
    /// `5xx`, the backend's own (`502`…`504` from a proxy behind it included).
    pub server_error: u64,
    /// Any other code (`600` to `999`, which `http` accepts).
    pub other: u64,
}

impl Responses {
    /// Every response, whatever its class.
    pub const fn total(&self) -> u64 {
        self.informational
            + self.success
            + self.redirection
            + self.client_error
            + self.server_error
            + self.other
    }

    /// The counts with their class as a label (`"1xx"` … `"5xx"`, `"other"`), for an exporter.
    pub const fn by_class(&self) -> [(&'static str, u64); 6] {
        [
            ("1xx", self.informational),
            ("2xx", self.success),
            ("3xx", self.redirection),
            ("4xx", self.client_error),
            ("5xx", self.server_error),
            ("other", self.other),
        ]
    }
}

impl AddAssign for Responses {
    fn add_assign(&mut self, rhs: Self) {
        self.informational += rhs.informational;
        self.success += rhs.success;
        self.redirection += rhs.redirection;
        self.client_error += rhs.client_error;
        self.server_error += rhs.server_error;
        self.other += rhs.other;
    }
}

/// One backend's numbers at one moment. See the [module docs](super) for what each means.
///
/// Counters (`u64` that only grow) count from when the backend joined the balancer's set;
/// `in_flight` and `weight` are gauges.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BackendSnapshot<K> {
    /// The backend's discovery key (with a [`Registry`](crate::Registry), a
    /// [`Weighted`](crate::Weighted) address).
    pub key: K,
    /// Its weight now.
    pub weight: u32,
    /// Requests sent to it whose response body has not ended yet.
    pub in_flight: u64,
    /// Responses it sent, by status class.
    pub responses: Responses,
    /// Requests that failed with an error from its service, with no response: connection
    /// refused or reset, timed out, closed before the head.
    pub transport_failures: u64,
    /// Responses whose body failed after the head (also counted in `responses`).
    pub body_errors: u64,
    /// Requests it received that had been sent to another backend first: retries.
    pub retries: u64,
    /// Time from sending each request to its response head, for every response counted in
    /// `responses` while the balancer
    /// [records response times](crate::Balance::record_response_times) (off by default).
    pub response_time: HistogramSnapshot,
    /// Time from sending each request to the end of its response body (its last frame, an
    /// error, or the body dropped unfinished), for every response counted in `responses`
    /// whose body has ended, while the balancer records response times.
    pub total_time: HistogramSnapshot,
    /// The Peak-EWMA response-time estimate, kept by [least time](crate::Algo::LeastTime)
    /// only; `None` otherwise and before its first response.
    pub rtt: Option<Duration>,
    /// Whether the backend has left the set and is only finishing its requests in flight.
    pub removed: bool,
    /// Its health checks and ejections; `None` when the snapshot was taken without a
    /// [`HealthMonitor`](crate::health::HealthMonitor) or the monitor does not check it.
    pub health: Option<HealthSnapshot>,
}

impl<K: Clone> BackendSnapshot<K> {
    /// Reads the counters of `endpoint` now.
    pub fn of(endpoint: &Endpoint<K>) -> Self {
        let stats = endpoint.stats();
        Self {
            key: endpoint.key().clone(),
            weight: stats.weight(),
            in_flight: stats.in_flight() as u64,
            responses: stats.responses(),
            transport_failures: stats.failures(),
            body_errors: stats.body_errors(),
            retries: stats.retries(),
            response_time: stats.response_time(),
            total_time: stats.total_time(),
            rtt: stats
                .rtt_estimate_ns()
                .map(|ns| Duration::from_nanos(ns as u64)),
            removed: stats.is_removed(),
            health: None,
        }
    }
}

impl<K> BackendSnapshot<K> {
    /// The same numbers under another key: `f` of this one (say, its address as a string).
    pub fn map_key<L>(self, f: impl FnOnce(K) -> L) -> BackendSnapshot<L> {
        BackendSnapshot {
            key: f(self.key),
            weight: self.weight,
            in_flight: self.in_flight,
            responses: self.responses,
            transport_failures: self.transport_failures,
            body_errors: self.body_errors,
            retries: self.retries,
            response_time: self.response_time,
            total_time: self.total_time,
            rtt: self.rtt,
            removed: self.removed,
            health: self.health,
        }
    }

    /// Where it stands: healthy, unhealthy or ejected; `None` without health checks.
    pub fn state(&self) -> Option<BackendState> {
        self.health.as_ref().map(|h| h.state)
    }

    /// Times outlier detection ejected it; `0` without health checks.
    pub fn ejections(&self) -> u64 {
        self.health.as_ref().map_or(0, |h| h.total_ejections)
    }

    /// When its last health check finished and whether it passed; `None` before the first
    /// check or without health checks.
    pub fn last_check(&self) -> Option<(SystemTime, bool)> {
        let health = self.health.as_ref()?;
        Some((health.last_check?, health.last_error.is_none()))
    }
}
