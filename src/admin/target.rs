//! Where `POST` and `DELETE /register` write: the local registry, or etcd.

use crate::addr::BackendAddr;
use crate::registry::Registry;

/// The store a registration goes to. With etcd, the local registry follows etcd
/// ([`EtcdSync`](crate::discover::EtcdSync)), so a write shows up there (and on every other
/// balancer following the prefix) once etcd has it.
pub(super) enum Target<S> {
    /// The process's own [`Registry`].
    Local(Registry<BackendAddr, S>),
    /// Keys under an etcd prefix (boxed: the etcd client is a few KiB).
    #[cfg(feature = "etcd")]
    Etcd(Box<crate::discover::EtcdRegistrations>),
}

/// A write the store could not make; the admin API answers `503` with it.
pub(super) type Unavailable = String;

impl<S> Target<S> {
    /// Registers `address` with `weight` (or updates its weight).
    pub(super) async fn register(
        &self,
        address: &BackendAddr,
        weight: u32,
    ) -> Result<(), Unavailable> {
        match self {
            Self::Local(registry) => {
                let outcome = registry.register(address.clone(), weight);
                tracing::info!(backend = %address, weight, ?outcome, "backend registered");
                Ok(())
            }
            #[cfg(feature = "etcd")]
            Self::Etcd(etcd) => {
                etcd.register(address, weight)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(backend = %address, weight, "backend registered in etcd");
                Ok(())
            }
        }
    }

    /// Deregisters `address`; `false` if it was not registered.
    pub(super) async fn deregister(&self, address: &BackendAddr) -> Result<bool, Unavailable> {
        match self {
            Self::Local(registry) => Ok(registry.deregister(address)),
            #[cfg(feature = "etcd")]
            Self::Etcd(etcd) => etcd.deregister(address).await.map_err(|e| e.to_string()),
        }
    }
}

impl<S> Clone for Target<S> {
    fn clone(&self) -> Self {
        match self {
            Self::Local(registry) => Self::Local(registry.clone()),
            #[cfg(feature = "etcd")]
            Self::Etcd(etcd) => Self::Etcd(etcd.clone()),
        }
    }
}

impl<S> std::fmt::Debug for Target<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(_) => f.write_str("Local"),
            #[cfg(feature = "etcd")]
            Self::Etcd(etcd) => f.debug_tuple("Etcd").field(etcd).finish(),
        }
    }
}
