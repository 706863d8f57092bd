//! Error types.

use std::fmt;

/// The boxed error that services in this crate return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// No backend was ready to take the request.
///
/// Returned at once, never after a wait: the set is empty, or every backend in it is
/// unhealthy, draining, ejected or at its concurrency cap. Map it to `503 Service Unavailable`
/// by downcasting the [`BoxError`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoAvailableBackend(());

impl NoAvailableBackend {
    /// Creates the error.
    pub const fn new() -> Self {
        Self(())
    }
}

impl fmt::Display for NoAvailableBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("no available backend")
    }
}

impl std::error::Error for NoAvailableBackend {}
