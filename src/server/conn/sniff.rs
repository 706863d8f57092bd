//! Telling HTTP/2 with prior knowledge from HTTP/1 by a connection's first bytes: the
//! auto-detection of hyper-util's `auto` builder, done once by the connection's task on the
//! bytes it read before it hands the connection to hyper, rather than by a wrapper around
//! every read and write.

/// The HTTP/2 connection preface (RFC 9113 §3.4) that tells HTTP/2 with prior knowledge.
pub(super) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Enough of the preface to tell: no HTTP/1 method is `PRI`.
const H2_SNIFF: usize = 4;

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// HTTP/1.x (or anything else: hyper's HTTP/1 answers what it cannot parse).
    Http1,
    /// HTTP/2 with prior knowledge.
    Http2,
}

/// The protocol of a connection whose first bytes are `first_bytes`; `None` while they could
/// be either (nothing yet, or `P`, `PR`, `PRI`).
pub(super) fn protocol(first_bytes: &[u8]) -> Option<Protocol> {
    let n = first_bytes.len().min(H2_SNIFF);
    if first_bytes[..n] != H2_PREFACE[..n] {
        Some(Protocol::Http1)
    } else if n == H2_SNIFF {
        Some(Protocol::Http2)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http1_methods_are_not_taken_for_the_http2_preface() {
        for reads in [
            &[&b"P"[..], b"OST / HTTP/1.1\r\n"][..],
            &[b"PUT / HTTP/1.1\r\n"],
            &[b"PR", b"OPFIND"],
            &[b"GET / HTTP/1.1\r\n"],
        ] {
            // The first bytes as they arrive, read after read.
            let first_bytes = reads.concat();
            assert_eq!(protocol(&first_bytes), Some(Protocol::Http1), "{reads:?}");
        }
        assert_eq!(protocol(b""), None);
        assert_eq!(protocol(b"PR"), None, "could be either yet");
        assert_eq!(protocol(b"PRI * HTTP/2.0"), Some(Protocol::Http2));
        assert_eq!(protocol(H2_PREFACE), Some(Protocol::Http2));
    }
}
