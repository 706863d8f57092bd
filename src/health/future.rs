//! The response future of [`HealthCheck`](super::HealthCheck), and the future of
//! [`HealthMonitor::checked`](super::HealthMonitor::checked).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::outlier::{ResponseStatus, is_failure};
use super::state::BackendHealth;

/// The future of [`HealthMonitor::checked`](super::HealthMonitor::checked).
pub use crate::wait_list::Changed as Checked;

pin_project! {
    /// The response future of [`HealthCheck`](super::HealthCheck): the inner service's,
    /// whose outcome counts for outlier detection when it is on.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // Set while the outcome is still to be counted.
        health: Option<Arc<BackendHealth>>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, health: Option<Arc<BackendHealth>>) -> Self {
        Self { inner, health }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    T: ResponseStatus,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some(health) = this.health.take() {
            let failed = match &result {
                Ok(response) => is_failure(response.status()),
                Err(_) => true,
            };
            health.observe(failed);
        }
        Poll::Ready(result)
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("observed", &self.health.is_some())
            .finish_non_exhaustive()
    }
}
