//! Every number the balancer keeps, read as a snapshot.
//!
//! The counters themselves live where the work is done, each a relaxed atomic that the request
//! path bumps once: a backend's in [`balance::Stats`](crate::balance::Stats) (one per backend,
//! kept across changes of the set), the balancer's own in the balancer, a queue's in
//! [`QueueCounters`], a server's connections in [`ConnectionCounters`], and health checks in
//! [`BackendHealth`](crate::health::BackendHealth). This module reads them all into plain
//! values: a [`BalancerSnapshot`] with a [`BackendSnapshot`] per backend, from
//! [`Balance::snapshot`](crate::Balance::snapshot) (a balancer alone),
//! [`Balance::snapshot_with`](crate::Balance::snapshot_with) (with its
//! [`HealthMonitor`](crate::health::HealthMonitor)) or the standalone server's
//! `Server::stats` (everything). Taking one reads each atomic
//! once and never blocks a request.
//!
//! Counters are `u64` that only grow from the moment their owner was created (a backend's,
//! from when it joined the set: a backend removed and registered again starts over); gauges
//! say how many now. An exporter (Prometheus and the like) maps them one to one.
//!
//! # Per backend ([`BackendSnapshot`])
//!
//! | number | kind | meaning | HAProxy stats | Envoy |
//! |---|---|---|---|---|
//! | `weight` | gauge | its weight | `weight` | (host weight in `/clusters`) |
//! | `in_flight` | gauge | requests sent to it whose response body has not ended | `scur` | `upstream_rq_active` |
//! | `responses` | counters | response heads by status class ([`Responses`]) | `hrsp_1xx` … `hrsp_5xx`, `hrsp_other` | `upstream_rq_1xx` … `upstream_rq_5xx` |
//! | `transport_failures` | counter | errors from its service with no response (refused, reset, timed out, closed before the head) | `econ` + `eresp` | `upstream_cx_connect_fail` + `upstream_rq_timeout` + resets before the head |
//! | `body_errors` | counter | response bodies that failed after the head | `srv_abrt` | `upstream_rq_rx_reset` after the head |
//! | `retries` | counter | requests it received that another backend had been sent first | `wretr` (counted on the retried-to server) | `upstream_rq_retry` (per cluster) |
//! | `response_time` | histogram | time from sending a request to its response head ([`HistogramSnapshot`]: 0.5 ms to 12 s); empty unless [`Balance::record_response_times`](crate::Balance::record_response_times) | `rtime` (an average) | `upstream_rq_time` |
//! | `total_time` | histogram | time from sending a request to the end of its response body; likewise | `ttime` (an average) | — |
//! | `rtt` | gauge | Peak-EWMA response time, with least time only | `rtime` (an average) | `upstream_rq_time` (a histogram) |
//! | `health.state` | state | healthy, unhealthy (checks) or ejected (outlier detection) | `status` | `health_flags` in `/clusters` |
//! | `health.checks`, `health.checks_failed` | counters | active checks run, and failed | `chkfail` (failed) | `health_check.attempt`, `health_check.failure` |
//! | `health.last_check`, `health.last_error` | time, text | when the last check finished, why it failed | `last_chk`, `check_status` | — |
//! | `health.total_ejections` | counter | times outlier detection ejected it | — | `outlier_detection.ejections_enforced_total` (per cluster) |
//!
//! [`BackendSnapshot::state`], [`ejections`](BackendSnapshot::ejections) and
//! [`last_check`](BackendSnapshot::last_check) read the health part; it is `None` without a
//! monitor.
//!
//! # Per balancer ([`BalancerSnapshot`])
//!
//! | number | kind | meaning | HAProxy stats | Envoy |
//! |---|---|---|---|---|
//! | `algorithm` | label | the [`Algo`](crate::Algo) | `balance` (config) | `lb_policy` (config) |
//! | `no_backend` | counter | requests answered `503` with [`NoAvailableBackend`](crate::NoAvailableBackend): none ready, or none within the queue timeout | (in the frontend's `hrsp_5xx`) | `upstream_cx_none_healthy` |
//! | `queue.waiting` | gauge | requests waiting for a backend now | `qcur` | `upstream_rq_pending_active` |
//! | `queue.queued` | counter | requests that had to wait | — | `upstream_rq_pending_total` |
//! | `queue.timeouts` | counter | requests that waited the whole queue timeout | (termination state `sQ`) | — |
//! | `retries.retries` | counter | retries sent ([`Retry`](crate::Retry)) | `wretr` + `wredis` | `upstream_rq_retry` |
//! | `retries.budget_exhausted` | counter | retries not sent: the retry budget was empty | — | `upstream_rq_retry_overflow` |
//! | `discovery_changes` | counter | backends added, updated (weight) or removed by discovery, as applied | — | `membership_change` |
//! | `connections.open` | gauge | client connections open now | frontend `scur` | `downstream_cx_active` |
//! | `connections.accepted` | counter | client connections accepted | frontend `conn_tot` | `downstream_cx_total` |
//!
//! `queue` is `None` without a queue, `retries` without a retry layer, `connections` without a
//! server.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use tower::{discover::ServiceList, service_fn, Service, ServiceExt};
//! use tower_lb::{Algo, LoadBalance};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let backend = service_fn(|_: http::Request<()>| async {
//!     let mut res = http::Response::new(());
//!     *res.status_mut() = http::StatusCode::NOT_FOUND;
//!     Ok::<_, Infallible>(res)
//! });
//! let mut lb = LoadBalance::new(ServiceList::new(vec![backend]), Algo::LeastConn);
//! lb.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
//!
//! let stats = lb.snapshot();
//! assert_eq!(stats.algorithm, Some(Algo::LeastConn));
//! assert_eq!(stats.backends[0].responses.client_error, 1);
//! assert_eq!(stats.backends[0].in_flight, 0);
//! assert_eq!(stats.no_backend, 0);
//! # }
//! ```

mod backend;
mod balancer;
mod counters;
pub mod histogram;

pub use self::backend::{BackendSnapshot, Responses};
pub use self::balancer::BalancerSnapshot;
pub use self::counters::{
    ConnectionCounters, ConnectionsSnapshot, OpenConnection, QueueCounters, QueueSnapshot, Queued,
    RetryCounters, RetrySnapshot,
};
pub use self::histogram::{HistogramSnapshot, LatencyHistogram};

#[cfg(test)]
mod tests;
