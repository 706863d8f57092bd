//! Discovery sources: backends that come from outside the process, as
//! [`Discover`](tower::discover::Discover) streams of the middleware.
//!
//! Each source reconciles the full set it reads into a [`Registry`](crate::Registry), so a
//! balancer sees inserts, weight changes (an insert of a present key) and draining removals,
//! and each keeps the last good set when its source fails.

#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
pub mod etcd;

#[cfg(feature = "etcd")]
pub use self::etcd::{EtcdDiscover, EtcdError, EtcdRegistrations, EtcdSync};
