//! Hashing shared by the algorithms that place clients: [`SourceIpHash`](super::SourceIpHash)'s
//! ring and [`StickyRoundRobin`](super::StickyRoundRobin)'s table of placements.
//!
//! Every hash here is fixed by this crate (FNV-1a and MurmurHash3's 64-bit finalizer), unlike
//! `std`'s `RandomState` (seeded per process) or `DefaultHasher` (whose algorithm may change
//! between Rust releases), so placements computed by different balancers and restarts agree.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// The 64-bit golden ratio, `2⁶⁴ / φ`: an odd constant whose multiples spread over the ring.
pub(crate) const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// MurmurHash3's 64-bit finalizer: a bijection that mixes every input bit into every output bit.
#[inline]
pub(crate) const fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// FNV-1a, finished with [`fmix64`]: a fixed hash of a key's `Hash` bytes.
#[derive(Debug)]
struct StableHasher(u64);

impl StableHasher {
    const fn new() -> Self {
        Self(FNV_OFFSET)
    }
}

impl Hasher for StableHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    #[inline]
    fn finish(&self) -> u64 {
        fmix64(self.0)
    }
}

/// The stable hash of a backend key.
pub(crate) fn key_hash<K: Hash>(key: &K) -> u64 {
    let mut hasher = StableHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

/// The hash of a client IP; an IPv4-mapped IPv6 address hashes as its IPv4 address.
#[inline]
pub(crate) fn ip_hash(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => fmix64(u64::from(u32::from(v4)) ^ GOLDEN),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            fmix64(bits as u64 ^ fmix64((bits >> 64) as u64))
        }
    }
}

/// FNV-1a over `bytes` starting from `seed`, finished with a full mix of the length.
pub(crate) fn seeded_bytes_hash(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET ^ seed;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    fmix64(h ^ bytes.len() as u64)
}

/// A [`Hasher`] for maps whose keys are already hashes: `write_u64` passes the value through.
#[derive(Debug, Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;
    use std::hash::BuildHasherDefault;

    use super::*;

    #[test]
    fn hashes_are_fixed_by_the_crate() {
        // Placements must agree across processes, releases and machines of one architecture:
        // these values may never change.
        assert_eq!(fmix64(0), 0);
        assert_eq!(fmix64(1), 0xb456_bcfc_34c2_cb2c);
        assert_eq!(key_hash(&"a"), key_hash(&"a"));
        assert_ne!(key_hash(&"a"), key_hash(&"b"));
        assert_eq!(
            seeded_bytes_hash(7, b"session"),
            seeded_bytes_hash(7, b"session")
        );
        assert_ne!(
            seeded_bytes_hash(7, b"session"),
            seeded_bytes_hash(8, b"session")
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_hashes_as_ipv4() {
        let v4: IpAddr = "203.0.113.9".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(ip_hash(v4), ip_hash(mapped));
        assert_ne!(ip_hash(v4), ip_hash("203.0.113.10".parse().unwrap()));
    }

    #[test]
    fn pass_through_keeps_a_u64_as_it_is() {
        let build = BuildHasherDefault::<PassThrough>::default();
        assert_eq!(build.hash_one(0xdead_beef_u64), 0xdead_beef);
    }
}
