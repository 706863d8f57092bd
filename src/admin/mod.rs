//! The `/register` API: add backends to a running balancer over HTTP.
//!
//! [`Admin`] is a [`tower::Service`] that takes a [`Registry`](crate::Registry) handle and a
//! health [`Probe`](crate::health::Probe). For each request it reads a JSON body, checks the
//! backend once, and registers it; the [`Server`](crate::server::Server) mounts it at
//! `POST /register`. It speaks [JSend](crate::jsend) with `Content-Type: application/json`
//! for every answer, errors included:
//!
//! | request | status | body |
//! |---|---|---|
//! | `{"address": "http://127.0.0.1:1080", "weight": 5}`, backend passes the check | 200 | `{"status":"success","data":{"server":"http://127.0.0.1:1080","weight":5}}` |
//! | empty or malformed JSON, wrong types, bad address, weight not in `1..=1000` | 400 | `{"status":"fail","data":{"title":"…"}}` |
//! | a field other than `address` and `weight` | 403 | `fail`, naming the field |
//! | the backend fails the check (refused, non-2xx, timeout) | 404 | `fail`, `"<address> not alive, registration failed."` |
//! | method other than `POST` | 405 | `fail`, with `Allow: POST` |
//! | body over 64 KiB ([`MAX_BODY`]) | 413 | `fail` |
//! | `Content-Type` present and not JSON | 415 | `fail` |
//!
//! `weight` is optional ([`DEFAULT_WEIGHT`]). A missing `Content-Type` is read as JSON;
//! `application/json` and any `application/*+json`, with parameters, are JSON.
//!
//! **Addresses are normalised** ([`parse_address`]): lower-case scheme and host, no `:80`, no
//! trailing `/`. So `http://x:1` and `http://x:1/` are one backend, and registering an address
//! again (in any spelling) updates its weight. The answer reports the normal form.
//!
//! **The check at registration** uses the probe the health checks use, under their timeout,
//! so a backend that is registered would also pass its next periodic check. Once registered
//! it is checked every interval like any other: taken out when it fails, put back when it
//! passes. With [`Admin::wait_until`] the answer waits until the balancer serves the backend,
//! so the request after a `200` can already go to it.
//!
//! The body is parsed and validated by [`parse_registration`], a pure function over bytes
//! (handy for fuzzing); [`BackendSpec`] also parses the command-line form `URL[=WEIGHT]`.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use tower::ServiceExt;
//! use tower_lb::Registry;
//! use tower_lb::admin::Admin;
//! use tower_lb::health::probe_fn;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Each backend's service would be an `HttpBackend`; here just its address.
//! let registry = Registry::new(|uri: &http::Uri| uri.clone());
//! // In a server, `HttpProbe::new("/health")`; here every backend is alive.
//! let probe = probe_fn(|_: &http::Uri| async { Ok::<_, Infallible>(()) });
//! let admin = Admin::new(registry.clone(), probe);
//!
//! let req = http::Request::post("/register")
//!     .header("content-type", "application/json")
//!     .body(Full::new(Bytes::from_static(br#"{"address": "http://127.0.0.1:1080/", "weight": 5}"#)))
//!     .unwrap();
//! let res = admin.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body, r#"{"status":"success","data":{"server":"http://127.0.0.1:1080","weight":5}}"#);
//! assert_eq!(registry.weight(&"http://127.0.0.1:1080".parse().unwrap()), Some(5));
//! # }
//! ```

mod parse;
mod service;

pub use self::parse::{
    BackendSpec, DEFAULT_WEIGHT, MAX_BODY, MAX_WEIGHT, RegisterError, parse_address,
    parse_registration,
};
pub use self::service::{Admin, ResponseFuture};

#[cfg(test)]
mod tests;
