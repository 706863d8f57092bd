//! The balancer: a `Service` that spreads requests over a discovered set of backends.
//!
//! [`Balance<D, P>`] follows the backend set of a [`Discover`](tower::discover::Discover) `D` and
//! sends each request to the backend that picker `P` chooses (see [`algo`](crate::algo));
//! [`LoadBalance<D>`] chooses the picker at run time from an [`Algo`](crate::Algo), and
//! [`LoadBalanceLayer`] builds one in a `ServiceBuilder`.
//!
//! Unlike tower's `balance::p2c::Balance`:
//!
//! - **It is `Clone + Send + Sync`** and needs no `Buffer`: clones share one backend set, held
//!   in an [`arc_swap`] snapshot, with per-backend counters in atomics. No lock is taken on the
//!   request path.
//! - **It never waits for readiness.** `poll_ready` is always ready; `call` picks among the
//!   backends whose services are ready *now* (an unhealthy, draining or saturated backend is
//!   `Pending` and skipped) and fails at once with [`NoAvailableBackend`](crate::NoAvailableBackend)
//!   when none is. Readiness is the standard `poll_ready` of each backend's service, so any
//!   tower layer may sit between the balancer and a backend (`ConcurrencyLimit`,
//!   `RateLimit`, …): a backend it holds back is skipped. To wait for a backend instead, put
//!   a [`Queue`](crate::queue::Queue) in front, which waits on the backends'
//!   own wake-ups ([`Balance::try_call_with`]) and on [`Balance::changed`].
//! - **Discovery runs on its own task**, so backends join and leave even when no request
//!   arrives; changes that are ready when the balancer is built are applied before `new`
//!   returns.
//! - **Backends are keyed by identity.** Their counters survive changes to the set, and a
//!   request sent to a backend that is then removed completes normally.
//!
//! A request counts as in flight until its response body ends, not when headers arrive.
//!
//! Backend services must be `Clone`: the balancer clones the chosen backend's service for each
//! request, as with hyper's `Client` or axum's `Router`, which are cheap to clone.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use tower::{discover::ServiceList, service_fn, Service, ServiceExt};
//! use tower_lb::{Algo, LoadBalance};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let backend = |name: &'static str| {
//!     service_fn(move |_req: http::Request<String>| async move {
//!         Ok::<_, Infallible>(http::Response::new(name.to_string()))
//!     })
//! };
//! let discover = ServiceList::new(vec![backend("a"), backend("b")]);
//! let mut lb = LoadBalance::new(discover, Algo::RoundRobin);
//!
//! let mut names = Vec::new();
//! for _ in 0..4 {
//!     let res = lb.ready().await.unwrap().call(http::Request::new(String::new())).await.unwrap();
//!     names.push(res.into_body().into_inner());
//! }
//! assert_eq!(names, ["a", "b", "a", "b"]);
//! # }
//! ```

mod body;
mod connect_time;
mod endpoint;
pub mod future;
mod layer;
mod parked;
mod service;
mod set;
mod tried;

pub use self::body::TrackedBody;
pub use self::connect_time::ConnectTime;
pub use self::endpoint::{Endpoint, Stats};
pub use self::layer::LoadBalanceLayer;
pub use self::parked::Parked;
pub use self::service::{Balance, LoadBalance};
pub use self::tried::Tried;

#[cfg(test)]
mod tests;
