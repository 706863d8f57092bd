//! [`ServerStats`]: the server's numbers, readable while it runs.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

use super::service::Routes;
use crate::stats::{BalancerSnapshot, ConnectionCounters};
use crate::{BackendAddr, Weighted};

/// Where every number of a [`Server`](super::Server) is read: cheap to clone, and it keeps
/// working while [`Server::run`](super::Server::run) serves (and after). See
/// [`stats`](crate::stats) for what each number means.
///
/// A [`Reload`](super::Reload) that rebuilds the balancer starts its counters again; these
/// read the balancer in use.
#[derive(Clone)]
pub struct ServerStats {
    /// The routes in use, swapped by a reload. Set once the server has built its first
    /// routes, which hold the status page and `/metrics` that read these numbers.
    routes: Arc<OnceLock<Arc<ArcSwap<Routes>>>>,
    connections: Arc<ConnectionCounters>,
}

impl ServerStats {
    /// Numbers for routes not built yet: [`set_routes`](Self::set_routes) must follow before
    /// any is read.
    pub(super) fn new(connections: Arc<ConnectionCounters>) -> Self {
        Self {
            routes: Arc::default(),
            connections,
        }
    }

    /// Where the routes in use are, once built.
    pub(super) fn set_routes(&self, routes: &Arc<ArcSwap<Routes>>) {
        assert!(
            self.routes.set(Arc::clone(routes)).is_ok(),
            "a server's routes are set once"
        );
    }

    /// Every number now: the balancer's and its backends', with their health, the client
    /// connections, the queue and the retries.
    pub fn snapshot(&self) -> BalancerSnapshot<Weighted<BackendAddr>> {
        let routes = self
            .routes
            .get()
            .expect("a server's numbers are read once it is bound")
            .load();
        routes
            .balancer
            .snapshot_with(&routes.monitor)
            .with_connections(&self.connections)
            .with_queue(routes.proxy.get_ref().counters())
            .with_retries(routes.proxy.counters())
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

impl std::fmt::Debug for ServerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerStats")
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}
