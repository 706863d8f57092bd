//! [`ServerStats`]: the server's numbers, readable while it runs.

use std::sync::Arc;

use super::Balancer;
use crate::health::HealthMonitor;
use crate::stats::{BalancerSnapshot, ConnectionCounters, QueueCounters, RetryCounters};
use crate::{BackendAddr, Weighted};

/// Where every number of a [`Server`](super::Server) is read: cheap to clone, and it keeps
/// working while [`Server::run`](super::Server::run) serves (and after). See
/// [`stats`](crate::stats) for what each number means.
#[derive(Debug, Clone)]
pub struct ServerStats {
    pub(super) balancer: Balancer,
    pub(super) monitor: HealthMonitor<Weighted<BackendAddr>>,
    pub(super) connections: Arc<ConnectionCounters>,
    pub(super) queue: Arc<QueueCounters>,
    pub(super) retries: Arc<RetryCounters>,
}

impl ServerStats {
    /// Every number now: the balancer's and its backends', with their health, the client
    /// connections, the queue and the retries.
    pub fn snapshot(&self) -> BalancerSnapshot<Weighted<BackendAddr>> {
        self.balancer
            .snapshot_with(&self.monitor)
            .with_connections(&self.connections)
            .with_queue(&self.queue)
            .with_retries(&self.retries)
    }

    /// A Prometheus registry with these numbers as [`BalancerMetrics`](crate::metrics::BalancerMetrics),
    /// read at every scrape: what the admin API's `GET /metrics` renders.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn registry(&self) -> prometheus_client::registry::Registry {
        let mut registry = prometheus_client::registry::Registry::default();
        let stats = self.clone();
        crate::metrics::BalancerMetrics::from_fn(move || stats.snapshot()).register(&mut registry);
        registry
    }
}
