use std::time::Duration;

use tower::Layer;
use tower::discover::Discover;

use super::Queue;
use crate::Balance;
use crate::algo::Pick;

/// Puts a [`Queue`] in front of a [`Balance`]. See the [module docs](super).
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct QueueLayer {
    timeout: Duration,
}

impl QueueLayer {
    /// Requests wait up to `timeout` for a backend (zero: not at all).
    pub const fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    /// How long a request waits for a backend.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<D, P> Layer<Balance<D, P>> for QueueLayer
where
    D: Discover,
    P: Pick<D::Key>,
{
    type Service = Queue<D, P>;

    fn layer(&self, inner: Balance<D, P>) -> Self::Service {
        Queue::new(inner, self.timeout)
    }
}
