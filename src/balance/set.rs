//! The backend set: the snapshot requests read, and the task that keeps it current.

use std::collections::HashMap;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tower::discover::{Change, Discover};

use super::endpoint::{Endpoint, Stats};
use crate::BoxError;
use crate::algo::Pick;
use crate::wait_list::Changes;
use crate::weight::Weight;

/// One immutable view of the backends, swapped in whole on every change.
pub(crate) struct Set<K, S, T> {
    pub(crate) endpoints: Vec<Arc<Endpoint<K>>>,
    pub(crate) services: Vec<S>,
    pub(crate) table: T,
    /// Removed backends that still had requests in flight when they left.
    pub(crate) retired: Vec<Arc<Endpoint<K>>>,
    /// Counts the sets published; slots mean the same backends only within one generation.
    pub(crate) generation: u64,
}

/// What every clone of a balancer shares.
pub(crate) struct Shared<K, S, P: Pick<K>> {
    pub(crate) set: ArcSwap<Set<K, S, P::Table>>,
    pub(crate) picker: P,
    /// The generation of the set published last, and who waits for the next one.
    pub(crate) changes: Arc<Changes>,
    task: Option<AbortHandle>,
    /// Requests answered with `NoAvailableBackend` (see `Balance::no_backend`).
    pub(crate) no_backend: AtomicU64,
    /// Discovery changes applied to the published sets: backends added, updated, removed.
    pub(crate) discovery_changes: AtomicU64,
    /// Whether requests fill their backend's response-time histograms (see
    /// `Balance::record_response_times`).
    pub(crate) response_times: AtomicBool,
}

impl<K, S, P: Pick<K>> Drop for Shared<K, S, P> {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Told when a request starts or finishes, or a response arrives, without naming `K` or `S`.
pub(crate) trait Observer: Send + Sync {
    fn load_changed(&self, stats: &Arc<Stats>);
    fn latency(&self, stats: &Stats, rtt: Duration, at: Instant);
    fn failure(&self, stats: &Stats, elapsed: Duration, at: Instant);
}

impl<K, S, P> Observer for Shared<K, S, P>
where
    K: Send + Sync + 'static,
    S: Send + Sync + 'static,
    P: Pick<K>,
{
    fn load_changed(&self, stats: &Arc<Stats>) {
        let set = self.set.load();
        let slot = stats.slot();
        if set
            .endpoints
            .get(slot)
            .is_some_and(|e| Arc::ptr_eq(e.stats_arc(), stats))
        {
            self.picker.load_changed(&set.table, &set.endpoints, slot);
        }
    }

    fn latency(&self, stats: &Stats, rtt: Duration, at: Instant) {
        self.picker.observe_latency(stats, rtt, at);
    }

    fn failure(&self, stats: &Stats, elapsed: Duration, at: Instant) {
        self.picker.observe_failure(stats, elapsed, at);
    }
}

/// The discovery task's own list of backends, in insertion order.
pub(crate) struct Members<K, S> {
    list: Vec<(Arc<Endpoint<K>>, S)>,
    index: HashMap<K, usize>,
    retired: Vec<Arc<Endpoint<K>>>,
    /// Changes applied so far (a removal of an unknown key is none).
    applied: u64,
}

impl<K, S> Members<K, S>
where
    K: Hash + Eq + Clone + Weight,
    S: Clone,
{
    fn new() -> Self {
        Self {
            list: Vec::new(),
            index: HashMap::new(),
            retired: Vec::new(),
            applied: 0,
        }
    }

    fn apply(&mut self, change: Change<K, S>) {
        self.applied += 1;
        match change {
            Change::Insert(key, service) => {
                if let Some(&i) = self.index.get(&key) {
                    let (endpoint, old) = &mut self.list[i];
                    endpoint.stats().set_weight(key.weight());
                    *old = service;
                    tracing::debug!(slot = i, weight = key.weight(), "backend updated");
                } else {
                    let weight = key.weight();
                    self.index.insert(key.clone(), self.list.len());
                    self.list
                        .push((Arc::new(Endpoint::new(key, weight)), service));
                    tracing::debug!(slot = self.list.len() - 1, weight, "backend added");
                }
            }
            Change::Remove(key) => {
                let Some(i) = self.index.remove(&key) else {
                    self.applied -= 1;
                    return;
                };
                let (endpoint, _) = self.list.remove(i);
                endpoint.stats().mark_removed();
                for (j, (e, _)) in self.list.iter().enumerate().skip(i) {
                    self.index.insert(e.key().clone(), j);
                }
                if endpoint.in_flight() > 0 {
                    self.retired.push(endpoint);
                }
                tracing::debug!(slot = i, "backend removed");
            }
        }
    }

    fn snapshot<P: Pick<K>>(&mut self, picker: &P, generation: u64) -> Set<K, S, P::Table> {
        self.retired.retain(|e| e.in_flight() > 0);
        let endpoints: Vec<_> = self.list.iter().map(|(e, _)| Arc::clone(e)).collect();
        for (slot, e) in endpoints.iter().enumerate() {
            e.stats().set_slot(slot);
        }
        Set {
            table: picker.build(&endpoints),
            services: self.list.iter().map(|(_, s)| s.clone()).collect(),
            endpoints,
            retired: self.retired.clone(),
            generation,
        }
    }
}

/// Applies every change `discover` has ready now, without waiting; `false` once it has ended.
fn drain<D>(discover: &mut Pin<Box<D>>, members: &mut Members<D::Key, D::Service>) -> (bool, bool)
where
    D: Discover,
    D::Key: Hash + Eq + Clone + Weight,
    D::Service: Clone,
    D::Error: Into<BoxError>,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut changed = false;
    loop {
        match discover.as_mut().poll_discover(&mut cx) {
            Poll::Ready(Some(Ok(change))) => {
                members.apply(change);
                changed = true;
            }
            Poll::Ready(Some(Err(error))) => {
                let error: BoxError = error.into();
                tracing::warn!(%error, "service discovery error");
            }
            Poll::Ready(None) => return (changed, false),
            Poll::Pending => return (changed, true),
        }
    }
}

/// Builds the shared state from `discover`'s ready changes and starts the task that follows it.
pub(crate) fn spawn<D, P>(discover: D, picker: P) -> Arc<Shared<D::Key, D::Service, P>>
where
    D: Discover + Send + 'static,
    D::Key: Hash + Eq + Clone + Weight + Send + Sync + 'static,
    D::Service: Clone + Send + Sync + 'static,
    D::Error: Into<BoxError>,
    P: Pick<D::Key>,
{
    let mut discover = Box::pin(discover);
    let mut members = Members::new();
    let (_, open) = drain(&mut discover, &mut members);
    let set = members.snapshot(&picker, 0);
    let applied = members.applied;
    Arc::new_cyclic(|weak: &Weak<Shared<D::Key, D::Service, P>>| {
        let task =
            open.then(|| tokio::spawn(follow(discover, members, weak.clone())).abort_handle());
        Shared {
            set: ArcSwap::from_pointee(set),
            picker,
            changes: Arc::default(),
            task,
            no_backend: AtomicU64::new(0),
            discovery_changes: AtomicU64::new(applied),
            response_times: AtomicBool::new(false),
        }
    })
}

async fn follow<D, P>(
    mut discover: Pin<Box<D>>,
    mut members: Members<D::Key, D::Service>,
    shared: Weak<Shared<D::Key, D::Service, P>>,
) where
    D: Discover,
    D::Key: Hash + Eq + Clone + Weight,
    D::Service: Clone,
    D::Error: Into<BoxError>,
    P: Pick<D::Key>,
{
    let mut generation = 0;
    loop {
        // Wait for one change, then take all that are ready so a burst costs one rebuild.
        let first = std::future::poll_fn(|cx| discover.as_mut().poll_discover(cx)).await;
        let mut open = true;
        match first {
            Some(Ok(change)) => members.apply(change),
            Some(Err(error)) => {
                let error: BoxError = error.into();
                tracing::warn!(%error, "service discovery error");
                continue;
            }
            None => open = false,
        }
        if open {
            open = drain(&mut discover, &mut members).1;
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        generation += 1;
        shared
            .set
            .store(Arc::new(members.snapshot(&shared.picker, generation)));
        shared.discovery_changes.store(members.applied, Relaxed);
        shared.changes.publish(generation);
        if !open {
            tracing::debug!("service discovery ended; keeping the last set");
            return;
        }
    }
}
