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
    let mut res = Response::new(Full::new(body(status, data)));
    *res.status_mut() = code;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// `{"status":"fail","data":{"title":message}}` with `code`.
pub fn fail(code: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    #[derive(Serialize)]
    struct Title {
        title: String,
    }
    response(
        code,
        Status::Fail,
        &Title {
            title: message.into(),
        },
    )
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
}
