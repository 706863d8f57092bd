//! Who may use the admin API, and which backends it may register.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use http::{HeaderMap, HeaderValue, Request, StatusCode, header};

use crate::IpNet;

use crate::addr::BackendAddr;
use crate::client_ip::ClientIp;

/// The networks that may use the admin API without a token by default: loopback,
/// `127.0.0.0/8` and `::1`.
pub const LOOPBACK: [IpNet; 2] = [
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
];

/// The secret an admin client sends as `Authorization: Bearer <token>`.
///
/// One to 4096 visible ASCII characters, no spaces (so that it fits in a header as is). Its
/// `Debug` output hides it, so a logged [`Config`](crate::server::Config) does not leak it.
///
/// ```
/// use tower_lb::admin::AdminToken;
///
/// let token: AdminToken = "s3cr3t-t0ken".parse().unwrap();
/// assert_eq!(format!("{token:?}"), "AdminToken(<redacted>)");
/// assert!("".parse::<AdminToken>().is_err());
/// assert!("two words".parse::<AdminToken>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// The longest token accepted, in bytes.
    pub const MAX_LEN: usize = 4096;

    /// Whether `presented` is this token, in time that depends only on this token's length.
    pub fn matches(&self, presented: &[u8]) -> bool {
        constant_time_eq(presented, self.0.as_bytes())
    }
}

impl FromStr for AdminToken {
    type Err = InvalidToken;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok =
            !s.is_empty() && s.len() <= Self::MAX_LEN && s.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidToken)
        }
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("AdminToken(<redacted>)")
    }
}

/// An [`AdminToken`] that is empty, too long, or not made of visible ASCII characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidToken;

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("an admin token must be 1 to 4096 visible ASCII characters, without spaces")
    }
}

impl std::error::Error for InvalidToken {}

/// Compares two byte strings in time that depends only on `expected`'s length (and not on
/// where they differ): every byte of `expected` is looked at, whatever came before.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, &byte) in expected.iter().enumerate() {
        diff |= byte ^ given.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

/// Who may use the admin API.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    pub(crate) token: Option<AdminToken>,
    pub(crate) trusted: Vec<IpNet>,
}

/// Why a request was refused: the status and the message of its JSend `fail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) message: &'static str,
}

impl Access {
    pub(crate) fn loopback() -> Self {
        Self {
            token: None,
            trusted: LOOPBACK.to_vec(),
        }
    }

    /// `Ok` if the request may use the admin API: with a token configured, it must carry it
    /// (`401` otherwise), whatever its peer; without one, its peer must be trusted (`403`).
    pub(crate) fn check<B>(&self, req: &Request<B>) -> Result<(), Refusal> {
        match &self.token {
            Some(token) => check_token(token, req.headers()),
            None => self.check_peer(ClientIp::peer_of(req)),
        }
    }

    /// Like [`check`](Self::check), for a page a browser opens, which cannot send an
    /// `Authorization` header: the token may also come as the `token` query parameter
    /// (percent-encoded).
    pub(crate) fn check_page<B>(&self, req: &Request<B>) -> Result<(), Refusal> {
        if let Some(token) = &self.token {
            if let Some(presented) = query_token(req.uri().query()) {
                return if token.matches(&presented) {
                    Ok(())
                } else {
                    Err(Refusal {
                        status: StatusCode::UNAUTHORIZED,
                        message: "wrong admin token",
                    })
                };
            }
        }
        self.check(req)
    }

    /// `Ok` if `peer` is in a trusted network; a request with no known peer is refused.
    pub(crate) fn check_peer(&self, peer: Option<SocketAddr>) -> Result<(), Refusal> {
        let trusted = peer.is_some_and(|peer| {
            let ip = peer.ip().to_canonical();
            self.trusted.iter().any(|net| net.contains(&ip))
        });
        if trusted {
            Ok(())
        } else {
            Err(Refusal {
                status: StatusCode::FORBIDDEN,
                message: "the admin API is open to local clients only: \
                          configure an admin token to use it from elsewhere",
            })
        }
    }
}

fn check_token(token: &AdminToken, headers: &HeaderMap) -> Result<(), Refusal> {
    let refuse = |message| {
        Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            message,
        })
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return refuse("missing admin token: send Authorization: Bearer <token>");
    };
    match bearer(value) {
        Some(presented) if token.matches(presented) => Ok(()),
        _ => refuse("wrong admin token"),
    }
}

/// The credentials of `Bearer <credentials>` (the scheme is case-insensitive).
fn bearer(value: &HeaderValue) -> Option<&[u8]> {
    let value = value.as_bytes();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let start = rest.iter().position(|&b| b != b' ')?;
    Some(rest[start..].trim_ascii_end())
}

/// The percent-decoded value of the first `token=` parameter of `query` (empty, so matching
/// no token, when an escape is malformed).
fn query_token(query: Option<&str>) -> Option<Vec<u8>> {
    let value = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))?;
    Some(percent_decode(value).unwrap_or_default())
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space), as the page's
/// `URLSearchParams` reads it; `None` for a malformed escape.
fn percent_decode(value: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
    }
    Some(out)
}

/// Whether a backend may be registered: with no networks, any; otherwise its host must be an
/// IP address in one of them. A host name is refused, since what it resolves to may change
/// after the check.
pub(crate) fn check_backend(addr: &BackendAddr, allowed: &[IpNet]) -> Result<(), String> {
    if allowed.is_empty() {
        return Ok(());
    }
    let list = || {
        allowed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let host = addr.host();
    let Some(ip) = addr.ip() else {
        return Err(format!(
            "backend host {host:?} is a name: only IP addresses in the allowed networks ({}) \
             may be registered",
            list()
        ));
    };
    let ip = ip.to_canonical();
    if allowed.iter().any(|net| net.contains(&ip)) {
        Ok(())
    } else {
        Err(format!(
            "backend address {ip} is not in the allowed networks ({})",
            list()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> AdminToken {
        s.parse().unwrap()
    }

    fn req(peer: Option<&str>, authorization: Option<&str>) -> Request<()> {
        let mut req = Request::new(());
        if let Some(peer) = peer {
            req.extensions_mut()
                .insert(crate::PeerAddr(peer.parse().unwrap()));
        }
        if let Some(value) = authorization {
            req.headers_mut()
                .insert(header::AUTHORIZATION, value.parse().unwrap());
        }
        req
    }

    #[test]
    fn a_page_takes_the_token_from_its_query_too() {
        let access = Access {
            token: Some(token("s3cr/t+x")),
            trusted: LOOPBACK.to_vec(),
        };
        let page = |uri: &str, authorization: Option<&str>| {
            let mut req = req(Some("127.0.0.1:1"), authorization);
            *req.uri_mut() = uri.parse().unwrap();
            access.check_page(&req).map_err(|r| (r.status, r.message))
        };
        assert_eq!(page("/status?token=s3cr%2Ft%2Bx", None), Ok(()));
        assert_eq!(page("/status?a=1&token=s3cr/t%2bx", None), Ok(()));
        let wrong = Err((StatusCode::UNAUTHORIZED, "wrong admin token"));
        assert_eq!(page("/status?token=s3cr/t+x", None), wrong, "+ is a space");
        assert_eq!(page("/status?token=nope", None), wrong);
        assert_eq!(page("/status?token=%zz", None), wrong);
        // No query token: the header, as for any admin request.
        assert_eq!(page("/status", Some("Bearer s3cr/t+x")), Ok(()));
        assert_eq!(
            page("/status", None).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        // Without a configured token, the peer decides, whatever the query.
        let open = Access::loopback();
        let mut req = req(Some("10.0.0.1:1"), None);
        *req.uri_mut() = "/status?token=x".parse().unwrap();
        assert_eq!(
            open.check_page(&req).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq(b"abc", b"abc"));
        for given in [&b""[..], b"ab", b"abd", b"abcd", b"xbc", b"ABC"] {
            assert!(!constant_time_eq(given, b"abc"), "{given:?}");
        }
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b""));
    }

    #[test]
    fn tokens_are_visible_ascii_and_never_printed() {
        for bad in ["", " ", "a b", "tab\there", "é", &"x".repeat(4097)] {
            assert_eq!(bad.parse::<AdminToken>(), Err(InvalidToken), "{bad:?}");
        }
        let t = token("Zm9v-YmFy_baz.~+/=");
        assert!(!format!("{t:?}").contains("Zm9v"));
        assert!(t.matches(b"Zm9v-YmFy_baz.~+/="));
        assert!(!t.matches(b"Zm9v-YmFy_baz.~+/"));
    }

    #[test]
    fn loopback_peers_only_by_default() {
        let access = Access::loopback();
        for peer in [
            "127.0.0.1:5000",
            "127.0.0.2:1",
            "[::1]:80",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert_eq!(access.check(&req(Some(peer), None)), Ok(()), "{peer}");
        }
        for peer in [
            "10.0.0.1:5000",
            "192.168.1.1:1",
            "[2001:db8::1]:80",
            "0.0.0.0:1",
        ] {
            let refusal = access.check(&req(Some(peer), None)).unwrap_err();
            assert_eq!(refusal.status, StatusCode::FORBIDDEN, "{peer}");
            assert!(refusal.message.contains("local clients only"));
        }
        // No peer known: refused rather than trusted.
        let refusal = access.check(&req(None, None)).unwrap_err();
        assert_eq!(refusal.status, StatusCode::FORBIDDEN);
    }

    #[test]
    fn axum_connect_info_is_a_peer_too() {
        let mut r = Request::new(());
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        assert_eq!(Access::loopback().check(&r), Ok(()));
    }

    #[test]
    fn with_a_token_every_peer_needs_it() {
        let access = Access {
            token: Some(token("s3cret")),
            ..Access::loopback()
        };
        for peer in ["127.0.0.1:5000", "10.0.0.1:5000"] {
            assert_eq!(
                access.check(&req(Some(peer), Some("Bearer s3cret"))),
                Ok(())
            );
            assert_eq!(
                access.check(&req(Some(peer), Some("bearer   s3cret "))),
                Ok(())
            );
            for (auth, needle) in [
                (None, "missing"),
                (Some("Bearer s3cre"), "wrong"),
                (Some("Bearer s3crett"), "wrong"),
                (Some("Bearer"), "wrong"),
                (Some("Bearer "), "wrong"),
                (Some("Basic s3cret"), "wrong"),
                (Some("s3cret"), "wrong"),
            ] {
                let refusal = access.check(&req(Some(peer), auth)).unwrap_err();
                assert_eq!(refusal.status, StatusCode::UNAUTHORIZED, "{auth:?}");
                assert!(refusal.message.contains(needle), "{auth:?}");
            }
        }
        // No peer needed with a token.
        assert_eq!(access.check(&req(None, Some("Bearer s3cret"))), Ok(()));
    }

    #[test]
    fn backends_are_checked_against_the_allowed_networks() {
        let uri = |s: &str| s.parse::<BackendAddr>().unwrap();
        assert_eq!(check_backend(&uri("http://example.com"), &[]), Ok(()));
        let allowed: Vec<IpNet> =
            vec!["127.0.0.1/32".parse().unwrap(), "fd00::/8".parse().unwrap()];
        for ok in [
            "http://127.0.0.1:1080",
            "http://[fd00::1]:80",
            "http://[::ffff:127.0.0.1]",
        ] {
            assert_eq!(check_backend(&uri(ok), &allowed), Ok(()), "{ok}");
        }
        let err = check_backend(&uri("http://127.0.0.2:1080"), &allowed).unwrap_err();
        assert_eq!(
            err,
            "backend address 127.0.0.2 is not in the allowed networks (127.0.0.1/32, fd00::/8)"
        );
        let err = check_backend(&uri("http://localhost:1080"), &allowed).unwrap_err();
        assert!(err.contains("\"localhost\" is a name"), "{err}");
        let err = check_backend(&uri("http://[::1]"), &allowed).unwrap_err();
        assert!(err.contains("::1 is not in"), "{err}");
    }
}
