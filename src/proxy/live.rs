//! The settings of a [`ProxyClient`](super::ProxyClient) that change while it runs: the
//! connect timeout, the response timeout and the per-backend cap.
//!
//! Each is one atomic word that every clone of the client (and every
//! [`HttpBackend`](super::HttpBackend) and pool host made from it) shares, read once where it
//! is used: the response timeout when a request is sent, the cap when a backend is polled
//! for readiness, the connect timeout when a connection is opened. A request keeps what it
//! read, so a change applies to the requests (and connections) that start after it, and
//! never to one in flight. No lock and no reference count on the request path: a relaxed
//! load, as cheap as reading the plain field it replaces. (An `ArcSwap` of the three would
//! give a consistent snapshot of all of them, which nothing needs, for a dearer load.)
//!
//! It also knows the backends' [`Limit`]s (a list locked only when a backend is made and when
//! the cap changes), so that a new cap wakes the callers waiting at the old one at once.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::limit::Limit;

/// What the clones of one client share; see the [module docs](self).
pub(crate) struct Live {
    connect_timeout: AtomicTimeout,
    response_timeout: AtomicTimeout,
    /// `0` for no cap.
    max_conns_per_backend: AtomicUsize,
    /// The counts under the cap of the backends made with the client, woken when it changes.
    limits: Mutex<Vec<Weak<Limit>>>,
}

impl Live {
    pub(crate) fn new(
        connect_timeout: Option<Duration>,
        response_timeout: Option<Duration>,
        max_conns_per_backend: Option<usize>,
    ) -> Self {
        Self {
            connect_timeout: AtomicTimeout::new(connect_timeout),
            response_timeout: AtomicTimeout::new(response_timeout),
            max_conns_per_backend: AtomicUsize::new(max_conns_per_backend.unwrap_or(0)),
            limits: Mutex::default(),
        }
    }

    /// A new backend's count under the cap, to wake when the cap changes.
    pub(crate) fn track(&self, limit: &Arc<Limit>) {
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        limits.retain(|limit| limit.strong_count() > 0);
        limits.push(Arc::downgrade(limit));
    }

    #[inline]
    pub(crate) fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout.get()
    }

    #[inline]
    pub(crate) fn response_timeout(&self) -> Option<Duration> {
        self.response_timeout.get()
    }

    /// The cap; `None` for none.
    #[inline]
    pub(crate) fn max_conns_per_backend(&self) -> Option<usize> {
        match self.max_conns_per_backend.load(Ordering::Relaxed) {
            0 => None,
            max => Some(max),
        }
    }

    pub(crate) fn set_connect_timeout(&self, timeout: Option<Duration>) {
        self.connect_timeout.set(timeout);
    }

    pub(crate) fn set_response_timeout(&self, timeout: Option<Duration>) {
        self.response_timeout.set(timeout);
    }

    /// `None` or `Some(0)` for no cap. Callers waiting at the old cap are woken to meet the
    /// new one.
    pub(crate) fn set_max_conns_per_backend(&self, max: Option<usize>) {
        self.max_conns_per_backend
            .store(max.unwrap_or(0), Ordering::Relaxed);
        let limits: Vec<Arc<Limit>> = {
            let limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
            limits.iter().filter_map(Weak::upgrade).collect()
        };
        for limit in limits {
            limit.wake_waiters();
        }
    }
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live")
            .field("connect_timeout", &self.connect_timeout())
            .field("response_timeout", &self.response_timeout())
            .field("max_conns_per_backend", &self.max_conns_per_backend())
            .finish()
    }
}

/// An `Option<Duration>` in one atomic word: nanoseconds, [`NONE`] for `None`. A timeout of
/// more than 584 years is stored as that much, less a nanosecond.
struct AtomicTimeout(AtomicU64);

/// The word for no timeout.
const NONE: u64 = u64::MAX;

impl AtomicTimeout {
    fn new(timeout: Option<Duration>) -> Self {
        Self(AtomicU64::new(Self::word(timeout)))
    }

    fn word(timeout: Option<Duration>) -> u64 {
        timeout.map_or(NONE, |timeout| {
            u64::try_from(timeout.as_nanos()).map_or(NONE - 1, |nanos| nanos.min(NONE - 1))
        })
    }

    #[inline]
    fn get(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            NONE => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    fn set(&self, timeout: Option<Duration>) {
        self.0.store(Self::word(timeout), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_setting_reads_back_what_was_set_last() {
        let live = Live::new(Some(Duration::from_secs(1)), None, Some(4));
        assert_eq!(live.connect_timeout(), Some(Duration::from_secs(1)));
        assert_eq!(live.response_timeout(), None);
        assert_eq!(live.max_conns_per_backend(), Some(4));

        live.set_connect_timeout(None);
        live.set_response_timeout(Some(Duration::from_millis(1500)));
        live.set_max_conns_per_backend(None);
        assert_eq!(live.connect_timeout(), None);
        assert_eq!(live.response_timeout(), Some(Duration::from_millis(1500)));
        assert_eq!(live.max_conns_per_backend(), None);

        live.set_max_conns_per_backend(Some(0));
        assert_eq!(live.max_conns_per_backend(), None, "0 is no cap");
        live.set_response_timeout(Some(Duration::ZERO));
        assert_eq!(live.response_timeout(), Some(Duration::ZERO));
        live.set_response_timeout(Some(Duration::MAX));
        assert_eq!(
            live.response_timeout(),
            Some(Duration::from_nanos(u64::MAX - 1)),
            "a timeout beyond the word is the longest it holds, not none"
        );
    }
}
