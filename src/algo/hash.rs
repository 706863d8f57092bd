//! Hashing shared by the algorithms that place clients: [`SourceIpHash`](super::SourceIpHash)'s
//! ring and [`StickyRoundRobin`](super::StickyRoundRobin)'s table of placements.
//!
//! Every hash here is fixed by this crate (FNV-1a and MurmurHash3's 64-bit finalizer), unlike
//! `std`'s `RandomState` (seeded per process) or `DefaultHasher` (whose algorithm may change
//! between Rust releases), so placements computed by different balancers and restarts agree.
//!
//! A backend key is hashed through its [`Hash`] impl into [`key_hash`]'s hasher, which writes
//! integers as little-endian bytes of a fixed width (a `usize` as 8 bytes), so the hash does not
//! depend on the machine either. For a [`BackendAddr`](crate::BackendAddr) the bytes are those of
//! its normal form (see its `Hash` impl): `key_hash` is then FNV-1a-64 over
//! `host[:port]`, the path prefix and a `0xff` byte, finished with [`fmix64`], whatever order
//! the backends were registered in and whichever balancer computes it.

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

    // Integers as little-endian bytes of a fixed width, whatever the machine.
    fn write_u16(&mut self, n: u16) {
        self.write(&n.to_le_bytes());
    }

    fn write_u32(&mut self, n: u32) {
        self.write(&n.to_le_bytes());
    }

    fn write_u64(&mut self, n: u64) {
        self.write(&n.to_le_bytes());
    }

    fn write_u128(&mut self, n: u128) {
        self.write(&n.to_le_bytes());
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_i16(&mut self, n: i16) {
        self.write_u16(n as u16);
    }

    fn write_i32(&mut self, n: i32) {
        self.write_u32(n as u32);
    }

    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }

    fn write_i128(&mut self, n: i128) {
        self.write_u128(n as u128);
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as i64 as u64);
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
    fn backend_addresses_hash_as_their_normal_form_on_every_machine() {
        let addr: crate::BackendAddr = "HTTP://Example.COM:80/api/".parse().unwrap();
        // FNV-1a over "example.com", "/api" and 0xff, then fmix64: written out here so that
        // a change to the function or to `BackendAddr`'s `Hash` fails this test.
        let mut h = FNV_OFFSET;
        for &b in b"example.com/api\xff" {
            h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
        assert_eq!(key_hash(&addr), fmix64(h));
        let same: crate::BackendAddr = "http://example.com/api".parse().unwrap();
        assert_eq!(key_hash(&addr), key_hash(&same));
        let other: crate::BackendAddr = "http://example.com:8080/api".parse().unwrap();
        assert_ne!(key_hash(&addr), key_hash(&other));
        // Integers hash as fixed-width little-endian bytes.
        assert_eq!(key_hash(&7usize), key_hash(&7u64));
        assert_eq!(key_hash(&7u64), {
            let mut h = FNV_OFFSET;
            for &b in &7u64.to_le_bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
            }
            fmix64(h)
        });
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
