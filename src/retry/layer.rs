use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use tower::Layer;
use tower::retry::budget::Budget;

use super::policy::{IDEMPOTENT, Policy};
use super::{Retry, RetryBudget, RetryOn};

/// Builds [`Retry`] services; see the [module docs](super).
///
/// | setting | default |
/// |---|---|
/// | [`max_retries`](Self::max_retries) | 2 |
/// | [`retry_methods`](Self::retry_methods) | `GET`, `HEAD`, `OPTIONS`, `PUT`, `DELETE` |
/// | [`retry_non_idempotent`](Self::retry_non_idempotent) | `false` |
/// | [`retry_on`](Self::retry_on) | [`RetryOn::CONNECT_FAILURE`] |
/// | [`buffer`](Self::buffer) | 64 KiB |
/// | [`budget`](Self::budget) | [`RetryLayer::default_budget`]: 20 % of requests over 10 s, plus 10 a second |
///
/// Clones of the layer, and every service it builds, share one budget.
#[derive(Clone)]
#[must_use]
pub struct RetryLayer {
    max_retries: usize,
    methods: Box<[Method]>,
    any_method: bool,
    retry_on: RetryOn,
    buffer: usize,
    budget: Arc<dyn Budget + Send + Sync>,
}

impl RetryLayer {
    /// The default [`max_retries`](Self::max_retries): 2.
    pub const DEFAULT_MAX_RETRIES: usize = 2;

    /// The default [`buffer`](Self::buffer): 64 KiB.
    pub const DEFAULT_BUFFER: usize = 64 * 1024;

    /// The defaults in the table above.
    pub fn new() -> Self {
        Self {
            max_retries: Self::DEFAULT_MAX_RETRIES,
            methods: IDEMPOTENT.into(),
            any_method: false,
            retry_on: RetryOn::CONNECT_FAILURE,
            buffer: Self::DEFAULT_BUFFER,
            budget: Arc::new(Self::default_budget()),
        }
    }

    /// The default budget, [`RetryBudget::new`]`(10 s, 10, 0.2)`: every request deposits,
    /// every retry withdraws, and retries may add 20 % to the requests of the last 10
    /// seconds, plus 10 a second so a quiet balancer can retry at all.
    pub fn default_budget() -> RetryBudget {
        RetryBudget::new(Duration::from_secs(10), 10, 0.2)
    }

    /// At most this many more attempts per request, each on a backend not tried yet; `0`
    /// disables retries.
    pub fn max_retries(mut self, max: usize) -> Self {
        self.max_retries = max;
        self
    }

    /// The methods that may be retried, replacing the default idempotent ones.
    pub fn retry_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// Whether requests of any method (`POST`, `PATCH`...) may be retried too, on the same
    /// conditions as the others. Off by default: a backend that closed the connection may have
    /// acted on the request before it did.
    pub fn retry_non_idempotent(mut self, enabled: bool) -> Self {
        self.any_method = enabled;
        self
    }

    /// What is retried: connect failures, and which response statuses ([`RetryOn`], like
    /// HAProxy's `retry-on`); connect failures only by default.
    pub fn retry_on(mut self, on: RetryOn) -> Self {
        self.retry_on = on;
        self
    }

    /// Request bodies of at most this many bytes (by their announced length, such as a
    /// `Content-Length`) are read whole before the first attempt and sent again on a retry,
    /// as Envoy's retry buffer does; larger bodies, and bodies of unknown length (chunked),
    /// are streamed and not retried. `0` retries only requests without a body.
    pub fn buffer(mut self, bytes: usize) -> Self {
        self.buffer = bytes;
        self
    }

    /// The budget retries draw from: [`Budget::deposit`] on every request,
    /// [`Budget::withdraw`] before every retry; no retry when it is empty.
    pub fn budget(mut self, budget: impl Budget + Send + Sync + 'static) -> Self {
        self.budget = Arc::new(budget);
        self
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_policy(
            inner,
            Arc::new(Policy {
                max_retries: self.max_retries,
                methods: self.methods.clone(),
                any_method: self.any_method,
                retry_on: self.retry_on,
                buffer: self.buffer,
                budget: Arc::clone(&self.budget),
                counters: Arc::default(),
            }),
        )
    }
}

impl fmt::Debug for RetryLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("max_retries", &self.max_retries)
            .field("methods", &self.methods)
            .field("retry_non_idempotent", &self.any_method)
            .field("retry_on", &self.retry_on)
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}
