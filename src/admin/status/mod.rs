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
//! A JSend `success` whose `data` is (from `lb --demo` after three requests, one backend
//! shown, wrapped here):
//!
//! ```json
//! {"status":"success","data":{"version":"0.1.0","uptime_secs":3,"algorithm":"RR","connections_open":1,"connections_accepted":4,"requests":3,"in_flight":0,"no_backend":0,"retries":0,"retry_budget_exhausted":0,"queue_waiting":0,"queue_timeouts":0,
//!  "latency_bounds_ms":[0.5,0.75,1.0,1.5,2.0,3.0,4.0,6.0,8.0,12.0,16.0,24.0,32.0,48.0,64.0,96.0,128.0,192.0,256.0,384.0,512.0,768.0,1024.0,1536.0,2048.0,3072.0,4096.0,6144.0,8192.0,12288.0],
//!  "backends":[{"address":"http://127.0.0.1:45973","state":"healthy","weight":3,"in_flight":0,
//!    "requests":1,"responses":{"1xx":0,"2xx":1,"3xx":0,"4xx":0,"5xx":0,"other":0},
//!    "failures":0,"body_errors":0,"retries":0,"ejections":0,"checks":1,"checks_failed":0,
//!    "last_check":"2026-12-04T22:13:54.379Z","last_error":null,
//!    "slow_start_remaining_ms":null,"latency_ms":{"p50":0.875,"p99":0.9974999999999999},
//!    "response_time_buckets":[0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}}
//! ```
//!
//! `requests` counts answers and transport failures; `latency_ms` holds the p50 and p99 of
//! the time to the response head since the backend joined, estimated from its histogram
//! ([`HistogramSnapshot::quantile`](crate::stats::HistogramSnapshot::quantile)), `null`
//! before its first answer; `response_time_buckets` are that histogram's samples per bucket,
//! whose upper bounds are `latency_bounds_ms` (the last bucket is `+Inf`): the page shows p50
//! and p99 over its last minute, from the difference of two samples, the same estimate; `state` is one of `healthy`,
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
