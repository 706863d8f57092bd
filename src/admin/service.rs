use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde::Serialize;
use tower::Service;

use super::parse::{MAX_BODY, address_string, parse_registration};
use crate::health::Probe;
use crate::registry::Registry;
use crate::{BoxError, jsend};

type Confirm = dyn Fn(&Uri, u32) -> bool + Send + Sync;
type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

/// The `/register` endpoint as a [`Service`]. See the [module docs](super).
///
/// It answers every request it is given as a `/register` request: route the path to it.
/// Clones share the registry and the probe.
#[must_use]
pub struct Admin<S, P> {
    registry: Registry<Uri, S>,
    probe: P,
    timeout: Duration,
    confirm: Option<Arc<Confirm>>,
}

impl<S, P> Admin<S, P> {
    /// Registers backends in `registry` once `probe` passes for them, within 2 seconds.
    pub fn new(registry: Registry<Uri, S>, probe: P) -> Self {
        Self {
            registry,
            probe,
            timeout: Duration::from_secs(2),
            confirm: None,
        }
    }

    /// How long the check at registration may take (default 2 s); use the health checks'
    /// timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// After registering, waits until `serving(address, weight)` is `true` before answering,
    /// for at most the [`timeout`](Self::timeout), polling every millisecond.
    ///
    /// A balancer applies registry changes on its own task; with this, a client that got its
    /// `200` can count on the next request seeing the backend. The
    /// [`Server`](crate::server::Server) checks that its balancer holds the backend with that
    /// weight, and marks it healthy (it has just passed a check).
    pub fn wait_until<F>(mut self, serving: F) -> Self
    where
        F: Fn(&Uri, u32) -> bool + Send + Sync + 'static,
    {
        self.confirm = Some(Arc::new(serving));
        self
    }

    /// The registry backends are added to.
    pub fn registry(&self) -> &Registry<Uri, S> {
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
            probe: self.probe.clone(),
            timeout: self.timeout,
            confirm: self.confirm.clone(),
        }
    }
}

impl<S, P: fmt::Debug> fmt::Debug for Admin<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("registry", &self.registry)
            .field("probe", &self.probe)
            .field("timeout", &self.timeout)
            .field("wait_until", &self.confirm.is_some())
            .finish()
    }
}

impl<S, P, B> Service<Request<B>> for Admin<S, P>
where
    S: Send + 'static,
    P: Probe<Uri>,
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
        // Refusals that need no body are answered without reading it.
        if let Some(res) = precheck(&req) {
            return ResponseFuture::ready(res);
        }
        let admin = self.clone();
        ResponseFuture {
            inner: Box::pin(async move { Ok(admin.register(req.into_body()).await) }),
        }
    }
}

/// Method, content type and declared length.
fn precheck<B>(req: &Request<B>) -> Option<Response<Full<Bytes>>> {
    if req.method() != Method::POST {
        let mut res = jsend::fail(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} is not allowed: use POST", req.method()),
        );
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return Some(res);
    }
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

impl<S, P> Admin<S, P>
where
    P: Probe<Uri>,
{
    async fn register<B>(self, body: B) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(error) if error.is::<LengthLimitError>() => return too_large(),
            Err(error) => {
                tracing::debug!(%error, "could not read a /register body");
                return jsend::fail(StatusCode::BAD_REQUEST, "could not read the body");
            }
        };
        let spec = match parse_registration(&body) {
            Ok(spec) => spec,
            Err(error) => {
                tracing::debug!(%error, "registration refused");
                return jsend::fail(error.status(), error.to_string());
            }
        };
        let (uri, weight) = spec.into_parts();
        let address = address_string(&uri);
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
        let outcome = self.registry.register(uri.clone(), weight);
        tracing::info!(backend = %address, weight, ?outcome, "backend registered");
        if let Some(confirm) = &self.confirm {
            self.wait_for(&**confirm, &uri, weight, &address).await;
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

    async fn wait_for(&self, confirm: &Confirm, uri: &Uri, weight: u32, address: &str) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        while !confirm(uri, weight) {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(backend = %address, "registered, but not serving yet");
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// The response future of [`Admin`].
///
/// Registration is rare and waits for a health check, so its future is boxed.
pub struct ResponseFuture {
    inner: BoxFuture,
}

impl ResponseFuture {
    fn ready(res: Response<Full<Bytes>>) -> Self {
        Self {
            inner: Box::pin(std::future::ready(Ok(res))),
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
