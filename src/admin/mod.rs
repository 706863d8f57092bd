//! The admin API: register, drain and list the backends of a running balancer over HTTP.
//!
//! [`Admin`] is a [`tower::Service`] that takes a [`Registry`](crate::Registry) handle and a
//! health [`Probe`](crate::health::Probe); the [`Server`](crate::server::Server) mounts it at
//! [`/register`](REGISTER_PATH) and [`/backends`](BACKENDS_PATH). It speaks
//! [JSend](crate::jsend) with `Content-Type: application/json` for every answer, errors
//! included.
//!
//! # Routes
//!
//! | request | answer |
//! |---|---|
//! | `POST /register` `{"address": "http://127.0.0.1:1080", "weight": 5}` | checks the backend once, registers it (or updates its weight): `200 {"status":"success","data":{"server":"http://127.0.0.1:1080","weight":5}}` |
//! | `DELETE /register` `{"address": "http://127.0.0.1:1080"}` | drains the backend: `200 {"status":"success","data":{"server":"http://127.0.0.1:1080","state":"draining","in_flight":3}}` |
//! | `GET /backends` | `200 {"status":"success","data":[{"address":…,"weight":…,"state":…,…}]}`, see [`BackendInfo`] |
//!
//! Errors of `POST` and `DELETE /register`:
//!
//! | request | status | body |
//! |---|---|---|
//! | empty or malformed JSON, wrong types, bad address, weight not in `1..=1000` (`POST` only) | 400 | `{"status":"fail","data":{"title":"…"}}` |
//! | a field other than `address` and `weight` | 403 | `fail`, naming the field |
//! | `POST`: the address is not in the [allowed networks](Admin::allow_backends) | 403 | `fail`, naming the address and the networks |
//! | `POST`: the backend fails the check (refused, non-2xx, timeout) | 404 | `fail`, `"<address> not alive, registration failed."` |
//! | `DELETE`: the backend is not registered | 404 | `fail`, `"<address> is not registered."` |
//! | another method | 405 | `fail`, with `Allow: POST, DELETE` (`Allow: GET` for `/backends`) |
//! | body over 64 KiB ([`MAX_BODY`]) | 413 | `fail` |
//! | `Content-Type` present and not JSON | 415 | `fail` |
//! | with [`etcd`](Admin::etcd): etcd did not take the write | 503 | `{"status":"error","data":"<address>: the registration was not stored: etcd …"}` |
//!
//! `weight` is optional ([`DEFAULT_WEIGHT`]); `DELETE` ignores it. A missing `Content-Type` is
//! read as JSON; `application/json` and any `application/*+json`, with parameters, are JSON.
//!
//! **Addresses are normalised** ([`BackendAddr`](crate::BackendAddr)): lower-case scheme and host, no `:80`, no
//! trailing `/`. So `http://x:1` and `http://x:1/` are one backend, and registering an address
//! again (in any spelling) updates its weight. The answer reports the normal form.
//!
//! **The check at registration** uses the probe the health checks use, under their timeout,
//! so a backend that is registered would also pass its next periodic check. Once registered
//! it is checked every interval like any other: taken out when it fails, put back when it
//! passes. With [`Admin::wait_until`] the answer waits until the balancer serves the backend,
//! so the request after a `200` can already go to it.
//!
//! # Draining
//!
//! `DELETE /register` deregisters the backend at once: the balancer takes it out of its set
//! (with a [`balancer`](Admin::balancer), the answer waits until it has), so no new request
//! goes to it, sticky clients included (they are placed again), and its health checks stop.
//! Requests already sent to it finish normally; the balancer keeps it as
//! [retired](crate::Balance::retired) until their response bodies end. The answer's `state`
//! is `"draining"` while requests are in flight (`in_flight` counts them) and `"removed"` if
//! none was; without a balancer to ask, `"draining"` with `"in_flight": null`. `GET
//! /backends` lists a draining backend with state `draining` until its last request ends,
//! then no more. Registering it again makes it a new backend of the set.
//!
//! # Who may use it
//!
//! By default only loopback peers (`127.0.0.0/8`, `::1`; [`LOOPBACK`]); any other peer gets
//! `403 {"status":"fail","data":{"title":"the admin API is open to local clients only: …"}}`.
//! With a [`token`](Admin::token), every request must carry `Authorization: Bearer <token>`,
//! whatever its peer, or get a `401` with `WWW-Authenticate: Bearer`. The token is compared
//! in constant time. A refused request changes nothing. The peer comes from the
//! [`PeerAddr`](crate::PeerAddr) extension (or axum's `ConnectInfo`).
//!
//! [`allow_backends`](Admin::allow_backends) restricts what `POST /register` may add (and so
//! where its check may connect): the address's host must be a literal IP address in one of
//! the networks. Host names are then refused: what they resolve to could change after the
//! check (DNS rebinding). Backends configured at start-up are not checked.
//!
//! The body is parsed and validated by [`parse_registration`] and [`parse_deregistration`],
//! pure functions over bytes (handy for fuzzing); [`BackendSpec`] also parses the
//! command-line form `URL[=WEIGHT]`.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use tower::ServiceExt;
//! use tower_lb::{BackendAddr, PeerAddr, Registry};
//! use tower_lb::admin::Admin;
//! use tower_lb::health::probe_fn;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Each backend's service would be an `HttpBackend`; here just its address.
//! let registry = Registry::new(|addr: &BackendAddr| addr.clone());
//! // In a server, `HttpProbe::new("/health")`; here every backend is alive.
//! let probe = probe_fn(|_: &BackendAddr| async { Ok::<_, Infallible>(()) });
//! let admin = Admin::new(registry.clone(), probe);
//!
//! let mut req = http::Request::post("/register")
//!     .header("content-type", "application/json")
//!     .body(Full::new(Bytes::from_static(br#"{"address": "http://127.0.0.1:1080/", "weight": 5}"#)))
//!     .unwrap();
//! // The server inserts the connection's peer; the API serves loopback peers by default.
//! req.extensions_mut().insert(PeerAddr(([127, 0, 0, 1], 50000).into()));
//! let res = admin.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body, r#"{"status":"success","data":{"server":"http://127.0.0.1:1080","weight":5}}"#);
//! assert_eq!(registry.weight(&"http://127.0.0.1:1080".parse().unwrap()), Some(5));
//! # }
//! ```

mod access;
mod backends;
mod parse;
mod service;
mod target;

pub use self::access::{AdminToken, InvalidToken, LOOPBACK};
pub use self::backends::{BackendInfo, BalancerView};
pub use self::parse::{
    BackendSpec, DEFAULT_WEIGHT, MAX_BODY, MAX_WEIGHT, RegisterError, parse_address,
    parse_deregistration, parse_registration,
};
pub use self::service::{Admin, BACKENDS_PATH, REGISTER_PATH, ResponseFuture, is_admin_path};

#[cfg(test)]
mod tests;
