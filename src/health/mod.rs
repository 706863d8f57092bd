//! Active health checks, as a layer over the discovery stream.
//!
//! [`HealthCheckLayer`] wraps a [`Discover`](tower::discover::Discover) stream: every backend
//! service it inserts becomes a [`HealthCheck`], whose `poll_ready` is `Pending` while the
//! backend fails its checks. A balancer on top — [`LoadBalance`](crate::LoadBalance) asks each
//! candidate's readiness and skips those not ready — never picks an unhealthy backend, and
//! fails fast with [`NoAvailableBackend`](crate::NoAvailableBackend) when all are down. When
//! the backend passes again it is picked again, and callers waiting on its `poll_ready` are
//! woken.
//!
//! Each backend gets its own probe task, started when it is inserted and stopped when it is
//! removed: it runs a [`Probe`] at once and then every `interval`, under a `timeout`. As in
//! HAProxy's `check inter … fall … rise …`, `fall` failed checks in a row take a backend down
//! and `rise` passed checks in a row bring it back; backends start up (like HAProxy's servers)
//! unless [`initially_unhealthy`](HealthCheckLayer::initially_unhealthy). Checks of different
//! backends run concurrently, and nothing on the request path waits for one: a healthy
//! candidate costs a request one atomic load; an unhealthy one is `Pending`, and whoever asked
//! is listed to be woken when it comes back (a balancer's fresh clone leaves the list when it is
//! dropped: two short per-backend locks). Changes of status are logged with `tracing` (`backend is
//! down` at `WARN`, `backend is up` at `INFO`).
//!
//! | setting | default |
//! |---|---|
//! | [`interval`](HealthCheckLayer::interval) | 10 s |
//! | [`timeout`](HealthCheckLayer::timeout) | 2 s |
//! | [`fall`](HealthCheckLayer::fall) / [`rise`](HealthCheckLayer::rise) | 1 / 1 |
//! | [`initial`](HealthCheckLayer::initial) | [`Health::Healthy`] |
//! | [`outlier_detection`](HealthCheckLayer::outlier_detection) | off |
//! | [`slow_start`](HealthCheckLayer::slow_start) | off |
//!
//! Probes: [`HttpProbe`] sends `GET <backend><path>` (`/health` by default) and passes on a
//! `2xx`, through the same [`ProxyClient`](crate::proxy::ProxyClient) (pool, connector,
//! timeouts) as the traffic it judges when given the balancer's client; [`probe_fn`] makes one
//! from a closure. A [`HealthMonitor`], from
//! [`HealthCheckLayer::monitor`], lists every backend's [`HealthSnapshot`] and lets an
//! operator check one now or set its status by hand.
//!
//! Where a backend stands is one type, [`BackendState`] (healthy, unhealthy, ejected,
//! draining), shared with the admin API's listing; [`Health`] is only the verdict of the
//! active checks (up or down).
//!
//! A re-insert of a key that is present (a weight update from a
//! [`Registry`](crate::Registry)) keeps its health and its probe task.
//!
//! # Passive health checks (outlier ejection)
//!
//! With [`outlier_detection`](HealthCheckLayer::outlier_detection), the layer also watches the
//! answers of real requests, as Envoy's outlier detection (`consecutive_gateway_failure`) and
//! HAProxy's `observe layer7` do. An error from the backend's service (connection refused,
//! timeout…) or a `502`, `503` or `504` response is a failure; any other response (a `500`
//! or a `404` is the application's answer, not a sign that the backend is gone) resets the
//! count. After [`consecutive_failures`](OutlierDetection::consecutive_failures) failures in
//! a row the backend is *ejected*: `Pending` like an unhealthy backend, never picked, for
//! `base_ejection × n`, where `n` counts its ejections so far, at most
//! [`max_ejection`](OutlierDetection::max_ejection). A backend that goes a whole
//! `max_ejection` without being ejected starts over from the base time. When the time is up
//! a timer makes the backend available again (unless its checks have failed meanwhile) and
//! wakes whoever waits for it. Active checks go on while a backend is ejected, and a failed
//! one takes it down as usual.
//!
//! Ejection is limited layer-wide: at most
//! [`max_ejection_percent`](OutlierDetection::max_ejection_percent) of the backends are
//! ejected at once (rounded down, but one may always be, as in Envoy), and never the last
//! available one; an ejection that would break these limits is skipped (logged at `INFO`) and
//! the count of failures starts over. Ejections are logged at `WARN` (`backend ejected`, with
//! `failures` and `ejected_for`), their ends at `INFO` (`ejection ended`).
//!
//! It is off by default, as in both Envoy (no `outlier_detection`, no ejection) and HAProxy
//! (no `observe`): a balancer in front of an application that answers `503` on purpose (for
//! load shedding) would otherwise eject healthy backends. The defaults of
//! [`OutlierDetection::new`] are Envoy's (5 failures, 30 s, 300 s) but for a 50 % limit.
//! Failures are read from the response future, so the services' responses must implement
//! [`ResponseStatus`] (every [`http::Response`] does); when outlier detection is off the
//! request path does not touch them. [`HealthSnapshot::state`] says `ejected`, and the
//! snapshot has the ejection's end and count.
//!
//! # Slow start
//!
//! With [`slow_start`](HealthCheckLayer::slow_start), a backend that is inserted or becomes
//! available again (its checks pass again, its ejection ends) takes a growing share of the
//! requests over the window, like HAProxy's `slowstart`: its `poll_ready` admits a request with
//! probability `elapsed / window` (at least 10 %) and is `Pending` otherwise, so a balancer
//! that skips backends that are not ready (as [`LoadBalance`](crate::LoadBalance) does) sends
//! the request to another. Its share of requests rises from about a tenth of its fair share
//! to all of it.
//!
//! The ramp works by admission rather than by weight, so that it applies to every algorithm
//! without rebuilding their tables: round robin, weighted round robin, least connections,
//! power of two choices and least time. With a hashing algorithm (source IP hash, sticky round
//! robin) a ramping backend sends some of its clients elsewhere; slow start is not meant for
//! those. The ramp holds back only while another backend of the layer is available and past
//! its own ramp: backends that start together (or the only one left) take requests at once,
//! and the ramp never makes a request fail. It is off by default.
//!
//! # Examples
//!
//! Under a [`LoadBalanceLayer`](crate::LoadBalanceLayer), with backend `b` failing its checks:
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_lb::health::{probe_fn, Health, HealthCheckLayer};
//! use tower_lb::{Algo, LoadBalanceLayer, Registry, Weighted};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let registry = Registry::new(|name: &&'static str| {
//!     let name = *name;
//!     service_fn(move |_: http::Request<()>| async move {
//!         Ok::<_, Infallible>(http::Response::new(name))
//!     })
//! });
//! registry.register("a", 1);
//! registry.register("b", 1);
//!
//! // A real balancer would use `HttpProbe::new("/health")` with `BackendAddr` keys.
//! let probe = probe_fn(|backend: &Weighted<&'static str>| {
//!     let up = *backend.key() != "b";
//!     async move { if up { Ok(()) } else { Err("connection refused") } }
//! });
//! let health = HealthCheckLayer::new(probe).interval(Duration::from_secs(1));
//! let monitor = health.monitor();
//!
//! let mut lb = ServiceBuilder::new()
//!     .layer(LoadBalanceLayer::new(Algo::RoundRobin))
//!     .layer(health)
//!     .service(registry.discover());
//!
//! // The first checks run as soon as the backends are inserted.
//! while monitor.get(&"b").map(|s| s.status) != Some(Health::Unhealthy) {
//!     tokio::task::yield_now().await;
//! }
//! for _ in 0..4 {
//!     let res = lb.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
//!     assert_eq!(*res.body().get_ref(), "a");
//! }
//! assert_eq!(
//!     monitor.get(&"b").unwrap().last_error.as_deref(),
//!     Some("connection refused"),
//! );
//! # }
//! ```
//!
//! With HTTP backends keyed by [`BackendAddr`](crate::BackendAddr), as a standalone balancer
//! would (`HttpProbe` needs the `proxy` feature):
//!
//! ```no_run
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! # #[cfg(feature = "proxy")]
//! use tower_lb::health::{HealthCheckLayer, HttpProbe};
//! use tower_lb::{Algo, LoadBalanceLayer, Registry};
//!
//! # #[cfg(feature = "proxy")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let make_client = |_addr: &tower_lb::BackendAddr| tower::service_fn(|_: http::Request<String>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//! # });
//! let registry = Registry::new(make_client);
//! registry.register("http://127.0.0.1:9001".parse().unwrap(), 1);
//!
//! let health = HealthCheckLayer::new(HttpProbe::new("/health"))
//!     .interval(Duration::from_secs(5))
//!     .timeout(Duration::from_secs(1))
//!     .fall(3)
//!     .rise(2);
//! let monitor = health.monitor();
//! let lb = ServiceBuilder::new()
//!     .layer(LoadBalanceLayer::new(Algo::LeastConn))
//!     .layer(health)
//!     .service(registry.discover());
//!
//! for (backend, snapshot) in monitor.backends() {
//!     println!("{} is {}", backend.key(), snapshot.status);
//! }
//! # drop(lb);
//! # }
//! # #[cfg(not(feature = "proxy"))] fn main() {}
//! ```

mod discover;
mod error;
pub mod future;
#[cfg(feature = "proxy")]
mod grpc;
#[cfg(feature = "proxy")]
mod http_probe;
mod layer;
mod monitor;
mod outlier;
mod pool;
mod probe;
mod service;
mod state;

pub use self::discover::HealthCheckDiscover;
#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub use self::error::InvalidProbeUri;
pub use self::error::{ProbeTimedOut, UnhealthyStatus};
#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub use self::grpc::GrpcUnhealthy;
#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub use self::http_probe::{HttpProbe, HttpProbeFuture};
pub use self::layer::HealthCheckLayer;
pub use self::monitor::HealthMonitor;
pub use self::outlier::{OutlierDetection, ResponseStatus};
pub use self::probe::{Probe, ProbeFn, ProbeFnFuture, ProbeTarget, probe_fn};
pub use self::service::HealthCheck;
pub use self::state::{BackendHealth, BackendState, Health, HealthSnapshot};

#[cfg(test)]
mod tests;
