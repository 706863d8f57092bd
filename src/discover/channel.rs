//! [`channel`]: a [`Discover`](tower::discover::Discover) stream fed with full sets.

use std::fmt;
use std::hash::Hash;

use tokio::sync::mpsc;
use tower::discover::Change;

use super::reconcile::Reconcile;
use crate::weight::Weighted;

type Make<K, S> = dyn Fn(&K) -> S + Send + Sync;

/// A discovery stream and the handle that feeds it full sets: each
/// [`publish`](Publisher::publish)ed set is [reconciled](Reconcile) with the last one and
/// its changes come out of the [`SetDiscover`]. `make` builds the service of each backend.
///
/// Every source of this module is built on it; so can your own.
///
/// ```
/// use futures_util::StreamExt;
/// use tower::discover::Change;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (mut publisher, mut discover) = tower_lb::discover::channel(|k: &&str| k.len());
/// publisher.publish([("a", 1)]);
/// publisher.publish([("bb", 2)]);
/// assert!(matches!(discover.next().await, Some(Ok(Change::Insert(_, 1)))));
/// assert!(matches!(discover.next().await, Some(Ok(Change::Insert(_, 2)))));
/// assert!(matches!(discover.next().await, Some(Ok(Change::Remove(k))) if *k.key() == "a"));
/// # }
/// ```
pub fn channel<K, S, F>(make: F) -> (Publisher<K, S>, SetDiscover<K, S>)
where
    K: Hash + Eq + Clone,
    F: Fn(&K) -> S + Send + Sync + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Publisher {
            reconcile: Reconcile::new(),
            make: Box::new(make),
            tx,
        },
        SetDiscover::new(rx),
    )
}

/// Feeds full sets to a [`SetDiscover`]; see [`channel`].
pub struct Publisher<K, S> {
    reconcile: Reconcile<K>,
    make: Box<Make<K, S>>,
    tx: mpsc::UnboundedSender<Change<Weighted<K>, S>>,
}

impl<K: Hash + Eq + Clone, S> Publisher<K, S> {
    /// Makes `set` the current set: sends what changed since the last one. Returns `false`
    /// once the stream is dropped.
    pub fn publish(&mut self, set: impl IntoIterator<Item = (K, u32)>) -> bool {
        for update in self.reconcile.update(set) {
            if self.tx.send(update.into_change(&*self.make)).is_err() {
                return false;
            }
        }
        !self.tx.is_closed()
    }

    /// The current set, in the order its backends arrived.
    pub fn current(&self) -> Vec<(K, u32)> {
        self.reconcile.current()
    }

    /// Resolves when the stream is dropped, without borrowing the publisher: a source's
    /// task selects on it while its loop holds the publisher, so the task ends with the
    /// stream even while its source keeps failing.
    pub fn on_close(&self) -> impl Future<Output = ()> + Send + 'static
    where
        K: Send + 'static,
        S: Send + 'static,
    {
        let tx = self.tx.clone();
        async move { tx.closed().await }
    }
}

impl<K: fmt::Debug, S> fmt::Debug for Publisher<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("reconcile", &self.reconcile)
            .finish_non_exhaustive()
    }
}

/// A discovery stream fed by a [`Publisher`]; implements
/// [`tower::discover::Discover`]. It ends when the publisher is dropped.
///
/// The same stream as a [`Registry`](crate::Registry)'s: a channel of changes.
pub type SetDiscover<K, S> = crate::RegistryDiscover<K, S>;
