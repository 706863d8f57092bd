//! [JSend](https://github.com/omniti-labs/jsend) response bodies, as the balancer's API and its
//! own errors speak them.
//!
//! - `{"status":"success","data":…}` for a request that worked,
//! - `{"status":"fail","data":…}` for a request that was wrong (4xx),
//! - `{"status":"error","data":…}` for a failure on our side or the backend's (5xx).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

/// A JSend status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The request worked.
    Success,
    /// The request was wrong.
    Fail,
    /// Something failed while handling a valid request.
    Error,
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    status: Status,
    data: &'a T,
}

/// A JSend body as JSON bytes.
pub fn body<T: Serialize>(status: Status, data: &T) -> Bytes {
    // Serializing plain data into a Vec cannot fail.
    serde_json::to_vec(&Envelope { status, data })
        .expect("jsend body serializes")
        .into()
}

/// A complete JSend response with `Content-Type: application/json`.
pub fn response<T: Serialize>(code: StatusCode, status: Status, data: &T) -> Response<Full<Bytes>> {
    build(code, status, data).map(Full::new)
}

/// A JSend response, its body as bytes.
fn build<T: Serialize>(code: StatusCode, status: Status, data: &T) -> Response<Bytes> {
    let mut res = Response::new(body(status, data));
    *res.status_mut() = code;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// The `data` of a [`fail`].
#[derive(Serialize)]
struct Title<'a> {
    title: &'a str,
}

/// `{"status":"fail","data":{"title":message}}` with `code`.
pub fn fail(code: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    let message = message.into();
    response(code, Status::Fail, &Title { title: &message })
}

/// [`fail`] as the bytes of a whole HTTP/1.1 response that closes the connection: for the
/// answers a server writes to a connection itself, outside any HTTP library, just before it
/// closes it (a request head that timed out, or one that could not be parsed).
///
/// The status line, then the headers of [`response`] (`content-type: application/json`),
/// `content-length` and `connection: close`, names in lowercase as hyper writes them.
#[cfg(feature = "server")]
pub(crate) fn fail_http1(code: StatusCode, message: &str) -> Bytes {
    http1_closing(build(code, Status::Fail, &Title { title: message }))
}

/// `res` as HTTP/1.1 bytes, with its `Content-Length` and `Connection: close`.
#[cfg(feature = "server")]
fn http1_closing(res: Response<Bytes>) -> Bytes {
    let (head, body) = res.into_parts();
    let code = head.status;
    let mut out = Vec::with_capacity(128 + body.len());
    let mut line = |parts: &[&[u8]]| {
        for part in parts {
            out.extend_from_slice(part);
        }
        out.extend_from_slice(b"\r\n");
    };
    line(&[
        b"HTTP/1.1 ",
        code.as_str().as_bytes(),
        b" ",
        code.canonical_reason().unwrap_or("").as_bytes(),
    ]);
    for (name, value) in &head.headers {
        line(&[name.as_str().as_bytes(), b": ", value.as_bytes()]);
    }
    line(&[
        header::CONTENT_LENGTH.as_str().as_bytes(),
        b": ",
        body.len().to_string().as_bytes(),
    ]);
    line(&[header::CONNECTION.as_str().as_bytes(), b": close"]);
    line(&[]);
    out.extend_from_slice(&body);
    out.into()
}

/// `{"status":"error","data":message}` with `code`.
pub fn error(code: StatusCode, message: &str) -> Response<Full<Bytes>> {
    response(code, Status::Error, &message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_the_original_contract() {
        assert_eq!(
            body(Status::Error, &"error no available server"),
            &br#"{"status":"error","data":"error no available server"}"#[..]
        );
        let res = fail(StatusCode::NOT_FOUND, "x not alive, registration failed.");
        assert_eq!(res.status(), 404);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    #[cfg(feature = "server")]
    fn a_fail_renders_as_a_closing_http1_response() {
        assert_eq!(
            fail_http1(StatusCode::REQUEST_TIMEOUT, "request timeout"),
            &b"HTTP/1.1 408 Request Timeout\r\n\
content-type: application/json\r\n\
content-length: 52\r\n\
connection: close\r\n\
\r\n\
{\"status\":\"fail\",\"data\":{\"title\":\"request timeout\"}}"[..]
        );
        // A code without a reason phrase keeps the space before the (empty) phrase.
        let text = fail_http1(StatusCode::from_u16(499).unwrap(), "x");
        assert!(text.starts_with(b"HTTP/1.1 499 \r\n"), "{text:?}");
    }
}
