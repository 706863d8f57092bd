//! The future returned by [`Retry`](super::Retry).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Request;
use pin_project_lite::pin_project;
use tower::Service;

use super::body::RetryBody;
use super::head::Head;
use super::policy::Policy;
use crate::{BoxError, NoAvailableBackend};

pin_project! {
    /// Response future of [`Retry`](super::Retry): the current attempt, and what it takes to
    /// send the request again when the attempt fails.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<RetryBody<B>>>,
    {
        #[pin]
        state: State<S::Future>,
        // `None` when the request is not to be retried.
        replay: Option<Replay<S>>,
        _body: PhantomData<fn() -> B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An attempt is in flight.
        Called { #[pin] future: F },
        // An attempt failed; waiting for the service to be ready for the next.
        Retrying,
    }
}

/// What a retry needs: a service to call, and the request head to send again.
pub(crate) struct Replay<S> {
    pub(crate) service: S,
    /// Taken by the last retry allowed.
    pub(crate) head: Option<Head>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) remaining: usize,
    pub(crate) last_error: Option<BoxError>,
}

impl<S> Replay<S> {
    /// The error to report once no retry follows `error`: when the last attempt found no
    /// other backend to try, the failure of the attempt before says more.
    fn final_error(&mut self, error: BoxError) -> BoxError {
        if error.is::<NoAvailableBackend>() {
            if let Some(last) = self.last_error.take() {
                return last;
            }
        }
        error
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<RetryBody<B>>>,
{
    pub(crate) fn new(future: S::Future, replay: Option<Replay<S>>) -> Self {
        Self {
            state: State::Called { future },
            replay,
            _body: PhantomData,
        }
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<RetryBody<B>>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let error: BoxError = match ready!(future.poll(cx)) {
                        Ok(response) => return Poll::Ready(Ok(response)),
                        Err(error) => error.into(),
                    };
                    let Some(replay) = this.replay.as_mut() else {
                        return Poll::Ready(Err(error));
                    };
                    if replay.remaining == 0 || !replay.policy.allow_retry(&error) {
                        return Poll::Ready(Err(replay.final_error(error)));
                    }
                    replay.remaining -= 1;
                    if let Some(head) = &replay.head {
                        tracing::debug!(
                            method = %head.method(),
                            uri = %head.uri(),
                            retries_left = replay.remaining,
                            %error,
                            "retrying on another backend",
                        );
                    }
                    replay.last_error = Some(error);
                    this.state.set(State::Retrying);
                }
                StateProj::Retrying => {
                    let replay = this.replay.as_mut().expect("retrying without a replay");
                    if let Err(error) = ready!(replay.service.poll_ready(cx)) {
                        return Poll::Ready(Err(error.into()));
                    }
                    let req = Head::request(&mut replay.head, replay.remaining == 0)
                        .expect("a request head for every retry");
                    let future = replay.service.call(req);
                    this.state.set(State::Called { future });
                }
            }
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<RetryBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field(
                "retries_left",
                &self.replay.as_ref().map(|replay| replay.remaining),
            )
            .finish_non_exhaustive()
    }
}
