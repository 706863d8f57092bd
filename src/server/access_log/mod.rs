//! The access log: one line per proxied request, written off the request path.
//!
//! With [`Config::access_log`](super::Config::access_log) (`--access-log PATH|-`), each
//! request the [`Server`](super::Server) forwards — or answers itself in the backends' stead,
//! such as a `503` when none is available — gets one line when its response body ends: the
//! time the request arrived, the client's address, method, path and query, protocol, status,
//! the backend that answered, the time to the response head and to the body's end, the body's
//! bytes, and how many times it was retried. Admin requests (`/register`, `/backends`, the
//! [status page](crate::admin::status)) are not logged, so an admin token in a query never
//! reaches the log.
//!
//! # Formats
//!
//! [`Format::Json`] (the default, `--access-log-format json`), one JSON object per line
//! ([JSON Lines](https://jsonlines.org/)); times are milliseconds, `backend` is `null` when
//! no backend answered (a line from `lb --demo --access-log -`):
//!
//! ```text
//! {"time":"2026-12-04T21:47:24.248Z","client":"127.0.0.1","method":"GET","path":"/?n=1","protocol":"HTTP/1.1","status":200,"backend":"http://127.0.0.1:46471","ttfb_ms":0.837,"total_ms":0.878,"bytes":42,"retries":0,"referer":null,"user_agent":"curl/8.14.1"}
//! ```
//!
//! [`Format::Combined`] (`--access-log-format combined`) is Apache's combined log format —
//! `%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"`, which log tools parse — with
//! the balancer's fields after it as `key=value` (times in seconds), as nginx setups append
//! `$upstream_addr` and `$request_time`:
//!
//! ```text
//! 127.0.0.1 - - [04/Dec/2026:21:47:32 +0000] "GET / HTTP/1.1" 200 42 "http://example.test/" "curl/8.14.1" backend=http://127.0.0.1:45527 ttfb=0.000722 total=0.000828 retries=0
//! ```
//!
//! In the combined format, `"`, `\` and bytes outside printable ASCII in the request line and
//! headers are escaped (`\"`, `\\`, `\xhh`), as Apache does, so a client cannot forge a line.
//!
//! # Off the request path
//!
//! A request hands its entry to a bounded channel ([`AccessLog::CAPACITY`] lines) and goes
//! on; a writer thread formats the lines into a buffered writer and flushes once the channel
//! is empty. When the writer is behind by the whole capacity (a disk that stalls), new lines
//! are dropped and [counted](AccessLog::dropped) — a worker never waits for the log. Without
//! an access log, a request carries nothing more than before.
//!
//! # Rotation
//!
//! [`AccessLog::reopen`] makes the writer close the file and open its path again, so that
//! after `mv access.log access.log.1` the next lines go to a new `access.log`: the standalone
//! balancer does so on `SIGUSR1`, as nginx does (`logrotate`'s `postrotate` sends it).
//!
//! # Examples
//!
//! ```no_run
//! use tower_lb::server::access_log::{Format, Target};
//! use tower_lb::server::{Config, Server};
//!
//! # async fn run() -> std::io::Result<()> {
//! let config = Config::new()
//!     .access_log(Target::File("/var/log/tower-lb/access.log".into()))
//!     .access_log_format(Format::Combined);
//! let server = Server::bind(config).await?;
//! let log = server.access_log().unwrap().clone();
//! // After the file was renamed:
//! log.reopen();
//! # Ok(()) }
//! ```

mod body;
mod entry;
mod writer;

pub use self::body::Logged;
pub use self::writer::{AccessLog, Format, Target, UnknownFormat};

pub(crate) use self::body::Pending;
