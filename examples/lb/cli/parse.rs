//! How flag values are read: each parser names what it expected.

use std::time::Duration;

use tower_lb::Algo;
use tower_lb::admin::BackendSpec;
use tower_lb::algo::{StickyCookie, StickyKey};
use tower_lb::discover::dns::DnsTarget;
use tower_lb::server::Config;

pub(super) fn parse_algo(s: &str) -> Result<Algo, String> {
    s.parse()
        .map_err(|e: tower_lb::algo::UnknownAlgo| e.to_string())
}

pub(super) fn parse_hash_key(s: &str) -> Result<StickyKey, String> {
    s.parse()
        .map_err(|e: tower_lb::algo::InvalidStickyKey| e.to_string())
}

pub(super) fn parse_cookie_name(s: &str) -> Result<String, String> {
    StickyCookie::new(s)
        .map(|cookie| cookie.name().to_owned())
        .map_err(|e| e.to_string())
}

pub(super) fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!(
            "{s} is out of range: expected more than 0 and at most 86400 seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// An etcd endpoint: `http://` or `https://`, a host and a port.
#[cfg(feature = "etcd")]
pub(super) fn parse_etcd_endpoint(s: &str) -> Result<String, String> {
    let uri: http::Uri = s
        .parse()
        .map_err(|e| format!("{s:?} is not an etcd endpoint URL: {e}"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.port_u16().is_none() || uri.path().len() > 1 {
        return Err(format!(
            "{s:?} is not an etcd endpoint: expected http://host:port, e.g. http://127.0.0.1:2379"
        ));
    }
    Ok(s.to_owned())
}

/// A non-empty prefix: an empty one would read every key in etcd as a backend.
#[cfg(feature = "etcd")]
pub(super) fn parse_etcd_prefix(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("the prefix must not be empty, e.g. /lb/backends/".to_owned());
    }
    Ok(s.to_owned())
}

pub(super) fn parse_seconds_or_zero(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(0.0) => Ok(Duration::ZERO),
        _ => parse_seconds(s),
    }
}

pub(super) fn parse_header_size(s: &str) -> Result<usize, String> {
    const MAX: usize = 16 * 1024 * 1024;
    let bytes: usize = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes"))?;
    if !(Config::MIN_MAX_HEADER_SIZE..=MAX).contains(&bytes) {
        return Err(format!(
            "{s} is out of range: expected {} to {MAX} bytes",
            Config::MIN_MAX_HEADER_SIZE
        ));
    }
    Ok(bytes)
}

pub(super) fn parse_dns(s: &str) -> Result<DnsTarget, String> {
    s.parse()
        .map_err(|e: tower_lb::discover::dns::InvalidDnsTarget| e.to_string())
}

pub(super) fn parse_backend(s: &str) -> Result<BackendSpec, String> {
    s.parse()
        .map_err(|e: tower_lb::admin::RegisterError| e.to_string())
}
