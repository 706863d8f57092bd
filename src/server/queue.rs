//! The wait for a backend when none is ready: HAProxy's `timeout queue`.
//!
//! [`Queue`] wraps the balancer. A request that finds a ready backend goes straight through
//! (the balancer's own future, nothing allocated). One that finds none — every backend at its
//! [cap](crate::proxy::ProxyClientBuilder::max_conns_per_backend), unhealthy or draining — fails
//! at once with [`NoAvailableBackend`](crate::NoAvailableBackend) when the queue timeout is zero (the default), and
//! otherwise waits for up to the queue timeout: it is offered to the balancer again whenever a
//! backend frees a slot, and every [`RECHECK`] in case a backend came back or joined. When
//! the timeout passes first, it fails with `NoAvailableBackend` (a `503`).
//!
//! Requests waiting are not ordered: whichever is woken first and finds a slot takes it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Request;
use pin_project_lite::pin_project;
use tokio::sync::futures::OwnedNotified;
use tokio::time::{Instant, Sleep};
use tower::Service;
use tower::discover::Discover;

use crate::algo::Pick;
use crate::balance::TrackedBody;
use crate::balance::future::ResponseFuture as BalanceFuture;
use crate::proxy::{Freed, Waiting as Registered};
use crate::{Balance, BoxError};

/// How often a waiting request looks again without a slot being freed.
pub(crate) const RECHECK: Duration = Duration::from_millis(20);

/// The balancer, with a wait for a ready backend. See the [module docs](self).
pub(crate) struct Queue<D: Discover, P: Pick<D::Key>> {
    balance: Balance<D, P>,
    timeout: Duration,
    freed: Arc<Freed>,
}

impl<D: Discover, P: Pick<D::Key>> Queue<D, P> {
    /// Waits up to `timeout` (zero: not at all) for a backend, woken by `freed`.
    pub(crate) fn new(balance: Balance<D, P>, timeout: Duration, freed: Arc<Freed>) -> Self {
        Self {
            balance,
            timeout,
            freed,
        }
    }
}

impl<D: Discover, P: Pick<D::Key>> Clone for Queue<D, P> {
    fn clone(&self) -> Self {
        Self {
            balance: self.balance.clone(),
            timeout: self.timeout,
            freed: Arc::clone(&self.freed),
        }
    }
}

impl<D: Discover, P: Pick<D::Key>> fmt::Debug for Queue<D, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

type Inner<D, B> = <<D as Discover>::Service as Service<Request<B>>>::Future;

impl<D, P, B, RB> Service<Request<B>> for Queue<D, P>
where
    D: Discover + Send + Sync + 'static,
    D::Key: Send + Sync + 'static,
    D::Service: Service<Request<B>, Response = http::Response<RB>> + Clone + Send + Sync + 'static,
    <D::Service as Service<Request<B>>>::Error: Into<BoxError>,
    P: Pick<D::Key> + Send + Sync + 'static,
    B: Send + 'static,
{
    type Response = http::Response<TrackedBody<RB>>;
    type Error = BoxError;
    type Future = ResponseFuture<Inner<D, B>>;

    /// Always ready, like the balancer.
    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    /// A request that finds a backend costs nothing more than the balancer's own `call`.
    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.balance.try_call(req) {
            Ok(inner) => ResponseFuture::called(inner),
            Err(_) if self.timeout.is_zero() => ResponseFuture::called(BalanceFuture::no_backend()),
            Err(req) => self.enqueue(req),
        }
    }
}

impl<D, P> Queue<D, P>
where
    D: Discover + Send + Sync + 'static,
    D::Key: Send + Sync + 'static,
    P: Pick<D::Key> + Send + Sync + 'static,
{
    /// Queues a request no backend could take: boxed, with a clone of the balancer.
    fn enqueue<B, RB>(&self, req: Request<B>) -> ResponseFuture<Inner<D, B>>
    where
        D::Service:
            Service<Request<B>, Response = http::Response<RB>> + Clone + Send + Sync + 'static,
        <D::Service as Service<Request<B>>>::Error: Into<BoxError>,
        B: Send + 'static,
    {
        let now = Instant::now();
        let deadline = now + self.timeout;
        let mut wait = Box::pin(Wait {
            balance: self.balance.clone(),
            req: None,
            deadline,
            tick: tokio::time::sleep_until(deadline.min(now + RECHECK)),
            // Listen for freed slots before looking again, so that none is missed.
            _registered: self.freed.wait(),
            notified: self.freed.notified(),
            freed: Arc::clone(&self.freed),
        });
        wait.as_mut().project().notified.enable();
        match wait.as_mut().project().balance.try_call(req) {
            Ok(inner) => ResponseFuture::called(inner),
            Err(req) => {
                tracing::debug!(timeout = ?self.timeout, "no backend ready: request queued");
                *wait.as_mut().project().req = Some(req);
                ResponseFuture {
                    state: State::Waiting { wait },
                }
            }
        }
    }
}

pin_project! {
    /// A queued request; boxed, off the normal path.
    struct Wait<D: Discover, P: Pick<D::Key>, B> {
        balance: Balance<D, P>,
        req: Option<Request<B>>,
        deadline: Instant,
        #[pin]
        tick: Sleep,
        #[pin]
        notified: OwnedNotified,
        freed: Arc<Freed>,
        _registered: Registered,
    }
}

/// A queued request waiting for a backend, whose future is `F`.
trait WaitFor<F>: Send {
    /// The balancer's future once a backend takes the request; one that fails with
    /// [`NoAvailableBackend`](crate::NoAvailableBackend) when time is up.
    fn poll_backend(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<BalanceFuture<F>>;
}

impl<D, P, B, RB> WaitFor<Inner<D, B>> for Wait<D, P, B>
where
    D: Discover + Send + Sync + 'static,
    D::Key: Send + Sync + 'static,
    D::Service: Service<Request<B>, Response = http::Response<RB>> + Clone + Send + Sync + 'static,
    <D::Service as Service<Request<B>>>::Error: Into<BoxError>,
    P: Pick<D::Key> + Send + Sync + 'static,
    B: Send + 'static,
{
    fn poll_backend(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<BalanceFuture<Inner<D, B>>> {
        let mut this = self.project();
        loop {
            let freed = this.notified.as_mut().poll(cx).is_ready();
            let ticked = this.tick.as_mut().poll(cx).is_ready();
            if !freed && !ticked {
                return Poll::Pending;
            }
            if freed {
                this.notified.set(this.freed.notified());
                this.notified.as_mut().enable();
            }
            let req = this.req.take().expect("polled after completion");
            match this.balance.try_call(req) {
                Ok(inner) => return Poll::Ready(inner),
                Err(req) => *this.req = Some(req),
            }
            let now = Instant::now();
            if now >= *this.deadline {
                tracing::debug!("queued request timed out");
                *this.req = None;
                return Poll::Ready(BalanceFuture::no_backend());
            }
            if ticked {
                this.tick
                    .as_mut()
                    .reset((*this.deadline).min(now + RECHECK));
            }
        }
    }
}

pin_project! {
    /// The response future of [`Queue`]: the balancer's, after a wait if there was one.
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called { #[pin] inner: BalanceFuture<F> },
        // Boxed, and its type erased: only queued requests have one.
        Waiting { wait: Pin<Box<dyn WaitFor<F>>> },
    }
}

impl<F> ResponseFuture<F> {
    fn called(inner: BalanceFuture<F>) -> Self {
        Self {
            state: State::Called { inner },
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
            StateProj::Waiting { wait } => ready!(wait.as_mut().poll_backend(cx)),
        };
        self.as_mut().project().state.set(State::Called { inner });
        self.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
    use tower::discover::ServiceList;

    use super::*;
    use crate::{Algo, LoadBalance, NoAvailableBackend};

    /// A backend that is ready only while its gate is open.
    #[derive(Clone)]
    struct Gate(Arc<AtomicBool>);

    impl Service<Request<()>> for Gate {
        type Response = http::Response<&'static str>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            if self.0.load(Ordering::SeqCst) {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            std::future::ready(Ok(http::Response::new("served")))
        }
    }

    type GateQueue = Queue<ServiceList<Vec<Gate>>, crate::algo::AlgoPick>;

    fn queue(timeout: Duration) -> (GateQueue, Arc<AtomicBool>, Arc<Freed>) {
        let open = Arc::new(AtomicBool::new(false));
        let lb = LoadBalance::new(
            ServiceList::new(vec![Gate(Arc::clone(&open))]),
            Algo::RoundRobin,
        );
        let freed = Arc::new(Freed::default());
        (Queue::new(lb, timeout, Arc::clone(&freed)), open, freed)
    }

    fn request() -> Request<()> {
        Request::new(())
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_queue_timeout_no_ready_backend_fails_at_once() {
        let (mut q, open, _) = queue(Duration::ZERO);
        let mut fut = task::spawn(q.call(request()));
        let err = assert_ready!(fut.poll()).unwrap_err();
        assert!(err.is::<NoAvailableBackend>());
        open.store(true, Ordering::SeqCst);
        let res = assert_ready_ok!(task::spawn(q.call(request())).poll());
        assert_eq!(*res.body().get_ref(), "served");
    }

    #[tokio::test(start_paused = true)]
    async fn a_freed_slot_wakes_a_queued_request_at_once() {
        let (mut q, open, freed) = queue(Duration::from_secs(5));
        let mut fut = task::spawn(q.call(request()));
        assert_pending!(fut.poll());
        open.store(true, Ordering::SeqCst);
        freed.notify();
        assert!(fut.is_woken(), "woken by the freed slot, not by a timer");
        let res = assert_ready_ok!(fut.poll());
        assert_eq!(*res.body().get_ref(), "served");
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_that_comes_back_is_found_at_the_next_recheck() {
        let (mut q, open, _) = queue(Duration::from_secs(5));
        let mut fut = task::spawn(q.call(request()));
        assert_pending!(fut.poll());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_pending!(fut.poll());
        open.store(true, Ordering::SeqCst);
        assert_pending!(fut.poll(), "nothing freed, no recheck due yet");
        tokio::time::advance(RECHECK).await;
        assert!(fut.is_woken());
        assert_ready_ok!(fut.poll());
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_request_fails_when_the_queue_timeout_passes() {
        let timeout = Duration::from_millis(500);
        let (mut q, _open, freed) = queue(timeout);
        let start = Instant::now();
        let err = q.call(request()).await.unwrap_err();
        assert!(err.is::<NoAvailableBackend>());
        assert_eq!(start.elapsed(), timeout);
        // Its registration is gone: nobody is waiting any more.
        let mut later = Box::pin(freed.notified());
        freed.notify();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(later.as_mut().poll(&mut cx).is_pending());
    }
}
