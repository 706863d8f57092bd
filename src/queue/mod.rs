//! The wait for a backend when none is ready: HAProxy's `timeout queue`, as a layer over a
//! [`Balance`](crate::Balance).
//!
//! A [`Balance`](crate::Balance) never waits: when no backend is ready — every backend at
//! its cap, unhealthy, draining, held back by a `ConcurrencyLimit` or a `RateLimit` — it
//! fails at once with [`NoAvailableBackend`](crate::NoAvailableBackend). [`Queue`] wraps it
//! and lets such a request wait for up to a timeout instead:
//!
//! - a request that finds a ready backend goes straight through (the balancer's own future,
//!   nothing allocated);
//! - with a timeout of zero, one that finds none fails at once, as without the queue;
//! - otherwise it waits, by the standard `poll_ready` contract: it keeps the clones of the
//!   backend services it found not ready ([`Parked`](crate::balance::Parked)) and asks them
//!   again with its own task's waker, so whatever holds a backend back wakes it when it lets
//!   go — a permit freed, a backend passing its health check, a slot freed under
//!   [`max_conns_per_backend`](crate::proxy::ProxyClientBuilder::max_conns_per_backend), a
//!   rate limiter's timer. A backend that joins the set wakes it too
//!   ([`Balance::changed`](crate::Balance::changed));
//! - when the timeout passes first, it fails with `NoAvailableBackend` (a `503` from the
//!   standalone server).
//!
//! A waiting request also looks again every [`RECHECK`] (20 ms): a safety net for backend
//! services that return `Pending` without arranging a wake-up, which the contract forbids
//! but a hand-written service may do, and for a custom [`Pick`](crate::algo::Pick) that asks
//! only some of the backends. With the crate's own layers and tower's, requests are woken
//! without it.
//!
//! Requests waiting are not ordered: whichever is woken first and finds a backend takes it.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use tower::{discover::ServiceList, limit::ConcurrencyLimitLayer, service_fn};
//! use tower::{Layer, Service, ServiceBuilder, ServiceExt};
//! use tower_lb::queue::QueueLayer;
//! use tower_lb::{Algo, LoadBalanceLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // One backend, taking one request at a time.
//! let backend = ConcurrencyLimitLayer::new(1).layer(service_fn(|_req: http::Request<()>| async {
//!     tokio::time::sleep(Duration::from_millis(10)).await;
//!     Ok::<_, Infallible>(http::Response::new("ok"))
//! }));
//! let mut lb = ServiceBuilder::new()
//!     .layer(QueueLayer::new(Duration::from_secs(1)))
//!     .layer(LoadBalanceLayer::new(Algo::RoundRobin))
//!     .service(ServiceList::new(vec![backend]));
//!
//! // The second request waits for the first to finish, instead of failing.
//! let first = lb.ready().await.unwrap().call(http::Request::new(()));
//! let second = lb.ready().await.unwrap().call(http::Request::new(()));
//! let (first, second) = tokio::join!(first, second);
//! assert!(first.is_ok() && second.is_ok());
//! # }
//! ```

pub mod future;
mod layer;
mod service;

pub use self::layer::QueueLayer;
pub use self::service::{Queue, RECHECK};

#[cfg(test)]
mod tests;
