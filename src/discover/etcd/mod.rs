//! Backends from etcd (v3 API): keys under a prefix, each naming one backend.
//!
//! Each key under the prefix holds a JSON value `{"address": "http://10.0.0.7:8080",
//! "weight": 5}` (`weight` optional, default 1). [`EtcdDiscover`] turns them into a
//! [`Discover`](tower::discover::Discover) stream; [`EtcdSync`] keeps an existing
//! [`Registry`](crate::Registry) equal to them (the standalone server's, with `--etcd`).
//!
//! Following a prefix works as the etcd documentation recommends for a consistent cache
//! (<https://etcd.io/docs/v3.5/learning/api_guarantees/>, "watch"): load the prefix with
//! one range request at revision `r`, then watch it from `r + 1`, so no change between the
//! two is missed. The whole set is reconciled into the registry: new backends are inserted,
//! changed weights updated in place (the balancer keeps their counters), missing ones
//! deregistered, which drains them. On failure:
//!
//! | what happens | what it does |
//! |---|---|
//! | etcd unreachable, watch stream broken | keeps the last set it had (never empties the pool), retries with a backoff from 100 ms doubling to 5 s, then loads and reconciles again |
//! | the revision it watches from was compacted | loads the prefix again and reconciles |
//! | a key's value is not a backend | logs a warning naming the key and the reason; the key names no backend (if it named one before, that backend is drained) |
//! | two keys name one address | one backend, with the larger weight |
//!
//! # Registrations and leases
//!
//! [`EtcdRegistrations`] writes a backend as the key `<prefix><address>` (the normalised
//! address: `/lb/backends/http://10.0.0.7:8080`) and returns once etcd has acknowledged it;
//! the standalone server's `POST` and `DELETE /register` go through it with `--etcd`.
//! Deregistering deletes every key naming the address, whoever wrote it.
//!
//! With a [lease TTL](EtcdRegistrations::lease_ttl), each handle (each balancer process)
//! holds **one lease**, granted at its first registration and renewed every third of the
//! TTL; the keys it writes are attached to it. When that process dies, or cannot reach etcd
//! for longer than the TTL, etcd deletes those keys and every balancer drains the backends.
//! Registering a backend again through another instance moves its key to that instance's
//! lease. After a lease expired, the next registration grants a new one; backends lost with
//! the old one are not written again. Without a TTL keys are permanent until deleted.
//!
//! # Examples
//!
//! ```no_run
//! use tower::discover::Change;
//! use tower_lb::discover::EtcdDiscover;
//! use futures_util::StreamExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), etcd_client::Error> {
//! let client = etcd_client::Client::connect(["http://127.0.0.1:2379"], None).await?;
//! // Each backend's service would be an `HttpBackend`; here its address.
//! let mut backends = EtcdDiscover::new(client, "/lb/backends/", |addr| addr.clone());
//! while let Some(Ok(change)) = backends.next().await {
//!     match change {
//!         Change::Insert(key, _) => println!("serve {key:?}"),
//!         Change::Remove(key) => println!("drain {key:?}"),
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod discover;
mod error;
mod store;
mod sync;
#[cfg(test)]
mod test_etcd;
mod value;

pub use self::discover::EtcdDiscover;
pub use self::error::EtcdError;
pub use self::store::EtcdRegistrations;
pub use self::sync::EtcdSync;
/// The etcd client crate, re-exported: build a [`Client`](etcd_client::Client) with it.
pub use etcd_client;
