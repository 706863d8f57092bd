//! Discovery sources: backends from DNS, a watched file (and etcd), as
//! [`Discover`](tower::discover::Discover) streams of the middleware.
//!
//! Every source reads a *full set* of backends at each refresh and [`Reconcile`]s it with
//! the set it yielded last, so a balancer sees inserts, weight changes and draining
//! removals, never a pool emptied and refilled. A source that fails (a DNS timeout, an
//! unreadable file) keeps its last good set: it logs the failure and yields nothing.
//!
//! [`channel`] turns full sets into a discovery stream; each source offers one
//! (`Dns::discover`, `BackendsFile::discover`) and a `watch` that hands full sets to a
//! function, which the standalone server applies to its [`Registry`](crate::Registry)
//! with [`Update::apply_to`].
//!
//! | source | feature | refresh | on failure |
//! |---|---|---|---|
//! | DNS A/AAAA, SRV ([`dns`](mod@dns)) | `dns` | at the records' TTL, bounded by a min and a max | keeps the set, asks again after the min |
//! | a TOML or JSON file ([`file`](mod@file)) | `file` | when its modification time changes | keeps the set, logs the file and reason |
//! | etcd keys under a prefix ([`etcd`](mod@etcd)) | `etcd` | watched from the revision loaded | keeps the set, reconnects with backoff, reloads the prefix |

mod channel;
mod reconcile;

#[cfg(feature = "dns")]
#[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
pub mod dns;

#[cfg(feature = "file")]
#[cfg_attr(docsrs, doc(cfg(feature = "file")))]
pub mod file;

#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
pub mod etcd;

pub use self::channel::{Publisher, SetDiscover, channel};
#[cfg(feature = "etcd")]
pub use self::etcd::{EtcdDiscover, EtcdError, EtcdRegistrations, EtcdSync};
pub use self::reconcile::{Reconcile, Update};
