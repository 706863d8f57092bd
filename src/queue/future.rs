//! The response future of [`Queue`](super::Queue).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Request;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::Service;
use tower::discover::Discover;

use super::RECHECK;
use crate::algo::Pick;
use crate::balance::future::{Changed, ResponseFuture as BalanceFuture};
use crate::balance::{Parked, TrackedBody};
use crate::stats::Queued;
use crate::{Balance, BoxError};

/// The future of a backend's service for requests with body `B`.
pub(crate) type Inner<D, B> = <<D as Discover>::Service as Service<Request<B>>>::Future;

pin_project! {
    /// A queued request; boxed, off the normal path.
    pub(crate) struct Wait<D: Discover, P: Pick<D::Key>, B> {
        balance: Balance<D, P>,
        req: Option<Request<B>>,
        // The backend services found not ready, asked again with this task's waker.
        parked: Parked<D::Service>,
        // A new backend set.
        changed: Changed,
        deadline: Instant,
        // Counts the request as waiting until it is dropped.
        queued: Option<Queued>,
        // The next recheck, or the deadline.
        #[pin]
        tick: Sleep,
    }
}

impl<D: Discover, P: Pick<D::Key>, B> Wait<D, P, B> {
    /// `req` waits for a backend of `balance` for up to `timeout`.
    pub(crate) fn new(
        balance: Balance<D, P>,
        req: Request<B>,
        timeout: Duration,
        queued: Queued,
    ) -> Self {
        let now = Instant::now();
        let deadline = now + timeout;
        Self {
            changed: balance.changed(),
            balance,
            req: Some(req),
            parked: Parked::new(),
            deadline,
            queued: Some(queued),
            tick: tokio::time::sleep_until(deadline.min(now + RECHECK)),
        }
    }
}

/// Resolves to the balancer's future once a backend takes the request, or to one that fails
/// with [`NoAvailableBackend`](crate::NoAvailableBackend) when time is up.
impl<D, P, B, RB> Future for Wait<D, P, B>
where
    D: Discover + Send + Sync + 'static,
    D::Key: Send + Sync + 'static,
    D::Service: Service<Request<B>, Response = http::Response<RB>> + Clone + Send + Sync + 'static,
    <D::Service as Service<Request<B>>>::Error: Into<BoxError>,
    P: Pick<D::Key> + Send + Sync + 'static,
    B: Send + 'static,
{
    type Output = BalanceFuture<Inner<D, B>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            // Listen for a new set before looking, so that none is missed.
            if Pin::new(&mut *this.changed).poll(cx).is_ready() {
                *this.changed = this.balance.changed();
                continue;
            }
            let req = this.req.take().expect("polled after completion");
            match this.balance.try_call_with(req, cx, this.parked) {
                Ok(inner) => return Poll::Ready(inner),
                Err(req) => *this.req = Some(req),
            }
            if this.tick.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if now >= *this.deadline {
                tracing::debug!("queued request timed out");
                if let Some(queued) = this.queued.take() {
                    queued.timed_out();
                }
                return Poll::Ready(this.balance.no_backend());
            }
            this.tick
                .as_mut()
                .reset((*this.deadline).min(now + RECHECK));
        }
    }
}

pin_project! {
    /// The response future of [`Queue`](super::Queue): the balancer's, after a wait if
    /// there was one.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called { #[pin] inner: BalanceFuture<F> },
        // Boxed, and its type erased: only queued requests have one.
        Waiting { wait: Pin<Box<dyn Future<Output = BalanceFuture<F>> + Send>> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(inner: BalanceFuture<F>) -> Self {
        Self {
            state: State::Called { inner },
        }
    }

    pub(crate) fn waiting(wait: Pin<Box<dyn Future<Output = BalanceFuture<F>> + Send>>) -> Self {
        Self {
            state: State::Waiting { wait },
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self.state {
            State::Called { .. } => "ResponseFuture::Called",
            State::Waiting { .. } => "ResponseFuture::Waiting",
        })
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<TrackedBody<RB>>, BoxError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = match self.as_mut().project().state.project() {
            StateProj::Called { inner } => return inner.poll(cx),
            StateProj::Waiting { wait } => ready!(wait.as_mut().poll(cx)),
        };
        self.as_mut().project().state.set(State::Called { inner });
        self.poll(cx)
    }
}
