use std::fmt;
use std::sync::{Arc, Mutex};

use super::endpoint::Stats;

/// The backends one request has been sent to, so a retry goes elsewhere.
///
/// Insert a `Tried` into a request's extensions before its first attempt and keep it in the
/// copies made for retries (extensions are cloned with the request; clones of a `Tried` share
/// one list). [`Balance`](super::Balance) records every backend it sends the request to and
/// treats those as not ready on later attempts; when no other backend is ready the attempt fails
/// with [`NoAvailableBackend`](crate::NoAvailableBackend).
#[derive(Clone, Default)]
pub struct Tried {
    backends: Arc<Mutex<Backends>>,
}

/// How many backends a [`Tried`] holds without allocating: a first attempt and two retries, as
/// the [retry layer](crate::retry::RetryLayer) allows by default.
const INLINE: usize = 3;

/// The backends tried, the first few inline: most requests are sent once, and a list on the
/// heap would cost an allocation for each.
#[derive(Default)]
struct Backends {
    inline: [Option<Arc<Stats>>; INLINE],
    more: Vec<Arc<Stats>>,
}

impl Backends {
    fn iter(&self) -> impl Iterator<Item = &Arc<Stats>> {
        self.inline.iter().flatten().chain(&self.more)
    }

    fn push(&mut self, stats: Arc<Stats>) {
        match self.inline.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(stats),
            None => self.more.push(stats),
        }
    }
}

impl Tried {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many backends the request has been sent to.
    pub fn len(&self) -> usize {
        self.lock().iter().count()
    }

    /// Whether the request has not been sent anywhere yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn contains(&self, stats: &Arc<Stats>) -> bool {
        self.lock().iter().any(|s| Arc::ptr_eq(s, stats))
    }

    /// Records that the request is sent to the backend with `stats`; a request already sent
    /// elsewhere counts as a retry on it.
    pub(crate) fn push(&self, stats: Arc<Stats>) {
        let mut backends = self.lock();
        if backends.iter().next().is_some() {
            stats.record_retry();
        }
        backends.push(stats);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Backends> {
        self.backends
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for Tried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tried").field("len", &self.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::endpoint::Endpoint;

    #[test]
    fn backends_past_the_inline_ones_are_kept_too() {
        let tried = Tried::new();
        let backends: Vec<Arc<Stats>> = (0..INLINE + 2)
            .map(|i| Arc::clone(Endpoint::new(i, 1).stats_arc()))
            .collect();
        assert!(tried.is_empty());
        for (i, stats) in backends.iter().enumerate() {
            assert!(!tried.contains(stats));
            tried.clone().push(Arc::clone(stats));
            assert!(tried.contains(stats), "backend {i}");
            assert_eq!(tried.len(), i + 1);
        }
        let other = Endpoint::new(99, 1);
        assert!(!tried.contains(other.stats_arc()));
    }

    #[test]
    fn every_backend_after_the_first_counts_a_retry() {
        let tried = Tried::new();
        let backends: Vec<Arc<Stats>> = (0..INLINE + 1)
            .map(|i| Arc::clone(Endpoint::new(i, 1).stats_arc()))
            .collect();
        for stats in &backends {
            tried.push(Arc::clone(stats));
        }
        let retries: Vec<u64> = backends.iter().map(|s| s.retries()).collect();
        assert_eq!(retries, [0, 1, 1, 1]);
    }
}
