use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use http::Request;
use http_body::Body;
use tower::{Layer, Service};

use super::RetryLayer;
use super::body::RetryBody;
use super::future::{Replay, ResponseFuture};
use super::head::Head;
use super::policy::Policy;
use crate::BoxError;
use crate::balance::Tried;

/// Sends a request again, to another backend, when an attempt fails before the backend
/// could act on it. See the [module docs](super).
///
/// `Clone + Send + Sync` when `S` is; clones share the policy, the budget and the counters.
pub struct Retry<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S> Retry<S> {
    /// Retries calls to `inner` with the defaults of [`RetryLayer::new`].
    pub fn new(inner: S) -> Self {
        RetryLayer::new().layer(inner)
    }

    pub(crate) fn from_policy(inner: S, policy: Arc<Policy>) -> Self {
        Self { inner, policy }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// At most this many retries per request.
    pub fn max_retries(&self) -> usize {
        self.policy.max_retries
    }

    /// How many retries this service and its clones have sent.
    pub fn retries(&self) -> u64 {
        self.policy.retries.load(Ordering::Relaxed)
    }

    /// How many retries were not sent because the budget was empty.
    pub fn budget_exhausted(&self) -> u64 {
        self.policy.budget_exhausted.load(Ordering::Relaxed)
    }
}

impl<S, B, RB> Service<Request<B>> for Retry<S>
where
    S: Service<Request<RetryBody<B>>, Response = http::Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let policy = &self.policy;
        if policy.max_retries == 0 {
            return ResponseFuture::new(self.inner.call(req.map(RetryBody::new)), None);
        }
        policy.budget.deposit();
        // A request without a body can be sent again as it was; a small body is read whole
        // first and sent again from the copy; a larger one is streamed, once.
        let buffer = !req.body().is_end_stream();
        if !policy.retries_method(req.method())
            || (buffer && !fits(req.body().size_hint().upper(), policy.buffer))
        {
            return ResponseFuture::new(self.inner.call(req.map(RetryBody::new)), None);
        }
        let (mut head, body) = req.into_parts();
        // Shared by the copies of the head, so a retry skips the backends already tried.
        if head.extensions.get::<Tried>().is_none() {
            head.extensions.insert(Tried::new());
        }
        let service = self.inner.clone();
        if buffer {
            // Every attempt is sent from the copy of the head, once the body is read.
            let replay = Replay::new(service, Head::copy(&head), Arc::clone(policy), false);
            return ResponseFuture::buffering(body, replay);
        }
        let replay = Replay::new(service, Head::copy(&head), Arc::clone(policy), true);
        let future = self
            .inner
            .call(Request::from_parts(head, RetryBody::new(body)));
        ResponseFuture::new(future, Some(replay))
    }
}

/// Whether a body of at most `upper` bytes fits a buffer of `limit`.
fn fits(upper: Option<u64>, limit: usize) -> bool {
    upper.is_some_and(|upper| upper <= limit as u64)
}

impl<S: Clone> Clone for Retry<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: Arc::clone(&self.policy),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Retry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .finish()
    }
}
