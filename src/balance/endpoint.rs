use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};

use std::time::Duration;

use http::StatusCode;

use crate::algo::least_time::Rtt;
use crate::stats::{HistogramSnapshot, LatencyHistogram, Responses};

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
///
/// Each is one relaxed atomic, bumped on the request path; read them together as a
/// [`BackendSnapshot`](crate::stats::BackendSnapshot) (see the [`stats`](crate::stats) module
/// for what each number means).
// `repr(C)`, hot fields first: what the pickers read for every request (weight, in flight,
// slot, RTT) sits together at the start, ahead of the counters only written once per response,
// and the two histograms (about 250 bytes each) come last.
#[repr(C)]
pub struct Stats {
    weight: AtomicU32,
    removed: AtomicBool,
    in_flight: AtomicUsize,
    /// Position in the current set, `usize::MAX` once removed. Lets a finishing request tell
    /// the picker which slot's load changed without a lookup.
    slot: AtomicUsize,
    pub(crate) rtt: Rtt,
    /// Responses by status class: `1xx` to `5xx`, then any other code (`600` to `999`).
    responses: [AtomicU64; CLASSES],
    /// Errors from the backend's service: no response head.
    failures: AtomicU64,
    /// Response bodies that failed after the head.
    body_errors: AtomicU64,
    /// Requests sent here that had been sent to another backend before.
    retries: AtomicU64,
    /// Time from sending the request to the response head.
    response_time: LatencyHistogram,
    /// Time from sending the request to the end of the response body.
    total_time: LatencyHistogram,
}

impl Stats {
    fn new(weight: u32) -> Self {
        Self {
            weight: AtomicU32::new(weight.max(1)),
            in_flight: AtomicUsize::new(0),
            responses: Default::default(),
            failures: AtomicU64::new(0),
            body_errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            slot: AtomicUsize::new(usize::MAX),
            rtt: Rtt::new(),
            response_time: LatencyHistogram::new(),
            total_time: LatencyHistogram::new(),
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

    /// Requests that got a response from this backend, whatever its status.
    pub fn served(&self) -> u64 {
        self.responses().total()
    }

    /// Responses from this backend by status class.
    pub fn responses(&self) -> Responses {
        let [
            informational,
            success,
            redirection,
            client_error,
            server_error,
            other,
        ] = self.responses.each_ref().map(|n| n.load(Relaxed));
        Responses {
            informational,
            success,
            redirection,
            client_error,
            server_error,
            other,
        }
    }

    /// Requests that failed with an error from this backend's service (connection refused,
    /// timed out, closed before a response head): transport failures.
    pub fn failures(&self) -> u64 {
        self.failures.load(Relaxed)
    }

    /// Responses whose body failed after the head arrived (the backend closed or reset the
    /// connection mid-body). Their head is counted in [`responses`](Self::responses) too.
    pub fn body_errors(&self) -> u64 {
        self.body_errors.load(Relaxed)
    }

    /// Requests sent to this backend that had been sent to another one before: retries, as
    /// recorded by a [`Tried`](super::Tried) in the request's extensions.
    pub fn retries(&self) -> u64 {
        self.retries.load(Relaxed)
    }

    /// Time from sending each request to its response head, for the requests that got one.
    pub fn response_time(&self) -> HistogramSnapshot {
        self.response_time.snapshot()
    }

    /// Time from sending each request to the end of its response body (its last frame, an
    /// error, or the body dropped unfinished), for the requests that got a response head.
    pub fn total_time(&self) -> HistogramSnapshot {
        self.total_time.snapshot()
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

    /// A response head arrived with `status`.
    #[inline]
    pub(crate) fn record_response(&self, status: StatusCode) {
        self.responses[class(status)].fetch_add(1, Relaxed);
    }

    /// A response head arrived `elapsed` after the request was sent.
    #[inline]
    pub(crate) fn record_response_time(&self, elapsed: Duration) {
        self.response_time.record(elapsed);
    }

    /// The response body of a request sent `elapsed` ago ended.
    #[inline]
    pub(crate) fn record_total(&self, elapsed: Duration) {
        self.total_time.record(elapsed);
    }

    /// A `200 OK` arrived, for tests that fill counters by hand.
    #[cfg(all(test, feature = "server"))]
    pub(crate) fn record_served(&self) {
        self.record_response(StatusCode::OK);
    }

    #[inline]
    pub(crate) fn record_failure(&self) {
        self.failures.fetch_add(1, Relaxed);
    }

    #[cold]
    pub(crate) fn record_body_error(&self) {
        self.body_errors.fetch_add(1, Relaxed);
    }

    #[inline]
    pub(crate) fn record_retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }
}

/// Status classes counted apart: `1xx` to `5xx` and the rest.
const CLASSES: usize = 6;

/// The index of `status`'s class in [`Stats::responses`]: `0` for `1xx` … `4` for `5xx`,
/// `5` for codes `600` and up.
#[inline]
fn class(status: StatusCode) -> usize {
    match status.as_u16() / 100 {
        n @ 1..=5 => usize::from(n) - 1,
        _ => CLASSES - 1,
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stats")
            .field("weight", &self.weight())
            .field("in_flight", &self.in_flight())
            .field("responses", &self.responses())
            .field("failures", &self.failures())
            .field("body_errors", &self.body_errors())
            .field("retries", &self.retries())
            .field("response_time", &self.response_time)
            .field("total_time", &self.total_time)
            .field("removed", &self.is_removed())
            .finish()
    }
}
