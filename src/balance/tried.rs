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
    backends: Arc<Mutex<Vec<Arc<Stats>>>>,
}

impl Tried {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many backends the request has been sent to.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the request has not been sent anywhere yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn contains(&self, stats: &Arc<Stats>) -> bool {
        self.lock().iter().any(|s| Arc::ptr_eq(s, stats))
    }

    pub(crate) fn push(&self, stats: Arc<Stats>) {
        self.lock().push(stats);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Stats>>> {
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
