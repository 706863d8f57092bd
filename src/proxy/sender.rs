//! [`Sender`]: the sending side of one backend connection, HTTP/1.1 or HTTP/2.
//!
//! An HTTP/1.1 connection carries one request at a time, so its sender goes back to the pool
//! when the response ends. An HTTP/2 connection (`h2c://` backends) carries many requests at
//! once as streams (RFC 9113 §5): every request in flight holds a clone of its sender with a
//! [`Stream`] that counts it on the connection, so that the pool opens another connection only
//! when one is at its stream limit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version, header};
use http_body::Body;
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1, http2};

use super::body::UploadBody;

/// hyper's future for one request on one connection; boxed, since its type has no name.
pub(crate) type Sent<B> = Pin<
    Box<
        dyn Future<Output = Result<Response<Incoming>, TrySendError<Request<UploadBody<B>>>>>
            + Send,
    >,
>;

/// The sending side of one backend connection.
pub(crate) enum Sender<B> {
    /// An HTTP/1.1 connection, which this request has to itself.
    Http1(http1::SendRequest<UploadBody<B>>),
    /// One stream on a shared HTTP/2 connection.
    Http2 {
        sender: http2::SendRequest<UploadBody<B>>,
        // Counts this request on its connection until dropped.
        _stream: Stream,
    },
}

impl<B> Sender<B> {
    /// Whether the connection can take a request now.
    pub(crate) fn is_ready(&self) -> bool {
        match self {
            Self::Http1(sender) => sender.is_ready(),
            Self::Http2 { sender, .. } => sender.is_ready(),
        }
    }

    /// Whether the connection is closed.
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Self::Http1(sender) => sender.is_closed(),
            Self::Http2 { sender, .. } => sender.is_closed(),
        }
    }

    /// Whether requests on it are multiplexed (HTTP/2): it never goes back to an idle stack.
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, Self::Http2 { .. })
    }

    /// Ready for a request, or an error once the connection is closed.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        match self {
            Self::Http1(sender) => sender.poll_ready(cx),
            Self::Http2 { sender, .. } => sender.poll_ready(cx),
        }
    }
}

impl<B> Sender<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<crate::BoxError>,
{
    /// Sends `req`; a request the connection could not send comes back in the error.
    pub(crate) fn send(&mut self, req: Request<UploadBody<B>>) -> Sent<B> {
        match self {
            Self::Http1(sender) => Box::pin(sender.try_send_request(req)),
            Self::Http2 { sender, .. } => Box::pin(sender.try_send_request(req)),
        }
    }
}

/// Puts a request written for an HTTP/1.1 backend (origin form, `Host`) in the form an HTTP/2
/// connection sends: an absolute URI whose authority becomes `:authority` (the `Host` the
/// caller set, else `backend`), `:scheme` `https` over TLS and `http` otherwise, and no
/// `Host` header (RFC 9113 §8.3.1).
pub(crate) fn to_http2<T>(
    mut req: Request<T>,
    backend: &Authority,
    transport: crate::BackendScheme,
) -> Request<T> {
    *req.version_mut() = Version::HTTP_2;
    let host = req.headers_mut().remove(header::HOST);
    if req.uri().scheme().is_some() {
        return req;
    }
    let authority = host
        .and_then(|host| Authority::try_from(host.as_bytes()).ok())
        .unwrap_or_else(|| backend.clone());
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.scheme = Some(if transport.is_tls() {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    });
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    // Scheme, authority and path are all set: this cannot fail.
    *req.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
    req
}

/// Undoes [`to_http2`] for a request that goes out on an HTTP/1.1 connection after all (the
/// backend chose `http/1.1` on a new connection): origin form, its `:authority` as `Host`.
/// A request in HTTP/1.1's form already is returned as it is.
pub(crate) fn to_http1<T>(mut req: Request<T>) -> Request<T> {
    if req.version() != Version::HTTP_2 {
        return req;
    }
    *req.version_mut() = Version::HTTP_11;
    let parts = std::mem::take(req.uri_mut()).into_parts();
    if let Some(authority) = &parts.authority {
        if let Ok(host) = header::HeaderValue::from_str(authority.as_str()) {
            req.headers_mut().entry(header::HOST).or_insert(host);
        }
    }
    let path = parts
        .path_and_query
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(path);
    req
}

/// One HTTP/2 connection of a backend and its requests in flight.
pub(crate) struct Http2Conn<B> {
    sender: http2::SendRequest<UploadBody<B>>,
    streams: Arc<AtomicUsize>,
}

impl<B> Http2Conn<B> {
    pub(crate) fn new(sender: http2::SendRequest<UploadBody<B>>) -> Self {
        Self {
            sender,
            streams: Arc::default(),
        }
    }

    /// A sender for one more request on this connection, counted until it is dropped.
    pub(crate) fn open(&self) -> Sender<B> {
        self.streams.fetch_add(1, Ordering::AcqRel);
        Sender::Http2 {
            sender: self.sender.clone(),
            _stream: Stream(Arc::clone(&self.streams)),
        }
    }

    /// Requests in flight on it.
    pub(crate) fn streams(&self) -> usize {
        self.streams.load(Ordering::Acquire)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// A request in flight on an HTTP/2 connection: counted from [`Http2Conn::open`] until the
/// response body ends, fails or is dropped (the pool drops the sender that holds it then).
#[derive(Debug)]
pub(crate) struct Stream(Arc<AtomicUsize>);

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackendScheme;

    #[test]
    fn requests_for_http2_carry_host_as_their_authority() {
        let backend: Authority = "127.0.0.1:9000".parse().unwrap();
        let req = Request::get("/a?b=1")
            .header("host", "api.example:8080")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let req = to_http2(req, &backend, BackendScheme::H2c);
        assert_eq!(req.version(), Version::HTTP_2);
        assert_eq!(req.uri(), "http://api.example:8080/a?b=1");
        assert!(!req.headers().contains_key("host"));
        assert_eq!(req.headers()["te"], "trailers");

        let req = to_http2(
            Request::get("/").body(()).unwrap(),
            &backend,
            BackendScheme::H2c,
        );
        assert_eq!(req.uri(), "http://127.0.0.1:9000/");
        let req = to_http2(
            Request::get("/").body(()).unwrap(),
            &backend,
            BackendScheme::Https,
        );
        assert_eq!(req.uri(), "https://127.0.0.1:9000/");
    }

    #[test]
    fn a_request_put_in_http2_form_goes_back_to_http1_form() {
        let backend: Authority = "127.0.0.1:9000".parse().unwrap();
        let original = Request::get("/a?b=1")
            .version(Version::HTTP_11)
            .header("host", "api.example:8080")
            .body(())
            .unwrap();
        let req = to_http1(to_http2(original, &backend, BackendScheme::Https));
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.uri(), "/a?b=1");
        assert_eq!(req.headers()["host"], "api.example:8080");

        // HTTP/1.1's form already: untouched.
        let req = Request::get("/x")
            .version(Version::HTTP_11)
            .header("host", "h")
            .body(())
            .unwrap();
        let req = to_http1(req);
        assert_eq!(req.uri(), "/x");
        assert_eq!(req.headers()["host"], "h");
    }
}
