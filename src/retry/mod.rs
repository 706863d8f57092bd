//! Retries: a request that failed before a backend could act on it is sent to another backend.
//!
//! [`Retry`] wraps a balancer (any `Service<http::Request<_>>`, typically a
//! [`LoadBalance`](crate::LoadBalance)) and sends a request again when its attempt fails,
//! if all of these hold:
//!
//! - **the method may be retried**: `GET`, `HEAD`, `OPTIONS`, `PUT` and `DELETE` by default
//!   ([`RetryLayer::retry_methods`]); `POST` and `PATCH` only with
//!   [`RetryLayer::retry_non_idempotent`];
//! - **the body can be sent again**: the request has no body (its body had ended before the
//!   first attempt, [`Body::is_end_stream`](http_body::Body::is_end_stream)), or a small one:
//!   a body whose announced length (`Content-Length`, [`Body::size_hint`](http_body::Body::size_hint))
//!   is at most [`RetryLayer::buffer`] (64 KiB) is read whole before the first attempt and
//!   every attempt sends that copy, as Envoy's retry buffer does. Larger bodies, and bodies of
//!   unknown length (chunked), are streamed once and not retried;
//! - **the attempt failed in a way [`RetryOn`] names** ([`RetryLayer::retry_on`], HAProxy's
//!   `retry-on`, nginx's `proxy_next_upstream`): by default `connect-failure` only, a failure
//!   that is retry-safe ([`is_retry_safe`]): the connect was refused or failed, or
//!   the connection was reset or closed before any byte of the response head
//!   ([`BackendUnavailable`](crate::proxy::BackendUnavailable)), or the connect timed out. A
//!   backend that took too long to answer ([`BackendTimeout`](crate::proxy::BackendTimeout)
//!   of the response) is not retried: it may have done the work, and retrying slow requests
//!   adds load exactly when the fleet is slowest. Responses are retried only when their
//!   status is named (`503`, `gateway-error` for `502`/`503`/`504`, `5xx`); the retried
//!   response is dropped once another backend answers (ending its request on its backend),
//!   and when no retry answers the client gets the last backend answer as it was;
//! - **retries are left**: at most [`max_retries`](RetryLayer::max_retries) (default 2) per
//!   request;
//! - **the budget allows it**: every request deposits into a shared
//!   [`Budget`](tower::retry::budget::Budget) and every retry withdraws; by default
//!   ([`RetryLayer::default_budget`]) retries add at most 20 % to the load of the last
//!   10 seconds (plus 10 a second), so a failing fleet is not hammered with retries.
//!
//! Each retry goes to a backend not tried yet: the request carries a
//! [`Tried`](crate::balance::Tried) extension that [`Balance`](crate::Balance) fills and
//! respects. When no other backend is ready, the client gets the error of the last real
//! attempt (say, a `502`), not the balancer's `NoAvailableBackend`.
//!
//! The service under `Retry` gets a [`RetryBody<B>`]: the client's body on the first attempt,
//! an empty body on a retry (or the buffered copy of a small body on every attempt), so bodies
//! that cannot be rebuilt, such as hyper's `Incoming`, work. A request that may be retried costs a copy of its head (URI, headers, and the
//! extensions: one by one for the peer address, upgrade and `Tried` that the server's requests
//! carry, the whole map when there are others) and a `Tried`; any other request only a budget
//! deposit.
//!
//! This is the behaviour of HAProxy's `retries` with `retry-on conn-failure empty-response`
//! (and `503` and the like when named) and `option redispatch`, and of nginx's
//! `proxy_next_upstream error` (`http_503`…; nginx, likewise, does not pass non-idempotent
//! requests on unless told to); the budget is Finagle's retry budget, with tower's
//! [`TpsBudget`](tower::retry::budget::TpsBudget) arithmetic but no lock ([`RetryBudget`]:
//! every request deposits, so the deposit is on the request path). tower's own
//! `retry::Retry` is not used because it needs the request to be cloned before every attempt,
//! in the type the inner service takes.
//!
//! # Examples
//!
//! ```
//! use http_body_util::Empty;
//! use tower::{discover::ServiceList, service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_lb::retry::{RetryBody, RetryLayer};
//! use tower_lb::{Algo, BackendUnavailable, BoxError, LoadBalance};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Backend "a" refuses every connection; "b" answers.
//! let backend = |name: &'static str| {
//!     service_fn(move |_: http::Request<RetryBody<Empty<bytes::Bytes>>>| async move {
//!         if name == "a" {
//!             let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
//!             return Err::<http::Response<&str>, BoxError>(
//!                 BackendUnavailable::new("10.0.0.1:80".parse().unwrap(), refused).into(),
//!             );
//!         }
//!         Ok(http::Response::new(name))
//!     })
//! };
//! let balancer = LoadBalance::new(ServiceList::new([backend("a"), backend("b")]), Algo::RoundRobin);
//! let mut lb = ServiceBuilder::new()
//!     .layer(RetryLayer::new().max_retries(2))
//!     .service(balancer);
//!
//! for _ in 0..4 {
//!     let req = http::Request::get("/").body(Empty::new()).unwrap();
//!     let res = lb.ready().await.unwrap().call(req).await.unwrap();
//!     assert_eq!(*res.body().get_ref(), "b");
//! }
//! // Round robin offered "a" first every time (a retry takes a turn too).
//! assert_eq!(lb.retries(), 4);
//! # }
//! ```

mod body;
mod budget;
pub mod future;
mod head;
mod layer;
mod on;
mod policy;
mod service;

pub use self::body::RetryBody;
pub use self::budget::RetryBudget;
pub use self::layer::RetryLayer;
pub use self::on::{InvalidRetryOn, RetryOn};
pub use self::policy::is_retry_safe;
pub use self::service::Retry;

#[cfg(test)]
mod tests;
