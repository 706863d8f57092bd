//! The backend services a waiting request keeps: see [`Balance::try_call_with`](super::Balance::try_call_with).

use std::fmt;

/// The backend services a request waiting for a backend asked and found not ready, kept
/// between its attempts so that their readiness wakes it. See
/// [`Balance::try_call_with`](super::Balance::try_call_with).
///
/// Each is a clone of one backend's service on which `poll_ready` returned `Pending`: under
/// the standard `poll_ready` contract it has registered the waiting task's waker with
/// whatever keeps the backend from being ready (a semaphore, a rate limiter's timer, a health
/// check, a cap), and it keeps that registration — and anything it reserved — until it is
/// asked again or dropped. When the balancer's set changes, the services of the old set are
/// dropped.
pub struct Parked<S> {
    /// The generation of the set `services` belong to.
    pub(super) generation: Option<u64>,
    /// By slot in that set.
    pub(super) services: Vec<Option<S>>,
}

impl<S> Parked<S> {
    /// Nothing parked yet.
    pub const fn new() -> Self {
        Self {
            generation: None,
            services: Vec::new(),
        }
    }

    /// How many services are parked.
    pub fn len(&self) -> usize {
        self.services.iter().filter(|s| s.is_some()).count()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the parked services (and so their registrations).
    pub fn clear(&mut self) {
        self.generation = None;
        self.services.clear();
    }

    /// Makes room for the `len` backends of set `generation`, dropping those of another set.
    pub(super) fn follow(&mut self, generation: u64, len: usize) {
        if self.generation != Some(generation) {
            self.services.clear();
            self.services.resize_with(len, || None);
            self.generation = Some(generation);
        }
    }
}

impl<S> Default for Parked<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> fmt::Debug for Parked<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parked")
            .field("generation", &self.generation)
            .field("parked", &self.len())
            .finish()
    }
}
