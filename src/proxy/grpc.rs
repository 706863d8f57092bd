//! The balancer's own errors for gRPC clients: a gRPC status, not a JSend body.
//!
//! A gRPC client reads the outcome of a call from the `grpc-status` and `grpc-message`
//! trailers of an HTTP `200` ([gRPC over HTTP/2]); a `503` with a JSON body is a protocol
//! error to it (tonic reports `Unknown` or `Internal`, with no hint of what failed). So a
//! request whose `Content-Type` is `application/grpc` (or `application/grpc+proto`, …) that
//! the balancer cannot forward gets a *Trailers-Only* response: status `200`,
//! `content-type: application/grpc`, `grpc-status` and `grpc-message`, and no body, which
//! HTTP/2 sends as one HEADERS frame that ends the stream. Envoy answers its local replies to
//! gRPC requests the same way.
//!
//! The codes follow gRPC's [mapping of HTTP statuses], as Envoy's router does:
//!
//! | error                                       | code                    |
//! |---------------------------------------------|-------------------------|
//! | [`NoAvailableBackend`]                      | `UNAVAILABLE` (14)      |
//! | [`BackendUnavailable`]                      | `UNAVAILABLE` (14)      |
//! | [`BackendTimeout`]                          | `DEADLINE_EXCEEDED` (4) |
//! | anything else (the `502 Bad Gateway` cases) | `UNAVAILABLE` (14)      |
//!
//! [gRPC over HTTP/2]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md
//! [mapping of HTTP statuses]: https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md

use std::error::Error as StdError;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, header};
use http_body_util::Full;

use crate::{BackendTimeout, BackendUnavailable, BoxError, NoAvailableBackend};

/// gRPC status `DEADLINE_EXCEEDED`.
pub const GRPC_DEADLINE_EXCEEDED: u8 = 4;
/// gRPC status `UNAVAILABLE`.
pub const GRPC_UNAVAILABLE: u8 = 14;

/// Whether a request is a gRPC call: its `Content-Type` is `application/grpc`, alone or with a
/// `+format` suffix (`application/grpc+proto`) or parameters.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let value = value.as_bytes();
    let prefix = b"application/grpc";
    value.len() >= prefix.len()
        && value[..prefix.len()].eq_ignore_ascii_case(prefix)
        && matches!(value.get(prefix.len()), None | Some(b'+' | b';'))
}

/// The gRPC status code and message for a balancer or proxy error; see
/// [`grpc_error_response`].
pub fn grpc_status(err: &BoxError) -> (u8, &'static str) {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(&**err);
    while let Some(e) = cur {
        if e.is::<NoAvailableBackend>() {
            return (GRPC_UNAVAILABLE, "no available server");
        }
        if e.is::<BackendTimeout>() {
            return (GRPC_DEADLINE_EXCEEDED, "backend timeout");
        }
        if e.is::<BackendUnavailable>() {
            return (GRPC_UNAVAILABLE, "backend unavailable");
        }
        cur = e.source();
    }
    (GRPC_UNAVAILABLE, "bad gateway")
}

/// The Trailers-Only gRPC response for a request that could not be forwarded: `200`,
/// `content-type: application/grpc`, `grpc-status` and `grpc-message` from [`grpc_status`],
/// no body (HTTP/2 sends it as one HEADERS frame that ends the stream), as gRPC clients read
/// a call's outcome; a `503` with a JSON body is a protocol error to them.
///
/// The codes follow gRPC's [mapping of HTTP statuses], as Envoy's router does:
///
/// | error                                       | code                    |
/// |---------------------------------------------|-------------------------|
/// | [`NoAvailableBackend`]                      | `UNAVAILABLE` (14)      |
/// | [`BackendUnavailable`]                      | `UNAVAILABLE` (14)      |
/// | [`BackendTimeout`]                          | `DEADLINE_EXCEEDED` (4) |
/// | anything else (the `502 Bad Gateway` cases) | `UNAVAILABLE` (14)      |
///
/// [mapping of HTTP statuses]: https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md
pub fn grpc_error_response(err: &BoxError) -> Response<Full<Bytes>> {
    let (code, message) = grpc_status(err);
    let mut res = Response::new(Full::new(Bytes::new()));
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    // The messages are plain ASCII without `%`: no percent-encoding needed.
    headers.insert("grpc-message", HeaderValue::from_static(message));
    res
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::time::Duration;

    use http::StatusCode;
    use http_body::Body;

    use super::*;

    #[test]
    fn grpc_content_types_are_recognised() {
        for (ct, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC;charset=utf-8", true),
            ("application/grpc-web", false),
            ("application/grpcx", false),
            ("application/json", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(is_grpc(&h), grpc, "{ct}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn balancer_errors_become_grpc_statuses_in_a_200_without_body() {
        let backend: http::uri::Authority = "127.0.0.1:1".parse().unwrap();
        for (err, code, message) in [
            (
                BoxError::from(NoAvailableBackend::new()),
                "14",
                "no available server",
            ),
            (
                BackendUnavailable::new(backend.clone(), io::Error::other("refused")).into(),
                "14",
                "backend unavailable",
            ),
            (
                BackendTimeout::response(backend, Duration::from_secs(1)).into(),
                "4",
                "backend timeout",
            ),
            ("odd".into(), "14", "bad gateway"),
        ] {
            let res = grpc_error_response(&err);
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.headers()["content-type"], "application/grpc");
            assert_eq!(res.headers()["grpc-status"], code);
            assert_eq!(res.headers()["grpc-message"], message);
            assert!(res.body().is_end_stream());
        }
    }
}
