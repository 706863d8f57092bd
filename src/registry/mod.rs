//! A registration handle and the discovery stream it feeds.
//!
//! [`Registry`] is the run-time set of backends: the `/register` API, a config file or a
//! service-discovery client call [`register`](Registry::register) and
//! [`deregister`](Registry::deregister) on it. Each [`discover`](Registry::discover) stream
//! replays the current set as [`Change::Insert`]s and then follows every change, so a balancer
//! built from it sees backends as soon as they are registered, whether or not requests arrive.
//!
//! Keys are [`Weighted`], so a weight change is an `Insert` of a key that is already present:
//! the balancer updates it in place and keeps its counters.
//!
//! # Examples
//!
//! ```
//! use tower::discover::Change;
//! use tower_lb::Registry;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use futures_util::StreamExt;
//!
//! // Each registered address becomes a backend service; here just its name.
//! let registry = Registry::new(|addr: &String| addr.clone());
//! registry.register("http://127.0.0.1:1080".to_string(), 5);
//!
//! let mut discover = registry.discover();
//! match discover.next().await {
//!     Some(Ok(Change::Insert(key, service))) => {
//!         assert_eq!(key.key(), "http://127.0.0.1:1080");
//!         assert_eq!(service, "http://127.0.0.1:1080");
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! # }
//! ```
//!
//! [`Change::Insert`]: tower::discover::Change::Insert

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;
use tower::discover::Change;

use crate::weight::Weighted;

type Make<K, S> = dyn Fn(&K) -> S + Send + Sync;

/// What [`Registry::register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// The backend is new.
    Added,
    /// The backend was registered already; its weight changed from the given value.
    Updated {
        /// The weight it had before.
        previous: u32,
    },
    /// The backend was registered already with the same weight.
    Unchanged,
}

/// A clonable handle to a run-time set of backends. See the [module docs](self).
pub struct Registry<K, S> {
    inner: Arc<Inner<K, S>>,
}

struct Inner<K, S> {
    make: Box<Make<K, S>>,
    state: Mutex<State<K, S>>,
}

struct State<K, S> {
    /// Weight and registration sequence number of each backend.
    backends: HashMap<K, (u32, u64)>,
    next_seq: u64,
    subscribers: Vec<mpsc::UnboundedSender<Change<Weighted<K>, S>>>,
}

impl<K, S> Registry<K, S>
where
    K: Hash + Eq + Clone,
{
    /// Creates an empty registry; `make` builds the service for each registered key.
    pub fn new<F>(make: F) -> Self
    where
        F: Fn(&K) -> S + Send + Sync + 'static,
    {
        Self {
            inner: Arc::new(Inner {
                make: Box::new(make),
                state: Mutex::new(State {
                    backends: HashMap::new(),
                    next_seq: 0,
                    subscribers: Vec::new(),
                }),
            }),
        }
    }

    /// Adds a backend, or updates its weight if it is registered already (`0` is read as `1`).
    pub fn register(&self, key: K, weight: u32) -> Registration {
        let weight = weight.max(1);
        let mut state = self.state();
        let outcome = match state.backends.get_mut(&key) {
            None => {
                let seq = state.next_seq;
                state.next_seq += 1;
                state.backends.insert(key.clone(), (weight, seq));
                Registration::Added
            }
            Some((previous, _)) if *previous == weight => return Registration::Unchanged,
            Some((previous, _)) => Registration::Updated {
                previous: std::mem::replace(previous, weight),
            },
        };
        let make = &self.inner.make;
        state.subscribers.retain(|tx| {
            tx.send(Change::Insert(
                Weighted::new(key.clone(), weight),
                make(&key),
            ))
            .is_ok()
        });
        outcome
    }

    /// Sets the weight of a registered backend; returns `false` if it is not registered.
    pub fn set_weight(&self, key: &K, weight: u32) -> bool {
        if !self.contains(key) {
            return false;
        }
        self.register(key.clone(), weight);
        true
    }

    /// Removes a backend; returns `false` if it was not registered.
    ///
    /// Balancers stop sending it new requests at once; requests already sent to it finish.
    pub fn deregister(&self, key: &K) -> bool {
        let mut state = self.state();
        let Some((weight, _)) = state.backends.remove(key) else {
            return false;
        };
        state.subscribers.retain(|tx| {
            tx.send(Change::Remove(Weighted::new(key.clone(), weight)))
                .is_ok()
        });
        true
    }

    /// Whether `key` is registered.
    pub fn contains(&self, key: &K) -> bool {
        self.state().backends.contains_key(key)
    }

    /// The weight of a registered backend.
    pub fn weight(&self, key: &K) -> Option<u32> {
        self.state().backends.get(key).map(|&(weight, _)| weight)
    }

    /// The registered backends with their weights, in registration order.
    pub fn backends(&self) -> Vec<(K, u32)> {
        self.state()
            .in_order()
            .into_iter()
            .map(|(k, w)| (k.clone(), w))
            .collect()
    }

    /// The number of registered backends.
    pub fn len(&self) -> usize {
        self.state().backends.len()
    }

    /// Whether no backend is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A new discovery stream: the current backends as inserts, then every later change.
    pub fn discover(&self) -> RegistryDiscover<K, S> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.state();
        for (key, weight) in state.in_order() {
            // The receiver is alive: it is in our hands.
            let _ = tx.send(Change::Insert(
                Weighted::new(key.clone(), weight),
                (self.inner.make)(key),
            ));
        }
        state.subscribers.push(tx);
        RegistryDiscover::new(rx)
    }
}

impl<K, S> Registry<K, S> {
    fn state(&self) -> MutexGuard<'_, State<K, S>> {
        // The state is left consistent at every await-free step, so a poisoned lock is usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<K, S> State<K, S> {
    fn in_order(&self) -> Vec<(&K, u32)> {
        let mut all: Vec<_> = self.backends.iter().collect();
        all.sort_unstable_by_key(|(_, (_, seq))| *seq);
        all.into_iter().map(|(k, &(w, _))| (k, w)).collect()
    }
}

impl<K, S> Clone for Registry<K, S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: fmt::Debug, S> fmt::Debug for Registry<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Registry")
            .field("backends", &state.backends)
            .field("subscribers", &state.subscribers.len())
            .finish()
    }
}

/// The discovery stream of a [`Registry`]; implements [`tower::discover::Discover`].
///
/// It ends when every handle to the registry is dropped.
pub struct RegistryDiscover<K, S> {
    rx: mpsc::UnboundedReceiver<Change<Weighted<K>, S>>,
}

impl<K, S> RegistryDiscover<K, S> {
    /// The stream of the changes sent to `rx`'s sender.
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<Change<Weighted<K>, S>>) -> Self {
        Self { rx }
    }
}

impl<K, S> Stream for RegistryDiscover<K, S> {
    type Item = Result<Change<Weighted<K>, S>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|change| change.map(Ok))
    }
}

impl<K, S> fmt::Debug for RegistryDiscover<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryDiscover").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn key(change: &Change<Weighted<&'static str>, &'static str>) -> (&'static str, u32, bool) {
        use crate::Weight;
        match change {
            Change::Insert(k, _) => (*k.key(), k.weight(), true),
            Change::Remove(k) => (*k.key(), k.weight(), false),
        }
    }

    #[tokio::test]
    async fn discover_replays_current_set_then_follows_changes() {
        let registry = Registry::new(|k: &&'static str| *k);
        assert_eq!(registry.register("a", 2), Registration::Added);
        let mut discover = registry.discover();
        assert_eq!(
            key(&discover.next().await.unwrap().unwrap()),
            ("a", 2, true)
        );

        assert_eq!(registry.register("b", 1), Registration::Added);
        assert_eq!(
            key(&discover.next().await.unwrap().unwrap()),
            ("b", 1, true)
        );

        assert_eq!(
            registry.register("a", 7),
            Registration::Updated { previous: 2 }
        );
        assert_eq!(
            key(&discover.next().await.unwrap().unwrap()),
            ("a", 7, true)
        );

        assert_eq!(registry.register("a", 7), Registration::Unchanged);
        assert!(registry.deregister(&"a"));
        assert!(!registry.deregister(&"a"));
        assert_eq!(
            key(&discover.next().await.unwrap().unwrap()),
            ("a", 7, false)
        );
        assert_eq!(registry.backends(), vec![("b", 1)]);
    }

    #[tokio::test]
    async fn replay_follows_registration_order() {
        let registry = Registry::new(|k: &u32| *k);
        for k in [5, 3, 9, 1, 7, 2, 8] {
            registry.register(k, 1);
        }
        registry.register(3, 4);
        let order: Vec<u32> = registry
            .discover()
            .take(7)
            .map(|c| match c.unwrap() {
                Change::Insert(k, _) => *k.key(),
                Change::Remove(_) => unreachable!(),
            })
            .collect()
            .await;
        assert_eq!(order, [5, 3, 9, 1, 7, 2, 8]);
        assert_eq!(registry.backends()[1], (3, 4));
    }

    #[tokio::test]
    async fn dropped_streams_are_forgotten_and_stream_ends_with_registry() {
        let registry = Registry::new(|k: &u32| *k);
        drop(registry.discover());
        registry.register(1, 1);
        assert_eq!(registry.inner.state.lock().unwrap().subscribers.len(), 0);

        let discover = registry.discover();
        drop(registry);
        let changes: Vec<_> = discover.collect().await;
        assert_eq!(changes.len(), 1);
    }
}
