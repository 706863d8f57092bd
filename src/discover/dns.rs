//! Backends from DNS: A/AAAA records of `name:port`, or SRV records of `_http._tcp.name`,
//! re-resolved at the records' TTL.
//!
//! A [`DnsTarget`] names what to resolve, a [`Dns`] resolver resolves it:
//! [`discover`](Dns::discover) gives a [`Discover`](tower::discover::Discover) stream
//! (usable with [`Balance`](crate::Balance) and no server), [`watch`](Dns::watch) calls a
//! function with every full set (the standalone server applies it to its registry through
//! [`Reconcile`](super::Reconcile)).
//!
//! - **A/AAAA** (`--dns web.example:8080`): every address of the name is a backend
//!   `http://ADDR:PORT` of weight 1.
//! - **SRV** (`--dns-srv _http._tcp.web.example`): every record of the lowest priority
//!   (RFC 2782) is a backend `http://ADDR:PORT` for each address of its target, with the
//!   record's port and its weight as the backend's weight (a weight of 0 counts as 1, above
//!   1000 as 1000, the bounds of `POST /register`).
//!
//! **Re-resolution.** The name is resolved again when its answer expires: after the smallest
//! TTL of the records, but never sooner than [`min_ttl`](Dns::min_ttl) (default
//! [`DEFAULT_MIN_TTL`](Dns::DEFAULT_MIN_TTL), 5 s) nor later than [`max_ttl`](Dns::max_ttl)
//! (default [`DEFAULT_MAX_TTL`](Dns::DEFAULT_MAX_TTL), 30 s). This is linkerd's rule (its
//! proxy re-resolves at the TTL, with a floor, `LINKERD2_PROXY_DNS_MIN_TTL`, so that a
//! zero TTL does not turn into a query loop) bounded above by tonic's, whose DNS resolver
//! asks again every 30 s at most: a TTL of a day must not hide a scaled-down service for a
//! day. The resolver's own cache is off, so every refresh is a real query.
//!
//! **Failures keep the last good set.** A timeout, an unreachable server, `SERVFAIL`, and
//! also an answer with no records (`NXDOMAIN`, or the name's last record removed) are logged
//! and leave the set as it was; the name is asked again after [`min_ttl`](Dns::min_ttl). An
//! outage of DNS never empties the pool; a backend leaves when an answer no longer lists
//! it, and is then drained (requests in flight finish).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, Resolver};
use tokio::time::Instant;

use super::channel::{SetDiscover, channel};
use crate::BackendAddr;

/// The largest backend weight taken from an SRV record, `POST /register`'s bound.
const MAX_WEIGHT: u32 = 1000;

/// What to resolve: a name with a port (A/AAAA) or an SRV name. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DnsTarget {
    /// A and AAAA records of `name`, each address a backend on `port`.
    Host {
        /// The name.
        name: String,
        /// The backends' port.
        port: u16,
    },
    /// SRV records of `name` (such as `_http._tcp.web.example`).
    Srv {
        /// The name.
        name: String,
    },
}

impl DnsTarget {
    /// A/AAAA records of `name`, each address a backend on `port`.
    pub fn host(name: impl Into<String>, port: u16) -> Self {
        Self::Host {
            name: name.into(),
            port,
        }
    }

    /// SRV records of `name`.
    pub fn srv(name: impl Into<String>) -> Self {
        Self::Srv { name: name.into() }
    }
}

impl fmt::Display for DnsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host { name, port } => write!(f, "{name}:{port}"),
            Self::Srv { name } => write!(f, "SRV {name}"),
        }
    }
}

/// Parses `NAME:PORT` into a [`DnsTarget::Host`].
impl FromStr for DnsTarget {
    type Err = InvalidDnsTarget;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| InvalidDnsTarget {
            target: s.to_owned(),
            reason,
        };
        let (name, port) = s.rsplit_once(':').ok_or(invalid("expected NAME:PORT"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| invalid("the port is not a number from 1 to 65535"))?;
        if port == 0 {
            return Err(invalid("the port is not a number from 1 to 65535"));
        }
        if name.is_empty() || name.contains(['/', ' ', ':']) {
            return Err(invalid("the name is not a DNS name"));
        }
        Ok(Self::host(name, port))
    }
}

/// A [`DnsTarget`] that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidDnsTarget {
    target: String,
    reason: &'static str,
}

impl fmt::Display for InvalidDnsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid DNS target {:?}: {}", self.target, self.reason)
    }
}

impl std::error::Error for InvalidDnsTarget {}

/// A failed resolution: the set is kept. See the [module docs](self).
#[derive(Debug)]
pub struct DnsError {
    /// `None` when the system's configuration could not be read.
    target: Option<DnsTarget>,
    source: ResolveError,
}

impl DnsError {
    /// What was being resolved; `None` when [`Dns::system`] could not read the system's
    /// configuration.
    pub fn target(&self) -> Option<&DnsTarget> {
        self.target.as_ref()
    }
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Some(target) => write!(f, "cannot resolve {target}: {}", self.source),
            None => write!(
                f,
                "cannot read the system's DNS configuration: {}",
                self.source
            ),
        }
    }
}

impl std::error::Error for DnsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// One answer: the backends and how long it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The backends with their weights, in the order of the answer.
    pub backends: Vec<(BackendAddr, u32)>,
    /// The smallest TTL of the records that made them (not yet bounded by
    /// [`min_ttl`](Dns::min_ttl) and [`max_ttl`](Dns::max_ttl)).
    pub ttl: Duration,
}

/// A DNS resolver for backends. See the [module docs](self).
#[derive(Clone)]
#[must_use]
pub struct Dns {
    resolver: Arc<Resolver<TokioConnectionProvider>>,
    server: Option<SocketAddr>,
    min_ttl: Duration,
    max_ttl: Duration,
}

impl Dns {
    /// The default shortest time between two resolutions of a name: 5 s.
    pub const DEFAULT_MIN_TTL: Duration = Duration::from_secs(5);

    /// The default longest time between two resolutions of a name: 30 s, tonic's.
    pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(30);

    /// How long one query may take before it is tried again (twice in all).
    pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

    /// The system's resolver configuration (`/etc/resolv.conf`).
    pub fn system() -> Result<Self, DnsError> {
        let (config, opts) =
            hickory_resolver::system_conf::read_system_conf().map_err(|source| DnsError {
                target: None,
                source,
            })?;
        Ok(Self::build(config, opts, None))
    }

    /// Asks only the DNS server at `server` (UDP, then TCP for truncated answers), without
    /// search domains or the hosts file.
    pub fn with_server(server: SocketAddr) -> Self {
        let group = NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
        let config = ResolverConfig::from_parts(None, Vec::new(), group);
        let mut opts = ResolverOpts::default();
        opts.use_hosts_file = ResolveHosts::Never;
        Self::build(config, opts, Some(server))
    }

    fn build(config: ResolverConfig, mut opts: ResolverOpts, server: Option<SocketAddr>) -> Self {
        opts.cache_size = 0;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.timeout = Self::QUERY_TIMEOUT;
        opts.attempts = 2;
        let mut builder = Resolver::builder_with_config(config, TokioConnectionProvider::default());
        *builder.options_mut() = opts;
        Self {
            resolver: Arc::new(builder.build()),
            server,
            min_ttl: Self::DEFAULT_MIN_TTL,
            max_ttl: Self::DEFAULT_MAX_TTL,
        }
    }

    /// The shortest time between two resolutions of a name, whatever the TTL; also the
    /// time before a failed resolution is tried again.
    pub fn min_ttl(mut self, min: Duration) -> Self {
        self.min_ttl = min;
        self
    }

    /// The longest time between two resolutions of a name, whatever the TTL.
    pub fn max_ttl(mut self, max: Duration) -> Self {
        self.max_ttl = max;
        self
    }

    /// When an answer with this TTL is asked again: the TTL bounded by
    /// [`min_ttl`](Self::min_ttl) and [`max_ttl`](Self::max_ttl).
    pub fn refresh_after(&self, ttl: Duration) -> Duration {
        ttl.min(self.max_ttl).max(self.min_ttl)
    }

    /// Resolves `target` once.
    pub async fn resolve(&self, target: &DnsTarget) -> Result<Resolved, DnsError> {
        let error = |source| DnsError {
            target: Some(target.clone()),
            source,
        };
        match target {
            DnsTarget::Host { name, port } => {
                let (ips, ttl) = self.ips(name).await.map_err(error)?;
                let backends = ips.into_iter().map(|ip| (backend(ip, *port), 1)).collect();
                Ok(Resolved { backends, ttl })
            }
            DnsTarget::Srv { name } => {
                let lookup = self
                    .resolver
                    .srv_lookup(name.as_str())
                    .await
                    .map_err(error)?;
                let mut ttl = remaining(lookup.as_lookup().valid_until());
                let records: Vec<_> = lookup.iter().collect();
                let best = records.iter().map(|srv| srv.priority()).min();
                let mut backends = Vec::new();
                for srv in records.iter().filter(|srv| Some(srv.priority()) == best) {
                    let target_name = srv.target().to_ascii();
                    let (ips, target_ttl) = self.ips(&target_name).await.map_err(error)?;
                    ttl = ttl.min(target_ttl);
                    let weight = u32::from(srv.weight()).clamp(1, MAX_WEIGHT);
                    backends.extend(ips.into_iter().map(|ip| (backend(ip, srv.port()), weight)));
                }
                Ok(Resolved { backends, ttl })
            }
        }
    }

    async fn ips(&self, name: &str) -> Result<(Vec<IpAddr>, Duration), ResolveError> {
        let lookup = self.resolver.lookup_ip(name).await?;
        let ttl = remaining(lookup.valid_until());
        Ok((lookup.iter().collect(), ttl))
    }

    /// Resolves `target` now and again whenever its answer expires (see the
    /// [module docs](self)), calling `publish` with every full set; never returns unless
    /// `publish` returns `false`. A failed resolution is logged and `publish` not called, so
    /// the last good set stays.
    pub async fn watch<F>(&self, target: DnsTarget, mut publish: F)
    where
        F: FnMut(Vec<(BackendAddr, u32)>) -> bool,
    {
        loop {
            let wait = match self.resolve(&target).await {
                Ok(resolved) => {
                    tracing::debug!(
                        target = %target,
                        backends = resolved.backends.len(),
                        ttl = ?resolved.ttl,
                        "resolved"
                    );
                    if !publish(resolved.backends) {
                        return;
                    }
                    self.refresh_after(resolved.ttl)
                }
                Err(error) => {
                    tracing::warn!(
                        target = %target,
                        %error,
                        retry_in = ?self.min_ttl,
                        "DNS resolution failed; keeping the last set"
                    );
                    self.min_ttl
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// A discovery stream of `target`'s backends, each service built by `make`: a task
    /// spawned on the current tokio runtime [`watch`](Self::watch)es the name until the
    /// stream is dropped.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn discover<S, F>(&self, target: DnsTarget, make: F) -> SetDiscover<BackendAddr, S>
    where
        S: Send + 'static,
        F: Fn(&BackendAddr) -> S + Send + Sync + 'static,
    {
        let (mut publisher, discover) = channel(make);
        let dns = self.clone();
        tokio::spawn(async move {
            // Stops when the stream is dropped, even while resolutions fail.
            let closed = publisher.on_close();
            tokio::select! {
                () = closed => {}
                () = dns.watch(target, |set| publisher.publish(set)) => {}
            }
        });
        discover
    }
}

/// The backend at `ip:port`.
fn backend(ip: IpAddr, port: u16) -> BackendAddr {
    // An IP address and a port always make a valid backend address.
    BackendAddr::try_from(SocketAddr::new(ip, port)).expect("IP:port is a valid backend")
}

/// The time left until `valid_until`.
fn remaining(valid_until: std::time::Instant) -> Duration {
    valid_until.saturating_duration_since(Instant::now().into_std())
}

impl fmt::Debug for Dns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dns")
            .field("server", &self.server)
            .field("min_ttl", &self.min_ttl)
            .field("max_ttl", &self.max_ttl)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_and_port() {
        assert_eq!(
            "web.example:8080".parse::<DnsTarget>().unwrap(),
            DnsTarget::host("web.example", 8080)
        );
        for bad in [
            "web.example",
            "web.example:0",
            "web.example:x",
            ":80",
            "a/b:80",
        ] {
            let error = bad.parse::<DnsTarget>().unwrap_err();
            assert!(error.to_string().contains(bad), "{error}");
        }
    }

    #[test]
    fn refresh_is_the_ttl_within_bounds() {
        let dns = Dns::with_server(([127, 0, 0, 1], 53).into())
            .min_ttl(Duration::from_secs(2))
            .max_ttl(Duration::from_secs(30));
        assert_eq!(dns.refresh_after(Duration::ZERO), Duration::from_secs(2));
        assert_eq!(
            dns.refresh_after(Duration::from_secs(7)),
            Duration::from_secs(7)
        );
        assert_eq!(
            dns.refresh_after(Duration::from_secs(86_400)),
            Duration::from_secs(30)
        );
    }
}
