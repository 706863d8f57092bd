//! Sticky cookies, insert mode: the balancer names the backend that served a client in a
//! cookie, and sends the client's next requests carrying it to that backend.
//!
//! Like HAProxy's `cookie SRV insert` and nginx's `sticky cookie`: a response from a backend
//! the request's cookie did not name carries `Set-Cookie: NAME=VALUE; Path=/; HttpOnly`, and a
//! request whose cookie names a backend in the set that is ready goes there, whatever the
//! algorithm would have chosen. Stickiness then survives a change of the client's IP address
//! (a phone moving between networks) and a change of balancer: the value depends only on the
//! backend and the secret, so every balancer with the same backends and secret reads and
//! writes the same values. A value that names no backend in the set (forged, stale, from a
//! removed backend) is ignored: the algorithm picks, and the response sets the new value.
//!
//! # The value
//!
//! The value is 16 hex digits: SipHash-2-4 (Aumasson and Bernstein, 2012), keyed by the
//! secret, of the backend key's stable hash (for a [`BackendAddr`](crate::BackendAddr), the
//! hash of its normal form; see the `hash` module). It reveals nothing of the address, and
//! without the secret nobody can compute the value of a backend they have not been sent to.
//! Without a secret ([`StickyCookie::secret`]) a fixed key of this crate is used: values are
//! still opaque and still shared by every instance, but anyone who knows a backend's address
//! and this crate can compute its value. Either way a value can only name a backend of the
//! set, never send a request anywhere else.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash};
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};

use super::hash::{PassThrough, key_hash, seeded_bytes_hash};
use super::sticky::{InvalidStickyKey, find_cookie};
use crate::balance::Endpoint;

/// The key used without a [secret](StickyCookie::secret): `"tower-lb sticky"` in ASCII.
const DEFAULT_KEY: (u64, u64) = (0x746f_7765_722d_6c62, 0x2073_7469_636b_7900);

/// A sticky cookie naming the backend that served a client. See the [module docs](self).
///
/// ```
/// use tower_lb::algo::StickyCookie;
///
/// let cookie = StickyCookie::new("srv").unwrap().secret("s3cret");
/// assert_eq!(cookie.name(), "srv");
/// assert!(StickyCookie::new("bad name").is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct StickyCookie {
    name: Box<str>,
    key: (u64, u64),
}

impl fmt::Debug for StickyCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of logs.
        f.debug_struct("StickyCookie")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl StickyCookie {
    /// A cookie called `name` (a cookie name: visible ASCII without separators), keyed with the
    /// crate's fixed key.
    pub fn new(name: &str) -> Result<Self, InvalidStickyKey> {
        if !super::sticky::is_cookie_name(name) {
            return Err(InvalidStickyKey::cookie_name(name));
        }
        Ok(Self {
            name: name.into(),
            key: DEFAULT_KEY,
        })
    }

    /// Keys the values with `secret`: give every balancer of one fleet the same secret.
    #[must_use]
    pub fn secret(mut self, secret: &str) -> Self {
        let bytes = secret.as_bytes();
        self.key = (seeded_bytes_hash(1, bytes), seeded_bytes_hash(2, bytes));
        self
    }

    /// The cookie's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cookie value naming the backend with discovery key `key`.
    pub fn value_of<K: Hash>(&self, key: &K) -> String {
        format!("{:016x}", self.digest(key))
    }

    fn digest<K: Hash>(&self, key: &K) -> u64 {
        siphash24(self.key, key_hash(key))
    }

    /// The values of one backend set.
    pub(crate) fn table<K: Hash>(&self, endpoints: &[Arc<Endpoint<K>>]) -> CookieTable {
        let digests: Vec<u64> = endpoints.iter().map(|e| self.digest(e.key())).collect();
        let headers = digests
            .iter()
            .map(|d| {
                HeaderValue::try_from(format!("{}={d:016x}; Path=/; HttpOnly", self.name))
                    .expect("a cookie name and hex digits make a header value")
            })
            .collect();
        CookieTable {
            slots: digests
                .iter()
                .enumerate()
                .map(|(slot, &d)| (d, slot as u32))
                .collect(),
            headers,
        }
    }

    /// The backend the request's cookie names, if it is in the set.
    #[inline]
    pub(crate) fn named<B>(&self, table: &CookieTable, req: &http::Request<B>) -> Option<usize> {
        let digest = digest_in(req.headers(), &self.name)?;
        table.slots.get(&digest).map(|&slot| slot as usize)
    }

    /// The `Set-Cookie` value for a response from `slot`, unless the request named it already.
    pub(crate) fn set_cookie<B>(
        &self,
        table: &CookieTable,
        req: &http::Request<B>,
        slot: usize,
    ) -> Option<HeaderValue> {
        (self.named(table, req) != Some(slot))
            .then(|| table.headers.get(slot).cloned())
            .flatten()
    }
}

/// The digest the cookie `name` carries: 16 hex digits. Kept out of line, see [`find_cookie`].
#[inline(never)]
fn digest_in(headers: &HeaderMap, name: &str) -> Option<u64> {
    find_cookie(headers, name, |value| {
        if value.len() == 16 {
            u64::from_str_radix(value, 16).ok()
        } else {
            None
        }
    })?
}

/// The cookie values of one backend set: value → slot, and each slot's `Set-Cookie`.
#[derive(Debug)]
pub(crate) struct CookieTable {
    slots: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    headers: Box<[HeaderValue]>,
}

/// SipHash-2-4 of the 8 bytes of `m` (little-endian) under `key`.
fn siphash24((k0, k1): (u64, u64), m: u64) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    // One full block, then the last block: the length (8) in the top byte.
    for block in [m, 8 << 56] {
        v[3] ^= block;
        round(&mut v);
        round(&mut v);
        v[0] ^= block;
    }
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests;
