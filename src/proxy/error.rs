//! Why forwarding failed, and the response the client gets instead.

use std::error::Error as StdError;
use std::io;

use bytes::Bytes;
use http::uri::Authority;
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::{BackendTimeout, BackendUnavailable, BoxError, NoAvailableBackend, jsend};

/// The body of the `503` sent when no backend is available.
pub const NO_AVAILABLE_SERVER: &str = "error no available server";

/// The JSend error response for a request that could not be forwarded.
///
/// Looks through `err` and its sources:
///
/// | error                                   | status | body `data`                   |
/// |-----------------------------------------|--------|-------------------------------|
/// | [`NoAvailableBackend`]                  | 503    | `"error no available server"` |
/// | [`BackendTimeout`]                      | 504    | `"error backend timeout"`     |
/// | [`BackendUnavailable`]                  | 502    | `"error backend unavailable"` |
/// | anything else                           | 502    | `"error bad gateway"`         |
///
/// Bodies are `{"status":"error","data":…}` with `Content-Type: application/json`.
pub fn error_response(err: &BoxError) -> Response<Full<Bytes>> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(&**err);
    while let Some(e) = cur {
        if e.is::<NoAvailableBackend>() {
            return jsend::error(StatusCode::SERVICE_UNAVAILABLE, NO_AVAILABLE_SERVER);
        }
        if e.is::<BackendTimeout>() {
            return jsend::error(StatusCode::GATEWAY_TIMEOUT, "error backend timeout");
        }
        if e.is::<BackendUnavailable>() {
            return jsend::error(StatusCode::BAD_GATEWAY, "error backend unavailable");
        }
        cur = e.source();
    }
    jsend::error(StatusCode::BAD_GATEWAY, "error bad gateway")
}

/// Sorts an error of a backend connection into our typed errors where one applies: a
/// connection closed, reset or failing before the response head is [`BackendUnavailable`].
pub(crate) fn classify(err: hyper::Error, backend: &Authority) -> BoxError {
    let mut unavailable = err.is_closed() || err.is_canceled() || err.is_incomplete_message();
    let mut cur: Option<&(dyn StdError + 'static)> = err.source();
    while let Some(e) = cur {
        unavailable |= e.is::<io::Error>();
        cur = e.source();
    }
    if unavailable {
        BackendUnavailable::new(backend.clone(), err).into()
    } else {
        err.into()
    }
}

#[cfg(test)]
mod tests {
    use std::fmt;
    use std::time::Duration;

    use super::*;
    use http::header;
    use http_body_util::BodyExt;

    async fn body_of(res: Response<Full<Bytes>>) -> Bytes {
        res.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn no_available_backend_is_503_with_the_original_body() {
        let err: BoxError = NoAvailableBackend::new().into();
        let res = error_response(&err);
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body_of(res).await,
            &br#"{"status":"error","data":"error no available server"}"#[..]
        );
    }

    #[tokio::test]
    async fn backend_errors_map_to_502_and_504() {
        let backend: Authority = "127.0.0.1:1080".parse().unwrap();
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let err: BoxError = BackendUnavailable::new(backend.clone(), refused).into();
        let res = error_response(&err);
        assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            body_of(res).await,
            &br#"{"status":"error","data":"error backend unavailable"}"#[..]
        );
        assert_eq!(err.to_string(), "backend 127.0.0.1:1080 unavailable");
        assert!(err.source().unwrap().is::<io::Error>());

        let err: BoxError = BackendTimeout::response(backend, Duration::from_secs(2)).into();
        let res = error_response(&err);
        assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body_of(res).await,
            &br#"{"status":"error","data":"error backend timeout"}"#[..]
        );
    }

    #[tokio::test]
    async fn other_errors_are_502_and_wrapped_ones_are_found() {
        let err: BoxError = "something odd".into();
        let res = error_response(&err);
        assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            body_of(res).await,
            &br#"{"status":"error","data":"error bad gateway"}"#[..]
        );

        #[derive(Debug)]
        struct Wrapper(NoAvailableBackend);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad("wrapped")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let err: BoxError = Wrapper(NoAvailableBackend::new()).into();
        assert_eq!(
            error_response(&err).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
