//! [`Reconcile`]: a full set of backends turned into the changes since the last one.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use tower::discover::Change;

use crate::registry::Registry;
use crate::weight::Weighted;

/// One difference between two full sets, from [`Reconcile::update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update<K> {
    /// A backend that was not in the last set.
    Insert {
        /// The backend.
        key: K,
        /// Its weight.
        weight: u32,
    },
    /// A backend of the last set whose weight changed.
    Reweight {
        /// The backend.
        key: K,
        /// Its new weight.
        weight: u32,
        /// The weight it had.
        previous: u32,
    },
    /// A backend of the last set that is gone: balancers drain it (no new requests, those in
    /// flight finish).
    Remove {
        /// The backend.
        key: K,
        /// The weight it had.
        weight: u32,
    },
}

impl<K> Update<K> {
    /// The change a [`Discover`](tower::discover::Discover) stream yields for it; `make`
    /// builds the service of an inserted or reweighted backend.
    pub fn into_change<S>(self, make: impl FnOnce(&K) -> S) -> Change<Weighted<K>, S> {
        match self {
            Self::Insert { key, weight } | Self::Reweight { key, weight, .. } => {
                let service = make(&key);
                Change::Insert(Weighted::new(key, weight), service)
            }
            Self::Remove { key, weight } => Change::Remove(Weighted::new(key, weight)),
        }
    }

    /// Applies it to `registry`: registers, reweights or deregisters the backend.
    pub fn apply_to<S>(self, registry: &Registry<K, S>)
    where
        K: Hash + Eq + Clone,
    {
        match self {
            Self::Insert { key, weight } | Self::Reweight { key, weight, .. } => {
                registry.register(key, weight);
            }
            Self::Remove { key, .. } => {
                registry.deregister(&key);
            }
        }
    }
}

/// Remembers the last full set a source yielded and turns the next into [`Update`]s: every
/// discovery source (DNS, a watched file, etcd) reads its whole set at each refresh and
/// reconciles it here, so a balancer sees inserts, weight changes and draining removals,
/// never a set emptied and refilled.
///
/// A source that fails keeps its last good set by not calling [`update`](Self::update):
/// an error is never an empty set.
///
/// Weights are at least 1 (`0` is read as `1`, as [`Registry::register`] does); a key listed
/// twice keeps its last weight.
///
/// ```
/// use tower_lb::discover::{Reconcile, Update};
///
/// let mut set = Reconcile::new();
/// assert_eq!(set.update([("a", 1), ("b", 2)]).len(), 2);
/// assert_eq!(
///     set.update([("a", 3)]),
///     [
///         Update::Reweight { key: "a", weight: 3, previous: 1 },
///         Update::Remove { key: "b", weight: 2 },
///     ],
/// );
/// ```
pub struct Reconcile<K> {
    last: HashMap<K, u32>,
    /// The keys of `last` in the order they were first yielded, so updates come out in a
    /// stable order.
    order: Vec<K>,
}

impl<K: Hash + Eq + Clone> Reconcile<K> {
    /// Nothing yielded yet: the first [`update`](Self::update) inserts its whole set.
    pub fn new() -> Self {
        Self {
            last: HashMap::new(),
            order: Vec::new(),
        }
    }

    /// The changes from the last set to `set`, which becomes the last set: inserts and
    /// weight changes in `set`'s order, then removals in the order the removed backends
    /// first arrived.
    pub fn update(&mut self, set: impl IntoIterator<Item = (K, u32)>) -> Vec<Update<K>> {
        let mut next: HashMap<K, u32> = HashMap::new();
        let mut next_order = Vec::new();
        for (key, weight) in set {
            let weight = weight.max(1);
            if next.insert(key.clone(), weight).is_none() {
                next_order.push(key);
            }
        }
        let mut updates = Vec::new();
        for key in &next_order {
            let weight = next[key];
            match self.last.get(key) {
                None => updates.push(Update::Insert {
                    key: key.clone(),
                    weight,
                }),
                Some(&previous) if previous != weight => updates.push(Update::Reweight {
                    key: key.clone(),
                    weight,
                    previous,
                }),
                Some(_) => {}
            }
        }
        for key in &self.order {
            if !next.contains_key(key) {
                updates.push(Update::Remove {
                    key: key.clone(),
                    weight: self.last[key],
                });
            }
        }
        // Keep the first-arrival order of backends that stay, new ones after.
        let mut order: Vec<K> = self
            .order
            .drain(..)
            .filter(|k| next.contains_key(k))
            .collect();
        order.extend(
            next_order
                .into_iter()
                .filter(|k| !self.last.contains_key(k)),
        );
        self.order = order;
        self.last = next;
        updates
    }

    /// The last set, with weights, in the order its backends first arrived.
    pub fn current(&self) -> Vec<(K, u32)> {
        self.order
            .iter()
            .map(|k| (k.clone(), self.last[k]))
            .collect()
    }

    /// The number of backends in the last set.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether the last set is empty.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

impl<K: Hash + Eq + Clone> Default for Reconcile<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: fmt::Debug> fmt::Debug for Reconcile<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reconcile")
            .field("last", &self.last)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_set_inserts_everything_in_order() {
        let mut r = Reconcile::new();
        assert_eq!(
            r.update([("b", 2), ("a", 0)]),
            [
                Update::Insert {
                    key: "b",
                    weight: 2
                },
                Update::Insert {
                    key: "a",
                    weight: 1
                }
            ]
        );
        assert_eq!(r.current(), [("b", 2), ("a", 1)]);
    }

    #[test]
    fn same_set_is_no_change_and_reorder_is_no_change() {
        let mut r = Reconcile::new();
        r.update([("a", 1), ("b", 2)]);
        assert!(r.update([("b", 2), ("a", 1)]).is_empty());
        assert_eq!(r.current(), [("a", 1), ("b", 2)]);
    }

    #[test]
    fn weight_change_insert_and_removal() {
        let mut r = Reconcile::new();
        r.update([("a", 1), ("b", 2), ("c", 3)]);
        assert_eq!(
            r.update([("c", 5), ("d", 1), ("a", 1)]),
            [
                Update::Reweight {
                    key: "c",
                    weight: 5,
                    previous: 3
                },
                Update::Insert {
                    key: "d",
                    weight: 1
                },
                Update::Remove {
                    key: "b",
                    weight: 2
                },
            ]
        );
        assert_eq!(r.current(), [("a", 1), ("c", 5), ("d", 1)]);
    }

    #[test]
    fn duplicate_key_keeps_last_weight() {
        let mut r = Reconcile::new();
        assert_eq!(
            r.update([("a", 1), ("a", 4)]),
            [Update::Insert {
                key: "a",
                weight: 4
            }]
        );
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn updates_apply_to_a_registry() {
        let registry = Registry::new(|k: &&'static str| *k);
        let mut r = Reconcile::new();
        for u in r.update([("a", 1), ("b", 2)]) {
            u.apply_to(&registry);
        }
        for u in r.update([("b", 3)]) {
            u.apply_to(&registry);
        }
        assert_eq!(registry.backends(), [("b", 3)]);
    }
}
