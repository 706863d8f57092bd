//! [`HttpProbe`]: the active health check over HTTP, through the forwarding client.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, TE, USER_AGENT as USER_AGENT_HEADER};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body::Body;
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use super::error::{InvalidProbeUri, UnhealthyStatus};
use super::grpc::{self, GrpcUnhealthy};
use super::probe::{Probe, ProbeTarget};
use crate::proxy::future::ResponseFuture;
use crate::proxy::{self, BackendBody, ProxyClient};
use crate::{BackendAddr, BoxError};

/// At most this much of a health-check response body is read (so that the connection can be
/// reused); the rest is dropped with the connection.
const MAX_DRAIN: usize = 64 * 1024;

/// The `User-Agent` of every check.
const USER_AGENT: &str = "tower-lb-health-check";

/// Checks HTTP backends with `GET <backend><path>`; a `2xx` answer is a pass.
///
/// Anything else fails the check: another status ([`UnhealthyStatus`]), a connection error, or
/// (under [`HealthCheckLayer`](super::HealthCheckLayer)) the timeout.
///
/// The path goes under the backend's path prefix: for backend `http://10.0.0.1:8080/api/` and
/// path `/health` the check is `GET /api/health` to `10.0.0.1:8080`.
///
/// # One client for checks and traffic
///
/// Checks go through a [`ProxyClient`], the client that forwards requests: give it the
/// balancer's own with [`with_client`](Self::with_client) (the
/// [`Server`](crate::server::Server) does), and a check takes the very path a request takes —
/// the same connection pool, connector (`TCP_NODELAY`, name resolution) and connect timeout —
/// so it judges what traffic meets. Like Envoy's health checks (and unlike HAProxy's, which
/// open a fresh connection each time), a check reuses an idle keep-alive connection of the
/// pool when there is one, and its connection goes back to the pool once the answer is read: a
/// backend whose pooled connections are all broken, or which no longer accepts new ones, fails
/// its check as a request would. The pool keeps a backend's connections while its forwarding
/// service ([`HttpBackend`](crate::proxy::HttpBackend) on the same client) lives; with none —
/// the check at registration, before the backend has one, or a probe with a client of its own
/// — a check's connection closes after it, and each check opens a fresh one, as HAProxy's do.
/// A check takes no place under the backend's
/// [cap](crate::proxy::ProxyClientBuilder::max_conns_per_backend), as HAProxy's checks do not
/// count toward a server's `maxconn`. The client's response timeout applies, and the layer's
/// (or the caller's) timeout for the whole check on top. [`new`](Self::new) makes a client of
/// its own, with the default settings.
///
/// `B` is the client's request body type; a check sends no body.
///
/// # gRPC
///
/// [`grpc`](Self::grpc) makes a probe that calls gRPC's own health check instead,
/// `grpc.health.v1.Health/Check` with a service name (empty for the server as a whole), on
/// an `h2c://` backend: the check passes when the call ends with `grpc-status: 0` and the
/// answer is `SERVING` (anything else is a [`GrpcUnhealthy`] naming it), as Envoy's and
/// Kubernetes' gRPC probes judge. The messages are written by hand (see the `grpc` module's
/// source): no `protoc`, no protobuf crate.
///
/// It can also be called directly, for instance to check a backend before registering it:
///
/// ```no_run
/// use tower_lb::BackendAddr;
/// use tower_lb::health::{HttpProbe, Probe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let probe = HttpProbe::new("/health");
/// let backend: BackendAddr = "http://127.0.0.1:8080".parse().unwrap();
/// match probe.probe(&backend).await {
///     Ok(()) => println!("healthy"),
///     Err(error) => println!("not registered: {error}"),
/// }
/// # }
/// ```
pub struct HttpProbe<B = Incoming> {
    path: Arc<str>,
    /// The path, parsed; `None` if it is not a valid path and query (every check fails).
    target: Option<PathAndQuery>,
    client: ProxyClient<B>,
    /// For a gRPC check: its request message (the service name in it).
    grpc: Option<Bytes>,
}

impl HttpProbe {
    /// The path checked by default: `/health`.
    pub const DEFAULT_PATH: &'static str = "/health";

    /// Checks `path` (a leading `/` is added if missing; it may carry a query) with a client
    /// of its own.
    pub fn new(path: impl Into<String>) -> Self {
        Self::with_client(ProxyClient::new(), path)
    }

    /// Checks with gRPC's health check for `service` (`""`: the server as a whole), with a
    /// client of its own; see [gRPC](Self#grpc).
    pub fn new_grpc(service: &str) -> Self {
        Self::grpc(ProxyClient::new(), service)
    }
}

impl<B> HttpProbe<B> {
    /// Checks `path` through `client`: the balancer's own, so that checks and traffic share
    /// one connection path.
    pub fn with_client(client: ProxyClient<B>, path: impl Into<String>) -> Self {
        let mut path = path.into();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        Self {
            target: PathAndQuery::try_from(path.as_str()).ok(),
            path: path.into(),
            client,
            grpc: None,
        }
    }

    /// Checks with gRPC's health check, `grpc.health.v1.Health/Check` for `service` (`""`:
    /// the server as a whole), through `client`; see [gRPC](Self#grpc).
    pub fn grpc(client: ProxyClient<B>, service: &str) -> Self {
        Self {
            grpc: Some(grpc::check_request(service)),
            ..Self::with_client(client, grpc::CHECK_PATH)
        }
    }

    /// Whether it makes gRPC health checks.
    pub fn is_grpc(&self) -> bool {
        self.grpc.is_some()
    }

    /// The path checked on every backend.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The client checks go through.
    pub fn client(&self) -> &ProxyClient<B> {
        &self.client
    }

    /// The URI checked for the backend at `addr`: its address with this probe's path under
    /// its prefix ([`BackendAddr::uri_with`]).
    pub fn uri_for(&self, addr: &BackendAddr) -> Result<Uri, InvalidProbeUri> {
        addr.uri_with(&self.path)
            .map_err(|error| InvalidProbeUri::new(format!("{addr}{}", self.path), Some(error)))
    }
}

impl<B> HttpProbe<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Checks the backend at `addr` (see [`uri_for`](Self::uri_for)).
    pub fn check(&self, addr: &BackendAddr) -> HttpProbeFuture<B> {
        let Some(target) = self.target.clone() else {
            return HttpProbeFuture::failed(self.uri_for(addr).err().map_or_else(
                || format!("invalid health check path {:?}", self.path).into(),
                Into::into,
            ));
        };
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(USER_AGENT_HEADER, HeaderValue::from_static(USER_AGENT));
        let (method, body) = match &self.grpc {
            Some(message) => {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
                headers.insert(TE, HeaderValue::from_static("trailers"));
                (Method::POST, message.clone())
            }
            None => (Method::GET, Bytes::new()),
        };
        HttpProbeFuture {
            state: State::Requesting {
                inner: proxy::check(&self.client, addr, method, target, headers, body),
                grpc: self.grpc.is_some(),
            },
        }
    }
}

impl Default for HttpProbe {
    /// Checks [`DEFAULT_PATH`](Self::DEFAULT_PATH).
    fn default() -> Self {
        Self::new(Self::DEFAULT_PATH)
    }
}

impl<B> Clone for HttpProbe<B> {
    fn clone(&self) -> Self {
        Self {
            path: Arc::clone(&self.path),
            target: self.target.clone(),
            client: self.client.clone(),
            grpc: self.grpc.clone(),
        }
    }
}

impl<B> fmt::Debug for HttpProbe<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProbe")
            .field("path", &self.path)
            .field("grpc", &self.grpc.is_some())
            .field("client", &self.client)
            .finish()
    }
}

impl<K, B> Probe<K> for HttpProbe<B>
where
    K: ProbeTarget,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Future = HttpProbeFuture<B>;

    fn probe(&self, key: &K) -> Self::Future {
        match key.backend_addr() {
            Ok(addr) => self.check(&addr),
            Err(error) => HttpProbeFuture::failed(error.into()),
        }
    }
}

pin_project! {
    /// One check by an [`HttpProbe`].
    pub struct HttpProbeFuture<B = Incoming> {
        #[pin]
        state: State<B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B> {
        Failed { error: Option<BoxError> },
        Requesting {
            #[pin]
            inner: ResponseFuture<B>,
            grpc: bool,
        },
        // A 2xx arrived; its body is read so the connection goes back to the pool.
        Draining { body: BackendBody<B>, read: usize },
        // A gRPC answer: its message and trailers are read, then judged.
        Grpc { body: BackendBody<B>, message: BytesMut, headers: HeaderMap },
    }
}

impl<B> HttpProbeFuture<B> {
    fn failed(error: BoxError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<B> Future for HttpProbeFuture<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
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
                StateProj::Requesting { inner, grpc } => {
                    let response = ready!(inner.poll(cx))?;
                    let status = response.status();
                    if *grpc && status == StatusCode::OK {
                        let (parts, body) = response.into_parts();
                        state.set(State::Grpc {
                            body,
                            message: BytesMut::new(),
                            // A Trailers-Only answer has `grpc-status` here.
                            headers: parts.headers,
                        });
                        continue;
                    }
                    if !status.is_success() || *grpc {
                        return Poll::Ready(Err(UnhealthyStatus::new(status).into()));
                    }
                    state.set(State::Draining {
                        body: response.into_body(),
                        read: 0,
                    });
                }
                StateProj::Grpc {
                    body,
                    message,
                    headers,
                } => {
                    while !body.is_end_stream() {
                        let Some(frame) = ready!(Pin::new(&mut *body).poll_frame(cx)) else {
                            break;
                        };
                        match frame?.into_data() {
                            Ok(data) if message.len() + data.len() <= MAX_DRAIN => {
                                message.extend_from_slice(&data);
                            }
                            Ok(_) => return Poll::Ready(Err(GrpcUnhealthy::Malformed.into())),
                            Err(frame) => {
                                if let Ok(trailers) = frame.into_trailers() {
                                    headers.extend(trailers);
                                }
                            }
                        }
                    }
                    let result = grpc::judge(
                        headers.get("grpc-status").map(HeaderValue::as_bytes),
                        headers.get("grpc-message").map(HeaderValue::as_bytes),
                        message,
                    );
                    return Poll::Ready(result.map_err(Into::into));
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

impl<B> fmt::Debug for HttpProbeFuture<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProbeFuture").finish_non_exhaustive()
    }
}
