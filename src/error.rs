//! Error types, shared by every part of the crate: a backend service of your own (a tonic
//! channel, say) returns [`BackendUnavailable`] or [`BackendTimeout`] to tell the retry layer
//! and the error answers what went wrong, as the HTTP proxy does.

use std::fmt;
use std::time::Duration;

use http::uri::Authority;

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

/// The backend could not be reached, or dropped the connection before sending a response.
///
/// Covers a refused or failed connect and a connection that was reset or closed before any
/// byte of the response head arrived. [`source`](std::error::Error::source) holds the underlying error.
/// [`proxy::error_response`](crate::proxy::error_response) (feature `proxy`) maps it to `502 Bad Gateway`.
#[derive(Debug)]
pub struct BackendUnavailable {
    backend: Authority,
    source: BoxError,
    /// Whether the message says why (the source's message after a colon).
    with_reason: bool,
}

impl BackendUnavailable {
    /// Creates the error for `backend`, caused by `source`.
    pub fn new(backend: Authority, source: impl Into<BoxError>) -> Self {
        Self {
            backend,
            source: source.into(),
            with_reason: false,
        }
    }

    /// The message ends with the source's: `backend 127.0.0.1:8443 unavailable: TLS
    /// handshake with backend 127.0.0.1:8443 failed: …`; for causes a reader must see in a
    /// log line or a health check's `last_error` (a bad certificate), not only in the chain.
    pub fn with_reason(mut self) -> Self {
        self.with_reason = true;
        self
    }

    /// The backend's address.
    pub fn backend(&self) -> &Authority {
        &self.backend
    }
}

impl fmt::Display for BackendUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "backend {} unavailable", self.backend)?;
        if self.with_reason {
            write!(f, ": {}", self.source)?;
        }
        Ok(())
    }
}

impl std::error::Error for BackendUnavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// The backend did not accept the connection, or did not send its response head, in time.
///
/// The proxy client's `connect_timeout` and `response_timeout` produce it.
/// [`proxy::error_response`](crate::proxy::error_response) (feature `proxy`) maps it to
/// `504 Gateway Timeout`.
#[derive(Debug, Clone)]
pub struct BackendTimeout {
    backend: Authority,
    /// How long the response head was waited for; `None` for the connect.
    after: Option<Duration>,
}

impl BackendTimeout {
    /// The TCP connect to `backend` timed out.
    pub fn connect(backend: Authority) -> Self {
        Self {
            backend,
            after: None,
        }
    }

    /// `backend` sent no response head within `after`.
    pub fn response(backend: Authority, after: Duration) -> Self {
        Self {
            backend,
            after: Some(after),
        }
    }

    /// The backend's address.
    pub fn backend(&self) -> &Authority {
        &self.backend
    }

    /// Whether the connect timed out (rather than the wait for the response head).
    pub fn is_connect(&self) -> bool {
        self.after.is_none()
    }
}

impl fmt::Display for BackendTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.after {
            None => write!(f, "connect to backend {} timed out", self.backend),
            Some(after) => write!(
                f,
                "backend {} sent no response within {after:?}",
                self.backend
            ),
        }
    }
}

impl std::error::Error for BackendTimeout {}
