//! [`Tracked`]: a connection's service, counting its requests in flight until their response
//! bodies end, so that the connection's [`TimedIo`](super::timed_io::TimedIo) knows which of
//! its timeouts applies.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::state::ConnState;

/// A connection's service, counting its requests in flight until their response bodies end.
#[derive(Debug)]
pub(super) struct Tracked<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S> Tracked<S> {
    pub(super) fn new(inner: S, state: Arc<ConnState>) -> Self {
        Self { inner, state }
    }

    /// What the service shares with the connection's IO.
    pub(super) fn state(&self) -> &Arc<ConnState> {
        &self.state
    }
}

impl<S, B, R> hyper::service::Service<Request<R>> for Tracked<S>
where
    S: hyper::service::Service<Request<R>, Response = Response<B>>,
{
    type Response = Response<ConnBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    #[inline]
    fn call(&self, req: Request<R>) -> Self::Future {
        TrackedFuture {
            inner: self.inner.call(req),
            guard: Some(InFlight::start(&self.state)),
        }
    }
}

/// One request in flight on a connection.
#[derive(Debug)]
pub(super) struct InFlight {
    state: Arc<ConnState>,
}

impl InFlight {
    pub(super) fn start(state: &Arc<ConnState>) -> Self {
        state.start();
        Self {
            state: Arc::clone(state),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.end();
    }
}

pin_project! {
    /// The response future of [`Tracked`].
    #[derive(Debug)]
    pub(super) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ConnBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx))?;
        let guard = this.guard.take();
        if let Some(guard) = &guard {
            if res.status() == StatusCode::SWITCHING_PROTOCOLS {
                guard.state.upgrade();
            }
        }
        Poll::Ready(Ok(res.map(|inner| ConnBody { inner, guard })))
    }
}

pin_project! {
    /// A response body that keeps its request counted until it ends.
    #[derive(Debug)]
    pub(super) struct ConnBody<B> {
        #[pin]
        inner: B,
        guard: Option<InFlight>,
    }
}

impl<B: Body> Body for ConnBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            *this.guard = None;
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::service::Service;

    use super::*;

    /// Answers each request with `status` and a body of two bytes.
    struct Answer(StatusCode);

    impl Service<Request<()>> for Answer {
        type Response = Response<Full<Bytes>>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn call(&self, _: Request<()>) -> Self::Future {
            let mut res = Response::new(Full::new(Bytes::from_static(b"ok")));
            *res.status_mut() = self.0;
            std::future::ready(Ok(res))
        }
    }

    #[tokio::test]
    async fn a_request_counts_until_its_response_body_ends() {
        let state = Arc::new(ConnState::default());
        let service = Tracked::new(Answer(StatusCode::OK), Arc::clone(&state));
        let future = service.call(Request::new(()));
        assert_eq!(state.counts(), (1, 1), "in flight from the call");
        let res = future.await.unwrap();
        assert_eq!(state.counts(), (1, 1), "the response is not the end");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "ok");
        assert_eq!(state.counts(), (0, 1), "done when the body ended");
        assert!(!state.upgraded());

        // A dropped response ends its request too.
        drop(service.call(Request::new(())));
        assert_eq!(state.counts(), (0, 2));
    }

    #[tokio::test]
    async fn a_101_marks_the_connection_upgraded() {
        let state = Arc::new(ConnState::default());
        let service = Tracked::new(Answer(StatusCode::SWITCHING_PROTOCOLS), Arc::clone(&state));
        let res = service.call(Request::new(())).await.unwrap();
        assert!(state.upgraded());
        drop(res);
        assert_eq!(state.counts(), (0, 1));
    }
}
