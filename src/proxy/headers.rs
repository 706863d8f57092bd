//! Header rewriting: hop-by-hop removal (RFC 9110 §7.6.1) and the `X-Forwarded-*` headers.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use bytes::BytesMut;
use http::header::{self, Entry, HeaderName};
use http::{HeaderMap, HeaderValue};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// A request extension saying the client's connection is TLS: the forwarded request gets
/// `X-Forwarded-Proto: https` rather than `http`. The [`Server`](crate::server::Server)'s TLS
/// listener sets it; a server of your own that terminates TLS inserts it the same way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ClientTls;

pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The hop-by-hop headers removed whatever `Connection` says, with one bit each.
const HOP_BY_HOP: [(&HeaderName, u16); 7] = [
    (&KEEP_ALIVE, 1 << 1),
    (&header::TE, 1 << 2),
    (&header::TRAILER, 1 << 3),
    (&header::TRANSFER_ENCODING, 1 << 4),
    (&header::UPGRADE, 1 << 5),
    (&header::PROXY_AUTHORIZATION, 1 << 6),
    (&PROXY_CONNECTION, 1 << 7),
];
const CONNECTION_BIT: u16 = 1;

/// The bit of `name` if it is `Connection` or one of [`HOP_BY_HOP`]; `0` otherwise.
#[inline]
fn hop_by_hop_bit(name: &HeaderName) -> u16 {
    // A string match compiles to a length switch and one comparison: cheap for the usual
    // names, none of which is hop-by-hop.
    match name.as_str() {
        "connection" => CONNECTION_BIT,
        "keep-alive" => 1 << 1,
        "te" => 1 << 2,
        "trailer" => 1 << 3,
        "transfer-encoding" => 1 << 4,
        "upgrade" => 1 << 5,
        "proxy-authorization" => 1 << 6,
        "proxy-connection" => 1 << 7,
        _ => 0,
    }
}

/// Removes the hop-by-hop headers: `Connection` and every header it names, then `Keep-Alive`,
/// `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, `Proxy-Authorization` and
/// `Proxy-Connection`. Works in place; allocates only when `Connection` appears more than once.
///
/// One pass over the header names finds which are there, so a message without any (most
/// requests) costs no lookup, and one with only `Connection: keep-alive` (most responses) one
/// removal.
///
/// Returns the `Upgrade` value when `Connection` lists `upgrade` (RFC 9110 §7.8): the caller
/// puts both back when it forwards the upgrade.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) -> Option<HeaderValue> {
    let mut present = 0;
    for name in headers.keys() {
        present |= hop_by_hop_bit(name);
    }
    if present == 0 {
        return None;
    }
    let mut upgrade = None;
    if present & CONNECTION_BIT != 0 {
        // `get_all` rather than `entry`: `entry` may grow the map even when the key is there.
        let mut connection = headers.get_all(header::CONNECTION).iter();
        match (connection.next(), connection.next()) {
            (Some(value), None) => {
                // `keep-alive`, the usual value, names no header to remove.
                let keep_alive = value.as_bytes().eq_ignore_ascii_case(b"keep-alive");
                if let Some(value) = headers.remove(header::CONNECTION) {
                    if !keep_alive {
                        upgrade = remove_named(headers, &value, present);
                    }
                }
            }
            _ => {
                let values: Vec<HeaderValue> = headers
                    .get_all(header::CONNECTION)
                    .iter()
                    .cloned()
                    .collect();
                headers.remove(header::CONNECTION);
                for value in &values {
                    upgrade = remove_named(headers, value, present).or(upgrade);
                }
            }
        }
    }
    for (name, bit) in HOP_BY_HOP {
        if present & bit != 0 {
            headers.remove(name);
        }
    }
    upgrade
}

/// Removes the headers listed in one `Connection` value; returns the `Upgrade` header's value
/// if `upgrade` is listed. Names among the fixed hop-by-hop ones are left to the caller, which
/// removes those `present` says are there.
fn remove_named(
    headers: &mut HeaderMap,
    connection: &HeaderValue,
    present: u16,
) -> Option<HeaderValue> {
    let value = connection.to_str().ok()?;
    let mut upgrade = None;
    for token in value.split(',') {
        let token = token.trim();
        if token.eq_ignore_ascii_case("upgrade") {
            if present & (1 << 5) != 0 {
                upgrade = headers.remove(header::UPGRADE).or(upgrade);
            }
        } else if token.eq_ignore_ascii_case("keep-alive") {
            // The usual option; `Keep-Alive` is one of the fixed hop-by-hop headers anyway.
        } else if !token.is_empty() {
            // `close` is an option, not usually a header name; removing is harmless.
            headers.remove(token);
        }
    }
    upgrade
}

/// Puts back the headers of a connection upgrade: `Connection: upgrade` and `Upgrade`.
pub(crate) fn restore_upgrade(headers: &mut HeaderMap, upgrade: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, upgrade);
}

/// Appends `peer` to `X-Forwarded-For` (comma-space separated, all existing values kept, in
/// order) as one header line.
pub(crate) fn append_forwarded_for(headers: &mut HeaderMap, peer: IpAddr) {
    let mut ip = IpBuf {
        buf: [0; 48],
        len: 0,
    };
    match peer {
        IpAddr::V4(v4) => ip.push_v4(v4),
        // An IP address always fits in 45 bytes.
        IpAddr::V6(_) => {
            let _ = write!(ip, "{peer}");
        }
    }
    let ip = ip.as_bytes();

    let value = match headers.entry(&X_FORWARDED_FOR) {
        Entry::Vacant(entry) => {
            if let Ok(v) = HeaderValue::from_bytes(ip) {
                entry.insert(v);
            }
            return;
        }
        Entry::Occupied(entry) => {
            let len = entry.iter().map(|v| v.len() + 2).sum::<usize>() + ip.len();
            let mut buf = BytesMut::with_capacity(len);
            for v in entry.iter() {
                buf.extend_from_slice(v.as_bytes());
                buf.extend_from_slice(b", ");
            }
            buf.extend_from_slice(ip);
            buf.freeze()
        }
    };
    // The parts were valid header values joined by ", ", so this cannot fail.
    if let Ok(value) = HeaderValue::from_maybe_shared(value) {
        headers.insert(&X_FORWARDED_FOR, value);
    }
}

/// A stack buffer for formatting an IP address without allocating.
struct IpBuf {
    buf: [u8; 48],
    len: usize,
}

impl IpBuf {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Dotted decimal, without the formatting machinery (this runs for every request).
    fn push_v4(&mut self, ip: Ipv4Addr) {
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                self.push(b'.');
            }
            if octet >= 100 {
                self.push(b'0' + octet / 100);
            }
            if octet >= 10 {
                self.push(b'0' + octet / 10 % 10);
            }
            self.push(b'0' + octet % 10);
        }
    }

    fn push(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }
}

impl std::fmt::Write for IpBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Foo"),
            ("connection", "x-bar"),
            ("x-foo", "1"),
            ("x-bar", "2"),
            ("x-baz", "3"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic xyz"),
            ("proxy-connection", "keep-alive"),
            ("host", "example.com"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["host", "x-baz"]);
    }

    #[test]
    fn upgrade_is_reported_only_when_connection_lists_it() {
        let mut h = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("x-foo", "1"),
        ]);
        assert_eq!(strip_hop_by_hop(&mut h).unwrap(), "websocket");
        assert_eq!(h.len(), 1);
        restore_upgrade(&mut h, HeaderValue::from_static("websocket"));
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");

        // A stray `Upgrade` without `Connection: upgrade` is just removed.
        let mut h = map(&[("upgrade", "websocket"), ("connection", "close")]);
        assert!(strip_hop_by_hop(&mut h).is_none());
        assert!(h.is_empty());
        let mut h = map(&[("connection", "upgrade")]);
        assert!(strip_hop_by_hop(&mut h).is_none());
    }

    #[test]
    fn single_connection_value_is_handled() {
        let mut h = map(&[("connection", "close"), ("x-foo", "1")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-foo"], "1");
    }

    #[test]
    fn connection_keep_alive_alone_is_removed_with_the_fixed_ones() {
        let mut h = map(&[
            ("connection", "Keep-Alive"),
            ("keep-alive", "timeout=5"),
            ("x-foo", "1"),
        ]);
        assert_eq!(strip_hop_by_hop(&mut h), None);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-foo"], "1");
    }

    #[test]
    fn forwarded_for_appends_the_peer() {
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, "127.0.0.1".parse().unwrap());
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");

        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "5.6.7.8"),
        ]);
        append_forwarded_for(&mut h, "::1".parse().unwrap());
        let all: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
        assert_eq!(all, ["1.2.3.4, 5.6.7.8, ::1"]);

        let mut h = HeaderMap::new();
        let long: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .unwrap();
        append_forwarded_for(&mut h, long);
        assert_eq!(h["x-forwarded-for"], long.to_string().as_str());
    }

    #[test]
    fn ipv4_peers_are_written_in_dotted_decimal() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "192.168.100.9",
            "255.255.255.255",
        ] {
            let mut h = HeaderMap::new();
            append_forwarded_for(&mut h, ip.parse().unwrap());
            assert_eq!(h["x-forwarded-for"], ip);
        }
        for octet in 0..=255u8 {
            let ip = Ipv4Addr::new(octet, 0, octet, 9);
            let mut buf = IpBuf {
                buf: [0; 48],
                len: 0,
            };
            buf.push_v4(ip);
            assert_eq!(buf.as_bytes(), ip.to_string().as_bytes());
        }
    }

    #[test]
    fn names_in_connection_are_removed_and_messages_without_any_are_untouched() {
        let mut h = map(&[
            ("connection", "close, keep-alive, x-foo, upgrade"),
            ("x-foo", "1"),
            ("keep-alive", "timeout=5"),
            ("close", "named in Connection, so removed"),
            ("host", "example.com"),
        ]);
        // `upgrade` listed without an `Upgrade` header: nothing to report.
        assert!(strip_hop_by_hop(&mut h).is_none());
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["host"]);

        let mut h = map(&[("host", "example.com"), ("x-foo", "1")]);
        assert!(strip_hop_by_hop(&mut h).is_none());
        assert_eq!(h.len(), 2);
    }
}
