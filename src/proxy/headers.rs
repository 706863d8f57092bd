//! Header rewriting: hop-by-hop removal (RFC 9110 §7.6.1) and the `X-Forwarded-*` headers.

use std::fmt::Write as _;
use std::net::IpAddr;

use bytes::BytesMut;
use http::header::{self, Entry, HeaderName};
use http::{HeaderMap, HeaderValue};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes the hop-by-hop headers: `Connection` and every header it names, then `Keep-Alive`,
/// `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, `Proxy-Authorization` and
/// `Proxy-Connection`. Works in place; allocates only when `Connection` appears more than once.
///
/// Returns the `Upgrade` value when `Connection` lists `upgrade` (RFC 9110 §7.8): the caller
/// puts both back when it forwards the upgrade.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) -> Option<HeaderValue> {
    // `get_all` rather than `entry`: `entry` may grow the map even when the key is there.
    let mut connection = headers.get_all(header::CONNECTION).iter();
    let mut upgrade = None;
    match (connection.next(), connection.next()) {
        (None, _) => {}
        (Some(value), None) => {
            // A cheap clone: hyper's header values share the read buffer.
            let value = value.clone();
            headers.remove(header::CONNECTION);
            upgrade = remove_named(headers, &value);
        }
        (Some(_), Some(_)) => {
            let values: Vec<HeaderValue> = headers
                .get_all(header::CONNECTION)
                .iter()
                .cloned()
                .collect();
            headers.remove(header::CONNECTION);
            for value in &values {
                upgrade = remove_named(headers, value).or(upgrade);
            }
        }
    }
    for name in [
        &KEEP_ALIVE,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &header::PROXY_AUTHORIZATION,
        &PROXY_CONNECTION,
    ] {
        headers.remove(name);
    }
    upgrade
}

/// Removes the headers listed in one `Connection` value; returns the `Upgrade` header's value
/// if `upgrade` is listed.
fn remove_named(headers: &mut HeaderMap, connection: &HeaderValue) -> Option<HeaderValue> {
    let value = connection.to_str().ok()?;
    let mut upgrade = None;
    for token in value.split(',') {
        let token = token.trim();
        if token.eq_ignore_ascii_case("upgrade") {
            upgrade = headers.remove(header::UPGRADE).or(upgrade);
        } else if !token.is_empty() {
            // `close` and `keep-alive` are options, not usually header names; removing is
            // harmless.
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
    // An IP address always fits in 45 bytes.
    let _ = write!(ip, "{peer}");
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
}
