use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, Waker};

use http::HeaderValue;
use tower::Service;
use tower::discover::Discover;

use super::body::{InFlight, TrackedBody};
use super::endpoint::Endpoint;
use super::future::ResponseFuture;
use super::parked::Parked;
use super::set::{self, Observer, Shared};
use super::tried::Tried;
use crate::algo::{AlgoPick, Pick};
use crate::client_ip::ClientIp;
use crate::wait_list::Changed;
use crate::weight::Weight;
use crate::{Algo, BoxError};

/// Balances requests over the backends of `D`, picked by `P`. See the [module docs](super).
pub struct Balance<D, P>
where
    D: Discover,
    P: Pick<D::Key>,
{
    pub(super) shared: Arc<Shared<D::Key, D::Service, P>>,
}

/// A [`Balance`] whose algorithm is chosen at run time from an [`Algo`].
pub type LoadBalance<D> = Balance<D, AlgoPick>;

impl<D, P> Balance<D, P>
where
    D: Discover + Send + 'static,
    D::Key: Hash + Eq + Clone + Weight + Send + Sync + 'static,
    D::Service: Clone + Send + Sync + 'static,
    D::Error: Into<BoxError>,
    P: Pick<D::Key>,
{
    /// Balances over `discover` with `picker`.
    ///
    /// Changes `discover` has ready now are applied before this returns; a task spawned on the
    /// current tokio runtime follows the rest until every clone of the balancer is dropped.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, unless `discover` has already ended.
    pub fn with_picker(discover: D, picker: P) -> Self {
        Self {
            shared: set::spawn(discover, picker),
        }
    }
}

impl<D> LoadBalance<D>
where
    D: Discover + Send + 'static,
    D::Key: Hash + Eq + Clone + Weight + Send + Sync + 'static,
    D::Service: Clone + Send + Sync + 'static,
    D::Error: Into<BoxError>,
{
    /// Balances over `discover` with `algo`; clients are identified by their TCP peer address.
    ///
    /// See [`with_picker`](Balance::with_picker) for when discovery changes apply.
    pub fn new(discover: D, algo: Algo) -> Self {
        Self::with_picker(discover, AlgoPick::new(algo, ClientIp::peer()))
    }
}

impl<D, P> Balance<D, P>
where
    D: Discover,
    P: Pick<D::Key>,
{
    /// Resolves once the balancer publishes a new backend set (a backend joined, left or
    /// changed weight), after this call. A request waiting for a backend, or an admin
    /// operation waiting for a change to apply, waits on it rather than polling.
    ///
    /// It never resolves once discovery has ended.
    pub fn changed(&self) -> Changed {
        self.shared.changes.next()
    }

    /// The picker.
    pub fn picker(&self) -> &P {
        &self.shared.picker
    }

    /// The backends in the current set, in pick order.
    pub fn endpoints(&self) -> Vec<Arc<Endpoint<D::Key>>> {
        self.shared.set.load().endpoints.clone()
    }

    /// Backends that have left the set but still finish requests in flight.
    pub fn retired(&self) -> Vec<Arc<Endpoint<D::Key>>> {
        let set = self.shared.set.load();
        set.retired
            .iter()
            .filter(|e| e.in_flight() > 0)
            .cloned()
            .collect()
    }

    /// The number of backends in the current set, ready or not.
    pub fn len(&self) -> usize {
        self.shared.set.load().endpoints.len()
    }

    /// Whether the current set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<D, P, B, RB> Service<http::Request<B>> for Balance<D, P>
where
    D: Discover,
    D::Key: Send + Sync + 'static,
    D::Service:
        Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + Sync + 'static,
    <D::Service as Service<http::Request<B>>>::Error: Into<BoxError>,
    P: Pick<D::Key>,
{
    type Response = http::Response<TrackedBody<RB>>;
    type Error = BoxError;
    type Future = ResponseFuture<<D::Service as Service<http::Request<B>>>::Future>;

    /// Always ready: the backend is chosen in `call`, among those ready then.
    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let mut cx = Context::from_waker(Waker::noop());
        match self.reserve(&req, &mut cx, None) {
            Some(reserved) => reserved.call(req),
            None => self.no_backend(),
        }
    }
}

type BackendFuture<D, B> = <<D as Discover>::Service as Service<http::Request<B>>>::Future;

impl<D, P> Balance<D, P>
where
    D: Discover,
    D::Key: Send + Sync + 'static,
    P: Pick<D::Key>,
{
    /// Like [`call`](Service::call), but gives the request back when no backend is ready
    /// instead of failing with [`NoAvailableBackend`](crate::NoAvailableBackend).
    ///
    /// The backends are asked as `call` asks them: a fresh clone of each candidate's service
    /// gets `poll_ready` (with a waker that does nothing), and those not ready are dropped,
    /// which cancels whatever they registered. A caller that wants to wait for a backend uses
    /// [`try_call_with`](Self::try_call_with) instead.
    // The request is given back as it came, by value, on the rare path where no backend is
    // ready; the type is the one `call` returns.
    #[allow(clippy::result_large_err, clippy::type_complexity)]
    #[inline]
    pub fn try_call<B, RB>(
        &mut self,
        req: http::Request<B>,
    ) -> Result<ResponseFuture<BackendFuture<D, B>>, http::Request<B>>
    where
        D::Service: Service<http::Request<B>, Response = http::Response<RB>>
            + Clone
            + Send
            + Sync
            + 'static,
        <D::Service as Service<http::Request<B>>>::Error: Into<BoxError>,
    {
        // Readiness is asked, not awaited: a backend that is not ready now is skipped.
        let mut cx = Context::from_waker(Waker::noop());
        match self.reserve(&req, &mut cx, None) {
            Some(reserved) => Ok(reserved.call(req)),
            None => Err(req),
        }
    }

    /// Like [`try_call`](Self::try_call), for a caller that waits for a backend (a
    /// [`Queue`](crate::queue::Queue)): the backends are asked with `cx`'s waker, and the
    /// services that are not ready are kept in `parked`, so that whatever makes one of them
    /// ready later — a freed permit, a backend passing its health check, a rate limiter's
    /// timer, in any layer between the balancer and the backend — wakes `cx`'s task. Call it
    /// again when woken: parked services are asked again before new clones are made.
    ///
    /// A caller that waits should also wake on [`changed`](Self::changed), for a backend that
    /// joins the set.
    #[allow(clippy::result_large_err, clippy::type_complexity)]
    #[inline]
    pub fn try_call_with<B, RB>(
        &mut self,
        req: http::Request<B>,
        cx: &mut Context<'_>,
        parked: &mut Parked<D::Service>,
    ) -> Result<ResponseFuture<BackendFuture<D, B>>, http::Request<B>>
    where
        D::Service: Service<http::Request<B>, Response = http::Response<RB>>
            + Clone
            + Send
            + Sync
            + 'static,
        <D::Service as Service<http::Request<B>>>::Error: Into<BoxError>,
    {
        match self.reserve(&req, cx, Some(parked)) {
            Some(reserved) => Ok(reserved.call(req)),
            None => Err(req),
        }
    }

    /// Picks a backend for `req` and reserves it: its service is ready, and the request counts
    /// in flight on it. `None` when no backend is ready.
    ///
    /// The request is only borrowed here, and moved once, into the backend's `call`.
    #[inline]
    fn reserve<B, RB>(
        &self,
        req: &http::Request<B>,
        cx: &mut Context<'_>,
        mut parked: Option<&mut Parked<D::Service>>,
    ) -> Option<Reserved<D::Service>>
    where
        D::Service: Service<http::Request<B>, Response = http::Response<RB>>
            + Clone
            + Send
            + Sync
            + 'static,
        <D::Service as Service<http::Request<B>>>::Error: Into<BoxError>,
    {
        let shared = &self.shared;
        let set = shared.set.load();
        if let Some(parked) = parked.as_deref_mut() {
            parked.follow(set.generation, set.services.len());
        }
        // The backend whose service said ready, and that service. Saying ready reserves the
        // backend: the request counts in flight on it from then on, so a picker that tracks
        // load (least connections, bounded-load hashing) sees it within its own pick.
        let mut chosen: Option<(usize, D::Service)> = None;
        let tried = req.extensions().get::<Tried>();
        let picked = shared
            .picker
            .pick(&set.table, &set.endpoints, req, &mut |i| {
                if tried.is_some_and(|tried| tried.contains(set.endpoints[i].stats_arc())) {
                    return false;
                }
                let kept = parked.as_deref_mut().and_then(|p| p.services[i].take());
                let mut service = kept.unwrap_or_else(|| set.services[i].clone());
                match service.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        set.endpoints[i].stats().start();
                        // A picker that asks again after a yes keeps only its last reservation.
                        if let Some((earlier, _)) = chosen.replace((i, service)) {
                            set.endpoints[earlier].stats().finish();
                        }
                        true
                    }
                    Poll::Ready(Err(error)) => {
                        let error: BoxError = error.into();
                        tracing::debug!(slot = i, %error, "backend not ready");
                        false
                    }
                    Poll::Pending => {
                        if let Some(parked) = parked.as_deref_mut() {
                            parked.services[i] = Some(service);
                        }
                        false
                    }
                }
            });
        let (slot, service) = chosen?;
        // A picker returns the backend it reserved last (see `Pick::pick`). One that does not
        // is a bug; in release builds the request goes where its service was reserved.
        debug_assert_eq!(picked, Some(slot), "the picker returned another backend");
        let notify_load = shared.picker.observes_load();
        let tracks_latency = shared.picker.tracks_latency();
        let histograms = shared.response_times.load(Relaxed);
        let observer =
            (notify_load || tracks_latency).then(|| Arc::clone(shared) as Arc<dyn Observer>);
        let stats = Arc::clone(set.endpoints[slot].stats_arc());
        let set_cookie = shared.picker.set_cookie(&set.table, req, slot);
        drop(set);
        if let Some(tried) = tried {
            tried.push(Arc::clone(&stats));
        }
        Some(Reserved {
            service,
            in_flight: InFlight::reserved(stats, observer, notify_load, histograms, tracks_latency),
            set_cookie,
        })
    }
}

/// A backend reserved for one request by [`Balance::reserve`]: its ready service, and the
/// request counted in flight on it.
struct Reserved<S> {
    service: S,
    in_flight: InFlight,
    set_cookie: Option<HeaderValue>,
}

impl<S> Reserved<S> {
    /// Sends `req` to the backend.
    #[inline]
    fn call<B>(mut self, req: http::Request<B>) -> ResponseFuture<S::Future>
    where
        S: Service<http::Request<B>>,
    {
        ResponseFuture::called(self.service.call(req), self.in_flight, self.set_cookie)
    }
}

impl<D, P> Clone for Balance<D, P>
where
    D: Discover,
    P: Pick<D::Key>,
{
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<D, P> fmt::Debug for Balance<D, P>
where
    D: Discover,
    D::Key: fmt::Debug,
    P: Pick<D::Key> + fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balance")
            .field("picker", &self.shared.picker)
            .field("endpoints", &self.shared.set.load().endpoints)
            .finish()
    }
}

/// The balancer's own answer when no backend can take a request.
impl<D, P> Balance<D, P>
where
    D: Discover,
    P: Pick<D::Key>,
{
    /// A response future that fails at once with
    /// [`NoAvailableBackend`](crate::NoAvailableBackend), counted as one more
    /// [no-backend answer](crate::stats::BalancerSnapshot::no_backend).
    ///
    /// [`call`](tower::Service::call) answers so when no backend is ready; a caller of
    /// [`try_call`](Balance::try_call) that gives up waiting (a queue at its timeout) answers
    /// with this, so that its refusals are counted too.
    pub fn no_backend<F>(&self) -> ResponseFuture<F> {
        self.shared.no_backend.fetch_add(1, Relaxed);
        ResponseFuture::no_backend()
    }

    /// Turns the backends' response-time histograms on or off, for every clone of this
    /// balancer and from its next request.
    ///
    /// Off by default in the middleware: timing a request costs two more clock reads and four
    /// atomic additions (about 90 ns in the `pick` bench, most of a round-robin pick), which
    /// nobody should pay when nothing reads
    /// [`response_time`](crate::stats::BackendSnapshot::response_time) and
    /// [`total_time`](crate::stats::BackendSnapshot::total_time). An exporter made with
    /// [`BalancerMetrics::new`](crate::metrics::BalancerMetrics::new) turns them on, and so does
    /// the standalone server (its `/metrics` and `/status`); call this yourself when you export a
    /// snapshot another way. `LT` times its requests for its own estimate either way.
    pub fn record_response_times(&self, on: bool) {
        self.shared.response_times.store(on, Relaxed);
    }

    /// The requests answered with [`NoAvailableBackend`] so far.
    pub(crate) fn no_backend_answers(&self) -> u64 {
        self.shared.no_backend.load(Relaxed)
    }

    /// The discovery changes (backends added, updated, removed) applied so far.
    pub(crate) fn discovery_changes(&self) -> u64 {
        self.shared.discovery_changes.load(Relaxed)
    }
}
