//! Source IP hash: the same client goes to the same backend, and a change to the set moves as
//! few clients as possible.
//!
//! Clients are placed on a hash ring by consistent hashing (Karger et al., "Consistent Hashing
//! and Random Trees", STOC 1997) with weighted virtual nodes as in libketama and nginx's
//! `hash $remote_addr consistent`: each backend owns [`VNODES_PER_WEIGHT`] × weight points on
//! the ring, and a client belongs to the first point at or after the hash of its IP address.
//! Removing a backend moves only its own clients; adding one takes about its share of clients
//! from the others and moves nobody else. Choose it when backends keep per-client caches or
//! state that is costly to rebuild but not critical to keep (for sessions that must stay put,
//! see [`StickyRoundRobin`](super::StickyRoundRobin)).
//!
//! What is hashed is a [`StickyKey`]: the client's IP by default, or a header, a cookie or the
//! path ([`SourceIpHash::key`]); for a cap on each backend's load, see
//! [`BoundedLoadHash`](super::BoundedLoadHash), which walks the same ring.
//!
//! The client's IP comes from [`ClientIp`]: the TCP peer, or `X-Forwarded-For` only from
//! trusted proxies, so a client cannot choose its backend by writing the header. A request that
//! carries no peer address (no [`PeerAddr`](crate::PeerAddr) extension, e.g. when the balancer is
//! used in-process) is sent round robin rather than all to one backend.
//!
//! If a client's backend is not ready, the client goes to the next point on the ring owned by a
//! ready backend: the one it would have had if its own had left the set. Other clients stay.
//!
//! # Placement
//!
//! Points derive from the hash of the backend's discovery key and the point's number, never
//! from its position in the set or the order backends arrived in, so every balancer with the
//! same backends (and weights) and every restart places clients the same way. The hash is
//! FNV-1a over the key's [`Hash`] bytes (integers as fixed-width little-endian bytes),
//! finished with MurmurHash3's 64-bit mixer: fixed by this crate, unlike `std`'s `RandomState`
//! (seeded per process) or `DefaultHasher` (whose algorithm may change between Rust releases).
//! A [`BackendAddr`](crate::BackendAddr) hashes as its normal form, so `http://X:80/` and
//! `http://x` are one point set on every instance. Equal point hashes (vanishingly rare) are
//! ordered by key hash.
//!
//! A lookup is O(1): an index of the top bits of a hash points at the first ring position in
//! its range, from which about one point is scanned. The ring holds at most [`MAX_POINTS`]
//! points; above that, every backend's point count is scaled down in proportion (at least one
//! each), which moves some clients when the total weight crosses the cap.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use super::hash::{GOLDEN, fmix64, key_hash};
use super::refused::Refused;
use super::{AlgoConfig, Configure, Pick, RoundRobin, StickyKey};
use crate::balance::Endpoint;
use crate::client_ip::ClientIp;

/// Ring points per unit of weight.
pub const VNODES_PER_WEIGHT: u32 = 40;

/// The most points a ring holds.
pub const MAX_POINTS: usize = 1 << 20;

/// Source IP hash picker. See the [module docs](self).
#[derive(Debug)]
pub struct SourceIpHash {
    key: StickyKey,
    no_peer: RoundRobin,
}

impl Default for SourceIpHash {
    fn default() -> Self {
        Self::new()
    }
}

impl SourceIpHash {
    /// Hashes the TCP peer's address.
    pub const fn new() -> Self {
        Self {
            key: StickyKey::ClientIp(ClientIp::peer()),
            no_peer: RoundRobin::new(),
        }
    }

    /// Finds the client's IP with `client_ip`, e.g. [`ClientIp::trusting`] behind a proxy.
    #[must_use]
    pub fn client_ip(mut self, client_ip: ClientIp) -> Self {
        self.key = StickyKey::ClientIp(client_ip);
        self
    }

    /// Hashes `key` instead of the client IP: a header, a cookie or the path (like HAProxy's
    /// `balance hdr(NAME)`, `balance url_param`/`uri` or nginx's `hash $cookie_NAME consistent`).
    /// Requests without it are sent round robin.
    #[must_use]
    pub fn key(mut self, key: impl Into<StickyKey>) -> Self {
        self.key = key.into();
        self
    }
}

/// The hash ring over one set of backends.
pub struct SourceIpHashTable {
    /// Point hashes, ascending.
    pub(super) hashes: Box<[u64]>,
    /// The backend owning each point.
    pub(super) owners: Box<[u32]>,
    /// `index[b]`: the first point whose hash is at least `b << shift`.
    index: Box<[u32]>,
    shift: u32,
}

impl fmt::Debug for SourceIpHashTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceIpHashTable")
            .field("points", &self.hashes.len())
            .field("index", &self.index.len())
            .finish()
    }
}

impl SourceIpHashTable {
    pub(super) fn new<K: Hash>(endpoints: &[Arc<Endpoint<K>>]) -> Self {
        Self::with_max_points(endpoints, MAX_POINTS)
    }

    fn with_max_points<K: Hash>(endpoints: &[Arc<Endpoint<K>>], max_points: usize) -> Self {
        let wanted: Vec<u64> = endpoints
            .iter()
            .map(|e| u64::from(VNODES_PER_WEIGHT) * u64::from(e.weight()))
            .collect();
        let total: u64 = wanted.iter().sum();
        let counts: Vec<u64> = if total <= max_points as u64 {
            wanted
        } else {
            wanted
                .iter()
                .map(|&w| ((u128::from(w) * max_points as u128 / u128::from(total)) as u64).max(1))
                .collect()
        };
        let key_hashes: Vec<u64> = endpoints.iter().map(|e| key_hash(e.key())).collect();
        let mut points: Vec<(u64, u32)> = Vec::with_capacity(counts.iter().sum::<u64>() as usize);
        for (owner, (&kh, &count)) in key_hashes.iter().zip(&counts).enumerate() {
            for j in 0..count {
                let h = fmix64(kh.wrapping_add((j + 1).wrapping_mul(GOLDEN)));
                points.push((h, owner as u32));
            }
        }
        // Equal hashes (vanishingly rare) are ordered by key, never by position in the set.
        points.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| key_hashes[a.1 as usize].cmp(&key_hashes[b.1 as usize]))
        });

        let bits = points.len().next_power_of_two().max(2).trailing_zeros();
        let shift = 64 - bits;
        let mut index = Vec::with_capacity(1 << bits);
        let mut p = 0;
        for b in 0..1u64 << bits {
            let start = b << shift;
            while p < points.len() && points[p].0 < start {
                p += 1;
            }
            index.push(p as u32);
        }
        Self {
            hashes: points.iter().map(|p| p.0).collect(),
            owners: points.iter().map(|p| p.1).collect(),
            index: index.into_boxed_slice(),
            shift,
        }
    }

    /// The position of the first point at or after `h`, wrapping around; the ring is not empty.
    #[inline]
    pub(super) fn position(&self, h: u64) -> usize {
        let mut p = self.index[(h >> self.shift) as usize] as usize;
        while p < self.hashes.len() && self.hashes[p] < h {
            p += 1;
        }
        if p == self.hashes.len() { 0 } else { p }
    }

    /// Walks on from point `p`, whose owner refused, to the next point of a ready backend,
    /// asking each backend once.
    #[cold]
    fn walk(&self, p: usize, n: usize, ready: &mut impl FnMut(usize) -> bool) -> Option<usize> {
        let first = self.owners[p] as usize;
        let mut refused = Refused::new(n);
        refused.insert(first);
        // On around the ring after `p`, as `BoundedLoadHash` walks its own.
        for &owner in self.owners[p + 1..].iter().chain(&self.owners[..p]) {
            if refused.all() {
                return None;
            }
            let owner = owner as usize;
            if refused.contains(owner) {
                continue;
            }
            if ready(owner) {
                return Some(owner);
            }
            refused.insert(owner);
        }
        None
    }
}

impl Configure for SourceIpHash {
    fn configure(config: &AlgoConfig) -> Self {
        Self::new().key(config.client_key())
    }
}

impl<K: Hash + Send + Sync + 'static> Pick<K> for SourceIpHash {
    type Table = SourceIpHashTable;

    fn build(&self, endpoints: &[Arc<Endpoint<K>>]) -> SourceIpHashTable {
        SourceIpHashTable::new(endpoints)
    }

    #[inline]
    fn pick<B>(
        &self,
        table: &SourceIpHashTable,
        endpoints: &[Arc<Endpoint<K>>],
        req: &http::Request<B>,
        ready: &mut impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let n = endpoints.len();
        let Some(h) = self.key.stable_hash(req) else {
            return self.no_peer.rotate(n, ready);
        };
        if table.hashes.is_empty() {
            return None;
        }
        let p = table.position(h);
        let owner = table.owners[p] as usize;
        if ready(owner) {
            return Some(owner);
        }
        table.walk(p, n, ready)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use super::*;
    use crate::algo::hash::ip_hash;
    use crate::algo::rng::Rng;
    use crate::algo::test_support::{keyed, pick_n};
    use crate::client_ip::PeerAddr;

    fn request_from(ip: IpAddr) -> http::Request<()> {
        let mut req = http::Request::new(());
        req.extensions_mut()
            .insert(PeerAddr(SocketAddr::new(ip, 40_000)));
        req
    }

    fn clients(n: u32) -> Vec<IpAddr> {
        (0..n)
            .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i * 7)))
            .collect()
    }

    /// The key of the backend each client lands on.
    fn placement(
        sih: &SourceIpHash,
        eps: &[Arc<Endpoint<usize>>],
        ips: &[IpAddr],
        mut ready: impl FnMut(usize) -> bool,
    ) -> Vec<usize> {
        let table = sih.build(eps);
        ips.iter()
            .map(|&ip| {
                let i = sih
                    .pick(&table, eps, &request_from(ip), &mut ready)
                    .unwrap();
                *eps[i].key()
            })
            .collect()
    }

    fn ten() -> Vec<(usize, u32)> {
        (0..10).map(|i| (1000 + i * 13, 1)).collect()
    }

    #[test]
    fn same_client_same_backend_across_rebuilds_and_pickers() {
        let eps = keyed(&ten());
        let ips = clients(10_000);
        let first = placement(&SourceIpHash::new(), &eps, &ips, |_| true);
        let sih = SourceIpHash::new();
        let table = sih.build(&eps);
        for (ip, &expected) in ips.iter().zip(&first) {
            for _ in 0..3 {
                let i = sih
                    .pick(&table, &eps, &request_from(*ip), &mut |_| true)
                    .unwrap();
                assert_eq!(*eps[i].key(), expected);
            }
        }
        // Positions in the set do not matter, only keys.
        let mut reversed = ten();
        reversed.reverse();
        let eps = keyed(&reversed);
        assert_eq!(placement(&SourceIpHash::new(), &eps, &ips, |_| true), first);
        // And clients are spread over every backend.
        let mut counts = HashMap::new();
        for key in first {
            *counts.entry(key).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 10);
        assert!(
            counts.values().all(|&c| (500..1_600).contains(&c)),
            "{counts:?}"
        );
    }

    /// Endpoints for these addresses, in this order, slots set as a balancer would.
    fn addressed(addrs: &[crate::BackendAddr]) -> Vec<Arc<Endpoint<crate::BackendAddr>>> {
        addrs
            .iter()
            .enumerate()
            .map(|(slot, addr)| {
                let e = Arc::new(Endpoint::new(addr.clone(), 1));
                e.stats().set_slot(slot);
                e
            })
            .collect()
    }

    #[test]
    fn same_client_same_backend_whatever_the_insertion_order() {
        let addrs: Vec<crate::BackendAddr> = (0..12)
            .map(|i| format!("http://10.1.0.{i}:8080").parse().unwrap())
            .collect();
        let ips = clients(3_000);
        let place = |order: &[crate::BackendAddr]| -> Vec<crate::BackendAddr> {
            let sih = SourceIpHash::new();
            let eps = addressed(order);
            let table = sih.build(&eps);
            ips.iter()
                .map(|&ip| {
                    let i = sih
                        .pick(&table, &eps, &request_from(ip), &mut |_| true)
                        .unwrap();
                    eps[i].key().clone()
                })
                .collect()
        };
        let first = place(&addrs);
        let rng = Rng::from_seed(13);
        for _ in 0..20 {
            // A random permutation (Fisher–Yates), as registrations on another instance.
            let mut order = addrs.clone();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i + 1));
            }
            assert_eq!(place(&order), first, "order {order:?}");
        }
        // Spellings of one address are one backend: the normal form is hashed.
        let respelled: Vec<crate::BackendAddr> = (0..12)
            .rev()
            .map(|i| format!("HTTP://10.1.0.{i}:8080/").parse().unwrap())
            .collect();
        assert_eq!(place(&respelled), first);
    }

    #[test]
    fn removing_a_backend_moves_only_its_clients() {
        let ips = clients(10_000);
        let all = ten();
        let before = placement(&SourceIpHash::new(), &keyed(&all), &ips, |_| true);
        for gone in [0, 4, 9] {
            let removed_key = all[gone].0;
            let rest: Vec<_> = all.iter().copied().filter(|b| b.0 != removed_key).collect();
            let after = placement(&SourceIpHash::new(), &keyed(&rest), &ips, |_| true);
            let mut moved = 0;
            for (b, a) in before.iter().zip(&after) {
                if *b == removed_key {
                    assert_ne!(*a, removed_key);
                    moved += 1;
                } else {
                    assert_eq!(a, b, "a client of another backend moved");
                }
            }
            assert!(moved > 0);
        }
    }

    #[test]
    fn adding_a_backend_takes_about_its_share_from_the_others() {
        let ips = clients(10_000);
        let mut all = ten();
        let before = placement(&SourceIpHash::new(), &keyed(&all), &ips, |_| true);
        let new_key = 77_777;
        all.insert(3, (new_key, 1));
        let after = placement(&SourceIpHash::new(), &keyed(&all), &ips, |_| true);
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if a != b {
                assert_eq!(*a, new_key, "a client moved between old backends");
                moved += 1;
            }
        }
        let share = moved as f64 / ips.len() as f64;
        assert!(
            (0.5 / 11.0..1.5 / 11.0).contains(&share),
            "moved {share:.3} of clients"
        );
    }

    #[test]
    fn weights_skew_the_share() {
        let ips = clients(20_000);
        let after = placement(
            &SourceIpHash::new(),
            &keyed(&[(1, 3), (2, 1)]),
            &ips,
            |_| true,
        );
        let heavy = after.iter().filter(|&&k| k == 1).count() as f64 / ips.len() as f64;
        assert!((0.68..0.82).contains(&heavy), "{heavy:.3}");
    }

    #[test]
    fn unready_owner_sends_its_clients_where_removal_would() {
        let ips = clients(10_000);
        let all = ten();
        let eps = keyed(&all);
        let before = placement(&SourceIpHash::new(), &eps, &ips, |_| true);
        let down = 6;
        let during = placement(&SourceIpHash::new(), &eps, &ips, |i| i != down);
        let rest: Vec<_> = all.iter().copied().filter(|b| b.0 != all[down].0).collect();
        let removed = placement(&SourceIpHash::new(), &keyed(&rest), &ips, |_| true);
        assert_eq!(during, removed);
        for (b, d) in before.iter().zip(&during) {
            if *b != all[down].0 {
                assert_eq!(b, d);
            }
        }
    }

    #[test]
    fn nothing_ready_gives_none_asking_each_backend_once() {
        let eps = keyed(&ten());
        let sih = SourceIpHash::new();
        let table = sih.build(&eps);
        let mut asked = Vec::new();
        let req = request_from("192.0.2.1".parse().unwrap());
        let picked = sih.pick(&table, &eps, &req, &mut |i| {
            asked.push(i);
            false
        });
        assert_eq!(picked, None);
        asked.sort_unstable();
        assert_eq!(asked, (0..10).collect::<Vec<_>>());
        let empty = keyed(&[]);
        let table = sih.build(&empty);
        assert_eq!(sih.pick(&table, &empty, &req, &mut |_| true), None);
    }

    #[test]
    fn requests_without_a_peer_are_round_robined() {
        let eps = keyed(&ten()[..3]);
        assert_eq!(
            pick_n(&SourceIpHash::new(), &eps, 6, |_| true),
            [0, 1, 2, 0, 1, 2]
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let eps = keyed(&ten());
        let ips = clients(200);
        let direct = placement(&SourceIpHash::new(), &eps, &ips, |_| true);
        let proxy: IpAddr = "192.168.7.7".parse().unwrap();

        let via_proxy = |sih: &SourceIpHash, xff: IpAddr| {
            let table = sih.build(&eps);
            let mut req = request_from(proxy);
            req.headers_mut()
                .insert("x-forwarded-for", xff.to_string().parse().unwrap());
            *eps[sih.pick(&table, &eps, &req, &mut |_| true).unwrap()].key()
        };

        // Trusted: the forwarded client decides.
        let trusting =
            SourceIpHash::new().client_ip(ClientIp::trusting(["192.168.0.0/16".parse().unwrap()]));
        for (ip, expected) in ips.iter().zip(&direct) {
            assert_eq!(via_proxy(&trusting, *ip), *expected);
        }
        // By default the header is ignored: whatever it says, the peer decides.
        let by_peer = placement(&SourceIpHash::new(), &eps, &[proxy], |_| true)[0];
        for ip in &ips {
            assert_eq!(via_proxy(&SourceIpHash::new(), *ip), by_peer);
        }
    }

    #[test]
    fn ipv4_mapped_ipv6_hashes_as_ipv4_and_ipv6_spreads() {
        let v4: IpAddr = "203.0.113.9".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(ip_hash(v4), ip_hash(mapped));
        let eps = keyed(&ten());
        let v6: Vec<IpAddr> = (0..2000u128)
            .map(|i| IpAddr::V6((0x2001_0db8_u128 << 96 | i << 64 | 1).into()))
            .collect();
        let placed = placement(&SourceIpHash::new(), &eps, &v6, |_| true);
        let mut seen = placed.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 10);
    }

    #[test]
    fn index_lookup_equals_binary_search() {
        let eps = keyed(&[(1, 1), (2, 5), (3, 2), (4, 1)]);
        let table = SourceIpHashTable::new(&eps);
        assert_eq!(table.hashes.len(), 9 * VNODES_PER_WEIGHT as usize);
        assert!(table.hashes.is_sorted());
        let rng = Rng::from_seed(5);
        let edges = table
            .hashes
            .iter()
            .flat_map(|&h| [h, h.wrapping_add(1), h.wrapping_sub(1)]);
        for h in (0..10_000)
            .map(|_| rng.next_u64())
            .chain(edges)
            .chain([0, u64::MAX])
        {
            let expected = table.hashes.partition_point(|&x| x < h) % table.hashes.len();
            assert_eq!(table.position(h), expected, "{h:#x}");
        }
    }

    #[test]
    fn huge_weights_are_capped_in_proportion() {
        let eps = keyed(&[(1, 1_000_000), (2, 500_000), (3, 1)]);
        let table = SourceIpHashTable::with_max_points(&eps, 30_000);
        assert!(table.hashes.len() <= 30_000 + 3);
        let count = |o| table.owners.iter().filter(|&&x| x == o).count();
        assert!((count(0) as f64 / count(1) as f64 - 2.0).abs() < 1e-3);
        assert!(count(2) >= 1);
    }
}
