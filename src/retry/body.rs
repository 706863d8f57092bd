//! [`RetryBody`]: the request body the service under [`Retry`](super::Retry) sees.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The request body of one attempt: the client's body on the first attempt, an empty body
    /// on a retry.
    ///
    /// [`Retry`](super::Retry) only retries requests whose body had ended before the first
    /// attempt (see the [module docs](super)), so the replayed request carries no body, and a
    /// body type that cannot be rebuilt (hyper's `Incoming`) can still be retried.
    pub struct RetryBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Original { #[pin] body: B },
        Empty,
    }
}

impl<B> RetryBody<B> {
    /// Wraps the client's body, for the first attempt.
    pub const fn new(body: B) -> Self {
        Self {
            kind: Kind::Original { body },
        }
    }

    /// An empty body, for a retry.
    pub const fn empty() -> Self {
        Self { kind: Kind::Empty }
    }

    /// Whether this is the empty body of a retry.
    pub fn is_replay(&self) -> bool {
        matches!(self.kind, Kind::Empty)
    }

    /// The client's body, or `None` for a retry.
    pub fn into_inner(self) -> Option<B> {
        match self.kind {
            Kind::Original { body } => Some(body),
            Kind::Empty => None,
        }
    }
}

impl<B> Default for RetryBody<B> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<B: Body> Body for RetryBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Original { body } => body.poll_frame(cx),
            KindProj::Empty => Poll::Ready(None),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Original { body } => body.is_end_stream(),
            Kind::Empty => true,
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Original { body } => body.size_hint(),
            Kind::Empty => SizeHint::with_exact(0),
        }
    }
}

impl<B> fmt::Debug for RetryBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBody")
            .field("replay", &self.is_replay())
            .finish()
    }
}
