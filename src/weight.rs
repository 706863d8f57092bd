//! Backend weights, carried by the discovery key.
//!
//! Every [`Discover`](tower::discover::Discover) key names one backend. A key also says how much
//! traffic that backend should take: plain keys (`usize` from
//! [`ServiceList`](tower::discover::ServiceList), addresses, strings) weigh 1, and
//! [`Weighted`] attaches a weight to any key. Inserting a key that is already present replaces
//! the backend's service and weight but keeps its counters.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

/// The weight of a backend, as read from its discovery key.
pub trait Weight {
    /// The relative share of traffic this backend should take; `0` is read as `1`.
    fn weight(&self) -> u32;
}

macro_rules! unit_weight {
    ($($t:ty),* $(,)?) => {
        $(impl Weight for $t {
            #[inline]
            fn weight(&self) -> u32 {
                1
            }
        })*
    };
}

unit_weight!(
    usize,
    u16,
    u32,
    u64,
    i32,
    i64,
    String,
    &'static str,
    SocketAddr,
    std::net::IpAddr,
    http::Uri,
);

/// A discovery key with a weight attached.
///
/// Equality and hashing look at the key alone, so re-inserting the same key with a new weight
/// updates the backend in place.
#[derive(Clone, Copy)]
pub struct Weighted<K> {
    key: K,
    weight: u32,
}

impl<K> Weighted<K> {
    /// Attaches `weight` to `key` (`0` is raised to `1`).
    pub const fn new(key: K, weight: u32) -> Self {
        let weight = if weight == 0 { 1 } else { weight };
        Self { key, weight }
    }

    /// The key.
    pub const fn key(&self) -> &K {
        &self.key
    }

    /// Returns the key, dropping the weight.
    pub fn into_inner(self) -> K {
        self.key
    }
}

impl<K> Weight for Weighted<K> {
    #[inline]
    fn weight(&self) -> u32 {
        self.weight
    }
}

impl<K: PartialEq> PartialEq for Weighted<K> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl<K: Eq> Eq for Weighted<K> {}

impl<K: Hash> Hash for Weighted<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl<K> Borrow<K> for Weighted<K> {
    fn borrow(&self) -> &K {
        &self.key
    }
}

impl<K> AsRef<K> for Weighted<K> {
    fn as_ref(&self) -> &K {
        &self.key
    }
}

impl<K: fmt::Debug> fmt::Debug for Weighted<K> {
    /// `key (weight N)`: compact, since keys show up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} (weight {})", self.key, self.weight)
    }
}

impl<K: fmt::Display> fmt::Display for Weighted<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.key, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn weighted_keys_compare_by_key_alone() {
        let mut set = HashSet::new();
        set.insert(Weighted::new("a", 5));
        assert!(!set.insert(Weighted::new("a", 2)));
        assert!(set.contains(&"a"));
        assert_eq!(Weighted::new("b", 0).weight(), 1);
        assert_eq!(format!("{:?}", Weighted::new("b", 3)), r#""b" (weight 3)"#);
    }
}
