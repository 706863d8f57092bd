//! [`RetryBody`]: the request body the service under [`Retry`](super::Retry) sees.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Buf;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The request body of one attempt: the client's body on the first attempt, an empty body
    /// on a retry, or the buffered copy of a small body on every attempt.
    ///
    /// [`Retry`](super::Retry) retries a request whose body had ended before the first
    /// attempt with an empty body, so a body type that cannot be rebuilt (hyper's `Incoming`)
    /// can still be retried; a small body (up to [`RetryLayer::buffer`](super::RetryLayer::buffer))
    /// is read whole first and every attempt sends the copy (see the [module docs](super)).
    pub struct RetryBody<B: Body> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B: Body> {
        Original { #[pin] body: B },
        Empty,
        Buffered { copy: Arc<Buffered<B::Data>>, next: usize, replay: bool },
    }
}

/// A request body read whole, to send on each attempt.
#[derive(Debug)]
pub(crate) struct Buffered<D> {
    pub(crate) frames: Vec<D>,
    pub(crate) trailers: Option<HeaderMap>,
}

impl<D: Buf> Buffered<D> {
    fn remaining_from(&self, next: usize) -> u64 {
        self.frames
            .get(next..)
            .map_or(0, |rest| rest.iter().map(|d| d.remaining() as u64).sum())
    }
}

impl<B: Body> RetryBody<B> {
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

    /// The buffered copy of the client's body; `replay` for a retry.
    pub(crate) fn buffered(copy: Arc<Buffered<B::Data>>, replay: bool) -> Self {
        Self {
            kind: Kind::Buffered {
                copy,
                next: 0,
                replay,
            },
        }
    }

    /// Whether this is the body of a retry (empty, or the buffered copy sent again).
    pub fn is_replay(&self) -> bool {
        match self.kind {
            Kind::Original { .. } => false,
            Kind::Empty => true,
            Kind::Buffered { replay, .. } => replay,
        }
    }

    /// The client's body, or `None` for a retry or a buffered copy.
    pub fn into_inner(self) -> Option<B> {
        match self.kind {
            Kind::Original { body } => Some(body),
            Kind::Empty | Kind::Buffered { .. } => None,
        }
    }
}

impl<B: Body> Default for RetryBody<B> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<B: Body> Body for RetryBody<B>
where
    B::Data: Clone,
{
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
            KindProj::Buffered { copy, next, .. } => {
                let frame = match copy.frames.get(*next) {
                    Some(data) => Some(Frame::data(data.clone())),
                    None if *next == copy.frames.len() => {
                        copy.trailers.clone().map(Frame::trailers)
                    }
                    None => None,
                };
                *next += 1;
                Poll::Ready(frame.map(Ok))
            }
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Original { body } => body.is_end_stream(),
            Kind::Empty => true,
            Kind::Buffered { copy, next, .. } => {
                *next >= copy.frames.len() + usize::from(copy.trailers.is_some())
            }
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Original { body } => body.size_hint(),
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Buffered { copy, next, .. } => SizeHint::with_exact(copy.remaining_from(*next)),
        }
    }
}

impl<B: Body> fmt::Debug for RetryBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBody")
            .field("replay", &self.is_replay())
            .finish()
    }
}
