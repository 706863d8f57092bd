//! The live status page: `GET /status` (one self-contained HTML page) and `GET /status.json`
//! (the numbers it polls).
//!
//! Like HAProxy's stats page or the NGINX Plus dashboard, it shows every backend of a running
//! [`Server`](crate::server::Server) — address, state (healthy, unhealthy, ejected, draining,
//! slow start, each with its colour), weight, requests in flight, answers by status class,
//! transport failures, ejections, the last health check and its error, the p50 and p99
//! response times, and a requests/s
//! sparkline over the last five minutes — and the balancer's totals: client connections,
//! requests/s, `503`s, retries, the algorithm, uptime and version. The page polls
//! `/status.json` every second; the rates and the sparklines are computed in the page from
//! successive counter samples, so the server keeps no history.
//!
//! The page is one HTML document with its CSS and JavaScript inlined (`page.html`,
//! `page.css` and `page.js` next to this file, embedded with `include_str!`): no CDN, no build
//! step, and a `Content-Security-Policy` that lets it talk to its own origin only.
//!
//! # Who may see it
//!
//! The [admin API's rules](super#who-may-use-it) apply to both routes. A browser cannot send
//! an `Authorization` header when it opens a page, so `GET /status` (the page alone, which
//! holds no numbers) also takes the admin token as a query parameter:
//! `http://127.0.0.1:8080/status?token=s3cr3t`. The page then sends it as
//! `Authorization: Bearer …` on every request it makes — the polls of `/status.json` and its
//! admin actions, which call the admin API's existing routes: **drain** (`DELETE
//! /register`) and **weight** (`POST /register`). A refusal (`401`, `403`) is shown on the
//! page. The page and its JSON are admin paths, so the
//! [access log](crate::server::access_log) never records the token.
//!
//! # `GET /status.json`
//!
//! A JSend `success` whose `data` is (values from a real run):
//!
//! ```json
//! {"version":"0.1.0","uptime_secs":42,"algorithm":"WRR",
//!  "connections_open":3,"connections_accepted":17,"requests":1200,"in_flight":1,
//!  "no_backend":0,"retries":2,"retry_budget_exhausted":0,"queue_waiting":0,"queue_timeouts":0,
//!  "backends":[{"address":"http://127.0.0.1:18490","state":"healthy","weight":1,
//!    "in_flight":1,"requests":600,"responses":{"1xx":0,"2xx":598,"3xx":0,"4xx":2,"5xx":0,"other":0},
//!    "failures":0,"body_errors":0,"retries":1,"ejections":0,"checks":40,"checks_failed":0,
//!    "last_check":"2026-12-04T21:40:00.125Z","last_error":null,"slow_start_remaining_ms":null,
//!    "latency_ms":{"p50":0.6,"p99":2.1}}]}
//! ```
//!
//! `requests` counts answers and transport failures; `latency_ms` holds the p50 and p99 of
//! the time to the response head since the backend joined, estimated from its histogram
//! ([`HistogramSnapshot::quantile`](crate::stats::HistogramSnapshot::quantile)), `null`
//! before its first answer; `state` is one of `healthy`,
//! `unhealthy`, `ejected`, `draining` and `slow start` (healthy, still ramping up).

mod page;
mod report;

pub use self::report::StatusSource;

pub(crate) use self::page::page;
pub(crate) use self::report::report;

/// The path of the status page (`GET`).
pub const STATUS_PATH: &str = "/status";

/// The path of the numbers the status page polls (`GET`).
pub const STATUS_JSON_PATH: &str = "/status.json";
