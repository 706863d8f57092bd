//! The answers the balancer writes on a connection itself, outside hyper: `408` to a request
//! head that timed out, and, in place of the empty-bodied answer hyper writes to a head it
//! cannot parse, `400`, `414` or `431`. Each is a JSend `fail` (the client's request was
//! wrong) built by [`jsend`], and closes the connection.
//!
//! hyper's answer is recognised by its status code, read from its status line
//! (`HTTP/1.x NNN`), not by the rest of the bytes hyper happens to write. hyper's error kinds
//! cannot serve instead: hyper writes its answer first and returns the error (with no way back
//! to the connection's IO) only once the connection has ended.

use bytes::Bytes;
use http::StatusCode;

use crate::jsend;

/// An answer of the balancer's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// `408`: the request head was not complete in time.
    RequestTimeout,
    /// `400`: the request head could not be parsed.
    BadRequest,
    /// `414`: the request target is longer than hyper takes.
    UriTooLong,
    /// `431`: the request head is over the maximum header size.
    HeadersTooLarge,
}

impl Answer {
    /// Ours in place of an answer hyper writes itself, by its status code: `None` for any
    /// other answer, and for a first write too short to hold the status code.
    pub(super) fn instead_of(hyper_wrote: &[u8]) -> Option<Self> {
        match status_code(hyper_wrote)? {
            StatusCode::BAD_REQUEST => Some(Self::BadRequest),
            StatusCode::URI_TOO_LONG => Some(Self::UriTooLong),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Some(Self::HeadersTooLarge),
            _ => None,
        }
    }

    /// Its status code.
    pub(super) fn status(self) -> StatusCode {
        match self {
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    /// The title of its JSend body.
    fn title(self) -> &'static str {
        match self {
            Self::RequestTimeout => "request timeout",
            Self::BadRequest => "bad request",
            Self::UriTooLong => "uri too long",
            Self::HeadersTooLarge => "request header fields too large",
        }
    }

    /// The whole response, as it goes on the wire.
    pub(super) fn bytes(self) -> Bytes {
        jsend::fail_http1(self.status(), self.title())
    }
}

/// The status code of an HTTP/1 response whose first bytes are `head`, if they hold its
/// status line as far as the code: `HTTP/1.x NNN` then a space or the end of the line.
pub(super) fn status_code(head: &[u8]) -> Option<StatusCode> {
    let (version, rest) = head.split_at_checked(b"HTTP/1.x ".len())?;
    let [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor, b' '] = *version else {
        return None;
    };
    let (code, after) = rest.split_at_checked(3)?;
    if !minor.is_ascii_digit() || !matches!(after.first(), Some(b' ' | b'\r')) {
        return None;
    }
    StatusCode::from_bytes(code).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Answer; 4] = [
        Answer::RequestTimeout,
        Answer::BadRequest,
        Answer::UriTooLong,
        Answer::HeadersTooLarge,
    ];

    #[test]
    fn our_own_answers_are_well_formed_jsend() {
        for (answer, status, title) in [
            (
                Answer::RequestTimeout,
                "408 Request Timeout",
                "request timeout",
            ),
            (Answer::BadRequest, "400 Bad Request", "bad request"),
            (
                Answer::HeadersTooLarge,
                "431 Request Header Fields Too Large",
                "request header fields too large",
            ),
            (Answer::UriTooLong, "414 URI Too Long", "uri too long"),
        ] {
            let bytes = answer.bytes();
            let text = std::str::from_utf8(&bytes).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(
                head.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{head}"
            );
            assert!(
                head.contains(&format!("content-length: {}\r\n", body.len())),
                "{head}"
            );
            assert!(
                head.contains("content-type: application/json\r\n"),
                "{head}"
            );
            assert!(head.ends_with("connection: close"), "{head}");
            let body: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(
                body,
                serde_json::json!({"status": "fail", "data": {"title": title}})
            );
        }
        assert_eq!(
            Answer::instead_of(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            Some(Answer::HeadersTooLarge)
        );
        assert_eq!(Answer::instead_of(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(Answer::instead_of(b"HTTP/1.1 4"), None);
    }

    #[test]
    fn the_bytes_on_the_wire_are_those_the_balancer_always_wrote() {
        // As written by hand before the answers were built from `jsend`.
        let wire: [&[u8]; 4] = [
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n\
              content-length: 52\r\nconnection: close\r\n\r\n\
              {\"status\":\"fail\",\"data\":{\"title\":\"request timeout\"}}",
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
              content-length: 48\r\nconnection: close\r\n\r\n\
              {\"status\":\"fail\",\"data\":{\"title\":\"bad request\"}}",
            b"HTTP/1.1 414 URI Too Long\r\ncontent-type: application/json\r\n\
              content-length: 49\r\nconnection: close\r\n\r\n\
              {\"status\":\"fail\",\"data\":{\"title\":\"uri too long\"}}",
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n\
              content-length: 68\r\nconnection: close\r\n\r\n\
              {\"status\":\"fail\",\"data\":{\"title\":\"request header fields too large\"}}",
        ];
        for (answer, wire) in ALL.into_iter().zip(wire) {
            assert_eq!(answer.bytes(), wire, "{answer:?}");
        }
    }

    #[test]
    fn hyper_answers_are_told_by_their_status_code_alone() {
        for answer in ALL {
            let code = answer.status().as_u16();
            let expected = (answer != Answer::RequestTimeout).then_some(answer);
            // Any minor version, any reason phrase or none, any headers after it.
            for wrote in [
                format!("HTTP/1.1 {code} Whatever\r\ncontent-length: 0\r\n\r\n"),
                format!("HTTP/1.0 {code} \r\n\r\n"),
                format!("HTTP/1.1 {code}\r\n\r\n"),
            ] {
                assert_eq!(Answer::instead_of(wrote.as_bytes()), expected, "{wrote:?}");
            }
        }
        assert_eq!(
            status_code(b"HTTP/1.1 505 x"),
            Some(StatusCode::HTTP_VERSION_NOT_SUPPORTED)
        );
        for not_a_status_line in [
            &b""[..],
            b"HTTP/1.1 40",
            b"HTTP/1.1 400",
            b"HTTP/1.1 4000 \r\n",
            b"HTTP/2.0 400 \r\n",
            b"HTTP/1.x 400 \r\n",
            b"HTTP/1.1 abc \r\n",
            b"{\"status\":\"fail\"}",
        ] {
            assert_eq!(
                status_code(not_a_status_line),
                None,
                "{not_a_status_line:?}"
            );
        }
    }
}
