//! gRPC's health check, `grpc.health.v1.Health/Check` ([gRPC Health Checking Protocol]), as
//! bytes: the request message framed for the wire and the answer's status read back.
//!
//! The two messages are one field each (`HealthCheckRequest { string service = 1; }`,
//! `HealthCheckResponse { ServingStatus status = 1; }`), so they are written and read here
//! with the protobuf wire format ([encoding]) by hand: no code generation, no `protoc`, no
//! protobuf crate in the balancer. The tests check them against tonic-health's server.
//!
//! [gRPC Health Checking Protocol]: https://github.com/grpc/grpc/blob/master/doc/health-checking.md
//! [encoding]: https://protobuf.dev/programming-guides/encoding/

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// The method every gRPC check calls.
pub(crate) const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

/// The `Check` request for `service` (empty: the server as a whole), as a length-prefixed
/// gRPC message (uncompressed).
pub(crate) fn check_request(service: &str) -> Bytes {
    let mut message = BytesMut::with_capacity(service.len() + 16);
    if !service.is_empty() {
        // Field 1, wire type 2 (length-delimited).
        message.put_u8(0x0a);
        put_varint(&mut message, service.len() as u64);
        message.put_slice(service.as_bytes());
    }
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put_slice(&message);
    framed.freeze()
}

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The `status` of a `HealthCheckResponse` body (one length-prefixed message); `None` if it is
/// not one. A message without the field is `UNKNOWN` (0), as protobuf's defaults say.
fn serving_status(body: &[u8]) -> Option<u64> {
    let (&compressed, rest) = body.split_first()?;
    if compressed != 0 || rest.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
    let mut msg = rest.get(4..4 + len)?;
    let mut status = 0;
    while !msg.is_empty() {
        let key = varint(&mut msg)?;
        match key & 7 {
            0 => {
                let v = varint(&mut msg)?;
                if key >> 3 == 1 {
                    status = v;
                }
            }
            1 => msg = msg.get(8..)?,
            2 => {
                let n = usize::try_from(varint(&mut msg)?).ok()?;
                msg = msg.get(n..)?;
            }
            5 => msg = msg.get(4..)?,
            _ => return None,
        }
    }
    Some(status)
}

/// Judges a `Check` answer: `grpc-status` (from the trailers, or the headers of a
/// Trailers-Only answer) and the message.
pub(crate) fn judge(
    grpc_status: Option<&[u8]>,
    message: Option<&[u8]>,
    body: &[u8],
) -> Result<(), GrpcUnhealthy> {
    let code = grpc_status.and_then(|s| std::str::from_utf8(s).ok()?.parse::<u32>().ok());
    match code {
        Some(0) => {}
        None => return Err(GrpcUnhealthy::NoStatus),
        Some(code) => {
            let message = message
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .unwrap_or_default();
            return Err(GrpcUnhealthy::Status { code, message });
        }
    }
    match serving_status(body) {
        Some(SERVING) => Ok(()),
        Some(status) => Err(GrpcUnhealthy::NotServing(status)),
        None => Err(GrpcUnhealthy::Malformed),
    }
}

/// Why a gRPC health check failed: the call failed with a gRPC status (`NOT_FOUND` for a
/// service the server does not know), or the server is not `SERVING`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrpcUnhealthy {
    /// The call ended with this gRPC status code (not `OK`) and message.
    Status {
        /// The `grpc-status` code.
        code: u32,
        /// The `grpc-message`, as sent.
        message: String,
    },
    /// The answer was not `SERVING`: `0` unknown, `2` not serving, `3` service unknown.
    NotServing(u64),
    /// The answer carried no `grpc-status`.
    NoStatus,
    /// The answer's message was not a `HealthCheckResponse`.
    Malformed,
}

impl fmt::Display for GrpcUnhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status { code, message } => {
                write!(
                    f,
                    "gRPC health check failed: grpc-status {code} {message:?}"
                )
            }
            Self::NotServing(2) => f.pad("gRPC health check answered NOT_SERVING"),
            Self::NotServing(3) => f.pad("gRPC health check answered SERVICE_UNKNOWN"),
            Self::NotServing(s) => write!(f, "gRPC health check answered status {s}"),
            Self::NoStatus => f.pad("gRPC health check answer without grpc-status"),
            Self::Malformed => f.pad("gRPC health check answer is not a HealthCheckResponse"),
        }
    }
}

impl std::error::Error for GrpcUnhealthy {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_framed_protobuf() {
        assert_eq!(&check_request("")[..], [0, 0, 0, 0, 0]);
        assert_eq!(
            &check_request("a.B")[..],
            [0, 0, 0, 0, 5, 0x0a, 3, b'a', b'.', b'B']
        );
        let long = "x".repeat(200);
        let req = check_request(&long);
        assert_eq!(&req[..8], [0, 0, 0, 0, 203, 0x0a, 0xc8, 0x01]);
    }

    #[test]
    fn answers_are_judged_by_status_then_message() {
        let serving = [0, 0, 0, 0, 2, 0x08, 1];
        assert_eq!(judge(Some(b"0"), None, &serving), Ok(()));
        assert_eq!(
            judge(Some(b"0"), None, &[0, 0, 0, 0, 2, 0x08, 2]),
            Err(GrpcUnhealthy::NotServing(2))
        );
        // An empty message is the default, UNKNOWN.
        assert_eq!(
            judge(Some(b"0"), None, &[0, 0, 0, 0, 0]),
            Err(GrpcUnhealthy::NotServing(0))
        );
        // Unknown fields are skipped.
        assert_eq!(
            judge(Some(b"0"), None, &[0, 0, 0, 0, 5, 0x12, 1, b'z', 0x08, 1]),
            Ok(())
        );
        assert_eq!(
            judge(Some(b"5"), Some(b"unknown service"), &[]),
            Err(GrpcUnhealthy::Status {
                code: 5,
                message: "unknown service".into()
            })
        );
        assert_eq!(judge(None, None, &serving), Err(GrpcUnhealthy::NoStatus));
        assert_eq!(
            judge(Some(b"0"), None, &[1, 0, 0, 0, 0]),
            Err(GrpcUnhealthy::Malformed)
        );
        assert_eq!(
            judge(Some(b"0"), None, &[0, 0, 0, 0, 9, 8]),
            Err(GrpcUnhealthy::Malformed)
        );
    }
}
