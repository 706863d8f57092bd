//! Why a health check failed.

use std::fmt;

use http::StatusCode;

/// A health check got an answer, but not a `2xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnhealthyStatus(StatusCode);

impl UnhealthyStatus {
    /// The error for an answer with `status`; a [`Probe`](super::Probe) of your own may
    /// return it too.
    pub const fn new(status: StatusCode) -> Self {
        Self(status)
    }

    /// The status the backend answered with.
    pub const fn status(&self) -> StatusCode {
        self.0
    }
}

impl fmt::Display for UnhealthyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&format!("health check answered {}", self.0))
    }
}

impl std::error::Error for UnhealthyStatus {}

/// A health check took longer than its timeout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeTimedOut(());

impl ProbeTimedOut {
    pub(crate) const fn new() -> Self {
        Self(())
    }
}

impl fmt::Display for ProbeTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("health check timed out")
    }
}

impl std::error::Error for ProbeTimedOut {}

/// A backend's address cannot be turned into a health-check URI (by
/// `HttpProbe`, feature `proxy`).
#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
#[derive(Debug)]
pub struct InvalidProbeUri {
    uri: String,
    source: Option<http::Error>,
}

#[cfg(feature = "proxy")]
impl InvalidProbeUri {
    pub(crate) fn new(uri: impl Into<String>, source: Option<http::Error>) -> Self {
        Self {
            uri: uri.into(),
            source,
        }
    }
}

#[cfg(feature = "proxy")]
impl fmt::Display for InvalidProbeUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&format!(
            "invalid health check URI for backend {:?}",
            self.uri
        ))
    }
}

#[cfg(feature = "proxy")]
impl std::error::Error for InvalidProbeUri {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
