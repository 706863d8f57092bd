use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use tokio::time::Instant;
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::Service;
use tower::discover::ServiceList;

use super::{Queue, RECHECK};
use crate::wait_list::{WaitList, Waiter};
use crate::{Algo, LoadBalance, NoAvailableBackend};

/// A backend that is ready only while its gate is open; opening it wakes the callers that
/// found it closed, as the `poll_ready` contract asks.
struct Gate {
    shared: Arc<GateState>,
    waiting: Option<Waiter>,
}

#[derive(Default)]
struct GateState {
    open: AtomicBool,
    waiters: Arc<WaitList>,
}

impl GateState {
    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.waiters.wake_all();
    }

    /// Opens without waking anyone: a service that breaks the contract.
    fn open_silently(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Clone for Gate {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            waiting: None,
        }
    }
}

impl Service<Request<()>> for Gate {
    type Response = http::Response<&'static str>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.shared.open.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        self.waiting
            .get_or_insert_with(|| Waiter::new(Arc::clone(&self.shared.waiters)))
            .register(cx.waker());
        if self.shared.open.load(Ordering::SeqCst) {
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

fn queue(timeout: Duration) -> (GateQueue, Arc<GateState>) {
    let gate = Arc::new(GateState::default());
    let lb = LoadBalance::new(
        ServiceList::new(vec![Gate {
            shared: Arc::clone(&gate),
            waiting: None,
        }]),
        Algo::RoundRobin,
    );
    (Queue::new(lb, timeout), gate)
}

fn request() -> Request<()> {
    Request::new(())
}

#[tokio::test(start_paused = true)]
async fn without_a_queue_timeout_no_ready_backend_fails_at_once() {
    let (mut q, gate) = queue(Duration::ZERO);
    let mut fut = task::spawn(q.call(request()));
    let err = assert_ready!(fut.poll()).unwrap_err();
    assert!(err.is::<NoAvailableBackend>());
    gate.open();
    let res = assert_ready_ok!(task::spawn(q.call(request())).poll());
    assert_eq!(*res.body().get_ref(), "served");
}

#[tokio::test(start_paused = true)]
async fn a_freed_slot_wakes_a_queued_request_at_once() {
    let (mut q, gate) = queue(Duration::from_secs(5));
    let mut fut = task::spawn(q.call(request()));
    assert_pending!(fut.poll());
    gate.open();
    assert!(fut.is_woken(), "woken by the backend, not by a timer");
    let res = assert_ready_ok!(fut.poll());
    assert_eq!(*res.body().get_ref(), "served");
}

#[tokio::test(start_paused = true)]
async fn a_backend_that_comes_back_is_found_at_the_next_recheck() {
    let (mut q, gate) = queue(Duration::from_secs(5));
    let mut fut = task::spawn(q.call(request()));
    assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_pending!(fut.poll());
    gate.open_silently();
    // A poll looks again (it asks the parked backends); what matters is that no wake-up
    // comes, so an executor would not poll it, until the recheck.
    assert!(!fut.is_woken(), "nothing woke it, no recheck due yet");
    tokio::time::advance(RECHECK / 2).await;
    assert!(!fut.is_woken(), "no recheck due yet");
    tokio::time::advance(RECHECK / 2).await;
    assert!(fut.is_woken());
    assert_ready_ok!(fut.poll());
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_fails_when_the_queue_timeout_passes() {
    let timeout = Duration::from_millis(500);
    let (mut q, gate) = queue(timeout);
    let start = Instant::now();
    let err = q.call(request()).await.unwrap_err();
    assert!(err.is::<NoAvailableBackend>());
    assert_eq!(start.elapsed(), timeout);
    // Its registration is gone: nobody is waiting any more.
    assert_eq!(gate.waiters.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_queue_counts_waiting_queued_and_timed_out_requests() {
    let (mut q, gate) = queue(Duration::from_millis(500));
    let counters = Arc::clone(q.counters());

    // One times out.
    let err = q.call(request()).await.unwrap_err();
    assert!(err.is::<NoAvailableBackend>());
    let now = counters.snapshot();
    assert_eq!((now.waiting, now.queued, now.timeouts), (0, 1, 1));
    assert_eq!(q.get_ref().snapshot().no_backend, 1, "the 503 is counted");

    // One waits, then is served: it stops waiting as soon as a backend takes it.
    let mut fut = task::spawn(q.call(request()));
    assert_pending!(fut.poll());
    assert_eq!(counters.snapshot().waiting, 1);
    gate.open();
    assert_ready_ok!(fut.poll());
    let now = counters.snapshot();
    assert_eq!((now.waiting, now.queued, now.timeouts), (0, 2, 1));

    // A request that finds a backend at once never queues.
    assert_ready_ok!(task::spawn(q.call(request())).poll());
    assert_eq!(counters.snapshot().queued, 2);
    assert_eq!(q.get_ref().snapshot().no_backend, 1);
}

#[tokio::test(start_paused = true)]
async fn without_a_queue_timeout_the_refusal_is_counted() {
    let (mut q, _gate) = queue(Duration::ZERO);
    assert!(q.call(request()).await.is_err());
    assert_eq!(q.get_ref().snapshot().no_backend, 1);
    assert_eq!(q.counters().snapshot().queued, 0);
}
