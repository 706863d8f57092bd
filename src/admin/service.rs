use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::IpNet;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde::Serialize;
use tower::Service;

use super::access::{Access, AdminToken, check_backend};
use super::backends::{self, BalancerView};
use super::parse::{MAX_BODY, RegisterError, parse_deregistration, parse_registration};
use super::target::Target;
use crate::addr::BackendAddr;
use crate::client_ip::ClientIp;
use crate::health::{HealthMonitor, Probe};
use crate::registry::Registry;
use crate::weight::Weighted;
use crate::{BoxError, jsend};

/// The path that registers (`POST`) and drains (`DELETE`) backends.
pub const REGISTER_PATH: &str = "/register";

/// The path that lists backends (`GET`).
pub const BACKENDS_PATH: &str = "/backends";

/// Whether [`Admin`] serves `path`: [`REGISTER_PATH`] or [`BACKENDS_PATH`]. Two string
/// comparisons, cheap enough for a request path to route with.
#[inline]
pub fn is_admin_path(path: &str) -> bool {
    path == REGISTER_PATH || path == BACKENDS_PATH
}

type Confirm = dyn Fn(&BackendAddr, u32) -> bool + Send + Sync;
type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

/// The admin API as a [`Service`]. See the [module docs](super).
///
/// It answers every request it is given as an admin request (`404` for a path it does not
/// serve): route the paths of [`is_admin_path`] to it. Clones share the registry and the probe.
#[must_use]
pub struct Admin<S, P> {
    registry: Registry<BackendAddr, S>,
    target: Target<S>,
    probe: P,
    timeout: Duration,
    confirm: Option<Arc<Confirm>>,
    access: Access,
    allowed: Arc<[IpNet]>,
    view: Option<Arc<dyn BalancerView>>,
    monitor: Option<HealthMonitor<Weighted<BackendAddr>>>,
}

impl<S, P> Admin<S, P> {
    /// Registers backends in `registry` once `probe` passes for them, within 2 seconds.
    ///
    /// It serves loopback peers only, registers any address, and lists backends with the
    /// registry's weights alone until given a [`balancer`](Self::balancer) and a
    /// [`monitor`](Self::monitor).
    pub fn new(registry: Registry<BackendAddr, S>, probe: P) -> Self {
        Self {
            target: Target::Local(registry.clone()),
            registry,
            probe,
            timeout: Duration::from_secs(2),
            confirm: None,
            access: Access::loopback(),
            allowed: Arc::new([]),
            view: None,
            monitor: None,
        }
    }

    /// How long the check at registration may take (default 2 s); use the health checks'
    /// timeout. It also bounds how long `DELETE /register` waits for the balancer.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// After registering, waits until `serving(address, weight)` is `true` before answering,
    /// for at most the [`timeout`](Self::timeout). It is asked at once, then again each time
    /// the [`balancer`](Self::balancer) publishes a new set or a health check of the
    /// [`monitor`](Self::monitor) finishes; without either, only once.
    ///
    /// A balancer applies registry changes on its own task; with this, a client that got its
    /// `200` can count on the next request seeing the backend. The
    /// [`Server`](crate::server::Server) checks that its balancer holds the backend with that
    /// weight and that the health checks have run once on it, and marks it healthy (it has
    /// just passed a check).
    pub fn wait_until<F>(mut self, serving: F) -> Self
    where
        F: Fn(&BackendAddr, u32) -> bool + Send + Sync + 'static,
    {
        self.confirm = Some(Arc::new(serving));
        self
    }

    /// Requires `Authorization: Bearer <token>` on every request, from any peer, trusted or
    /// not; a missing or wrong token is a `401`.
    pub fn token(mut self, token: impl Into<Option<AdminToken>>) -> Self {
        self.access.token = token.into();
        self
    }

    /// The peers that may use the API when no [`token`](Self::token) is set (default
    /// [`LOOPBACK`](super::LOOPBACK)); others get a `403`. The peer is read from the request's
    /// [`PeerAddr`](crate::PeerAddr) (or axum's `ConnectInfo`); a request without one is
    /// refused.
    pub fn trusted_peers(mut self, networks: impl IntoIterator<Item = IpNet>) -> Self {
        self.access.trusted = networks.into_iter().collect();
        self
    }

    /// Registers only backends whose host is an IP address in one of these networks (default:
    /// any backend); others get a `403` naming the reason, before any check is sent to them.
    /// Host names are refused when networks are set, since what they resolve to may change
    /// after the check.
    pub fn allow_backends(mut self, networks: impl IntoIterator<Item = IpNet>) -> Self {
        self.allowed = networks.into_iter().collect();
        self
    }

    /// The balancer whose counters `GET /backends` reports, and whose set `DELETE /register`
    /// waits to see the backend leave.
    pub fn balancer(mut self, balancer: impl BalancerView) -> Self {
        self.view = Some(Arc::new(balancer));
        self
    }

    /// The health checks whose results `GET /backends` reports.
    pub fn monitor(mut self, monitor: HealthMonitor<Weighted<BackendAddr>>) -> Self {
        self.monitor = Some(monitor);
        self
    }

    /// Writes `POST` and `DELETE /register` to etcd instead of the registry, answering once
    /// etcd has acknowledged the write (`503` naming etcd if it fails). The registry should
    /// follow the same prefix ([`EtcdSync`](crate::discover::EtcdSync)): the answer then
    /// waits, as without etcd, until the balancer has applied the change. The validation
    /// and the check at registration are the same.
    #[cfg(feature = "etcd")]
    #[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
    pub fn etcd(mut self, registrations: crate::discover::EtcdRegistrations) -> Self {
        self.target = Target::Etcd(Box::new(registrations));
        self
    }

    /// The registry backends are added to (without [`etcd`](Self::etcd)) and listed from.
    pub fn registry(&self) -> &Registry<BackendAddr, S> {
        &self.registry
    }

    /// The probe a backend must pass to be registered.
    pub fn probe(&self) -> &P {
        &self.probe
    }
}

impl<S, P: Clone> Clone for Admin<S, P> {
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
            target: self.target.clone(),
            probe: self.probe.clone(),
            timeout: self.timeout,
            confirm: self.confirm.clone(),
            access: self.access.clone(),
            allowed: Arc::clone(&self.allowed),
            view: self.view.clone(),
            monitor: self.monitor.clone(),
        }
    }
}

impl<S, P: fmt::Debug> fmt::Debug for Admin<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("registry", &self.registry)
            .field("target", &self.target)
            .field("probe", &self.probe)
            .field("timeout", &self.timeout)
            .field("wait_until", &self.confirm.is_some())
            .field("token", &self.access.token)
            .field("trusted_peers", &self.access.trusted)
            .field("allow_backends", &self.allowed)
            .field("balancer", &self.view.is_some())
            .field("monitor", &self.monitor.is_some())
            .finish()
    }
}

impl<S, P, B> Service<Request<B>> for Admin<S, P>
where
    S: Send + 'static,
    P: Probe<BackendAddr>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ResponseFuture;

    /// Always ready.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Err(refusal) = self.access.check(&req) {
            tracing::info!(
                peer = ?ClientIp::peer_of(&req),
                method = %req.method(),
                path = req.uri().path(),
                status = refusal.status.as_u16(),
                "admin request refused",
            );
            let mut res = jsend::fail(refusal.status, refusal.message);
            if refusal.status == StatusCode::UNAUTHORIZED {
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return ResponseFuture::ready(res);
        }
        let method = req.method().clone();
        match (req.uri().path(), method) {
            (REGISTER_PATH, Method::POST) => {
                if let Some(res) = precheck(&req) {
                    return ResponseFuture::ready(res);
                }
                let admin = self.clone();
                ResponseFuture::boxed(async move { admin.register(req.into_body()).await })
            }
            (REGISTER_PATH, Method::DELETE) => {
                if let Some(res) = precheck(&req) {
                    return ResponseFuture::ready(res);
                }
                let admin = self.clone();
                ResponseFuture::boxed(async move { admin.drain(req.into_body()).await })
            }
            (REGISTER_PATH, method) => ResponseFuture::ready(not_allowed(&method, "POST, DELETE")),
            (BACKENDS_PATH, Method::GET) => ResponseFuture::ready(self.list()),
            (BACKENDS_PATH, method) => ResponseFuture::ready(not_allowed(&method, "GET")),
            (path, method) => ResponseFuture::ready(jsend::fail(
                StatusCode::NOT_FOUND,
                format!(
                    "no admin route {method} {path}: the admin API serves \
                     {REGISTER_PATH} and {BACKENDS_PATH}"
                ),
            )),
        }
    }
}

fn not_allowed(method: &Method, allow: &'static str) -> Response<Full<Bytes>> {
    let mut res = jsend::fail(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed: use {allow}"),
    );
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    res
}

/// Content type and declared length of a request with a JSON body.
fn precheck<B>(req: &Request<B>) -> Option<Response<Full<Bytes>>> {
    if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
        if !is_json(content_type) {
            return Some(jsend::fail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON: send Content-Type: application/json",
            ));
        }
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        return Some(too_large());
    }
    None
}

/// `application/json` or `application/<anything>+json`, with any parameters.
fn is_json(content_type: &HeaderValue) -> bool {
    let Ok(value) = content_type.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence
        .strip_prefix("application/")
        .is_some_and(|subtype| subtype == "json" || subtype.ends_with("+json"))
}

/// `503` with the JSend error of a store that could not take a write.
fn unavailable(address: &str, error: &str) -> Response<Full<Bytes>> {
    tracing::warn!(backend = %address, %error, "registration store unavailable");
    jsend::error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("{address}: the registration was not stored: {error}"),
    )
}

fn too_large() -> Response<Full<Bytes>> {
    jsend::fail(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than {MAX_BODY} bytes"),
    )
}

#[derive(Serialize)]
struct Registered {
    server: String,
    weight: u32,
}

#[derive(Serialize)]
struct Drained {
    server: String,
    /// `draining` while requests are in flight, `removed` once none is.
    state: &'static str,
    /// `null` without a balancer to ask.
    in_flight: Option<usize>,
}

/// Reads a whole body of at most [`MAX_BODY`] bytes, or the answer that refuses it.
async fn read_body<B>(body: B) -> Result<Bytes, Response<Full<Bytes>>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(too_large()),
        Err(error) => {
            tracing::debug!(%error, "could not read an admin request body");
            Err(jsend::fail(
                StatusCode::BAD_REQUEST,
                "could not read the body",
            ))
        }
    }
}

/// Reads the body and parses it with `parse`, or the JSend answer that refuses it.
async fn read_parsed<B, T>(
    body: B,
    parse: fn(&[u8]) -> Result<T, RegisterError>,
    what: &'static str,
) -> Result<T, Response<Full<Bytes>>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let body = read_body(body).await?;
    parse(&body).map_err(|error| {
        tracing::debug!(%error, what, "admin request refused");
        jsend::fail(error.status(), error.to_string())
    })
}

/// Waits until `done` is `true` (then `true`) or `timeout` passes, asking it again each time
/// the balancer publishes a new set or, with a monitor, a health check finishes. With
/// neither, nothing changes what it reads: it is asked once.
async fn wait_until(
    timeout: Duration,
    view: Option<&dyn BalancerView>,
    monitor: Option<&HealthMonitor<Weighted<BackendAddr>>>,
    done: impl Fn() -> bool,
) -> bool {
    if view.is_none() && monitor.is_none() {
        return done();
    }
    let changes = async {
        loop {
            // Listen before looking, so that a change in between is not missed.
            let mut changed = view.map(|view| view.changed());
            let mut checked = monitor.map(HealthMonitor::checked);
            if done() {
                return;
            }
            std::future::poll_fn(|cx| {
                let changed = changed
                    .as_mut()
                    .is_some_and(|changed| changed.as_mut().poll(cx).is_ready());
                let checked = checked
                    .as_mut()
                    .is_some_and(|checked| Pin::new(checked).poll(cx).is_ready());
                if changed || checked {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
        }
    };
    tokio::time::timeout(timeout, changes).await.is_ok()
}

impl<S, P> Admin<S, P>
where
    P: Probe<BackendAddr>,
{
    async fn register<B>(self, body: B) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let spec = match read_parsed(body, parse_registration, "registration").await {
            Ok(spec) => spec,
            Err(res) => return res,
        };
        let (uri, weight) = spec.into_parts();
        let address = uri.to_string();
        if let Err(reason) = check_backend(&uri, &self.allowed) {
            tracing::info!(backend = %address, %reason, "registration refused: backend not allowed");
            return jsend::fail(StatusCode::FORBIDDEN, reason);
        }
        let checked = tokio::time::timeout(self.timeout, self.probe.probe(&uri)).await;
        if let Some(error) = match checked {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some(format!("no answer within {:?}", self.timeout)),
        } {
            tracing::info!(backend = %address, %error, "registration failed: backend not alive");
            return jsend::fail(
                StatusCode::NOT_FOUND,
                format!("{address} not alive, registration failed."),
            );
        }
        if let Err(error) = self.target.register(&uri, weight).await {
            return unavailable(&address, &error);
        }
        if let Some(confirm) = &self.confirm {
            let (view, monitor) = (self.view.as_deref(), self.monitor.as_ref());
            if !wait_until(self.timeout, view, monitor, || confirm(&uri, weight)).await {
                tracing::warn!(backend = %address, "registered, but not serving yet");
            }
        }
        jsend::response(
            StatusCode::OK,
            jsend::Status::Success,
            &Registered {
                server: address,
                weight,
            },
        )
    }

    /// `DELETE /register`: deregisters at once, so the balancer sends the backend nothing
    /// new, and reports the requests it still finishes.
    async fn drain<B>(self, body: B) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let uri = match read_parsed(body, parse_deregistration, "deregistration").await {
            Ok(uri) => uri,
            Err(res) => return res,
        };
        let address = uri.to_string();
        let deregistered = match self.target.deregister(&uri).await {
            Ok(deregistered) => deregistered,
            Err(error) => return unavailable(&address, &error),
        };
        if !deregistered {
            return jsend::fail(
                StatusCode::NOT_FOUND,
                format!("{address} is not registered."),
            );
        }
        let in_flight = match &self.view {
            None => None,
            Some(view) => {
                let in_set =
                    |e: &Arc<crate::Endpoint<Weighted<BackendAddr>>>| e.key().key() == &uri;
                let left = || !view.endpoints().iter().any(in_set);
                if !wait_until(self.timeout, Some(&**view), None, left).await {
                    tracing::warn!(backend = %address, "deregistered, but still in the balancer's set");
                }
                Some(
                    view.retired()
                        .iter()
                        .filter(|e| in_set(e))
                        .map(|e| e.in_flight())
                        .sum(),
                )
            }
        };
        let state = if in_flight == Some(0) {
            "removed"
        } else {
            "draining"
        };
        tracing::info!(backend = %address, state, ?in_flight, "backend deregistered");
        jsend::response(
            StatusCode::OK,
            jsend::Status::Success,
            &Drained {
                server: address,
                state,
                in_flight,
            },
        )
    }

    /// `GET /backends`.
    fn list(&self) -> Response<Full<Bytes>> {
        let (endpoints, retired) = match &self.view {
            Some(view) => (view.endpoints(), view.retired()),
            None => (Vec::new(), Vec::new()),
        };
        let list = backends::list(self.registry.backends(), &endpoints, &retired, |uri| {
            self.monitor.as_ref()?.get(uri)
        });
        jsend::response(StatusCode::OK, jsend::Status::Success, &list)
    }
}

/// The response future of [`Admin`].
///
/// Admin requests are rare and registration waits for a health check, so its future is boxed.
pub struct ResponseFuture {
    inner: BoxFuture,
}

impl ResponseFuture {
    fn ready(res: Response<Full<Bytes>>) -> Self {
        Self {
            inner: Box::pin(std::future::ready(Ok(res))),
        }
    }

    fn boxed(res: impl Future<Output = Response<Full<Bytes>>> + Send + 'static) -> Self {
        Self {
            inner: Box::pin(async move { Ok(res.await) }),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
