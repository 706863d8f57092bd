//! [`EtcdDiscover`]: the backends under an etcd prefix as a discovery stream.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use etcd_client::Client;
use futures_core::Stream;
use tower::discover::Change;

use super::sync::EtcdSync;
use crate::addr::BackendAddr;
use crate::registry::{Registry, RegistryDiscover};
use crate::weight::Weighted;

/// The backends under an etcd prefix, as a [`Discover`](tower::discover::Discover) stream:
/// the loaded set as inserts, then every change. See the [module docs](super).
///
/// Dropping it stops following etcd.
pub struct EtcdDiscover<S> {
    inner: RegistryDiscover<BackendAddr, S>,
    sync: EtcdSync,
}

impl<S: Send + 'static> EtcdDiscover<S> {
    /// Follows the keys under `prefix` with `client`; `make` builds the service of each
    /// backend. Must be called within a tokio runtime.
    pub fn new<F>(client: Client, prefix: impl Into<String>, make: F) -> Self
    where
        F: Fn(&BackendAddr) -> S + Send + Sync + 'static,
    {
        let registry = Registry::new(make);
        let inner = registry.discover();
        Self {
            inner,
            sync: EtcdSync::spawn(client, prefix, registry),
        }
    }

    /// The prefix it follows.
    pub fn prefix(&self) -> &str {
        self.sync.prefix()
    }
}

impl<S> Stream for EtcdDiscover<S> {
    type Item = Result<Change<Weighted<BackendAddr>, S>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl<S> fmt::Debug for EtcdDiscover<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdDiscover")
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}
