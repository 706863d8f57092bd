//! [`HttpBackend`]: forwards requests to one backend.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Method, Request, Response, Uri, Version, header};
use http_body::Body;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tower::Service;

use super::body::{BackendBody, UploadBody};
use super::client::ProxyClient;
use super::future::{ResponseFuture, Upgrade};
use super::headers::{
    ClientTls, X_FORWARDED_HOST, X_FORWARDED_PROTO, append_forwarded_for, restore_upgrade,
    strip_hop_by_hop,
};
use super::limit::{Claim, Limit};
use super::pool::Host;
use super::served_by::ServedBy;
use crate::{BackendAddr, BoxError, ClientIp};

/// Forwards each request to one backend; see the [module docs](super).
///
/// `Clone + Send + Sync` and cheap to clone (clones share the client's connection pool).
/// Always ready, unless the client sets a
/// [per-backend cap](super::ProxyClientBuilder::max_conns_per_backend): then `poll_ready`
/// takes a place under the cap for the next `call` (kept by this clone until then), and is
/// `Pending` while the backend is at its cap. The cap and the response timeout are the
/// client's as they are when the request asks: a change
/// ([`ProxyClient::set_max_conns_per_backend`], [`ProxyClient::set_response_timeout`]) applies
/// to the requests that follow.
pub struct HttpBackend<B = Incoming> {
    // One `Arc` so that the balancer's per-request clone is a single reference count.
    shared: Arc<Shared<B>>,
    // The place under the cap `poll_ready` took for the next `call`, or waits for.
    claim: Claim,
}

struct Shared<B> {
    client: ProxyClient<B>,
    // The backend's connections, found once.
    host: Arc<Host<B>>,
    /// The requests under the cap, when the client has one.
    limit: Arc<Limit>,
    addr: BackendAddr,
}

impl<B> HttpBackend<B> {
    /// Forwards to `addr` (`http://127.0.0.1:1080`, or with a path prefix such as
    /// `http://10.0.0.5:8080/api`) through `client`.
    ///
    /// It cannot fail: a [`BackendAddr`] is valid once parsed, so a bad address is an error
    /// where it is parsed ([`InvalidBackendAddr`](crate::InvalidBackendAddr)), never here.
    pub fn new(addr: BackendAddr, client: ProxyClient<B>) -> Self {
        let limit = Limit::new();
        client.live.track(&limit);
        let host = client.pool.host(&addr);
        Self {
            claim: Claim::default(),
            shared: Arc::new(Shared {
                client,
                host,
                limit,
                addr,
            }),
        }
    }

    /// The backend's address, which requests are forwarded to.
    pub fn addr(&self) -> &BackendAddr {
        &self.shared.addr
    }

    /// The backend's `host:port`.
    pub fn authority(&self) -> &Authority {
        self.shared.addr.authority()
    }

    /// The client requests go through.
    pub fn client(&self) -> &ProxyClient<B> {
        &self.shared.client
    }

    /// Requests (and upgraded tunnels) in flight to this backend under its cap, if it has
    /// one.
    pub fn in_use(&self) -> Option<usize> {
        self.max_conns().map(|_| self.shared.limit.in_use())
    }

    /// The backend's cap, if it has one: the client's now.
    pub fn max_conns(&self) -> Option<usize> {
        self.shared.client.max_conns_per_backend()
    }

    #[cfg(test)]
    pub(crate) fn shared_host(&self) -> &Arc<Host<B>> {
        &self.shared.host
    }
}

impl<B> Shared<B> {
    /// Rewrites a client request into the backend request, in place. Returns the client's
    /// side of a connection upgrade, if it asks for one and its server supports it.
    fn rewrite(&self, parts: &mut http::request::Parts) -> Result<Option<OnUpgrade>, BoxError> {
        // Origin form (`/path?query`): the connection is to the backend already.
        let original = std::mem::take(&mut parts.uri).into_parts();
        let original_authority = original.authority;
        let path = original
            .path_and_query
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let path = self.addr.join(path)?;
        parts.uri = Uri::from(path);
        parts.version = Version::HTTP_11;

        let headers = &mut parts.headers;
        // `TE: trailers` says the client takes trailers (gRPC needs it): kept for the backend,
        // which the response's trailers are passed back from as they come.
        let trailers = accepts_trailers(headers);
        let http1 = !self.addr.scheme().is_http2();
        let upgrade = strip_hop_by_hop(headers).and_then(|upgrade| {
            // Only HTTP/1.1 upgrades, to backends that speak HTTP/1.1 (an `https://` one gets
            // an HTTP/1.1 connection for it), and only when the server hands the connection
            // over.
            let on_upgrade = parts.extensions.remove::<OnUpgrade>().filter(|_| http1)?;
            restore_upgrade(headers, upgrade);
            Some(on_upgrade)
        });
        if trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        // Room for the X-Forwarded-* headers (and Host), so the map grows at most once.
        headers.reserve(4);
        let host = match headers.get(header::HOST) {
            Some(host) => Some(host.clone()),
            // HTTP/2 clients send `:authority` instead of `Host`; backends speak HTTP/1.1.
            None => original_authority.and_then(|authority| {
                let host = HeaderValue::from_str(authority.as_str()).ok()?;
                headers.insert(header::HOST, host.clone());
                Some(host)
            }),
        };
        match host {
            Some(host) => headers.insert(&X_FORWARDED_HOST, host),
            None => {
                // An HTTP/1.0 request without `Host`: the backend's own, as clients send.
                headers.insert(
                    header::HOST,
                    HeaderValue::from_str(self.addr.authority().as_str())?,
                );
                headers.remove(&X_FORWARDED_HOST)
            }
        };
        let proto = if parts.extensions.get::<ClientTls>().is_some() {
            "https"
        } else {
            "http"
        };
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        if let Some(peer) = ClientIp::peer_in(&parts.extensions) {
            append_forwarded_for(&mut parts.headers, peer.ip());
        }
        Ok(upgrade)
    }
}

/// Whether `TE` lists `trailers` (RFC 9110 §10.1.4).
fn accepts_trailers(headers: &http::HeaderMap) -> bool {
    headers.get_all(header::TE).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value.split(',').any(|t| {
                t.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("trailers")
            })
        })
    })
}

impl<B> Service<Request<B>> for HttpBackend<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<BackendBody<B>>;
    type Error = BoxError;
    type Future = ResponseFuture<B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some(max) = self.shared.client.live.max_conns_per_backend() {
            std::task::ready!(self.claim.poll_acquire(&self.shared.limit, max, cx));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = &*self.shared;
        let capped = shared.client.live.max_conns_per_backend().is_some();
        let slot = self.claim.take(&shared.limit, capped);
        let (mut parts, body) = req.into_parts();
        if let Some(served_by) = parts.extensions.get::<ServedBy>() {
            served_by.set(&shared.addr);
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            // The request's span (the server's `request`), when there is one.
            tracing::Span::current().record("backend", tracing::field::display(&shared.addr));
            tracing::debug!(backend = %shared.addr, "forwarding");
        }
        let on_upgrade = match shared.rewrite(&mut parts) {
            Ok(on_upgrade) => on_upgrade,
            Err(err) => return ResponseFuture::failed(err),
        };
        // Read once: the request keeps this timeout whatever the client is set to later.
        let timeout = shared.client.live.response_timeout();
        // Track the upload only when it matters: a body to send and a timeout to start after it.
        let upload = (timeout.is_some() && !body.is_end_stream()).then(Arc::default);
        let body = UploadBody::new(body, upload.clone());
        let upgrade = on_upgrade.map(|client| {
            Box::new(Upgrade {
                client,
                tunnels: Arc::clone(&shared.client.tunnels),
            })
        });
        ResponseFuture::new(
            Arc::clone(&shared.host),
            Request::from_parts(parts, body),
            timeout,
            upload,
            slot,
            upgrade,
        )
    }
}

/// A `method` request for `path_and_query` (under the backend's prefix) with `body` on the
/// backend at `addr`, through `client`'s pool: the connections, connector and timeouts
/// traffic uses, as an [`HttpProbe`](crate::health::HttpProbe) sends its checks (a bodiless
/// `GET`, or a gRPC call). It takes no place under the backend's cap (as HAProxy's checks do
/// not count toward a server's `maxconn`). The request carries `Host` (the backend's) and
/// `headers`.
pub(crate) fn check<B>(
    client: &ProxyClient<B>,
    addr: &BackendAddr,
    method: Method,
    path_and_query: PathAndQuery,
    headers: http::HeaderMap,
    body: bytes::Bytes,
) -> ResponseFuture<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let request = addr
        .join(path_and_query)
        .map_err(BoxError::from)
        .and_then(|target| {
            let mut req = Request::new(UploadBody::full(body));
            *req.method_mut() = method;
            *req.uri_mut() = Uri::from(target);
            *req.version_mut() = Version::HTTP_11;
            *req.headers_mut() = headers;
            let host = HeaderValue::from_str(addr.authority().as_str())?;
            req.headers_mut().insert(header::HOST, host);
            Ok(req)
        });
    match request {
        Ok(req) => ResponseFuture::new(
            client.pool.host(addr),
            req,
            client.live.response_timeout(),
            None,
            None,
            None,
        ),
        Err(error) => ResponseFuture::failed(error),
    }
}

impl<B> Clone for HttpBackend<B> {
    /// A clone without the original's place under the cap.
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            claim: Claim::default(),
        }
    }
}

impl<B> fmt::Debug for HttpBackend<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpBackend")
            .field("addr", &self.shared.addr)
            .field("client", &self.shared.client)
            .field("limit", &self.shared.limit)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(base: &str) -> HttpBackend {
        HttpBackend::new(base.parse().unwrap(), ProxyClient::new())
    }

    fn rewrite(backend: &HttpBackend, req: Request<()>) -> http::request::Parts {
        let (mut parts, ()) = req.into_parts();
        assert!(backend.shared.rewrite(&mut parts).unwrap().is_none());
        parts
    }

    #[test]
    fn is_clone_send_sync_and_its_future_is_send() {
        fn assert<T: Clone + Send + Sync + 'static>() {}
        fn assert_send<T: Send + 'static>() {}
        assert::<HttpBackend>();
        assert::<ProxyClient>();
        assert_send::<ResponseFuture>();
    }

    #[test]
    fn target_is_rewritten_and_path_kept_byte_for_byte() {
        let b = backend("http://127.0.0.1:1080");
        let req = Request::post("/a/%2F/b?a=1&a=2&b=%2F&&c")
            .version(Version::HTTP_10)
            .header("host", "lb.example:8080")
            .body(())
            .unwrap();
        let parts = rewrite(&b, req);
        // Origin form: the connection is to the backend already.
        assert_eq!(parts.uri, "/a/%2F/b?a=1&a=2&b=%2F&&c");
        assert_eq!(parts.version, Version::HTTP_11);
        assert_eq!(parts.method, http::Method::POST);
        assert_eq!(parts.headers["host"], "lb.example:8080");
        assert_eq!(parts.headers["x-forwarded-host"], "lb.example:8080");
        assert_eq!(parts.headers["x-forwarded-proto"], "http");
        assert!(!parts.headers.contains_key("x-forwarded-for"));
        assert!(!parts.headers.contains_key("te"));
    }

    #[test]
    fn te_trailers_is_kept_and_other_te_values_dropped() {
        let b = backend("http://127.0.0.1:1080");
        for (te, kept) in [
            ("trailers", true),
            ("gzip, Trailers", true),
            ("gzip;q=0.5", false),
        ] {
            let req = Request::get("/").header("te", te).body(()).unwrap();
            let parts = rewrite(&b, req);
            assert_eq!(parts.headers.get("te").is_some(), kept, "{te}");
            if kept {
                assert_eq!(parts.headers["te"], "trailers");
            }
        }
    }

    #[test]
    fn base_path_is_a_prefix() {
        for base in ["http://127.0.0.1:1080/api", "http://127.0.0.1:1080/api/"] {
            let b = backend(base);
            let parts = rewrite(&b, Request::get("/x?y=1").body(()).unwrap());
            assert_eq!(parts.uri, "/api/x?y=1");
        }
        let b = backend("http://127.0.0.1:1080/");
        assert_eq!(b.addr().to_string(), "http://127.0.0.1:1080");
        assert_eq!(b.authority(), "127.0.0.1:1080");
        let parts = rewrite(&b, Request::get("/").body(()).unwrap());
        assert_eq!(parts.uri, "/");
    }

    #[test]
    fn a_request_without_host_gets_the_backends_and_no_forwarded_host() {
        let b = backend("http://127.0.0.1:1080");
        let req = Request::get("/")
            .version(Version::HTTP_10)
            .header("x-forwarded-host", "spoofed.example")
            .body(())
            .unwrap();
        let parts = rewrite(&b, req);
        assert_eq!(parts.headers["host"], "127.0.0.1:1080");
        assert!(!parts.headers.contains_key("x-forwarded-host"));
    }

    #[test]
    fn http2_authority_becomes_host_and_peer_is_appended() {
        let b = backend("http://127.0.0.1:1080");
        let mut req = Request::get("http://lb.example/p")
            .version(Version::HTTP_2)
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-forwarded-proto", "https")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(crate::PeerAddr("192.0.2.7:5555".parse().unwrap()));
        let parts = rewrite(&b, req);
        assert_eq!(parts.uri, "/p");
        assert_eq!(parts.version, Version::HTTP_11);
        assert_eq!(parts.headers["host"], "lb.example");
        assert_eq!(parts.headers["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(parts.headers["x-forwarded-proto"], "http");
    }

    #[test]
    fn a_request_over_tls_is_forwarded_with_proto_https_whatever_the_client_sent() {
        let b = backend("http://127.0.0.1:1080");
        let mut req = Request::get("/")
            .header("host", "lb.example")
            .header("x-forwarded-proto", "http")
            .body(())
            .unwrap();
        req.extensions_mut().insert(ClientTls);
        let parts = rewrite(&b, req);
        assert_eq!(parts.headers["x-forwarded-proto"], "https");
    }

    #[test]
    fn a_capped_backend_is_pending_at_its_cap_and_clones_hold_their_slot() {
        let client = ProxyClient::builder().max_conns_per_backend(1).build();
        let b: HttpBackend = HttpBackend::new("http://127.0.0.1:1080".parse().unwrap(), client);
        assert_eq!((b.max_conns(), b.in_use()), (Some(1), Some(0)));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut first = b.clone();
        assert!(first.poll_ready(&mut cx).is_ready());
        assert!(
            first.poll_ready(&mut cx).is_ready(),
            "a clone keeps its slot"
        );
        assert_eq!(b.in_use(), Some(1));
        let mut second = b.clone();
        assert!(second.poll_ready(&mut cx).is_pending());
        drop(first);
        assert_eq!(b.in_use(), Some(0));
        assert!(second.poll_ready(&mut cx).is_ready());

        let uncapped = backend("http://127.0.0.1:1080");
        assert_eq!((uncapped.max_conns(), uncapped.in_use()), (None, None));
        let zero = ProxyClient::<Incoming>::builder()
            .max_conns_per_backend(0)
            .build::<Incoming>();
        assert_eq!(zero.max_conns_per_backend(), None);
    }

    /// A waker that remembers it was woken.
    #[derive(Default)]
    struct Woken(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_cap_set_on_the_client_applies_to_its_backends_next_poll() {
        let client: ProxyClient = ProxyClient::builder().build();
        let b: HttpBackend = HttpBackend::new("http://127.0.0.1:1080".parse().unwrap(), client);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut uncapped = b.clone();
        assert!(uncapped.poll_ready(&mut cx).is_ready());
        assert_eq!(b.in_use(), None, "no cap, no count");

        b.client().set_max_conns_per_backend(1);
        assert_eq!((b.max_conns(), b.in_use()), (Some(1), Some(0)));
        let mut first = b.clone();
        assert!(first.poll_ready(&mut cx).is_ready());
        let mut second = b.clone();
        let woken = Arc::new(Woken::default());
        let waker = std::task::Waker::from(Arc::clone(&woken));
        assert!(
            second
                .poll_ready(&mut Context::from_waker(&waker))
                .is_pending()
        );

        b.client().set_max_conns_per_backend(2);
        assert!(
            woken.0.load(std::sync::atomic::Ordering::SeqCst),
            "a caller waiting at the old cap is woken"
        );
        assert!(second.poll_ready(&mut cx).is_ready(), "the raised cap");
        assert_eq!(b.in_use(), Some(2));

        b.client().set_max_conns_per_backend(None);
        let mut third = b.clone();
        assert!(third.poll_ready(&mut cx).is_ready());
        assert_eq!(b.in_use(), None);
        drop((first, second));
        b.client().set_max_conns_per_backend(1);
        assert_eq!(b.in_use(), Some(0), "the slots taken were given back");
    }

    #[test]
    fn non_http_bases_are_rejected_when_parsed() {
        // An `HttpBackend` takes a `BackendAddr`, so a bad base fails to parse, with its name.
        for base in ["ftp://127.0.0.1:1080", "/just/a/path", "http://h:1/?q=1"] {
            let err = base.parse::<BackendAddr>().unwrap_err();
            assert!(err.to_string().contains(base), "{err}");
        }
    }
}
