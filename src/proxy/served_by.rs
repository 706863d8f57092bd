//! [`ServedBy`]: which backend a request went to, for whoever sent it.

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::BackendAddr;

/// A slot a request carries in its extensions, where [`HttpBackend`](super::HttpBackend)
/// writes its address when it forwards the request: after a balancer has picked (and retried)
/// it, the caller that inserted the slot reads which backend answered. Clones share the slot,
/// as the copies of a retried request do. The server's [access log](crate::server::access_log)
/// reads it; a request without one costs the backend a single extension lookup.
///
/// ```
/// use tower_lb::proxy::ServedBy;
///
/// let served_by = ServedBy::new();
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(served_by.clone());
/// // … sent through a balancer over `HttpBackend`s …
/// assert_eq!(served_by.get(), None); // nothing forwarded here
/// ```
#[derive(Clone, Default)]
pub struct ServedBy(Arc<Mutex<Option<BackendAddr>>>);

impl ServedBy {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// The backend the request was last forwarded to, `None` before.
    pub fn get(&self) -> Option<BackendAddr> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set(&self, addr: &BackendAddr) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr.clone());
    }
}

impl fmt::Debug for ServedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ServedBy").field(&self.get()).finish()
    }
}
