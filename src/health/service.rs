use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::sync::futures::OwnedNotified;
use tower::Service;

use super::state::BackendHealth;

/// A backend service that is ready only while its backend is healthy. See the
/// [module docs](super).
///
/// `poll_ready` is `Pending` while the [`BackendHealth`] says the backend is down, and wakes
/// the caller when it comes back; otherwise it asks the inner service. Responses pass through
/// untouched.
pub struct HealthCheck<S> {
    inner: S,
    health: Arc<BackendHealth>,
    /// Set while this clone waits for the backend to come back.
    waiting: Option<Pin<Box<OwnedNotified>>>,
}

impl<S> HealthCheck<S> {
    /// Wraps `inner`, ready only while `health` says the backend is available.
    pub fn new(inner: S, health: Arc<BackendHealth>) -> Self {
        Self {
            inner,
            health,
            waiting: None,
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

    /// `Ready` once the backend is available; registers `cx`'s waker otherwise.
    fn poll_available(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.health.is_available() {
                self.waiting = None;
                return Poll::Ready(());
            }
            // A balancer that only asks (like `Balance`) polls with a no-op waker: nothing to
            // wake, so skip registering. This is only a shortcut; registering would be harmless.
            if cx.waker().will_wake(Waker::noop()) {
                return Poll::Pending;
            }
            let waiting = self.waiting.get_or_insert_with(|| {
                Box::pin(Arc::clone(self.health.available()).notified_owned())
            });
            // The future catches every wake-up sent after its creation, so the check above
            // cannot miss one; if it completed, look again.
            if waiting.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.waiting = None;
        }
    }
}

impl<S, R> Service<R> for HealthCheck<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.waiting.is_none() && self.health.is_available() {
            return self.inner.poll_ready(cx);
        }
        std::task::ready!(self.poll_available(cx));
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: R) -> Self::Future {
        self.inner.call(req)
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
            .field("health", &self.health.health())
            .finish()
    }
}
