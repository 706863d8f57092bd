//! The backends under health checks, and the handle that lists and steers them.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::pool::Pool;
use super::state::{BackendHealth, Health, HealthSnapshot};
use crate::wait_list::Changed as Checked;

/// One checked backend.
pub(crate) struct Entry<K> {
    /// The key as last inserted (a weight update replaces it).
    pub(crate) key: K,
    pub(crate) health: Arc<BackendHealth>,
    /// Asks the probe task to check at once.
    pub(crate) trigger: Arc<Notify>,
    pub(crate) task: AbortHandle,
    /// How many discovery streams hold this backend; its task stops when none does.
    pub(crate) owners: usize,
}

/// Every backend the streams of one [`HealthCheckLayer`](super::HealthCheckLayer) check.
pub(crate) struct Backends<K> {
    map: Mutex<HashMap<K, Entry<K>>>,
    /// Their counts, for ejection limits and slow start.
    pub(crate) pool: Arc<Pool>,
}

impl<K> Backends<K> {
    pub(crate) fn new() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            pool: Arc::new(Pool::new()),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<K, Entry<K>>> {
        // Every write leaves the map consistent, so a poisoned lock is still usable.
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Lists the health of every checked backend, and lets an operator probe or override one.
///
/// Get one from [`HealthCheckLayer::monitor`](super::HealthCheckLayer::monitor). It sees the
/// backends of every stream the layer (or a clone of it) built, from the moment they are
/// inserted until they are removed. Lookups take any borrowed form of the key, so with
/// [`Weighted<BackendAddr>`](crate::Weighted) keys you can look up by
/// [`BackendAddr`](crate::BackendAddr).
pub struct HealthMonitor<K> {
    backends: Arc<Backends<K>>,
}

impl<K> HealthMonitor<K> {
    pub(crate) fn new(backends: Arc<Backends<K>>) -> Self {
        Self { backends }
    }

    /// Resolves once a health check of any of the backends has finished after this call
    /// (whatever its result): a caller waiting for a check, such as the admin API after a
    /// registration, waits on it rather than polling.
    pub fn checked(&self) -> Checked {
        self.backends.pool.checks.next()
    }
}

impl<K: Hash + Eq + Clone> HealthMonitor<K> {
    /// Every checked backend with its health, in no particular order.
    pub fn backends(&self) -> Vec<(K, HealthSnapshot)> {
        self.backends
            .lock()
            .values()
            .map(|entry| (entry.key.clone(), entry.health.snapshot()))
            .collect()
    }

    /// The health of one backend, `None` if it is not checked.
    pub fn get<Q>(&self, key: &Q) -> Option<HealthSnapshot>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.backends.lock().get(key).map(|e| e.health.snapshot())
    }

    /// The shared health state of one backend, `None` if it is not checked.
    pub fn health<Q>(&self, key: &Q) -> Option<Arc<BackendHealth>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.backends.lock().get(key).map(|e| Arc::clone(&e.health))
    }

    /// Checks a backend now instead of at its next interval; `false` if it is not checked.
    ///
    /// The check runs on the backend's probe task (right after the one in progress, if any),
    /// and the next regular check follows one interval after it.
    pub fn probe_now<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.backends.lock().get(key) {
            Some(entry) => {
                entry.trigger.notify_one();
                true
            }
            None => false,
        }
    }

    /// Sets a backend's status by hand; returns its previous status, `None` if it is not
    /// checked.
    ///
    /// Checks go on: the backend changes status again after `rise` passes or `fall` failures
    /// in a row, counted from now (see [`BackendHealth::set_health`]).
    pub fn set_health<Q>(&self, key: &Q, health: Health) -> Option<Health>
    where
        K: Borrow<Q> + fmt::Debug,
        Q: Hash + Eq + ?Sized,
    {
        let map = self.backends.lock();
        let entry = map.get(key)?;
        let previous = entry.health.set_health(health);
        if previous != health {
            tracing::info!(backend = ?entry.key, status = %health, "backend status set by hand");
        }
        Some(previous)
    }

    /// Ends a backend's ejection now; `None` if it is not checked, `Some(false)` if it was not
    /// ejected (see [`BackendHealth::end_ejection`]).
    pub fn end_ejection<Q>(&self, key: &Q) -> Option<bool>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let health = self.health(key)?;
        Some(health.end_ejection())
    }

    /// The number of checked backends.
    pub fn len(&self) -> usize {
        self.backends.lock().len()
    }

    /// Whether no backend is checked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K> Clone for HealthMonitor<K> {
    fn clone(&self) -> Self {
        Self {
            backends: Arc::clone(&self.backends),
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for HealthMonitor<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map = self.backends.lock();
        f.debug_map()
            .entries(map.values().map(|e| (&e.key, e.health.health())))
            .finish()
    }
}
