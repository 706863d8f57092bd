//! [`BackendAddr`]: where a backend is, parsed, validated and normalised once.
//!
//! A backend is named by an absolute `http://`, `https://` or `h2c://` URL: a scheme ([`BackendScheme`]),
//! a host, an optional port and an optional path prefix that requests are forwarded under. [`BackendAddr`] is that URL once checked
//! and put in its normal form, so that the admin API, the registry, the health probes and the
//! forwarding client all agree on which backend an address names, and none has to check it
//! again: a `BackendAddr` is valid by construction.
//!
//! It depends on nothing but [`http`] and `std` (and `serde`, for its string form in JSON).
//!
//! # Examples
//!
//! ```
//! use tower_lb::{BackendAddr, BackendScheme};
//!
//! let addr: BackendAddr = "HTTP://Example.COM:80/api/".parse().unwrap();
//! assert_eq!(addr.to_string(), "http://example.com/api");
//! assert_eq!((addr.host(), addr.port(), addr.prefix()), ("example.com", 80, "/api"));
//! assert_eq!(addr.uri_with("/health?full=1").unwrap(), "http://example.com/api/health?full=1");
//!
//! let tls: BackendAddr = "https://Example.COM:443".parse().unwrap();
//! assert_eq!(tls.to_string(), "https://example.com");
//! assert_eq!((tls.scheme(), tls.port()), (BackendScheme::Https, 443));
//!
//! let err = "ftp://example.com".parse::<BackendAddr>().unwrap_err();
//! assert_eq!(err.to_string(), r#"invalid address "ftp://example.com": the scheme must be http, https or h2c"#);
//! ```

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::Uri;
use http::uri::{Authority, InvalidUri, PathAndQuery, Scheme};

/// How the balancer talks to a backend: the scheme of its [`BackendAddr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum BackendScheme {
    /// `http://`: HTTP/1.1 over TCP; port 80 by default.
    Http,
    /// `https://`: HTTP over TLS (feature `tls`), the server's certificate checked and SNI set
    /// to the backend's host; port 443 by default.
    Https,
    /// `h2c://`: HTTP/2 over TCP with prior knowledge (RFC 9113 §3.3: the connection starts
    /// with the HTTP/2 preface, no `Upgrade` dance), requests multiplexed as streams on a
    /// shared connection; port 80 by default. Traefik spells such backends `h2c://host:port`,
    /// and gRPC servers (tonic, grpc-go) accept it.
    H2c,
}

impl BackendScheme {
    /// The scheme as written in a URL, lower-case: `http`, `https`, `h2c`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::H2c => "h2c",
        }
    }

    /// The port of a URL of this scheme without one: 80, 443, 80.
    pub const fn default_port(self) -> u16 {
        match self {
            Self::Http | Self::H2c => 80,
            Self::Https => 443,
        }
    }

    /// Whether connections to the backend are TLS.
    pub const fn is_tls(self) -> bool {
        matches!(self, Self::Https)
    }

    /// Whether requests go to the backend over HTTP/2 (multiplexed on shared connections)
    /// whatever it says: `h2c://`. An `https://` backend is spoken to over HTTP/2 when it
    /// chooses `h2` by ALPN, which only its connections tell.
    pub const fn is_http2(self) -> bool {
        matches!(self, Self::H2c)
    }

    /// The [`http::uri::Scheme`] of a request URI to such a backend: `http` for `h2c` too,
    /// the request's scheme (`:scheme` in HTTP/2), not the transport's.
    fn uri_scheme(self) -> Scheme {
        match self {
            Self::Http | Self::H2c => Scheme::HTTP,
            Self::Https => Scheme::HTTPS,
        }
    }

    /// The scheme named `s`, in any case.
    fn parse(s: &str) -> Option<Self> {
        [Self::Http, Self::Https, Self::H2c]
            .into_iter()
            .find(|scheme| s.eq_ignore_ascii_case(scheme.as_str()))
    }
}

impl fmt::Display for BackendScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The address of an HTTP backend: `http[s]://host[:port][/prefix]` (or `h2c://…` for HTTP/2
/// with prior knowledge, see [`BackendScheme`]), validated and normalised.
///
/// Parse one with [`FromStr`] (or build one from a [`SocketAddr`] with [`TryFrom`]). The
/// address must be an absolute `http://` or `https://` URL ([`scheme`](Self::scheme)) with a
/// host, an optional port (`1..=65535`) and an optional path prefix (requests are forwarded
/// under it); user info, a query or a fragment are refused. An `https://` backend is reached
/// over TLS (the `tls` feature's client, [`tls::BackendTls`](crate::tls::BackendTls)).
///
/// The normal form keeps the scheme, lower-case, and has a lower-case host, no default port
/// (`:80` for `http`, `:443` for `https`) and no trailing `/`, so `http://x:1`, `http://x:1/`,
/// `HTTP://X:1//` are one backend (equal, with one hash), and so are `http://x` and
/// `http://x:80`; `http://x:443` and `https://x` are two. It [displays](fmt::Display) in that
/// form, `http://127.0.0.1:8081`, which parses back to the same address.
///
/// [`uri_with`](Self::uri_with) and [`join`](Self::join) put a request's path under the
/// prefix; the forwarding client ([`HttpBackend`](crate::proxy::HttpBackend)) and the health
/// probe ([`HttpProbe`](crate::health::HttpProbe)) both use them. In JSON (`serde`) it is its
/// normal form as a string.
///
/// ```
/// use tower_lb::BackendAddr;
///
/// let a: BackendAddr = "http://127.0.0.1:8081/".parse().unwrap();
/// let b: BackendAddr = "HTTP://127.0.0.1:8081".parse().unwrap();
/// assert_eq!(a, b);
/// assert_eq!(a.to_string(), "http://127.0.0.1:8081");
/// assert_eq!(a.authority().as_str(), "127.0.0.1:8081");
/// assert!("127.0.0.1:8081".parse::<BackendAddr>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BackendAddr {
    scheme: BackendScheme,
    /// `host[:port]`: a lower-case host, and the port only when it is not the scheme's default.
    authority: Authority,
    /// The path prefix without a trailing `/`; empty when there is none.
    prefix: Box<str>,
}

impl BackendAddr {
    /// How the backend is reached: `http`, `https` or `h2c`.
    pub fn scheme(&self) -> BackendScheme {
        self.scheme
    }

    /// The host: a lower-case name or IP address, an IPv6 address in brackets (as in the URL).
    pub fn host(&self) -> &str {
        self.authority.host()
    }

    /// The host as an IP address, if it is one (IPv6 without its brackets).
    pub fn ip(&self) -> Option<IpAddr> {
        let host = self.host();
        let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        literal.unwrap_or(host).parse().ok()
    }

    /// The port: the one given, or the scheme's default (80, 443).
    pub fn port(&self) -> u16 {
        self.authority
            .port_u16()
            .unwrap_or(self.scheme.default_port())
    }

    /// `host[:port]`, as in the normal form (so without the default port): what a connection goes to,
    /// and the `Host` a request without one gets.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The path prefix requests are forwarded under, without a trailing `/` (`/api`); empty
    /// when there is none.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The request target for `path_and_query` on this backend, in origin form: the prefix,
    /// then the path and query as given, byte for byte (`/x?y=1` under `/api` is
    /// `/api/x?y=1`). Without a prefix it is `path_and_query` itself, with no allocation.
    ///
    /// Fails only if the result is longer than [`http`] allows a URI to be.
    pub fn join(&self, path_and_query: PathAndQuery) -> Result<PathAndQuery, InvalidUri> {
        if self.prefix.is_empty() {
            return Ok(path_and_query);
        }
        let path = path_and_query.as_str();
        let mut joined = String::with_capacity(self.prefix.len() + path.len() + 1);
        joined.push_str(&self.prefix);
        if !path.starts_with('/') {
            joined.push('/');
        }
        joined.push_str(path);
        PathAndQuery::try_from(joined)
    }

    /// The absolute URI of `path_and_query` on this backend: the scheme, the authority, then
    /// [`join`](Self::join)'s path (a leading `/` is added if missing).
    ///
    /// Fails if `path_and_query` is not a valid path and query, or the result is too long.
    ///
    /// ```
    /// use tower_lb::BackendAddr;
    ///
    /// let addr: BackendAddr = "http://10.0.0.1:8080/api/".parse().unwrap();
    /// assert_eq!(addr.uri_with("/health").unwrap(), "http://10.0.0.1:8080/api/health");
    /// assert!(addr.uri_with("/a b").is_err());
    /// ```
    pub fn uri_with(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        let path_and_query = if path_and_query.starts_with('/') {
            PathAndQuery::try_from(path_and_query)?
        } else {
            PathAndQuery::try_from(format!("/{path_and_query}"))?
        };
        Uri::builder()
            .scheme(self.scheme.uri_scheme())
            .authority(self.authority.clone())
            .path_and_query(self.join(path_and_query)?)
            .build()
    }

    /// The address as a [`Uri`]: its normal form (`h2c://` kept), with path `/` when it has no
    /// prefix.
    pub fn to_uri(&self) -> Uri {
        // The authority and prefix came from a valid URI, and the prefix starts with `/`.
        let path = if self.prefix.is_empty() {
            PathAndQuery::from_static("/")
        } else {
            PathAndQuery::try_from(&*self.prefix).unwrap_or_else(|_| PathAndQuery::from_static("/"))
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(match self.scheme {
            BackendScheme::H2c => Scheme::try_from("h2c").unwrap_or(Scheme::HTTP),
            scheme => scheme.uri_scheme(),
        });
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path);
        Uri::from_parts(parts).unwrap_or_default()
    }
}

impl Hash for BackendAddr {
    /// Hashes the normal form's bytes: `host[:port]` (lower-case, no `:80`), the prefix, then
    /// `0xff`. Hash-based algorithms place clients by this hash, so it is fixed: every
    /// balancer with the same backends places clients the same way, whatever order the
    /// backends arrived in (see `SourceIpHash`).
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.authority.as_str().as_bytes());
        state.write(self.prefix.as_bytes());
        state.write_u8(0xff);
    }
}

impl fmt::Display for BackendAddr {
    /// The normal form: `http[s]://host[:port][/prefix]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme.as_str();
        if f.width().is_some() || f.precision().is_some() {
            return f.pad(&format!("{scheme}://{}{}", self.authority, self.prefix));
        }
        write!(f, "{scheme}://{}{}", self.authority, self.prefix)
    }
}

impl fmt::Debug for BackendAddr {
    /// As [`Display`](fmt::Display), compact in logs, as [`Uri`]'s is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for BackendAddr {
    type Err = InvalidBackendAddr;

    /// Validates and normalises `address`; see [`BackendAddr`].
    fn from_str(address: &str) -> Result<Self, Self::Err> {
        let bad = |reason| InvalidBackendAddr {
            address: address.to_owned(),
            reason,
        };
        const ABSOLUTE: &str = "expected an absolute http:// or https:// URL with a host";
        if address.contains('#') {
            return Err(bad("a fragment is not allowed"));
        }
        let uri: Uri = address.parse().map_err(|_| bad(ABSOLUTE))?;
        let scheme = match uri.scheme_str() {
            None => return Err(bad(ABSOLUTE)),
            Some(s) => BackendScheme::parse(s)
                .ok_or_else(|| bad("the scheme must be http, https or h2c"))?,
        };
        let authority = uri.authority().ok_or_else(|| bad(ABSOLUTE))?;
        if authority.as_str().contains('@') {
            return Err(bad("user info is not allowed"));
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(bad(ABSOLUTE));
        }
        // `Authority::port_u16` is `None` both for no port and for an unparsable one.
        let has_port = authority.as_str().len() > host.len();
        let port = match (has_port, authority.port_u16()) {
            (false, _) => None,
            (true, Some(0) | None) => return Err(bad("the port must be between 1 and 65535")),
            (true, Some(p)) => Some(p),
        };
        if uri.query().is_some() {
            return Err(bad("a query is not allowed"));
        }
        let mut normal = host.to_ascii_lowercase();
        if let Some(port) = port.filter(|&p| p != scheme.default_port()) {
            normal.push(':');
            normal.push_str(&port.to_string());
        }
        let authority = Authority::try_from(normal).map_err(|_| bad(ABSOLUTE))?;
        Ok(Self {
            scheme,
            authority,
            prefix: uri.path().trim_end_matches('/').into(),
        })
    }
}

impl TryFrom<&str> for BackendAddr {
    type Error = InvalidBackendAddr;

    fn try_from(address: &str) -> Result<Self, Self::Error> {
        address.parse()
    }
}

impl TryFrom<&Uri> for BackendAddr {
    type Error = InvalidBackendAddr;

    /// The same rules as [`FromStr`]: `uri` must be an absolute `http://` or `https://` URL.
    fn try_from(uri: &Uri) -> Result<Self, Self::Error> {
        uri.to_string().parse()
    }
}

impl TryFrom<SocketAddr> for BackendAddr {
    type Error = InvalidBackendAddr;

    /// `http://ip:port` (an IPv6 address in brackets, without its scope); fails for port 0.
    fn try_from(addr: SocketAddr) -> Result<Self, Self::Error> {
        let authority = match addr {
            SocketAddr::V4(v4) => format!("{}:{}", v4.ip(), v4.port()),
            SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        };
        format!("http://{authority}").parse()
    }
}

impl From<BackendAddr> for Uri {
    fn from(addr: BackendAddr) -> Self {
        addr.to_uri()
    }
}

impl crate::Weight for BackendAddr {
    #[inline]
    fn weight(&self) -> u32 {
        1
    }
}

impl serde::Serialize for BackendAddr {
    /// The normal form, as a string.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for BackendAddr {
    /// A string, parsed and normalised as by [`FromStr`].
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = BackendAddr;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a backend address such as \"http://127.0.0.1:8081\"")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<BackendAddr, E> {
                s.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// A backend address that is not an absolute `http[s]://host[:port][/prefix]` URL; see
/// [`BackendAddr`]. It names the address and what is wrong with it:
/// `invalid address "ftp://x": the scheme must be http, https or h2c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidBackendAddr {
    address: String,
    reason: &'static str,
}

impl InvalidBackendAddr {
    /// The address as given.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// What is wrong with it (`the scheme must be http, https or h2c`).
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// The address as given and the reason.
    pub fn into_parts(self) -> (String, &'static str) {
        (self.address, self.reason)
    }
}

impl fmt::Display for InvalidBackendAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid address {:?}: {}", self.address, self.reason)
    }
}

impl std::error::Error for InvalidBackendAddr {}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn addr(s: &str) -> BackendAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bad_addresses_are_refused_with_a_reason() {
        for (address, reason) in [
            ("ftp://x", "the scheme must be http, https or h2c"),
            (
                "127.0.0.1:1080",
                "expected an absolute http:// or https:// URL with a host",
            ),
            (
                "http://",
                "expected an absolute http:// or https:// URL with a host",
            ),
            (
                "http:///x",
                "expected an absolute http:// or https:// URL with a host",
            ),
            (
                "/path",
                "expected an absolute http:// or https:// URL with a host",
            ),
            (
                "",
                "expected an absolute http:// or https:// URL with a host",
            ),
            (
                "x",
                "expected an absolute http:// or https:// URL with a host",
            ),
            ("http://h:0", "the port must be between 1 and 65535"),
            ("http://h:99999", "the port must be between 1 and 65535"),
            ("http://h:", "the port must be between 1 and 65535"),
            ("http://user:pw@h", "user info is not allowed"),
            ("http://h/?q=1", "a query is not allowed"),
            ("http://h/#top", "a fragment is not allowed"),
            (
                "http:// h",
                "expected an absolute http:// or https:// URL with a host",
            ),
            ("https://h:0", "the port must be between 1 and 65535"),
        ] {
            let err = address.parse::<BackendAddr>().unwrap_err();
            assert_eq!((err.address(), err.reason()), (address, reason));
            assert_eq!(
                err.to_string(),
                format!("invalid address {address:?}: {reason}")
            );
        }
    }

    #[test]
    fn addresses_are_normalised_and_equal_in_any_spelling() {
        let same = ["http://x:1", "http://x:1/", "HTTP://X:1//", "Http://x:1"];
        let set: HashSet<BackendAddr> = same.iter().map(|a| addr(a)).collect();
        assert_eq!(set.len(), 1);
        for a in same {
            assert_eq!(addr(a).to_string(), "http://x:1", "{a}");
        }
        assert_eq!(addr("http://x:80/").to_string(), "http://x");
        assert_eq!(addr("http://x:80"), addr("http://x"));
        assert_eq!(addr("http://x:443/a/b/").to_string(), "http://x:443/a/b");
        assert_eq!(
            addr("http://[::1]:8080/api/").to_string(),
            "http://[::1]:8080/api"
        );
        assert_ne!(addr("http://x/a"), addr("http://x/b"));
        // The normal form parses back to itself.
        for a in ["http://x:1", "http://x", "http://[fd00::1]:9/p/q"] {
            assert_eq!(addr(&addr(a).to_string()), addr(a));
        }
        assert_eq!(format!("{:>12}", addr("http://x")), "    http://x");
    }

    #[test]
    fn https_addresses_keep_their_scheme_and_default_to_port_443() {
        let a = addr("HTTPS://Backend.example:443/api/");
        assert_eq!(a.scheme(), BackendScheme::Https);
        assert_eq!(a.to_string(), "https://backend.example/api");
        assert_eq!((a.port(), a.authority().as_str()), (443, "backend.example"));
        assert_eq!(a, addr("https://backend.example/api"));
        assert_eq!(addr("https://x:80").to_string(), "https://x:80");
        // The same host and port over another scheme is another backend.
        assert_ne!(addr("https://x:8443"), addr("http://x:8443"));
        assert_eq!(addr("http://x").scheme(), BackendScheme::Http);
        assert_eq!(
            a.uri_with("/health").unwrap(),
            "https://backend.example/api/health"
        );
        assert_eq!(a.to_uri(), "https://backend.example/api");
        assert_eq!(addr(&a.to_string()), a);
        assert_eq!(BackendScheme::Https.to_string(), "https");
    }

    #[test]
    fn parts_are_exposed() {
        let a = addr("http://Backend.example:8081/api/");
        assert_eq!(a.host(), "backend.example");
        assert_eq!(a.port(), 8081);
        assert_eq!(a.authority().as_str(), "backend.example:8081");
        assert_eq!(a.prefix(), "/api");
        assert_eq!(a.ip(), None);
        let b = addr("http://[FD00::1]");
        assert_eq!((b.host(), b.port(), b.prefix()), ("[fd00::1]", 80, ""));
        assert_eq!(b.authority().as_str(), "[fd00::1]");
        assert_eq!(b.ip(), Some("fd00::1".parse().unwrap()));
        assert_eq!(addr("http://127.0.0.1:1").ip(), Some([127, 0, 0, 1].into()));
    }

    #[test]
    fn paths_join_under_the_prefix() {
        let pq = |s: &'static str| PathAndQuery::from_static(s);
        let plain = addr("http://127.0.0.1:1080");
        assert_eq!(
            plain.join(pq("/a/%2F/b?a=1&&c")).unwrap(),
            "/a/%2F/b?a=1&&c"
        );
        for base in ["http://127.0.0.1:1080/api", "http://127.0.0.1:1080/api/"] {
            let a = addr(base);
            assert_eq!(a.join(pq("/x?y=1")).unwrap(), "/api/x?y=1");
            assert_eq!(a.join(pq("/")).unwrap(), "/api/");
            assert_eq!(a.join(pq("*")).unwrap(), "/api/*");
        }
        let long = format!("/{}", "a".repeat(65_530));
        let long = PathAndQuery::try_from(long).unwrap();
        assert!(
            addr("http://x/prefix").join(long.clone()).is_err(),
            "too long"
        );
        assert!(plain.join(long).is_ok());

        assert_eq!(
            plain.uri_with("/health").unwrap(),
            "http://127.0.0.1:1080/health"
        );
        assert_eq!(
            addr("http://x/api/").uri_with("ready?full=1").unwrap(),
            "http://x/api/ready?full=1"
        );
        assert!(plain.uri_with("/a b").is_err());
    }

    #[test]
    fn conversions() {
        let from = |s: &str| BackendAddr::try_from(s.parse::<SocketAddr>().unwrap());
        assert_eq!(
            from("127.0.0.1:8081").unwrap().to_string(),
            "http://127.0.0.1:8081"
        );
        assert_eq!(from("[::1]:80").unwrap().to_string(), "http://[::1]");
        assert!(from("127.0.0.1:0").is_err());
        let uri: Uri = "HTTP://x:1/a/".parse().unwrap();
        assert_eq!(BackendAddr::try_from(&uri).unwrap(), addr("http://x:1/a"));
        assert_eq!(addr("http://x:1").to_uri(), "http://x:1/");
        assert_eq!(Uri::from(addr("http://x:1/a/")), "http://x:1/a");
        assert!(BackendAddr::try_from("ftp://x").is_err());
    }

    #[test]
    fn deserializes_from_a_string_and_serializes_as_its_normal_form() {
        use serde::Deserialize;
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error, StrDeserializer};

        let de: StrDeserializer<'_, Error> = "HTTP://X:1/".into_deserializer();
        assert_eq!(BackendAddr::deserialize(de).unwrap(), addr("http://x:1"));
        let de: StrDeserializer<'_, Error> = "ftp://x".into_deserializer();
        let err = BackendAddr::deserialize(de).unwrap_err();
        assert!(
            err.to_string()
                .contains("the scheme must be http, https or h2c"),
            "{err}"
        );
        // Serialized with `collect_str`: its `Display`, checked above; JSON in `admin`.
    }

    #[test]
    fn h2c_addresses_keep_their_scheme_and_are_not_the_http_backend() {
        let h2 = addr("H2C://X:80/grpc/");
        assert_eq!(h2.scheme(), BackendScheme::H2c);
        assert!(h2.scheme().is_http2());
        assert_eq!(h2.to_string(), "h2c://x/grpc");
        assert_eq!(h2.port(), 80);
        assert_eq!(addr(&h2.to_string()), h2);
        assert_ne!(
            h2,
            addr("http://x/grpc"),
            "another protocol, another backend"
        );
        assert_eq!(addr("http://x").scheme(), BackendScheme::Http);
        assert_eq!(h2.to_uri(), "h2c://x/grpc");
        // The request's own scheme stays `http`.
        assert_eq!(h2.uri_with("/health").unwrap(), "http://x/grpc/health");
        assert_eq!(format!("{:>4}", BackendScheme::H2c), " h2c");
    }

    #[test]
    fn is_debug_as_its_normal_form() {
        assert_eq!(format!("{:?}", addr("http://X:1/")), "http://x:1");
    }
}
