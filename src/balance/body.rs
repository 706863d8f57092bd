use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Buf;
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::ConnectTime;
use super::endpoint::Stats;
use super::set::Observer;

/// Keeps one request counted in flight on a backend until dropped, and, when asked, times it:
/// to its response head, and (once it has one) to the end of its body, when dropped.
///
/// The count was raised when the pick reserved the backend (see `Balance::reserve`);
/// dropping this lowers it and tells the picker that observes load.
pub(crate) struct InFlight {
    stats: Arc<Stats>,
    observer: Option<Arc<dyn Observer>>,
    /// Whether the observer hears when the request finishes.
    notify_load: bool,
    /// Whether the observer hears the response time (or the failure).
    tracks_latency: bool,
    /// When the request was sent, if it is timed: for the histograms, or for an observer that
    /// tracks latency. Reading the clock is most of what timing costs, so untimed requests
    /// don't.
    sent: Option<Instant>,
    /// Whether the times go to the backend's histograms.
    histograms: bool,
    /// Whether a response head arrived: only then is the time to the body's end recorded.
    answered: bool,
}

impl InFlight {
    /// Takes over the request `stats` already counts in flight.
    pub(crate) fn reserved(
        stats: Arc<Stats>,
        observer: Option<Arc<dyn Observer>>,
        notify_load: bool,
        histograms: bool,
        tracks_latency: bool,
    ) -> Self {
        Self {
            stats,
            observer,
            notify_load,
            tracks_latency,
            sent: (histograms || tracks_latency).then(Instant::now),
            histograms,
            answered: false,
        }
    }

    /// A response head arrived with `status`: counts it, records the time to it, and tells
    /// the observer that tracks latency (a `5xx` as a failure: a fast 5xx must not make the
    /// backend look fast).
    ///
    /// The part of the wait the response's `extensions` report as spent opening a connection
    /// ([`ConnectTime`]) is left out of what the observer hears.
    #[inline]
    pub(crate) fn answered(&mut self, status: StatusCode, extensions: &http::Extensions) {
        self.answered = true;
        self.stats.record_response(status);
        let Some(sent) = self.sent else {
            return;
        };
        // One clock read serves the histogram and the observer, which stamps its sample with it.
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(sent);
        if self.histograms {
            self.stats.record_response_time(elapsed);
        }
        if let (true, Some(observer)) = (self.tracks_latency, &self.observer) {
            let connect = extensions.get::<ConnectTime>().map(|c| c.0);
            let elapsed = elapsed.saturating_sub(connect.unwrap_or_default());
            if status.is_server_error() {
                observer.failure(&self.stats, elapsed, now);
            } else {
                observer.latency(&self.stats, elapsed, now);
            }
        }
    }

    /// The backend failed before a response head: counts it, and tells the observer that
    /// tracks latency.
    #[inline]
    pub(crate) fn failed(&self) {
        self.stats.record_failure();
        if let (true, Some(observer), Some(sent)) = (self.tracks_latency, &self.observer, self.sent)
        {
            let now = Instant::now();
            observer.failure(&self.stats, now.saturating_duration_since(sent), now);
        }
    }

    fn notify(&self) {
        if let (true, Some(observer)) = (self.notify_load, &self.observer) {
            observer.load_changed(&self.stats);
        }
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let (true, true, Some(sent)) = (self.answered, self.histograms, self.sent) {
            self.stats.record_total(sent.elapsed());
        }
        self.stats.finish();
        self.notify();
    }
}

pin_project! {
    /// A backend's response body; the request stops counting as in flight when it ends.
    ///
    /// It ends at its last frame, at an error, or when dropped, whichever comes first.
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        in_flight: Option<InFlight>,
    }
}

impl<B> TrackedBody<B> {
    pub(crate) fn new(inner: B, in_flight: InFlight) -> Self {
        Self {
            inner,
            in_flight: Some(in_flight),
        }
    }

    /// The backend's body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Returns the backend's body; the request stops counting as in flight.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for TrackedBody<B>
where
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        let polled = inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                this.in_flight.take();
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(in_flight) = this.in_flight.take() {
                    in_flight.stats().record_body_error();
                }
            }
            Poll::Ready(Some(Ok(_))) => {
                if inner.is_end_stream() {
                    this.in_flight.take();
                }
            }
            Poll::Pending => {}
        }
        polled
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

impl<B: std::fmt::Debug> std::fmt::Debug for TrackedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackedBody")
            .field("inner", &self.inner)
            .field("in_flight", &self.in_flight.is_some())
            .finish()
    }
}
