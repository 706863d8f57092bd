//! [`HttpProbe`]: the active health check over HTTP.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::Uri;
use http::uri::Scheme;
use http_body::Body;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use pin_project_lite::pin_project;

use super::error::{InvalidProbeUri, UnhealthyStatus};
use super::probe::{Probe, ProbeTarget};
use crate::BoxError;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// At most this much of a health-check response body is read (so that the connection can be
/// reused); the rest is dropped with the connection.
const MAX_DRAIN: usize = 64 * 1024;

/// Checks HTTP backends with `GET <backend><path>`; a `2xx` answer is a pass.
///
/// Anything else fails the check: another status ([`UnhealthyStatus`]), a connection error, or
/// (under [`HealthCheckLayer`](super::HealthCheckLayer)) the timeout. Clones share one pooled
/// HTTP/1 client, so checks reuse their keep-alive connections.
///
/// The path is appended to the backend's base URI: for backend `http://10.0.0.1:8080/api/`
/// and path `/health` the check is `GET http://10.0.0.1:8080/api/health`.
///
/// It can also be called directly, for instance to check a backend before registering it:
///
/// ```no_run
/// use tower_lb::health::{HttpProbe, Probe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let probe = HttpProbe::new("/health");
/// let backend: http::Uri = "http://127.0.0.1:8080".parse().unwrap();
/// match probe.probe(&backend).await {
///     Ok(()) => println!("healthy"),
///     Err(error) => println!("not registered: {error}"),
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct HttpProbe {
    path: Arc<str>,
    client: HttpClient,
}

impl HttpProbe {
    /// Checks `path` (a leading `/` is added if missing; it may carry a query).
    pub fn new(path: impl Into<String>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1)
            .build(connector);
        Self::with_client(client, path)
    }

    /// Checks `path` with a client of your own (connect timeout, pool size, …).
    pub fn with_client(
        client: Client<HttpConnector, Empty<Bytes>>,
        path: impl Into<String>,
    ) -> Self {
        let mut path = path.into();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        Self {
            path: path.into(),
            client,
        }
    }

    /// The path checked on every backend.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The URI checked for the backend at `base`: its scheme (`http` if none) and authority, its
    /// path without a trailing `/`, then this probe's path.
    pub fn uri_for(&self, base: &Uri) -> Result<Uri, InvalidProbeUri> {
        let Some(authority) = base.authority() else {
            return Err(InvalidProbeUri::new(base.to_string(), None));
        };
        let scheme = base.scheme().cloned().unwrap_or(Scheme::HTTP);
        let prefix = base.path().trim_end_matches('/');
        Uri::builder()
            .scheme(scheme)
            .authority(authority.clone())
            .path_and_query(format!("{prefix}{}", self.path))
            .build()
            .map_err(|error| InvalidProbeUri::new(base.to_string(), Some(error)))
    }

    /// Checks the backend at `base` (see [`uri_for`](Self::uri_for)).
    pub fn check(&self, base: &Uri) -> HttpProbeFuture {
        let state = match self.uri_for(base) {
            Ok(uri) => {
                let request = http::Request::get(uri)
                    .header(http::header::USER_AGENT, "tower-lb-health-check")
                    .body(Empty::new());
                match request {
                    Ok(request) => State::Requesting {
                        inner: self.client.request(request),
                    },
                    Err(error) => State::Failed {
                        error: Some(error.into()),
                    },
                }
            }
            Err(error) => State::Failed {
                error: Some(error.into()),
            },
        };
        HttpProbeFuture { state }
    }
}

impl Default for HttpProbe {
    /// Checks `/health`.
    fn default() -> Self {
        Self::new("/health")
    }
}

impl fmt::Debug for HttpProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProbe")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<K: ProbeTarget> Probe<K> for HttpProbe {
    type Future = HttpProbeFuture;

    fn probe(&self, key: &K) -> Self::Future {
        match key.base_uri() {
            Ok(base) => self.check(&base),
            Err(error) => HttpProbeFuture {
                state: State::Failed {
                    error: Some(error.into()),
                },
            },
        }
    }
}

pin_project! {
    /// One check by an [`HttpProbe`].
    pub struct HttpProbeFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Failed { error: Option<BoxError> },
        Requesting {
            #[pin]
            inner: hyper_util::client::legacy::ResponseFuture,
        },
        // A 2xx arrived; its body is read so the connection goes back to the pool.
        Draining { body: Incoming, read: usize },
    }
}

impl Future for HttpProbeFuture {
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Failed { error } => {
                    let error = error
                        .take()
                        .unwrap_or_else(|| "polled after completion".into());
                    return Poll::Ready(Err(error));
                }
                StateProj::Requesting { inner } => {
                    let response = ready!(inner.poll(cx))?;
                    let status = response.status();
                    if !status.is_success() {
                        return Poll::Ready(Err(UnhealthyStatus::new(status).into()));
                    }
                    state.set(State::Draining {
                        body: response.into_body(),
                        read: 0,
                    });
                }
                StateProj::Draining { body, read } => {
                    // The status decided the check; the body only matters for reusing the
                    // connection, so its errors and excess are ignored.
                    while *read <= MAX_DRAIN && !body.is_end_stream() {
                        match ready!(Pin::new(&mut *body).poll_frame(cx)) {
                            Some(Ok(frame)) => {
                                *read += frame.data_ref().map_or(0, Buf::remaining);
                            }
                            Some(Err(_)) | None => break,
                        }
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl fmt::Debug for HttpProbeFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProbeFuture").finish_non_exhaustive()
    }
}
