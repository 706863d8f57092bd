//! What is retried, and the budget that bounds retries: shared by a [`Retry`](super::Retry)
//! and its clones.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{Method, StatusCode};
use tower::retry::budget::Budget;

use super::RetryOn;

use crate::{BackendTimeout, BackendUnavailable, BoxError};

/// The methods retried by default: the idempotent ones of RFC 9110 §9.2.2 that a proxy sees.
pub(crate) const IDEMPOTENT: [Method; 5] = [
    Method::GET,
    Method::HEAD,
    Method::OPTIONS,
    Method::PUT,
    Method::DELETE,
];

/// The settings of a [`RetryLayer`](super::RetryLayer), and the counters of the services it
/// builds.
pub(crate) struct Policy {
    pub(crate) max_retries: usize,
    pub(crate) methods: Box<[Method]>,
    pub(crate) any_method: bool,
    pub(crate) retry_on: RetryOn,
    /// Bodies up to this many bytes are read whole and sent again on a retry.
    pub(crate) buffer: usize,
    pub(crate) budget: Arc<dyn Budget + Send + Sync>,
    pub(crate) retries: AtomicU64,
    pub(crate) budget_exhausted: AtomicU64,
}

impl Policy {
    /// Whether requests with `method` may be retried at all (their body must be empty too).
    #[inline]
    pub(crate) fn retries_method(&self, method: &Method) -> bool {
        self.any_method || self.methods.contains(method)
    }

    /// Whether another attempt may follow the failure `error`; takes a token from the budget
    /// if so.
    pub(crate) fn allow_retry(&self, error: &BoxError) -> bool {
        if !self.retry_on.connect_failure() || !is_retry_safe(error) {
            return false;
        }
        self.withdraw(error)
    }

    /// Whether another attempt may follow a response with `status`; takes a token from the
    /// budget if so.
    #[inline]
    pub(crate) fn allow_retry_status(&self, status: StatusCode) -> bool {
        self.retry_on.status(status) && self.withdraw(&status)
    }

    fn withdraw(&self, error: &dyn fmt::Display) -> bool {
        if !self.budget.withdraw() {
            self.budget_exhausted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%error, "retry budget exhausted: not retrying");
            return false;
        }
        self.retries.fetch_add(1, Ordering::Relaxed);
        true
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("max_retries", &self.max_retries)
            .field("methods", &self.methods)
            .field("any_method", &self.any_method)
            .field("retry_on", &self.retry_on)
            .field("buffer", &self.buffer)
            .field("retries", &self.retries.load(Ordering::Relaxed))
            .field(
                "budget_exhausted",
                &self.budget_exhausted.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

/// Whether `error` (or one of its sources) says the request never reached a backend's
/// application, so sending it elsewhere cannot make it happen twice.
///
/// | error | retry-safe |
/// |---|---|
/// | [`BackendUnavailable`]: connect refused or failed; connection reset or closed before any byte of the response head | yes |
/// | [`BackendTimeout`] of the connect ([`is_connect`](BackendTimeout::is_connect)) | yes |
/// | [`BackendTimeout`] waiting for the response head | no: the backend may have processed the request, and retrying a slow request doubles the load when the fleet is slowest |
/// | [`NoAvailableBackend`](crate::NoAvailableBackend) and anything else | no |
pub fn is_retry_safe(error: &BoxError) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(&**error);
    while let Some(e) = cur {
        if e.is::<BackendUnavailable>() {
            return true;
        }
        if let Some(timeout) = e.downcast_ref::<BackendTimeout>() {
            return timeout.is_connect();
        }
        cur = e.source();
    }
    false
}
