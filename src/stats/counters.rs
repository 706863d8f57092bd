//! Live counters of the layers around the balancer: the queue and the server's connections.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The live counters of a queue in front of the balancer (HAProxy's `timeout queue`).
///
/// The queue holds one in an `Arc`: [`enqueue`](Self::enqueue) when a request starts waiting
/// for a backend (the guard it returns counts it as waiting until dropped), and
/// [`Queued::timed_out`] when one gives up; each is one relaxed atomic add. A request that
/// finds a backend at once never touches them.
#[derive(Default)]
pub struct QueueCounters {
    waiting: AtomicU64,
    queued: AtomicU64,
    timeouts: AtomicU64,
}

impl QueueCounters {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            waiting: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        }
    }

    /// A request starts waiting: one more queued, and waiting until the guard is dropped
    /// (when it gets a backend, times out, or its caller goes away).
    pub fn enqueue(self: &Arc<Self>) -> Queued {
        self.queued.fetch_add(1, Relaxed);
        self.waiting.fetch_add(1, Relaxed);
        Queued {
            counters: Arc::clone(self),
        }
    }

    /// A waiting request reached the queue timeout without a backend; see
    /// [`Queued::timed_out`].
    fn timed_out(&self) {
        self.timeouts.fetch_add(1, Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> QueueSnapshot {
        QueueSnapshot {
            waiting: self.waiting.load(Relaxed),
            queued: self.queued.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
        }
    }
}

impl fmt::Debug for QueueCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.snapshot(), f)
    }
}

/// One request waiting in a queue; see [`QueueCounters::enqueue`].
#[must_use = "the request counts as waiting only while this lives"]
pub struct Queued {
    counters: Arc<QueueCounters>,
}

impl Queued {
    /// The request reached the queue timeout without a backend: one more timeout, and it no
    /// longer waits.
    pub fn timed_out(self) {
        self.counters.timed_out();
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.counters.waiting.fetch_sub(1, Relaxed);
    }
}

impl fmt::Debug for Queued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queued").finish_non_exhaustive()
    }
}

/// A queue's numbers at one moment, from [`QueueCounters::snapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct QueueSnapshot {
    /// Requests waiting for a backend now (a gauge). HAProxy's `qcur`, Envoy's
    /// `upstream_rq_pending_active`.
    pub waiting: u64,
    /// Requests that had to wait, in all. Envoy's `upstream_rq_pending_total`.
    pub queued: u64,
    /// Requests that waited the whole queue timeout and were answered `503`. HAProxy logs
    /// them with the termination state `sQ`.
    pub timeouts: u64,
}

/// The live counters of a [`Retry`](crate::Retry) and its clones.
///
/// The retry policy bumps one relaxed atomic per retry sent, or per retry the budget refused;
/// a request that is not retried never touches them.
#[derive(Default)]
pub struct RetryCounters {
    retries: AtomicU64,
    budget_exhausted: AtomicU64,
}

impl RetryCounters {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            retries: AtomicU64::new(0),
            budget_exhausted: AtomicU64::new(0),
        }
    }

    /// A retry was sent.
    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    /// A retry was not sent: the budget was empty.
    pub(crate) fn budget_exhausted(&self) {
        self.budget_exhausted.fetch_add(1, Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> RetrySnapshot {
        RetrySnapshot {
            retries: self.retries.load(Relaxed),
            budget_exhausted: self.budget_exhausted.load(Relaxed),
        }
    }
}

impl fmt::Debug for RetryCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.snapshot(), f)
    }
}

/// A retry layer's numbers at one moment, from [`RetryCounters::snapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RetrySnapshot {
    /// Retries sent, in all. HAProxy's backend `wretr` + `wredis`, Envoy's
    /// `upstream_rq_retry`.
    pub retries: u64,
    /// Retries not sent because the retry budget was empty. Envoy's
    /// `upstream_rq_retry_overflow`.
    pub budget_exhausted: u64,
}

/// The live counters of a server's client connections.
///
/// The accept loop calls [`open`](Self::open) for each accepted connection and keeps the guard
/// with the connection until it closes: two relaxed atomic adds per connection, none per
/// request. Workers of one server share one `Arc`.
#[derive(Default)]
pub struct ConnectionCounters {
    open: AtomicU64,
    accepted: AtomicU64,
}

impl ConnectionCounters {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            open: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        }
    }

    /// A connection was accepted: one more accepted, and open until the guard is dropped.
    pub fn open(self: &Arc<Self>) -> OpenConnection {
        self.accepted.fetch_add(1, Relaxed);
        self.open.fetch_add(1, Relaxed);
        OpenConnection {
            counters: Arc::clone(self),
        }
    }

    /// The counts now.
    pub fn snapshot(&self) -> ConnectionsSnapshot {
        ConnectionsSnapshot {
            open: self.open.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
        }
    }
}

impl fmt::Debug for ConnectionCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.snapshot(), f)
    }
}

/// One open client connection; see [`ConnectionCounters::open`].
#[must_use = "the connection counts as open only while this lives"]
pub struct OpenConnection {
    counters: Arc<ConnectionCounters>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.counters.open.fetch_sub(1, Relaxed);
    }
}

impl fmt::Debug for OpenConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenConnection").finish_non_exhaustive()
    }
}

/// A server's connection numbers at one moment, from [`ConnectionCounters::snapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ConnectionsSnapshot {
    /// Client connections open now (a gauge). HAProxy's frontend `scur`, Envoy's
    /// `downstream_cx_active`.
    pub open: u64,
    /// Client connections accepted, in all. HAProxy's frontend `conn_tot`, Envoy's
    /// `downstream_cx_total`.
    pub accepted: u64,
}
