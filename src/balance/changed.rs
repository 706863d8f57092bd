//! The future of [`Balance::changed`](super::Balance::changed).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::set::Changes;
use crate::wait_list::Waiter;

/// Resolves once the balancer has published a new backend set after this future was made.
/// See [`Balance::changed`](super::Balance::changed).
#[must_use = "futures do nothing unless polled"]
pub struct Changed {
    changes: Arc<Changes>,
    seen: u64,
    waiting: Waiter,
}

impl Changed {
    pub(crate) fn new(changes: &Arc<Changes>) -> Self {
        Self {
            seen: changes.generation(),
            waiting: Waiter::new(Arc::clone(&changes.waiters)),
            changes: Arc::clone(changes),
        }
    }
}

impl Future for Changed {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.changes.generation() != this.seen {
            this.waiting.cancel();
            return Poll::Ready(());
        }
        this.waiting.register(cx.waker());
        // A set published just before the registration would not wake it: look again.
        if this.changes.generation() != this.seen {
            this.waiting.cancel();
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl fmt::Debug for Changed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changed")
            .field("seen", &self.seen)
            .field("current", &self.changes.generation())
            .finish()
    }
}
