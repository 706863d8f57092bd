//! The numbers of one balancer, and how to read them from a [`Balance`].

use std::hash::Hash;

use tower::discover::Discover;

use super::backend::{BackendSnapshot, Responses};
use super::counters::{
    ConnectionCounters, ConnectionsSnapshot, QueueCounters, QueueSnapshot, RetryCounters,
    RetrySnapshot,
};
use crate::algo::Pick;
use crate::health::HealthMonitor;
use crate::{Algo, Balance};

/// A balancer's numbers at one moment: its own, and those of each backend. See the
/// [module docs](super) for what each means.
///
/// Take one with [`Balance::snapshot`] or [`Balance::snapshot_with`]; the standalone server's
/// `Server::stats` adds its connections and queue. The numbers
/// are read one by one, without stopping traffic: they are each exact, but not a consistent
/// cut across counters.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BalancerSnapshot<K> {
    /// The algorithm, as the picker reports it ([`Pick::algo`]): set for a
    /// [`LoadBalance`](crate::LoadBalance), `None` for a picker of your own.
    pub algorithm: Option<Algo>,
    /// The backends in the set, in pick order, then those that have left it but still finish
    /// requests in flight ([`removed`](BackendSnapshot::removed)).
    pub backends: Vec<BackendSnapshot<K>>,
    /// Requests the balancer answered with [`NoAvailableBackend`](crate::NoAvailableBackend)
    /// (a `503`): no backend could take them, at once or within the queue timeout. Each
    /// attempt counts: a retry that finds no other backend counts too, although the
    /// [retry layer](crate::retry) then reports the first attempt's error.
    pub no_backend: u64,
    /// Discovery changes applied to the backend set since the balancer was built: backends
    /// added, updated (a new weight) or removed.
    pub discovery_changes: u64,
    /// The queue in front of the balancer, if there is one.
    pub queue: Option<QueueSnapshot>,
    /// The retry layer in front of the balancer (and its queue), if there is one.
    pub retries: Option<RetrySnapshot>,
    /// The server's client connections, when taken from a server.
    pub connections: Option<ConnectionsSnapshot>,
}

impl<K> BalancerSnapshot<K> {
    /// With the numbers of the queue whose counters are `queue`.
    pub fn with_queue(mut self, queue: &QueueCounters) -> Self {
        self.queue = Some(queue.snapshot());
        self
    }

    /// With the numbers of the retry layer whose counters are `retries`
    /// ([`Retry::counters`](crate::Retry::counters)).
    pub fn with_retries(mut self, retries: &RetryCounters) -> Self {
        self.retries = Some(retries.snapshot());
        self
    }

    /// With the numbers of the connections whose counters are `connections`.
    pub fn with_connections(mut self, connections: &ConnectionCounters) -> Self {
        self.connections = Some(connections.snapshot());
        self
    }

    /// Requests in flight on all backends.
    pub fn in_flight(&self) -> u64 {
        self.backends.iter().map(|b| b.in_flight).sum()
    }

    /// Responses of all backends, by status class.
    pub fn responses(&self) -> Responses {
        let mut sum = Responses::default();
        for backend in &self.backends {
            sum += backend.responses;
        }
        sum
    }
}

/// Snapshots.
impl<D, P> Balance<D, P>
where
    D: Discover,
    D::Key: Clone,
    P: Pick<D::Key>,
{
    /// The balancer's numbers now, without health (see [`snapshot_with`](Self::snapshot_with)).
    ///
    /// Reads one atomic per number, off the request path; requests go on meanwhile.
    pub fn snapshot(&self) -> BalancerSnapshot<D::Key> {
        let algorithm = self.picker().algo();
        let backends = self
            .endpoints()
            .iter()
            .chain(&self.retired())
            .map(|endpoint| BackendSnapshot::of(endpoint))
            .collect();
        BalancerSnapshot {
            algorithm,
            backends,
            no_backend: self.no_backend_answers(),
            discovery_changes: self.discovery_changes(),
            queue: None,
            retries: None,
            connections: None,
        }
    }

    /// The balancer's numbers now, with each backend's health from `monitor` (the
    /// [`HealthCheckLayer`](crate::HealthCheckLayer) under this balancer).
    pub fn snapshot_with(&self, monitor: &HealthMonitor<D::Key>) -> BalancerSnapshot<D::Key>
    where
        D::Key: Hash + Eq,
    {
        let mut snapshot = self.snapshot();
        for backend in &mut snapshot.backends {
            backend.health = monitor.get(&backend.key);
        }
        snapshot
    }
}
