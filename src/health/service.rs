use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;

use super::future::ResponseFuture;
use super::outlier::ResponseStatus;
use super::pool::RAMPING;
use super::state::BackendHealth;
use crate::wait_list::Waiter;

/// A backend service that is ready only while its backend is healthy. See the
/// [module docs](super).
///
/// `poll_ready` is `Pending` while the [`BackendHealth`] says the backend is down or ejected,
/// and wakes the waker it was given when the backend comes back; during a slow start it is
/// `Pending` for the share of requests the backend does not take yet (and wakes the waker at
/// once, to be asked again); otherwise it asks the inner service. Any caller may wait on it,
/// through any layers: a clone dropped while waiting stops waiting. Responses pass through
/// untouched; with outlier detection on, their outcome is counted.
pub struct HealthCheck<S> {
    inner: S,
    health: Arc<BackendHealth>,
    /// Set while this clone waits for the backend to come back: its place among the
    /// backend's waiters.
    waiting: Option<Waiter>,
    /// A backend in its slow-start ramp admitted the next request: stay ready until `call`.
    admitted: bool,
}

impl<S> HealthCheck<S> {
    /// Wraps `inner`, ready only while `health` says the backend is available.
    pub fn new(inner: S, health: Arc<BackendHealth>) -> Self {
        Self {
            inner,
            health,
            waiting: None,
            admitted: false,
        }
    }

    /// The backend's health.
    pub fn health(&self) -> &Arc<BackendHealth> {
        &self.health
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Returns the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// `Ready` once the backend is available and, in a slow start, admits the request.
    fn poll_admitted(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        std::task::ready!(self.poll_available(cx));
        if self.admitted || self.health.status() & RAMPING == 0 || self.health.admit() {
            self.admitted = true;
            return Poll::Ready(());
        }
        // Not this time. A balancer picks another backend; a caller that waits for this one
        // asks again at once (the share admitted is at least 10 %).
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// `Ready` once the backend is available; registers `cx`'s waker otherwise.
    fn poll_available(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.health.is_available() {
            self.waiting = None;
            return Poll::Ready(());
        }
        self.waiting
            .get_or_insert_with(|| Waiter::new(Arc::clone(self.health.available())))
            .register(cx.waker());
        // A change just before the registration would not wake it: look again.
        if self.health.is_available() {
            self.waiting = None;
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl<S, R> Service<R> for HealthCheck<S>
where
    S: Service<R>,
    S::Response: ResponseStatus,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The common case: available, not ramping, nobody waiting; one atomic load.
        if self.health.status() == 0 && self.waiting.is_none() {
            return self.inner.poll_ready(cx);
        }
        std::task::ready!(self.poll_admitted(cx));
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: R) -> Self::Future {
        self.admitted = false;
        let observe = self
            .health
            .detects_outliers()
            .then(|| Arc::clone(&self.health));
        ResponseFuture::new(self.inner.call(req), observe)
    }
}

impl<S: Clone> Clone for HealthCheck<S> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), Arc::clone(&self.health))
    }
}

impl<S: fmt::Debug> fmt::Debug for HealthCheck<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthCheck")
            .field("inner", &self.inner)
            .field("state", &self.health.state())
            .finish()
    }
}
