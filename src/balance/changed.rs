//! The future of [`Balance::changed`](super::Balance::changed).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::wait_list::{Changes, NextChange};

/// Resolves once the balancer has published a new backend set after this future was made.
/// See [`Balance::changed`](super::Balance::changed).
#[must_use = "futures do nothing unless polled"]
pub struct Changed {
    inner: NextChange,
}

impl Changed {
    pub(crate) fn new(changes: &Arc<Changes>) -> Self {
        Self {
            inner: changes.next(),
        }
    }
}

impl Future for Changed {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

impl fmt::Debug for Changed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (seen, current) = self.inner.versions();
        f.debug_struct("Changed")
            .field("seen", &seen)
            .field("current", &current)
            .finish()
    }
}
