//! What goes wrong with TLS: a configuration that does not load, a backend's handshake.

use std::fmt;
use std::path::{Path, PathBuf};

use http::uri::Authority;

/// A TLS configuration that cannot be built, usually a file that does not load: it names the
/// file and why (`cert.pem: no certificate found`).
#[derive(Debug)]
pub struct TlsConfigError {
    file: Option<PathBuf>,
    reason: String,
}

impl TlsConfigError {
    pub(crate) fn file(file: &Path, reason: impl fmt::Display) -> Self {
        Self {
            file: Some(file.to_owned()),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn other(reason: impl fmt::Display) -> Self {
        Self {
            file: None,
            reason: reason.to_string(),
        }
    }

    /// The file at fault, if one is.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// What is wrong.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}: {}", file.display(), self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for TlsConfigError {}

/// The TLS handshake with a backend failed: its certificate is not trusted or not valid for
/// its name, it wants a client certificate, or it does not speak TLS. It reads
/// `TLS handshake with backend 127.0.0.1:8443 failed: invalid peer certificate: UnknownIssuer`;
/// the request gets `502` (it is the source of a [`BackendUnavailable`](crate::BackendUnavailable)),
/// and a health check that meets it fails with this text.
#[derive(Debug)]
pub struct BackendTlsError {
    backend: Authority,
    source: std::io::Error,
}

impl BackendTlsError {
    pub(crate) fn new(backend: Authority, source: std::io::Error) -> Self {
        Self { backend, source }
    }

    /// The backend's address.
    pub fn backend(&self) -> &Authority {
        &self.backend
    }
}

impl fmt::Display for BackendTlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TLS handshake with backend {} failed: {}",
            self.backend, self.source
        )
    }
}

impl std::error::Error for BackendTlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
