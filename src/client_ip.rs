//! Which client a request comes from, for source-IP hashing and sticky sessions.
//!
//! The client is the TCP peer of the connection, read from the request extensions: our
//! [`PeerAddr`] (the standalone server inserts it) or, with the `axum` feature, axum's
//! `ConnectInfo<SocketAddr>`.
//! `X-Forwarded-For` is believed only when the peer is one of the operator's trusted proxies
//! ([`ClientIp::trusting`]); then the client is the right-most address in it that is not itself
//! a trusted proxy. By default the header is ignored: otherwise any client could write one and
//! choose its backend.

use std::net::{IpAddr, SocketAddr};

use http::{Extensions, HeaderMap, Request, header::HeaderName};

use crate::IpNet;

/// The connection's remote address, as a request extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// How to find the client's IP address. See the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct ClientIp {
    trusted: Vec<IpNet>,
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

impl ClientIp {
    /// The TCP peer only; `X-Forwarded-For` is ignored.
    pub const fn peer() -> Self {
        Self {
            trusted: Vec::new(),
        }
    }

    /// Believes `X-Forwarded-For` from peers in these networks (e.g. your CDN or ingress).
    pub fn trusting(trusted: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            trusted: trusted.into_iter().collect(),
        }
    }

    /// The networks whose `X-Forwarded-For` is believed.
    pub fn trusted(&self) -> &[IpNet] {
        &self.trusted
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The peer address carried in the request's extensions: [`PeerAddr`] or, with the `axum`
    /// feature, axum's `ConnectInfo<SocketAddr>`.
    pub fn peer_of<B>(req: &Request<B>) -> Option<SocketAddr> {
        Self::peer_in(req.extensions())
    }

    /// The peer address in a request's `extensions`; see [`peer_of`](Self::peer_of).
    pub fn peer_in(ext: &Extensions) -> Option<SocketAddr> {
        let peer = ext.get::<PeerAddr>().map(|p| p.0);
        #[cfg(feature = "axum")]
        let peer = peer.or_else(|| {
            ext.get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0)
        });
        peer
    }

    /// The client's IP address for `req`, or `None` if the request carries no peer address.
    pub fn of<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        let peer = Self::peer_of(req)?.ip();
        Some(self.resolve(peer, req.headers()))
    }

    /// The client's IP given the peer and the headers.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.trusted.is_empty() || !self.is_trusted(peer) {
            return peer;
        }
        // Right to left: every hop we trust appended the address it saw. Split the bytes,
        // not the text: a value that is not all text still has its entries, and a bad one
        // stops the walk like any other (skipping the whole value would go on to older values
        // a client wrote itself; found by fuzz/xff).
        let hops = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','));
        for hop in hops.rev() {
            match std::str::from_utf8(hop).map(|h| h.trim().parse::<IpAddr>()) {
                Ok(Ok(ip)) if self.is_trusted(ip) => continue,
                Ok(Ok(ip)) => return ip,
                // A malformed entry: nothing left of it can be believed.
                _ => break,
            }
        }
        peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(peer: &str, xff: &[&str]) -> Request<()> {
        let mut b = Request::builder();
        for v in xff {
            b = b.header("x-forwarded-for", *v);
        }
        let mut r = b.body(()).unwrap();
        r.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
        r
    }

    #[test]
    fn forwarded_for_is_ignored_by_default() {
        let r = req("10.0.0.9:5000", &["1.2.3.4"]);
        assert_eq!(ClientIp::peer().of(&r), Some("10.0.0.9".parse().unwrap()));
    }

    #[test]
    fn trusted_proxy_chain_is_walked_from_the_right() {
        let ci = ClientIp::trusting(["10.0.0.0/8".parse().unwrap()]);
        let r = req("10.0.0.9:5000", &["6.6.6.6, 1.2.3.4", "10.1.1.1"]);
        assert_eq!(ci.of(&r), Some("1.2.3.4".parse().unwrap()));
        // An untrusted peer's header is not believed.
        let r = req("8.8.8.8:5000", &["1.2.3.4"]);
        assert_eq!(ci.of(&r), Some("8.8.8.8".parse().unwrap()));
        // Garbage stops the walk.
        let r = req("10.0.0.9:5000", &["1.2.3.4, junk"]);
        assert_eq!(ci.of(&r), Some("10.0.0.9".parse().unwrap()));
    }

    #[test]
    fn a_forwarded_for_value_that_is_not_text_stops_the_walk() {
        // Found by fuzz/xff: a value with obs-text bytes (which hyper accepts) was skipped as a
        // whole, so the walk went on to an older value the client wrote itself.
        let ci = ClientIp::trusting(["10.0.0.0/8".parse().unwrap()]);
        let mut r = req("10.0.0.9:5000", &["6.6.6.6"]);
        let value = http::HeaderValue::from_bytes(b"\xff").unwrap();
        r.headers_mut().append("x-forwarded-for", value);
        assert_eq!(ci.of(&r), Some("10.0.0.9".parse().unwrap()));
        // The entries right of a bad one in the same value are still read.
        let mut r = req("10.0.0.9:5000", &["6.6.6.6"]);
        let value = http::HeaderValue::from_bytes(b"\xff, 1.2.3.4, 10.1.1.1").unwrap();
        r.headers_mut().append("x-forwarded-for", value);
        assert_eq!(ci.of(&r), Some("1.2.3.4".parse().unwrap()));
    }

    #[test]
    #[cfg(feature = "axum")]
    fn axum_connect_info_is_read() {
        let mut r = Request::new(());
        r.extensions_mut()
            .insert(axum::extract::ConnectInfo::<SocketAddr>(
                "127.0.0.5:1".parse().unwrap(),
            ));
        assert_eq!(ClientIp::peer().of(&r), Some("127.0.0.5".parse().unwrap()));
        assert_eq!(ClientIp::peer().of(&Request::new(())), None);
    }
}
