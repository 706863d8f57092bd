//! The error of an etcd request.

use std::fmt;
use std::time::Duration;

/// An etcd request failed: etcd is unreachable, did not answer in time, or refused it.
#[derive(Debug)]
pub struct EtcdError {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Client(etcd_client::Error),
    Timeout(Duration),
}

impl EtcdError {
    pub(crate) fn timeout(after: Duration) -> Self {
        Self {
            kind: Kind::Timeout(after),
        }
    }
}

impl From<etcd_client::Error> for EtcdError {
    fn from(error: etcd_client::Error) -> Self {
        Self {
            kind: Kind::Client(error),
        }
    }
}

impl fmt::Display for EtcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Client(error) => write!(f, "etcd request failed: {error}"),
            Kind::Timeout(after) => write!(f, "etcd did not answer within {after:?}"),
        }
    }
}

impl std::error::Error for EtcdError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Client(error) => Some(error),
            Kind::Timeout(_) => None,
        }
    }
}

/// `request`, or an [`EtcdError`] if it fails or takes longer than `limit`.
pub(crate) async fn within<T>(
    limit: Duration,
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, EtcdError> {
    match tokio::time::timeout(limit, request).await {
        Ok(result) => result.map_err(EtcdError::from),
        Err(_) => Err(EtcdError::timeout(limit)),
    }
}
