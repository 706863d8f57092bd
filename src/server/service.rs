//! The per-connection service: admin paths to the admin, everything else to the balancer.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tower::Service;

use super::access_log::{AccessLog, Logged, Pending};
use crate::admin::{self, Admin};
use crate::algo::AlgoPick;
use crate::balance::TrackedBody;
use crate::health::{HealthCheckDiscover, HttpProbe};
use crate::proxy::{self, BackendBody, HttpBackend, ProxyClient};
use crate::queue::Queue;
use crate::retry::{self, Retry, RetryBody};
use crate::{BackendAddr, LoadBalance, NoAvailableBackend, PeerAddr, RegistryDiscover};

/// The balancer a [`Server`](super::Server) runs: its algorithm over the health-checked
/// backends of its registry.
pub type Balancer = LoadBalance<BackendSet>;

/// The health-checked backends of the registry.
type BackendSet =
    HealthCheckDiscover<RegistryDiscover<BackendAddr, Backend>, HttpProbe<RetryBody<Incoming>>>;

/// The service that forwards to one backend. Its requests carry a [`RetryBody`]: the
/// client's body, or an empty one when a request is [retried](crate::retry).
pub type Backend = HttpBackend<RetryBody<Incoming>>;

/// The client every [`Backend`] forwards through.
pub(crate) type Client = ProxyClient<RetryBody<Incoming>>;

/// The balancer, with the wait for a ready backend ([`Config::queue_timeout`](super::Config)).
pub(crate) type Proxy = Queue<BackendSet, AlgoPick>;

/// The body of every response the server sends: a backend's, or one of its own (JSend),
/// [logged](super::access_log) when it ends.
pub type ResponseBody = Logged<Either<TrackedBody<BackendBody<RetryBody<Incoming>>>, Full<Bytes>>>;

/// What every connection shares.
pub(crate) struct Routes {
    pub(crate) balancer: Balancer,
    /// The balancer with its queue, under retries.
    pub(crate) proxy: Retry<Proxy>,
    pub(crate) admin: Admin<Backend, HttpProbe<RetryBody<Incoming>>>,
    /// Where proxied requests are logged, with [`Config::access_log`](super::Config).
    pub(crate) access_log: Option<AccessLog>,
}

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serve {
    /// The admin paths ([`admin::is_admin_path`]) to the admin, the rest to the balancer.
    All,
    /// Everything to the balancer, admin paths included: the admin has its own listener.
    Proxy,
    /// Everything to the admin (the admin's own listener).
    Admin,
}

/// Answers the requests of one connection.
pub(crate) struct Handler {
    pub(crate) routes: Arc<Routes>,
    pub(crate) peer: SocketAddr,
    pub(crate) serve: Serve,
}

impl hyper::service::Service<Request<Incoming>> for Handler {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(PeerAddr(self.peer));
        let to_admin = match self.serve {
            Serve::All => admin::is_admin_path(req.uri().path()),
            Serve::Proxy => false,
            Serve::Admin => true,
        };
        if to_admin {
            return ResponseFuture::Admin {
                inner: self.routes.admin.clone().call(req),
            };
        }
        // One span per proxied request; `Span::none()`, which costs nothing to enter, when
        // debug is off for the server.
        let span = tracing::debug_span!(
            "request",
            method = %req.method(),
            path = req.uri().path(),
            backend = tracing::field::Empty,
        );
        let log = self
            .routes
            .access_log
            .as_ref()
            .map(|log| Pending::start(log, &mut req));
        // Always ready: no `poll_ready` needed. Costs a clone of the retry layer, queue and
        // balancer (reference counts).
        let inner = span.in_scope(|| self.routes.proxy.clone().call(req));
        ResponseFuture::Proxy { inner, span, log }
    }
}

type ProxyFuture = retry::future::ResponseFuture<Proxy, Incoming>;

pin_project! {
    /// The response future of the server's service.
    #[project = ResponseFutureProj]
    pub(crate) enum ResponseFuture {
        Proxy { #[pin] inner: ProxyFuture, span: tracing::Span, log: Option<Box<Pending>> },
        Admin { #[pin] inner: admin::ResponseFuture },
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, Infallible>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let res = match self.project() {
            ResponseFutureProj::Proxy { inner, span, log } => {
                let _entered = span.enter();
                let res = match ready!(inner.poll(cx)) {
                    Ok(res) => res.map(Either::Left),
                    Err(error) => {
                        if error.is::<NoAvailableBackend>() {
                            tracing::debug!(%error, "request not forwarded");
                        } else {
                            tracing::warn!(%error, "request not forwarded");
                        }
                        proxy::error_response(&error).map(Either::Right)
                    }
                };
                tracing::debug!(status = res.status().as_u16(), "answered");
                let log = log.take().map(|log| log.head(res.status()));
                res.map(|body| Logged::new(body, log))
            }
            ResponseFutureProj::Admin { inner } => match ready!(inner.poll(cx)) {
                Ok(res) => res.map(|body| Logged::new(Either::Right(body), None)),
            },
        };
        Poll::Ready(Ok(res))
    }
}
