use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use pin_project_lite::pin_project;
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;
use tower::discover::{Change, Discover};

use super::error::ProbeTimedOut;
use super::layer::Config;
use super::monitor::{Backends, Entry};
use super::probe::Probe;
use super::service::HealthCheck;
use super::state::{BackendHealth, Health};
use crate::BoxError;

pin_project! {
    /// A discovery stream whose services are health-checked; built by
    /// [`HealthCheckLayer`](super::HealthCheckLayer). See the [module docs](super).
    ///
    /// Every inserted backend gets a probe task, stopped when the backend is removed or this
    /// stream is dropped. When the inner stream ends, this one stays open (so the checks go on
    /// for as long as the balancer holds it) unless it has no backend left.
    ///
    /// # Panics
    ///
    /// Polling it outside a tokio runtime panics when a backend is inserted.
    pub struct HealthCheckDiscover<D, P>
    where
        D: Discover,
        D::Key: Hash,
        D::Key: Eq,
    {
        #[pin]
        inner: D,
        inner_ended: bool,
        probe: P,
        config: Config,
        members: Members<D::Key>,
    }
}

impl<D, P> HealthCheckDiscover<D, P>
where
    D: Discover,
    D::Key: Hash + Eq,
{
    pub(crate) fn new(inner: D, probe: P, config: Config, backends: Arc<Backends<D::Key>>) -> Self {
        Self {
            inner,
            inner_ended: false,
            probe,
            config,
            members: Members {
                backends,
                own: HashSet::new(),
            },
        }
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &D {
        &self.inner
    }
}

impl<D, P> Stream for HealthCheckDiscover<D, P>
where
    D: Discover,
    D::Key: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    P: Probe<D::Key>,
{
    type Item = Result<Change<D::Key, HealthCheck<D::Service>>, D::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        if *this.inner_ended {
            return Poll::Pending;
        }
        let change = match std::task::ready!(this.inner.poll_discover(cx)) {
            Some(Ok(change)) => change,
            Some(Err(error)) => return Poll::Ready(Some(Err(error))),
            None if this.members.own.is_empty() => return Poll::Ready(None),
            None => {
                // Ending would make the balancer drop us, and the checks with us.
                *this.inner_ended = true;
                return Poll::Pending;
            }
        };
        Poll::Ready(Some(Ok(match change {
            Change::Insert(key, service) => {
                let health = this.members.insert(&key, this.probe, *this.config);
                Change::Insert(key, HealthCheck::new(service, health))
            }
            Change::Remove(key) => {
                this.members.remove(&key);
                Change::Remove(key)
            }
        })))
    }
}

impl<D, P> fmt::Debug for HealthCheckDiscover<D, P>
where
    D: Discover + fmt::Debug,
    D::Key: Hash + Eq,
    P: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthCheckDiscover")
            .field("inner", &self.inner)
            .field("probe", &self.probe)
            .field("backends", &self.members.own.len())
            .finish()
    }
}

/// The backends one stream has inserted; it releases them when dropped.
struct Members<K: Hash + Eq> {
    backends: Arc<Backends<K>>,
    own: HashSet<K>,
}

impl<K> Members<K>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    /// The shared health of `key`, creating it and its probe task if no stream checks it yet.
    fn insert<P: Probe<K>>(&mut self, key: &K, probe: &P, config: Config) -> Arc<BackendHealth> {
        let first = self.own.insert(key.clone());
        let mut map = self.backends.lock();
        match map.entry(key.clone()) {
            MapEntry::Occupied(mut slot) => {
                let entry = slot.get_mut();
                // A weight update (already ours) or another stream's backend: one task for all.
                entry.owners += usize::from(first);
                entry.key = key.clone();
                Arc::clone(&entry.health)
            }
            MapEntry::Vacant(slot) => {
                let health = Arc::new(BackendHealth::join(
                    config.initial,
                    config.policy,
                    Arc::clone(&self.backends.pool),
                    &format!("{key:?}"),
                ));
                let trigger = Arc::new(Notify::new());
                let task = tokio::spawn(watch(
                    key.clone(),
                    Arc::clone(&health),
                    Arc::clone(&trigger),
                    probe.clone(),
                    config,
                ))
                .abort_handle();
                tracing::debug!(backend = ?key, "health checks started");
                slot.insert(Entry {
                    key: key.clone(),
                    health: Arc::clone(&health),
                    trigger,
                    task,
                    owners: 1,
                });
                health
            }
        }
    }
}

impl<K: Hash + Eq + fmt::Debug> Members<K> {
    fn remove(&mut self, key: &K) {
        if self.own.remove(key) && release(&mut self.backends.lock(), key) {
            tracing::debug!(backend = ?key, "health checks stopped");
        }
    }
}

/// Drops one stream's hold on `key`; the last one stops its checks (and `true` is returned).
fn release<K: Hash + Eq>(map: &mut HashMap<K, Entry<K>>, key: &K) -> bool {
    let Some(entry) = map.get_mut(key) else {
        return false;
    };
    entry.owners -= 1;
    if entry.owners > 0 {
        return false;
    }
    if let Some(entry) = map.remove(key) {
        entry.task.abort();
        entry.health.leave();
    }
    true
}

impl<K: Hash + Eq> Drop for Members<K> {
    fn drop(&mut self) {
        let mut map = self.backends.lock();
        for key in self.own.drain() {
            release(&mut map, &key);
        }
    }
}

/// One backend's probe task: checks every `interval` (the first at once, or when asked
/// through `trigger`), under `timeout`, and applies the thresholds.
async fn watch<K, P>(
    key: K,
    health: Arc<BackendHealth>,
    trigger: Arc<Notify>,
    probe: P,
    config: Config,
) where
    K: fmt::Debug + Send + Sync + 'static,
    P: Probe<K>,
{
    let mut interval = tokio::time::interval(config.interval);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = trigger.notified() => interval.reset(),
        }
        let result = match tokio::time::timeout(config.timeout, probe.probe(&key)).await {
            Ok(result) => result,
            Err(_) => Err(BoxError::from(ProbeTimedOut::new())),
        };
        let changed = health.record(&result, config.rise, config.fall);
        health.end_ramp_if_due();
        match (&result, changed) {
            (Err(error), Some(Health::Unhealthy)) => {
                tracing::warn!(backend = ?key, %error, "backend is down");
            }
            (Ok(()), Some(Health::Healthy)) => {
                tracing::info!(backend = ?key, "backend is up");
            }
            (Err(error), _) => {
                tracing::debug!(backend = ?key, %error, "health check failed");
            }
            (Ok(()), _) => {
                tracing::trace!(backend = ?key, "health check passed");
            }
        }
    }
}
