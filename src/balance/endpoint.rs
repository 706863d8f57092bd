use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::algo::least_time::Rtt;

/// One backend as a balancer sees it: its discovery key and its live counters.
///
/// The counters belong to the backend, not to a position in the set: they survive other
/// backends coming and going and weight updates of this one.
pub struct Endpoint<K> {
    key: K,
    stats: Arc<Stats>,
}

impl<K> Endpoint<K> {
    pub(crate) fn new(key: K, weight: u32) -> Self {
        Self {
            key,
            stats: Arc::new(Stats::new(weight)),
        }
    }

    /// The backend's discovery key.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The backend's live counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub(crate) fn stats_arc(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The backend's weight, at least 1.
    #[inline]
    pub fn weight(&self) -> u32 {
        self.stats.weight()
    }

    /// Requests sent to this backend whose response body has not ended yet.
    #[inline]
    pub fn in_flight(&self) -> usize {
        self.stats.in_flight()
    }
}

impl<K: fmt::Debug> fmt::Debug for Endpoint<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("key", &self.key)
            .field("stats", &self.stats)
            .finish()
    }
}

/// Live counters of one backend; see [`Endpoint::stats`].
pub struct Stats {
    weight: AtomicU32,
    in_flight: AtomicUsize,
    served: AtomicU64,
    failures: AtomicU64,
    removed: AtomicBool,
    /// Position in the current set, `usize::MAX` once removed. Lets a finishing request tell
    /// the picker which slot's load changed without a lookup.
    slot: AtomicUsize,
    pub(crate) rtt: Rtt,
}

impl Stats {
    fn new(weight: u32) -> Self {
        Self {
            weight: AtomicU32::new(weight.max(1)),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            slot: AtomicUsize::new(usize::MAX),
            rtt: Rtt::new(),
        }
    }

    /// The weight, at least 1.
    #[inline]
    pub fn weight(&self) -> u32 {
        self.weight.load(Relaxed)
    }

    /// Requests in flight: sent, and whose response body has not ended.
    #[inline]
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    /// Requests that got a response from this backend.
    pub fn served(&self) -> u64 {
        self.served.load(Relaxed)
    }

    /// Requests that failed with an error from this backend's service.
    pub fn failures(&self) -> u64 {
        self.failures.load(Relaxed)
    }

    /// Whether the backend has left the set (it may still finish requests in flight).
    pub fn is_removed(&self) -> bool {
        self.removed.load(Relaxed)
    }

    /// The Peak-EWMA response-time estimate in nanoseconds, decayed to now; `None` before the
    /// first response.
    pub fn rtt_estimate_ns(&self) -> Option<f64> {
        self.rtt.estimate_ns()
    }

    pub(crate) fn set_weight(&self, weight: u32) {
        self.weight.store(weight.max(1), Relaxed);
    }

    pub(crate) fn set_slot(&self, slot: usize) {
        self.slot.store(slot, Relaxed);
    }

    pub(crate) fn slot(&self) -> usize {
        self.slot.load(Relaxed)
    }

    pub(crate) fn mark_removed(&self) {
        self.removed.store(true, Relaxed);
        self.slot.store(usize::MAX, Relaxed);
    }

    #[inline]
    pub(crate) fn start(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    #[inline]
    pub(crate) fn finish(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }

    #[inline]
    pub(crate) fn record_served(&self) {
        self.served.fetch_add(1, Relaxed);
    }

    #[inline]
    pub(crate) fn record_failure(&self) {
        self.failures.fetch_add(1, Relaxed);
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stats")
            .field("weight", &self.weight())
            .field("in_flight", &self.in_flight())
            .field("served", &self.served())
            .field("failures", &self.failures())
            .field("removed", &self.is_removed())
            .finish()
    }
}
