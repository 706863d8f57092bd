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

use crate::admin::{self, Admin};
use crate::algo::AlgoPick;
use crate::balance::TrackedBody;
use crate::health::{HealthCheckDiscover, HttpProbe};
use crate::proxy::{self, BackendBody, ClientTls, HttpBackend, ProxyClient};
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

/// The body of every response the server sends: a backend's, or one of its own (JSend).
pub type ResponseBody = Either<TrackedBody<BackendBody<RetryBody<Incoming>>>, Full<Bytes>>;

/// What every connection shares.
pub(crate) struct Routes {
    pub(crate) balancer: Balancer,
    /// The balancer with its queue, under retries.
    pub(crate) proxy: Retry<Proxy>,
    pub(crate) admin: Admin<Backend, HttpProbe<RetryBody<Incoming>>>,
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
    /// `308 Permanent Redirect` to the same URL over `https://` on this port (the plain
    /// listener of [`Config::redirect_http`](super::Config::redirect_http)).
    Redirect { https_port: u16 },
}

/// Answers the requests of one connection.
pub(crate) struct Handler {
    pub(crate) routes: Arc<Routes>,
    pub(crate) peer: SocketAddr,
    pub(crate) serve: Serve,
    /// Whether the connection is TLS: requests carry [`ClientTls`].
    pub(crate) tls: bool,
}

impl hyper::service::Service<Request<Incoming>> for Handler {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(PeerAddr(self.peer));
        if self.tls {
            req.extensions_mut().insert(ClientTls);
        }
        let to_admin = match self.serve {
            Serve::All => admin::is_admin_path(req.uri().path()),
            Serve::Proxy => false,
            Serve::Admin => true,
            Serve::Redirect { https_port } => {
                return ResponseFuture::Ready {
                    res: Some(redirect(&req, https_port)),
                };
            }
        };
        if to_admin {
            return ResponseFuture::Admin {
                inner: self.routes.admin.clone().call(req),
            };
        }
        // Always ready: no `poll_ready` needed. Costs a clone of the retry layer, queue and
        // balancer (reference counts).
        ResponseFuture::Proxy {
            inner: self.routes.proxy.clone().call(req),
        }
    }
}

type ProxyFuture = retry::future::ResponseFuture<Proxy, Incoming>;

pin_project! {
    /// The response future of the server's service.
    #[project = ResponseFutureProj]
    pub(crate) enum ResponseFuture {
        Proxy { #[pin] inner: ProxyFuture },
        Admin { #[pin] inner: admin::ResponseFuture },
        Ready { res: Option<Response<ResponseBody>> },
    }
}

/// `308 Permanent Redirect` to `https://`, the request's host (its `Host`, or the
/// `:authority` of an HTTP/2 request; the listener's address without either) without its
/// port, `https_port` unless it is 443, and the path and query as they were. `308` rather than
/// `301` keeps the method and body of a `POST`.
fn redirect(req: &Request<Incoming>, https_port: u16) -> Response<ResponseBody> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .and_then(|host| host.parse::<http::uri::Authority>().ok())
        .or_else(|| req.uri().authority().cloned());
    let Some(host) = host else {
        return crate::jsend::fail(
            http::StatusCode::BAD_REQUEST,
            "a redirect to https needs a Host header",
        )
        .map(Either::Right);
    };
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = if https_port == 443 {
        format!("https://{}{path}", host.host())
    } else {
        format!("https://{}:{https_port}{path}", host.host())
    };
    let mut res = Response::new(Either::Right(Full::new(Bytes::new())));
    *res.status_mut() = http::StatusCode::PERMANENT_REDIRECT;
    match http::HeaderValue::try_from(location) {
        Ok(location) => {
            res.headers_mut().insert(http::header::LOCATION, location);
        }
        Err(_) => *res.status_mut() = http::StatusCode::BAD_REQUEST,
    }
    res
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, Infallible>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let res = match self.project() {
            ResponseFutureProj::Proxy { inner } => match ready!(inner.poll(cx)) {
                Ok(res) => res.map(Either::Left),
                Err(error) => {
                    if error.is::<NoAvailableBackend>() {
                        tracing::debug!(%error, "request not forwarded");
                    } else {
                        tracing::warn!(%error, "request not forwarded");
                    }
                    proxy::error_response(&error).map(Either::Right)
                }
            },
            ResponseFutureProj::Admin { inner } => match ready!(inner.poll(cx)) {
                Ok(res) => res.map(Either::Right),
            },
            ResponseFutureProj::Ready { res } => match res.take() {
                Some(res) => res,
                None => panic!("ResponseFuture polled after completion"),
            },
        };
        Poll::Ready(Ok(res))
    }
}
