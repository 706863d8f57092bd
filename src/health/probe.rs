//! How a backend is checked: the [`Probe`] trait and closures as probes.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use pin_project_lite::pin_project;

use crate::weight::Weighted;
use crate::{BackendAddr, BoxError, InvalidBackendAddr};

/// Checks whether the backend named by a discovery key `K` is healthy.
///
/// [`HealthCheckLayer`](super::HealthCheckLayer) calls [`probe`](Probe::probe) for every
/// backend every interval, under a timeout; `Ok(())` is a pass, any error a failure. The
/// future runs on the backend's own probe task, never on the request path.
///
/// Implemented by `HttpProbe` (feature `proxy`) and, through [`probe_fn`], by closures.
pub trait Probe<K>: Clone + Send + Sync + 'static {
    /// The check in progress.
    type Future: Future<Output = Result<(), BoxError>> + Send + 'static;

    /// Starts one check of the backend `key`.
    fn probe(&self, key: &K) -> Self::Future;
}

/// Turns a closure into a [`Probe`], as tower's `service_fn` does for services.
///
/// The closure gets the backend's key and returns a future that resolves to `Ok(())` when the
/// backend is healthy, or an error saying why not.
///
/// ```
/// use tower_lb::health::{probe_fn, Probe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let probe = probe_fn(|port: &u16| {
///     let port = *port;
///     async move {
///         if port == 80 { Ok(()) } else { Err(format!("nothing on port {port}")) }
///     }
/// });
/// assert!(probe.probe(&80).await.is_ok());
/// assert_eq!(probe.probe(&81).await.unwrap_err().to_string(), "nothing on port 81");
/// # }
/// ```
pub fn probe_fn<F>(f: F) -> ProbeFn<F> {
    ProbeFn { f }
}

/// A [`Probe`] made from a closure by [`probe_fn`].
#[derive(Clone, Copy)]
pub struct ProbeFn<F> {
    f: F,
}

impl<F> fmt::Debug for ProbeFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeFn")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

impl<K, F, Fut, E> Probe<K> for ProbeFn<F>
where
    F: Fn(&K) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    type Future = ProbeFnFuture<Fut>;

    fn probe(&self, key: &K) -> Self::Future {
        ProbeFnFuture {
            inner: (self.f)(key),
        }
    }
}

pin_project! {
    /// The future of a [`ProbeFn`]: the closure's future with its error boxed.
    pub struct ProbeFnFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, E> Future for ProbeFnFuture<F>
where
    F: Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map_err(Into::into)
    }
}

impl<F> fmt::Debug for ProbeFnFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeFnFuture").finish_non_exhaustive()
    }
}

/// A discovery key that names an HTTP backend, so `HttpProbe` (feature `proxy`) can check it.
///
/// Implemented for [`BackendAddr`], for [`Uri`] (`http://10.0.0.1:8080`, optionally with a
/// path prefix; the rules of [`BackendAddr`]'s `FromStr`), for [`SocketAddr`] (checked over
/// plain HTTP) and for [`Weighted`] keys of any of them.
pub trait ProbeTarget {
    /// The backend's address; the probe's path goes under its prefix.
    fn backend_addr(&self) -> Result<Cow<'_, BackendAddr>, InvalidBackendAddr>;
}

impl ProbeTarget for BackendAddr {
    fn backend_addr(&self) -> Result<Cow<'_, BackendAddr>, InvalidBackendAddr> {
        Ok(Cow::Borrowed(self))
    }
}

impl ProbeTarget for Uri {
    fn backend_addr(&self) -> Result<Cow<'_, BackendAddr>, InvalidBackendAddr> {
        BackendAddr::try_from(self).map(Cow::Owned)
    }
}

impl ProbeTarget for SocketAddr {
    fn backend_addr(&self) -> Result<Cow<'_, BackendAddr>, InvalidBackendAddr> {
        BackendAddr::try_from(*self).map(Cow::Owned)
    }
}

impl<T: ProbeTarget> ProbeTarget for Weighted<T> {
    fn backend_addr(&self) -> Result<Cow<'_, BackendAddr>, InvalidBackendAddr> {
        self.key().backend_addr()
    }
}
