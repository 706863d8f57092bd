//! The future returned by [`Retry`](super::Retry).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderMap, Request};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::Service;

use super::body::{Buffered, RetryBody};
use super::head::Head;
use super::policy::Policy;
use crate::{BoxError, NoAvailableBackend};

pin_project! {
    /// Response future of [`Retry`](super::Retry): the current attempt, and what it takes to
    /// send the request again when the attempt fails.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<RetryBody<B>>>,
        B: Body,
    {
        #[pin]
        state: State<S::Future, B>,
        // `None` when the request is not to be retried.
        replay: Option<Replay<S, S::Response, B::Data>>,
        _body: PhantomData<fn() -> B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B: Body> {
        // Reading a small request body whole before the first attempt.
        Buffering {
            #[pin]
            body: B,
            frames: Vec<B::Data>,
            trailers: Option<HeaderMap>,
        },
        // An attempt is in flight.
        Called { #[pin] future: F },
        // An attempt failed (or the body was read); waiting for the service to be ready for
        // the next.
        Retrying,
    }
}

/// What a retry needs: a service to call, and the request head (and body) to send again.
pub(crate) struct Replay<S, R, D> {
    pub(crate) service: S,
    /// Taken by the last retry allowed.
    pub(crate) head: Option<Head>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) remaining: usize,
    pub(crate) last_error: Option<BoxError>,
    /// The last response that was to be retried: what the client gets if no retry answers.
    // Boxed: only a request retried after a response has one, and unboxed it would be moved
    // with every future of every other request.
    pub(crate) last_response: Option<Box<R>>,
    /// The buffered body, once read; `None` for a request without a body.
    pub(crate) body: Option<Arc<Buffered<D>>>,
    /// Whether an attempt was sent already.
    pub(crate) sent: bool,
}

impl<S, R, D> Replay<S, R, D> {
    pub(crate) fn new(service: S, head: Head, policy: Arc<Policy>, sent: bool) -> Self {
        Self {
            service,
            head: Some(head),
            remaining: policy.max_retries,
            policy,
            last_error: None,
            last_response: None,
            body: None,
            sent,
        }
    }

    /// What to answer once no retry follows `error`: the last backend's response that was to
    /// be retried, if any; else, when the last attempt found no other backend to try, the
    /// failure of the attempt before, which says more; else `error`.
    fn finish(&mut self, error: BoxError) -> Result<R, BoxError> {
        if let Some(response) = self.last_response.take() {
            return Ok(*response);
        }
        if error.is::<NoAvailableBackend>() {
            if let Some(last) = self.last_error.take() {
                return Err(last);
            }
        }
        Err(error)
    }

    /// Spends one retry on `cause` (a failure, or a status that is retried), logging it.
    fn spend_retry(&mut self, cause: &dyn std::fmt::Display) {
        self.remaining -= 1;
        if let Some(head) = &self.head {
            tracing::debug!(
                method = %head.method(),
                uri = %head.uri(),
                retries_left = self.remaining,
                %cause,
                "retrying on another backend",
            );
        }
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<RetryBody<B>>>,
    B: Body,
{
    pub(crate) fn new(future: S::Future, replay: Option<Replay<S, S::Response, B::Data>>) -> Self {
        Self {
            state: State::Called { future },
            replay,
            _body: PhantomData,
        }
    }

    /// Reads `body` whole, then sends the request as `replay` holds it.
    pub(crate) fn buffering(body: B, replay: Replay<S, S::Response, B::Data>) -> Self {
        Self {
            state: State::Buffering {
                body,
                frames: Vec::new(),
                trailers: None,
            },
            replay: Some(replay),
            _body: PhantomData,
        }
    }
}

impl<S, B, RB> Future for ResponseFuture<S, B>
where
    S: Service<Request<RetryBody<B>>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Buffering {
                    mut body,
                    frames,
                    trailers,
                } => match ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => frames.push(data),
                        Err(frame) => {
                            if let Ok(map) = frame.into_trailers() {
                                *trailers = Some(map);
                            }
                        }
                    },
                    Some(Err(error)) => return Poll::Ready(Err(error.into())),
                    None => {
                        let replay = this.replay.as_mut().expect("buffering without a replay");
                        replay.body = Some(Arc::new(Buffered {
                            frames: std::mem::take(frames),
                            trailers: trailers.take(),
                        }));
                        this.state.set(State::Retrying);
                    }
                },
                StateProj::Called { future } => {
                    let error: BoxError = match ready!(future.poll(cx)) {
                        Ok(response) => {
                            let status = response.status();
                            let retry = this.replay.as_mut().filter(|replay| {
                                replay.remaining > 0 && replay.policy.allow_retry_status(status)
                            });
                            let Some(replay) = retry else {
                                return Poll::Ready(Ok(response));
                            };
                            replay.spend_retry(&status);
                            // Kept until another backend answers; then dropped, which ends
                            // its request on the backend it came from.
                            replay.last_response = Some(Box::new(response));
                            replay.last_error = None;
                            this.state.set(State::Retrying);
                            continue;
                        }
                        Err(error) => error.into(),
                    };
                    let Some(replay) = this.replay.as_mut() else {
                        return Poll::Ready(Err(error));
                    };
                    if replay.remaining == 0 || !replay.policy.allow_retry(&error) {
                        return Poll::Ready(replay.finish(error));
                    }
                    replay.spend_retry(&error);
                    replay.last_error = Some(error);
                    this.state.set(State::Retrying);
                }
                StateProj::Retrying => {
                    let replay = this.replay.as_mut().expect("retrying without a replay");
                    if let Err(error) = ready!(replay.service.poll_ready(cx)) {
                        let error = error.into();
                        return Poll::Ready(replay.finish(error));
                    }
                    let body = match &replay.body {
                        Some(copy) => RetryBody::buffered(Arc::clone(copy), replay.sent),
                        None => RetryBody::empty(),
                    };
                    replay.sent = true;
                    let req = Head::request(&mut replay.head, replay.remaining == 0, body)
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
    B: Body,
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
