//! HTTP load balancing as [tower] middleware.
//!
//! `tower-lb` turns a discoverable set of backend services into one [`tower::Service`] that
//! spreads requests over them with the algorithm you choose, skipping backends that are not
//! ready (unhealthy, draining, saturated) and failing fast when none is.
//!
//! - [`Registry`]: register and deregister backends at run time; its
//!   [`discover`](Registry::discover) stream feeds any balancer. Any
//!   [`Discover`](tower::discover::Discover) works, such as tower's `ServiceList`.
//! - [`LoadBalanceLayer`] / [`LoadBalance`]: a balancer over a `Discover`, algorithm chosen by
//!   [`Algo`]; [`Balance`] with a picker type from [`algo`] for a fixed one.
//! - [`health`]: active health checks as a layer over the discovery stream.
//!
//! # Getting started
//!
//! ```
//! use std::convert::Infallible;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_lb::{Algo, LoadBalanceLayer, Registry};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // A backend service per registered name; in a proxy, an HTTP client aimed at the address.
//! let registry = Registry::new(|name: &&'static str| {
//!     let name = *name;
//!     service_fn(move |_: http::Request<()>| async move {
//!         Ok::<_, Infallible>(http::Response::new(name))
//!     })
//! });
//! registry.register("a", 1);
//! registry.register("b", 1);
//!
//! let mut lb = ServiceBuilder::new()
//!     .layer(LoadBalanceLayer::new(Algo::LeastConn))
//!     .service(registry.discover());
//!
//! let res = lb.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
//! assert!(["a", "b"].contains(res.body().get_ref()));
//! # }
//! ```
//!
//! [tower]: https://docs.rs/tower

#![cfg_attr(docsrs, feature(doc_cfg))]

mod addr;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod admin;
pub mod algo;
pub mod balance;
pub mod client_ip;
mod clock;
pub mod discover;
mod error;
pub mod health;
mod ip_net;
#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub mod jsend;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub mod proxy;
pub mod queue;
pub mod registry;
pub mod retry;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
pub mod stats;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
mod wait_list;
mod weight;

pub use self::addr::{BackendAddr, BackendScheme, InvalidBackendAddr};
pub use self::algo::Algo;
pub use self::balance::{Balance, Endpoint, LoadBalance, LoadBalanceLayer, Stats, TrackedBody};
pub use self::client_ip::{ClientIp, PeerAddr};
pub use self::error::{BackendTimeout, BackendUnavailable, BoxError, NoAvailableBackend};
pub use self::health::HealthCheckLayer;
#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub use self::health::HttpProbe;
pub use self::ip_net::{InvalidIpNet, IpNet};
pub use self::queue::{Queue, QueueLayer};
pub use self::registry::{Registration, Registry, RegistryDiscover};
pub use self::retry::{Retry, RetryLayer};
pub use self::stats::{BackendSnapshot, BalancerSnapshot};
pub use self::weight::{Weight, Weighted};

/// The README's Rust examples, compiled and run as doc tests.
#[cfg(all(doctest, feature = "server", feature = "metrics"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
