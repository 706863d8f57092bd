use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use tower::Service;
use tower::discover::Discover;

use super::future::{Inner, ResponseFuture, Wait};
use crate::algo::Pick;
use crate::balance::TrackedBody;
use crate::stats::QueueCounters;
use crate::{Balance, BoxError};

/// How often a waiting request looks again without being woken; a safety net, see the
/// [module docs](super).
pub const RECHECK: Duration = Duration::from_millis(20);

/// A [`Balance`] with a wait for a ready backend. See the [module docs](super).
pub struct Queue<D: Discover, P: Pick<D::Key>> {
    inner: Balance<D, P>,
    timeout: Duration,
    counters: Arc<QueueCounters>,
}

impl<D: Discover, P: Pick<D::Key>> Queue<D, P> {
    /// Requests to `inner` wait up to `timeout` (zero: not at all) for a backend.
    pub fn new(inner: Balance<D, P>, timeout: Duration) -> Self {
        Self::with_counters(inner, timeout, Arc::default())
    }

    /// Like [`new`](Self::new), counting into `counters` (shared with the clones, and with
    /// whoever reports them).
    pub fn with_counters(
        inner: Balance<D, P>,
        timeout: Duration,
        counters: Arc<QueueCounters>,
    ) -> Self {
        Self {
            inner,
            timeout,
            counters,
        }
    }

    /// How long a request waits for a backend.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The queue's numbers: requests waiting now, queued in all, timed out. See
    /// [`stats`](crate::stats).
    pub fn counters(&self) -> &Arc<QueueCounters> {
        &self.counters
    }

    /// The balancer.
    pub const fn get_ref(&self) -> &Balance<D, P> {
        &self.inner
    }

    /// The balancer, mutably.
    pub fn get_mut(&mut self) -> &mut Balance<D, P> {
        &mut self.inner
    }

    /// Returns the balancer.
    pub fn into_inner(self) -> Balance<D, P> {
        self.inner
    }
}

impl<D: Discover, P: Pick<D::Key>> Clone for Queue<D, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            timeout: self.timeout,
            counters: Arc::clone(&self.counters),
        }
    }
}

impl<D: Discover, P: Pick<D::Key>> fmt::Debug for Queue<D, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<D, P, B, RB> Service<Request<B>> for Queue<D, P>
where
    D: Discover + Send + Sync + 'static,
    D::Key: Send + Sync + 'static,
    D::Service: Service<Request<B>, Response = http::Response<RB>> + Clone + Send + Sync + 'static,
    <D::Service as Service<Request<B>>>::Error: Into<BoxError>,
    P: Pick<D::Key> + Send + Sync + 'static,
    B: Send + 'static,
{
    type Response = http::Response<TrackedBody<RB>>;
    type Error = BoxError;
    type Future = ResponseFuture<Inner<D, B>>;

    /// Always ready, like the balancer.
    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    /// A request that finds a backend costs nothing more than the balancer's own `call`.
    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        if self.timeout.is_zero() {
            return ResponseFuture::called(self.inner.call(req));
        }
        match self.inner.try_call(req) {
            Ok(inner) => ResponseFuture::called(inner),
            Err(req) => {
                tracing::debug!(timeout = ?self.timeout, "no backend ready: request queued");
                let queued = self.counters.enqueue();
                let wait = Wait::new(self.inner.clone(), req, self.timeout, queued);
                ResponseFuture::waiting(Box::pin(wait))
            }
        }
    }
}
