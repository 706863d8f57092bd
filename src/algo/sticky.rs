//! Sticky round robin: a client's first request is placed round robin, and the client then
//! stays on that backend while it is ready.
//!
//! The balancer remembers which backend each client was placed on. When that backend is not
//! ready (unhealthy, draining, saturated) or has left the set, the client is placed again, round
//! robin, and stays on its new backend from then on. Clients are told apart by a
//! [`StickyKey`]: their IP address (the default), a request header such as a session token, or a
//! cookie; requests without a key are sent round robin. Choose it when backends hold
//! per-client state that must stay put (in-memory sessions, uploads in parts); unlike
//! [`SourceIpHash`](super::SourceIpHash), placement follows the rotation rather than a hash, so
//! clients spread evenly, and a backend that joins takes only new clients. HAProxy's
//! `stick-table` with `stick on src` over `balance roundrobin`, and NGINX Plus's `sticky learn`.
//!
//! # Memory and the request path
//!
//! The table of placements is bounded: it holds at most [`capacity`](StickyRoundRobin::capacity)
//! clients ([`DEFAULT_CAPACITY`] by default), and forgets a client idle for longer than the
//! [`idle timeout`](StickyRoundRobin::idle_timeout) ([`DEFAULT_IDLE_TIMEOUT`]). It is split into
//! up to 64 shards by a hash of the client key, each behind its own mutex with its own share
//! of the capacity; a request locks one shard for a hash-map lookup, so clients of different
//! shards never wait for each other. A full shard first drops its idle clients, then the least
//! recently seen eighth, so a flood of new clients costs O(1) per request amortized and evicts
//! the oldest clients rather than growing. The key hash is seeded at random per picker, so
//! clients cannot easily aim at one shard (and if they did, only that shard's clients would lose
//! their placement; memory stays bounded).
//!
//! A placement refers to the backend itself, not to its position in the set, so clients stay
//! put when other backends come and go. It also notes the slot it found the backend at and in
//! which set ([`StickyTable`]): within that set the slot is taken as it is, so a returning
//! client costs no lookup in the backend list; in a later set it is checked once.
//!
//! Idle times are read from the kernel's coarse clock (1 to 4 ms fine): a sticky pick reads a
//! clock for every request, and a precise one cost a sixth of the pick.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use http::HeaderMap;
use http::header::{COOKIE, HeaderName};

use super::hash::{PassThrough, fmix64, ip_hash, seeded_bytes_hash};
use super::{AlgoConfig, Configure, Pick, RoundRobin};
use crate::balance::{Endpoint, Stats};
use crate::client_ip::ClientIp;
use crate::clock::coarse_now_ns;

/// The default number of clients remembered.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// The default time after which an idle client is forgotten.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

const MAX_SHARDS: usize = 64;

/// What tells clients apart: the key [`StickyRoundRobin`] remembers, and the key
/// [`SourceIpHash`](super::SourceIpHash) and [`BoundedLoadHash`](super::BoundedLoadHash) hash.
///
/// Parses from the standalone balancer's `--hash-key` spelling: `ip`, `header:NAME`,
/// `cookie:NAME` or `path` (`ip` finds the address as [`ClientIp::peer`]; a balancer built from
/// settings replaces it with its own [`ClientIp`]).
///
/// ```
/// use tower_lb::algo::StickyKey;
///
/// assert!(matches!("cookie:session".parse(), Ok(StickyKey::Cookie(name)) if name == "session"));
/// assert!(matches!("header:X-Tenant".parse(), Ok(StickyKey::Header(name)) if name == "x-tenant"));
/// assert!(matches!("path".parse(), Ok(StickyKey::Path)));
/// assert!("header:".parse::<StickyKey>().unwrap_err().to_string().contains("header:NAME"));
/// ```
#[derive(Debug, Clone)]
pub enum StickyKey {
    /// The client's IP address, found as [`ClientIp`] says (by default the TCP peer).
    ClientIp(ClientIp),
    /// The value of this request header, e.g. a session or tenant id set by a proxy in front.
    Header(HeaderName),
    /// The value of the cookie with this name, e.g. a session cookie set by the backends.
    Cookie(String),
    /// The request's path (without the query), e.g. to keep each object on one cache.
    Path,
}

impl StickyKey {
    /// A fixed hash of the request's key, if it has one: the same on every balancer and
    /// every restart (see the `hash` module), so hash-based algorithms agree across
    /// instances. A missing or empty header, cookie or path gives `None`.
    #[inline]
    pub(crate) fn stable_hash<B>(&self, req: &http::Request<B>) -> Option<u64> {
        match self {
            Self::ClientIp(client_ip) => client_ip.of(req).map(ip_hash),
            Self::Header(name) => req
                .headers()
                .get(name)
                .map(|v| v.as_bytes())
                .filter(|v| !v.is_empty())
                .map(|v| seeded_bytes_hash(0, v)),
            Self::Cookie(name) => cookie_hash(req.headers(), name),
            Self::Path => Some(seeded_bytes_hash(0, req.uri().path().as_bytes())),
        }
    }
}

/// The hash of the cookie `name`'s value, for [`StickyKey::Cookie`]; kept out of line, see
/// [`find_cookie`].
#[inline(never)]
fn cookie_hash(headers: &HeaderMap, name: &str) -> Option<u64> {
    find_cookie(headers, name, |value| seeded_bytes_hash(0, value.as_bytes()))
}

/// `f` of the value of the cookie `name` in the `Cookie` lines of `headers`, if set and not
/// empty.
///
/// The value is handed to `f`, and the callers on the pick path keep this out of line and
/// return a number: none of them returns a borrow of the request. `HeaderMap::get_all` returns
/// a struct that holds the map, and where the compiler did not inline it, the optimizer counted
/// the request as escaping and the balancer copied the 224-byte request twice on its way to
/// the backend: every pick of an algorithm chosen at run time (`LoadBalance`), and of `SRR`,
/// `SIH` and `CHB` of any type, paid for the sticky-cookie code (see `benches/RESULTS.md`).
pub(crate) fn find_cookie<R>(
    headers: &HeaderMap,
    name: &str,
    f: impl FnOnce(&str) -> R,
) -> Option<R> {
    for line in &headers.get_all(COOKIE) {
        let Ok(line) = line.to_str() else { continue };
        for (n, value) in line.split(';').filter_map(|pair| pair.split_once('=')) {
            if n.trim() == name {
                let value = value.trim();
                return (!value.is_empty()).then(|| f(value));
            }
        }
    }
    None
}

/// A [`StickyKey`] or a [`StickyCookie`](super::StickyCookie) name that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidStickyKey {
    spec: String,
    reason: &'static str,
}

impl InvalidStickyKey {
    pub(crate) fn cookie_name(name: &str) -> Self {
        Self {
            spec: name.to_owned(),
            reason: "a cookie name is visible ASCII without separators",
        }
    }
}

impl fmt::Display for InvalidStickyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid key {:?}: {}", self.spec, self.reason)
    }
}

impl std::error::Error for InvalidStickyKey {}

/// Whether `name` is a cookie name (RFC 6265's `token`).
pub(crate) fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

impl std::str::FromStr for StickyKey {
    type Err = InvalidStickyKey;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidStickyKey {
            spec: spec.to_owned(),
            reason: "expected ip, header:NAME, cookie:NAME or path",
        };
        let (kind, name) = match spec.split_once(':') {
            Some((kind, name)) => (kind, Some(name)),
            None => (spec, None),
        };
        match (kind.to_ascii_lowercase().as_str(), name) {
            ("ip", None) => Ok(Self::ClientIp(ClientIp::peer())),
            ("path", None) => Ok(Self::Path),
            ("header", Some(name)) => HeaderName::from_bytes(name.as_bytes())
                .map(Self::Header)
                .map_err(|_| bad()),
            ("cookie", Some(name)) if is_cookie_name(name) => Ok(Self::Cookie(name.to_owned())),
            _ => Err(bad()),
        }
    }
}

impl Default for StickyKey {
    fn default() -> Self {
        Self::ClientIp(ClientIp::peer())
    }
}

impl From<ClientIp> for StickyKey {
    fn from(client_ip: ClientIp) -> Self {
        Self::ClientIp(client_ip)
    }
}

impl From<HeaderName> for StickyKey {
    fn from(name: HeaderName) -> Self {
        Self::Header(name)
    }
}

/// Sticky round robin picker. See the [module docs](self).
///
/// ```
/// use std::time::Duration;
/// use tower_lb::algo::{StickyKey, StickyRoundRobin};
///
/// let picker = StickyRoundRobin::new()
///     .key(StickyKey::Cookie("session".into()))
///     .capacity(10_000)
///     .idle_timeout(Duration::from_secs(300));
/// # let _ = picker;
/// ```
#[must_use]
pub struct StickyRoundRobin {
    key: StickyKey,
    rotation: RoundRobin,
    shards: Box<[Mutex<Shard>]>,
    shard_capacity: usize,
    idle_timeout: Duration,
    idle_ns: u64,
    seed: u64,
    /// Numbers the tables built, so a placement knows whether its slot is of the current set.
    sets: AtomicU64,
}

/// [`StickyRoundRobin`]'s table: which backend set it was built for.
#[derive(Debug)]
pub struct StickyTable {
    set: u64,
}

/// Where one client was placed.
#[derive(Debug)]
struct Placement {
    backend: Weak<Stats>,
    /// Where the backend was last seen in the set; checked before use.
    slot: usize,
    /// The set `slot` was found in ([`StickyTable::set`]): within it, the slot holds.
    set: u64,
    last_seen: u64,
}

/// One shard of the placement table, keyed by the seeded hash of the client key.
#[derive(Debug, Default)]
struct Shard {
    clients: HashMap<u64, Placement, BuildHasherDefault<PassThrough>>,
    last_sweep: u64,
}

impl StickyRoundRobin {
    /// Clients are told apart by TCP peer address, [`DEFAULT_CAPACITY`] of them are remembered,
    /// each for [`DEFAULT_IDLE_TIMEOUT`] after its last request.
    pub fn new() -> Self {
        Self {
            key: StickyKey::default(),
            rotation: RoundRobin::new(),
            shards: Box::new([]),
            shard_capacity: 0,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            idle_ns: 0,
            seed: rand::random(),
            sets: AtomicU64::new(0),
        }
        .capacity(DEFAULT_CAPACITY)
        .idle_timeout(DEFAULT_IDLE_TIMEOUT)
    }

    /// What tells clients apart.
    pub fn key(mut self, key: impl Into<StickyKey>) -> Self {
        self.key = key.into();
        self
    }

    /// The most clients remembered (at least 1). Forgets those remembered so far.
    pub fn capacity(mut self, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let shards = (capacity / 16).clamp(1, MAX_SHARDS);
        self.shards = (0..shards).map(|_| Mutex::default()).collect();
        self.shard_capacity = capacity / shards;
        self
    }

    /// How long a client that sends no request is remembered.
    pub fn idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self.idle_ns = u64::try_from(idle_timeout.as_nanos()).unwrap_or(u64::MAX);
        self
    }

    /// The most clients remembered: the capacity, rounded down to a multiple of the shards.
    pub fn max_clients(&self) -> usize {
        self.shards.len() * self.shard_capacity
    }

    /// Clients remembered now: placed, and not idle for longer than the idle timeout.
    pub fn clients(&self) -> usize {
        let now = coarse_now_ns();
        self.shards
            .iter()
            .map(|shard| {
                let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                shard
                    .clients
                    .values()
                    .filter(|p| now.saturating_sub(p.last_seen) <= self.idle_ns)
                    .count()
            })
            .sum()
    }

    /// The seeded hash of the request's client key, if it has one.
    #[inline]
    fn client_hash<B>(&self, req: &http::Request<B>) -> Option<u64> {
        self.key.stable_hash(req).map(|h| fmix64(h ^ self.seed))
    }

    #[inline]
    fn shard(&self, h: u64) -> &Mutex<Shard> {
        // The high bits choose the shard; the map inside uses the low ones.
        &self.shards[(((h >> 32) * self.shards.len() as u64) >> 32) as usize]
    }
}

impl Default for StickyRoundRobin {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for StickyRoundRobin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StickyRoundRobin")
            .field("key", &self.key)
            .field("max_clients", &self.max_clients())
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl Placement {
    /// The backend's index in `endpoints`, if it is still in the set.
    #[inline]
    fn resolve<K>(&mut self, table: &StickyTable, endpoints: &[Arc<Endpoint<K>>]) -> Option<usize> {
        if self.set == table.set {
            // Found in this very set before: a set never changes, so neither does the slot.
            return Some(self.slot);
        }
        let same = |slot: usize| {
            endpoints
                .get(slot)
                .is_some_and(|e| std::ptr::eq(Arc::as_ptr(e.stats_arc()), self.backend.as_ptr()))
        };
        // The set changed since: the backend may have kept its slot, or moved (ask it).
        let slot = if same(self.slot) {
            self.slot
        } else {
            Some(self.backend.upgrade()?.slot()).filter(|&slot| same(slot))?
        };
        self.slot = slot;
        self.set = table.set;
        Some(slot)
    }
}

impl Shard {
    /// Makes room for one more client: drops idle clients, then the oldest eighth if still full.
    fn make_room(&mut self, now: u64, idle_ns: u64, capacity: usize) {
        let full = self.clients.len() >= capacity;
        if full || now.saturating_sub(self.last_sweep) >= idle_ns {
            self.clients
                .retain(|_, p| now.saturating_sub(p.last_seen) <= idle_ns);
            self.last_sweep = now;
        }
        if self.clients.len() >= capacity {
            let mut seen: Vec<u64> = self.clients.values().map(|p| p.last_seen).collect();
            let k = seen.len() / 8;
            let (_, &mut cutoff, _) = seen.select_nth_unstable(k);
            self.clients.retain(|_, p| p.last_seen > cutoff);
        }
    }
}

impl Configure for StickyRoundRobin {
    fn configure(config: &AlgoConfig) -> Self {
        Self::new().key(config.client_key())
    }
}

impl<K: Send + Sync + 'static> Pick<K> for StickyRoundRobin {
    type Table = StickyTable;

    fn build(&self, _: &[Arc<Endpoint<K>>]) -> StickyTable {
        StickyTable {
            set: self.sets.fetch_add(1, Relaxed),
        }
    }

    fn pick<B>(
        &self,
        table: &StickyTable,
        endpoints: &[Arc<Endpoint<K>>],
        req: &http::Request<B>,
        ready: &mut impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let n = endpoints.len();
        let Some(h) = self.client_hash(req) else {
            return self.rotation.rotate(n, ready);
        };
        let now = coarse_now_ns();
        let mut shard = self.shard(h).lock().unwrap_or_else(PoisonError::into_inner);
        let mut refused = None;
        if let Some(placement) = shard.clients.get_mut(&h) {
            if now.saturating_sub(placement.last_seen) <= self.idle_ns {
                if let Some(slot) = placement.resolve(table, endpoints) {
                    if ready(slot) {
                        placement.last_seen = now;
                        return Some(slot);
                    }
                    refused = Some(slot);
                }
            }
        }
        // First request, or the backend is gone or not ready: place the client again.
        let slot = self
            .rotation
            .rotate(n, &mut |i| Some(i) != refused && ready(i))?;
        let placement = Placement {
            backend: Arc::downgrade(endpoints[slot].stats_arc()),
            slot,
            set: table.set,
            last_seen: now,
        };
        if let Some(old) = shard.clients.get_mut(&h) {
            *old = placement;
        } else {
            shard.make_room(now, self.idle_ns, self.shard_capacity);
            shard.clients.insert(h, placement);
        }
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use tower::discover::ServiceList;
    use tower::{Service, ServiceExt, service_fn};

    use super::*;
    use crate::algo::test_support::endpoints;
    use crate::client_ip::PeerAddr;
    use crate::{Algo, LoadBalance};

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
    }

    fn from(ip: IpAddr) -> http::Request<()> {
        let mut req = http::Request::new(());
        req.extensions_mut()
            .insert(PeerAddr(SocketAddr::new(ip, 50_000)));
        req
    }

    fn with_header(name: &str, value: &str) -> http::Request<()> {
        let mut req = from(ip(1));
        req.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        req
    }

    fn pick(
        srr: &StickyRoundRobin,
        eps: &[Arc<Endpoint<usize>>],
        req: &http::Request<()>,
    ) -> Option<usize> {
        srr.pick(&Pick::<usize>::build(srr, eps), eps, req, &mut |_| true)
    }

    #[test]
    fn clients_are_placed_round_robin_and_stay() {
        let eps = endpoints(&[1, 1, 1]);
        let srr = StickyRoundRobin::new();
        let first: Vec<usize> = (0..300)
            .map(|c| pick(&srr, &eps, &from(ip(c))).unwrap())
            .collect();
        let expected: Vec<usize> = (0..300).map(|c| c % 3).collect();
        assert_eq!(first, expected);
        for round in 0..5 {
            // Interleave clients in a different order each round.
            for c in (0..300).map(|c| (c * 7 + round * 31) % 300) {
                assert_eq!(pick(&srr, &eps, &from(ip(c))), Some(first[c as usize]));
            }
        }
        assert_eq!(srr.clients(), 300);
    }

    #[test]
    fn unready_backend_places_the_client_again_for_good() {
        let eps = endpoints(&[1, 1, 1]);
        let srr = StickyRoundRobin::new();
        let (a, b) = (from(ip(1)), from(ip(2)));
        assert_eq!(pick(&srr, &eps, &a), Some(0));
        assert_eq!(pick(&srr, &eps, &b), Some(1));
        let mut asked = Vec::new();
        let moved = srr.pick(&Pick::<usize>::build(&srr, &eps), &eps, &a, &mut |i| {
            asked.push(i);
            i != 0
        });
        assert_eq!(moved, Some(2));
        assert_eq!(asked, [0, 2], "the refusing backend is asked once");
        // Backend 0 is back, but the client now lives on 2.
        assert_eq!(pick(&srr, &eps, &a), Some(2));
        assert_eq!(pick(&srr, &eps, &b), Some(1));
        // Nothing ready: no backend, and the placement is kept.
        assert_eq!(srr.pick(&Pick::<usize>::build(&srr, &eps), &eps, &a, &mut |_| false), None);
        assert_eq!(pick(&srr, &eps, &a), Some(2));
    }

    #[test]
    fn removed_backend_places_its_clients_again_and_others_follow_their_backend() {
        let eps = endpoints(&[1, 1, 1]);
        let srr = StickyRoundRobin::new();
        let clients: Vec<_> = (0..6).map(|c| from(ip(c))).collect();
        let placed: Vec<usize> = clients
            .iter()
            .map(|r| pick(&srr, &eps, r).unwrap())
            .collect();
        assert_eq!(placed, [0, 1, 2, 0, 1, 2]);

        // Backend 1 leaves; backend 2 moves to slot 1, as the balancer would set it.
        eps[1].stats().mark_removed();
        let after = vec![Arc::clone(&eps[0]), Arc::clone(&eps[2])];
        after[1].stats().set_slot(1);
        for (req, &was) in clients.iter().zip(&placed) {
            let now = *after[pick(&srr, &after, req).unwrap()].key();
            if was == 1 {
                assert_ne!(now, 1);
            } else {
                assert_eq!(now, was, "a client of a remaining backend moved");
            }
        }
        // The re-placed clients stay on their new backends.
        let again: Vec<usize> = clients
            .iter()
            .map(|r| *after[pick(&srr, &after, r).unwrap()].key())
            .collect();
        let again2: Vec<usize> = clients
            .iter()
            .map(|r| *after[pick(&srr, &after, r).unwrap()].key())
            .collect();
        assert_eq!(again, again2);
    }

    #[test]
    fn a_placement_holds_within_its_set_and_is_checked_in_the_next() {
        let eps = endpoints(&[1, 1, 1]);
        let srr = StickyRoundRobin::new();
        let pick_in = |table: &StickyTable, eps: &[Arc<Endpoint<usize>>], req| {
            srr.pick(table, eps, req, &mut |_| true)
        };
        let clients: Vec<_> = (0..3).map(|c| from(ip(c))).collect();
        let table = Pick::<usize>::build(&srr, &eps);
        for _ in 0..3 {
            for (c, req) in clients.iter().enumerate() {
                assert_eq!(pick_in(&table, &eps, req), Some(c));
            }
        }
        // Backend 0 leaves: in the next set, backend 1 is at slot 0 and backend 2 at slot 1.
        eps[0].stats().mark_removed();
        let after = vec![Arc::clone(&eps[1]), Arc::clone(&eps[2])];
        after[0].stats().set_slot(0);
        after[1].stats().set_slot(1);
        let next = Pick::<usize>::build(&srr, &after);
        assert_eq!(pick_in(&next, &after, &clients[1]), Some(0), "follows backend 1");
        assert_eq!(pick_in(&next, &after, &clients[2]), Some(1), "follows backend 2");
        let moved = pick_in(&next, &after, &clients[0]).unwrap();
        for _ in 0..3 {
            assert_eq!(pick_in(&next, &after, &clients[0]), Some(moved));
            assert_eq!(pick_in(&next, &after, &clients[1]), Some(0));
            assert_eq!(pick_in(&next, &after, &clients[2]), Some(1));
        }
    }

    #[test]
    fn header_key_sticks_by_value_whatever_the_peer() {
        let eps = endpoints(&[1, 1, 1]);
        let srr = StickyRoundRobin::new().key(HeaderName::from_static("x-session"));
        let s1 = pick(&srr, &eps, &with_header("x-session", "alpha")).unwrap();
        let s2 = pick(&srr, &eps, &with_header("x-session", "beta")).unwrap();
        assert_ne!(s1, s2);
        for c in 0..20 {
            let mut req = with_header("x-session", "alpha");
            req.extensions_mut()
                .insert(PeerAddr(SocketAddr::new(ip(c), 1)));
            assert_eq!(pick(&srr, &eps, &req), Some(s1));
        }
        assert_eq!(
            pick(&srr, &eps, &with_header("x-session", "beta")),
            Some(s2)
        );
        // No header, or an empty one: round robin, and nothing remembered.
        let before = srr.clients();
        let plain: Vec<usize> = (0..3)
            .map(|_| pick(&srr, &eps, &from(ip(9))).unwrap())
            .collect();
        let mut sorted = plain.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2]);
        pick(&srr, &eps, &with_header("x-session", "")).unwrap();
        assert_eq!(srr.clients(), before);
    }

    #[test]
    fn cookie_key_reads_the_named_cookie() {
        let eps = endpoints(&[1, 1, 1, 1]);
        let srr = StickyRoundRobin::new().key(StickyKey::Cookie("session".into()));
        let a = pick(
            &srr,
            &eps,
            &with_header("cookie", "theme=dark; session=abc; x=1"),
        )
        .unwrap();
        let b = pick(&srr, &eps, &with_header("cookie", "session=def")).unwrap();
        assert_ne!(a, b);
        for cookie in [
            "session=abc",
            "x=2;session=abc",
            " session = abc ;theme=light",
        ] {
            assert_eq!(
                pick(&srr, &eps, &with_header("cookie", cookie)),
                Some(a),
                "{cookie}"
            );
        }
        // Split over two Cookie headers, as HTTP/2 allows.
        let mut req = with_header("cookie", "theme=dark");
        req.headers_mut()
            .append(COOKIE, "session=abc".parse().unwrap());
        assert_eq!(pick(&srr, &eps, &req), Some(a));
        // Another cookie of a similar name is not the session.
        let before = srr.clients();
        pick(
            &srr,
            &eps,
            &with_header("cookie", "session2=abc; xsession=abc"),
        )
        .unwrap();
        assert_eq!(srr.clients(), before);
    }

    #[test]
    fn a_flood_of_clients_never_exceeds_the_capacity() {
        let eps = endpoints(&[1, 1, 1]);
        let srr = StickyRoundRobin::new().capacity(1_000);
        assert!(srr.max_clients() <= 1_000 && srr.max_clients() >= 960);
        for c in 0..50_000 {
            pick(&srr, &eps, &from(ip(c))).unwrap();
            if c % 997 == 0 {
                assert!(srr.clients() <= 1_000, "{}", srr.clients());
            }
        }
        let remembered = srr.clients();
        assert!((500..=1_000).contains(&remembered), "{remembered}");
        // The latest client is still remembered.
        let last = from(ip(49_999));
        let on = pick(&srr, &eps, &last);
        for _ in 0..3 {
            assert_eq!(pick(&srr, &eps, &last), on);
        }
        // A tiny capacity still works.
        let tiny = StickyRoundRobin::new().capacity(0);
        assert_eq!(tiny.max_clients(), 1);
        for c in 0..10 {
            pick(&tiny, &eps, &from(ip(c))).unwrap();
            assert_eq!(tiny.clients(), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_clients_are_forgotten() {
        let eps = endpoints(&[1, 1]);
        let srr = StickyRoundRobin::new();
        let (a, b) = (from(ip(1)), from(ip(2)));
        assert_eq!(pick(&srr, &eps, &a), Some(0));
        assert_eq!(pick(&srr, &eps, &b), Some(1));
        // Each request restarts the idle clock.
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(9 * 60)).await;
            assert_eq!(pick(&srr, &eps, &b), Some(1));
        }
        assert_eq!(srr.clients(), 1, "a, idle for 27 minutes, is forgotten");
        tokio::time::advance(Duration::from_secs(11 * 60)).await;
        assert_eq!(srr.clients(), 0);
        // Both are placed afresh: b first, so it now gets the next in rotation, 0.
        assert_eq!(pick(&srr, &eps, &b), Some(0));
        assert_eq!(pick(&srr, &eps, &a), Some(1));

        let short = StickyRoundRobin::new().idle_timeout(Duration::from_secs(1));
        assert_eq!(pick(&short, &eps, &a), Some(0));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(pick(&short, &eps, &b), Some(1));
        assert_eq!(pick(&short, &eps, &a), Some(0));
        assert_eq!(short.clients(), 2);
    }

    #[tokio::test]
    async fn balancer_keeps_each_peer_on_its_backend() {
        let backend = |n: usize| {
            service_fn(move |_: http::Request<()>| async move {
                Ok::<_, Infallible>(http::Response::new(n))
            })
        };
        let mut lb = LoadBalance::new(
            ServiceList::new((0..4).map(backend).collect::<Vec<_>>()),
            Algo::StickyRoundRobin,
        );
        let mut seen = std::collections::HashMap::new();
        for round in 0..5 {
            for c in 0..8 {
                let res = lb.ready().await.unwrap().call(from(ip(c))).await.unwrap();
                let n = *res.body().get_ref();
                assert_eq!(*seen.entry(c).or_insert(n), n, "client {c}, round {round}");
            }
        }
        let mut per_backend = [0; 4];
        for n in seen.values() {
            per_backend[*n] += 1;
        }
        assert_eq!(per_backend, [2; 4]);
    }
}
