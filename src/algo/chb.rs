//! Consistent hashing with bounded loads: a client keeps its backend as long as that backend is
//! not overloaded, and no backend takes more than a set factor of the average load.
//!
//! Plain consistent hashing ([`SourceIpHash`](super::SourceIpHash)) sends a hot key, or an
//! unlucky share of the ring, to one backend however busy it is. Bounded loads (Mirrokni,
//! Thorup and Zadimoghaddam, "Consistent Hashing with Bounded Loads", SODA 2018, arXiv 2016)
//! caps every backend: with `m` requests in flight over the set (counting the one being placed)
//! and a balance factor `c`, a backend of weight `w` out of a total weight `W` may hold at most
//! `⌈c · m · w / W⌉` requests (with equal weights, `⌈c · m / n⌉`). A request goes to the first
//! backend on the ring, from its key's point on, that is under its cap and ready. While its own
//! backend is under the cap a key stays on it; when it is over, the key's requests spill to the
//! next backends on the ring, and come back when the load drops. The factor trades stickiness
//! for balance: `c = 1.25` (the default, [`DEFAULT_BALANCE_FACTOR`] percent, as in HAProxy's
//! `hash-balance-factor 125` and Vimeo's patch that introduced it) keeps every backend within
//! 25 % of the average, and the paper shows a change to the set then moves `O(1/c²)` of keys
//! beyond those plain consistent hashing moves.
//!
//! Choose it for caches in front of uneven traffic: keys stick for locality, and a hot key or a
//! slow backend cannot pile load onto one place.
//!
//! # Keys, ring and load
//!
//! The key is a [`StickyKey`]: the client IP (as [`ClientIp`](crate::ClientIp) says), a
//! header, a cookie or the path, hashed by the crate's fixed hash; requests without a key get a
//! fresh point each (a counter, hashed), so they spread under the same caps. The ring is
//! [`SourceIpHash`](super::SourceIpHash)'s: points from the backends' own keys, never their
//! positions, so every balancer with the same backends walks the same ring.
//!
//! The load is requests in flight (until the response body ends). The table keeps the total
//! over the set in one atomic, updated from the balancer's load notifications
//! ([`Pick::load_changed`]): a pick reads it in O(1), and walks the ring past backends over
//! their cap, asking each backend at most once. Only when every backend under its cap refuses
//! (not ready) are those over it asked, least loaded first, so a request is never refused for
//! balance alone.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use super::hash::fmix64;
use super::refused::Refused;
use super::source_ip_hash::SourceIpHashTable;
use super::{AlgoConfig, Configure, Pick, StickyKey};
use crate::balance::Endpoint;

/// The default balance factor, in percent of the average load: 125, as HAProxy's
/// `hash-balance-factor` advises.
pub const DEFAULT_BALANCE_FACTOR: u32 = 125;

/// The smallest balance factor: 100 % (every backend at most the average, rounded up).
pub const MIN_BALANCE_FACTOR: u32 = 100;

/// Consistent hashing with bounded loads. See the [module docs](self).
///
/// ```
/// use tower_lb::algo::{BoundedLoadHash, StickyKey};
///
/// let picker = BoundedLoadHash::new()
///     .key(StickyKey::Path)
///     .balance_factor(150);
/// assert_eq!(picker.factor(), 150);
/// ```
#[derive(Debug)]
pub struct BoundedLoadHash {
    key: StickyKey,
    factor: u32,
    /// Numbers the requests without a key, for their points.
    keyless: AtomicU64,
}

impl BoundedLoadHash {
    /// Hashes the TCP peer's address, with a factor of [`DEFAULT_BALANCE_FACTOR`].
    pub fn new() -> Self {
        Self {
            key: StickyKey::default(),
            factor: DEFAULT_BALANCE_FACTOR,
            keyless: AtomicU64::new(0),
        }
    }

    /// What is hashed: the client IP (the default), a header, a cookie or the path.
    #[must_use]
    pub fn key(mut self, key: impl Into<StickyKey>) -> Self {
        self.key = key.into();
        self
    }

    /// The most a backend may hold, in percent of the average load (per unit of weight);
    /// raised to [`MIN_BALANCE_FACTOR`] if lower.
    #[must_use]
    pub fn balance_factor(mut self, percent: u32) -> Self {
        self.factor = percent.max(MIN_BALANCE_FACTOR);
        self
    }

    /// The balance factor, in percent.
    pub fn factor(&self) -> u32 {
        self.factor
    }

    /// The cap of a backend of weight `weight` when `total` requests are in flight over a set
    /// of total weight `total_weight`, counting the request being placed:
    /// `⌈factor/100 · (total + 1) · weight / total_weight⌉`.
    #[inline]
    pub fn cap(&self, total: usize, weight: u32, total_weight: u64) -> usize {
        let num = u128::from(self.factor) * (total as u128 + 1) * u128::from(weight);
        let den = 100 * u128::from(total_weight.max(1));
        num.div_ceil(den) as usize
    }
}

impl Default for BoundedLoadHash {
    fn default() -> Self {
        Self::new()
    }
}

/// The ring over one set of backends, with the load the caps are computed from.
pub struct BoundedLoadHashTable {
    ring: SourceIpHashTable,
    /// Each backend's requests in flight as last reported; their sum is `total`.
    seen: Box<[AtomicUsize]>,
    /// Requests in flight over the set.
    total: AtomicUsize,
    total_weight: u64,
}

impl fmt::Debug for BoundedLoadHashTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedLoadHashTable")
            .field("ring", &self.ring)
            .field("in_flight", &self.total.load(Relaxed))
            .field("total_weight", &self.total_weight)
            .finish()
    }
}

impl BoundedLoadHashTable {
    /// Requests in flight over the set, as last reported.
    pub fn in_flight(&self) -> usize {
        self.total.load(Relaxed)
    }
}

impl Configure for BoundedLoadHash {
    fn configure(config: &AlgoConfig) -> Self {
        Self::new()
            .key(config.client_key())
            .balance_factor(config.balance_factor)
    }
}

impl<K: Hash + Send + Sync + 'static> Pick<K> for BoundedLoadHash {
    type Table = BoundedLoadHashTable;

    fn build(&self, endpoints: &[Arc<Endpoint<K>>]) -> BoundedLoadHashTable {
        let seen: Box<[AtomicUsize]> = endpoints
            .iter()
            .map(|e| AtomicUsize::new(e.in_flight()))
            .collect();
        let total = seen.iter().map(|s| s.load(Relaxed)).sum();
        BoundedLoadHashTable {
            ring: SourceIpHashTable::new(endpoints),
            seen,
            total: AtomicUsize::new(total),
            total_weight: endpoints.iter().map(|e| u64::from(e.weight())).sum(),
        }
    }

    fn pick<B>(
        &self,
        table: &BoundedLoadHashTable,
        endpoints: &[Arc<Endpoint<K>>],
        req: &http::Request<B>,
        ready: &mut impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let ring = &table.ring;
        let len = ring.owners.len();
        if len == 0 {
            return None;
        }
        let n = endpoints.len();
        let h = self
            .key
            .stable_hash(req)
            .unwrap_or_else(|| fmix64(self.keyless.fetch_add(1, Relaxed)));
        let total = table.total.load(Relaxed);
        let start = ring.position(h);
        let mut asked = Refused::new(n);
        let mut over = Vec::new();
        // Around the ring from `start`, wrapped by comparison rather than a division per step.
        let (wrapped, from_start) = ring.owners.split_at(start);
        for &owner in from_start.iter().chain(wrapped) {
            let owner = owner as usize;
            if asked.contains(owner) {
                continue;
            }
            asked.insert(owner);
            let e = &endpoints[owner];
            if e.in_flight() >= self.cap(total, e.weight(), table.total_weight) {
                over.push(owner);
            } else if ready(owner) {
                table.count(endpoints, owner);
                return Some(owner);
            }
            if asked.all() {
                break;
            }
        }
        // Every backend under its cap refused: rather than fail, the least loaded of the rest.
        let slot = self.over_cap(endpoints, over, ready)?;
        table.count(endpoints, slot);
        Some(slot)
    }

    fn observes_load(&self) -> bool {
        true
    }

    fn load_changed(&self, table: &BoundedLoadHashTable, endpoints: &[Arc<Endpoint<K>>], slot: usize) {
        table.count(endpoints, slot);
    }
}

impl BoundedLoadHashTable {
    /// Re-reads backend `slot`'s requests in flight into the total. A pick
    /// calls it for the backend it reserved (which already counts the new request), the
    /// balancer when a request finishes.
    #[inline]
    fn count<K>(&self, endpoints: &[Arc<Endpoint<K>>], slot: usize) {
        let (Some(seen), Some(e)) = (self.seen.get(slot), endpoints.get(slot)) else {
            return;
        };
        let now = e.in_flight();
        let before = seen.swap(now, Relaxed);
        // The total moves by exactly what this slot's record moved, so it stays their sum.
        if now >= before {
            self.total.fetch_add(now - before, Relaxed);
        } else {
            self.total.fetch_sub(before - now, Relaxed);
        }
    }
}

impl BoundedLoadHash {
    #[cold]
    fn over_cap<K>(
        &self,
        endpoints: &[Arc<Endpoint<K>>],
        mut over: Vec<usize>,
        ready: &mut impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        over.sort_by_key(|&i| {
            let e = &endpoints[i];
            (e.in_flight() as u128 * 1_000_000 / u128::from(e.weight()), i)
        });
        over.into_iter().find(|&i| ready(i))
    }
}

#[cfg(test)]
mod tests;
