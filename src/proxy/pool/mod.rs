//! The connection pool behind a [`ProxyClient`](super::ProxyClient): keep-alive HTTP/1.1
//! connections to each backend, over hyper's connection-level client.
//!
//! hyper-util's legacy `Client` costs, for every request: a boxed future for its whole send
//! path, a pool checkout and a check-in under one mutex, each with a `HashMap` lookup (SipHash)
//! of the scheme and authority, a task spawned to put the connection back once it is ready
//! again, and an extension map on every response for the connection's addresses. This pool
//! does less:
//!
//! - each [`HttpBackend`](super::HttpBackend) finds its [`Host`] once, when it is built: no
//!   lookup per request;
//! - idle connections are a stack per backend (a short lock), most recently used on top: one
//!   shared by the threads of multi-threaded runtimes, and one for each thread that runs a
//!   single-threaded runtime of its own (the workers of a thread-per-core server), so that such
//!   a thread only uses connections its own runtime drives. The pool gives a thread its stack on
//!   the thread's first use, from its own counter, among as many as its
//!   [`Settings::threads`] asks for; a connection goes back when its response body has
//!   ended. A connection whose task has not caught up yet when the body ends (on another
//!   thread) goes back all the same, and the next request on it waits for it to be ready;
//! - a request a pooled connection could not send (the backend closed it while idle) comes back
//!   from hyper untouched and goes out on another connection, as hyper-util's
//!   `retry_canceled_requests` does; a request that fails on a new connection is an error;
//! - connections idle for longer than the idle timeout are dropped when met at checkout, and by
//!   a task that sweeps the pool every idle timeout;
//! - a connection keeps its response timer between requests: a request on a pooled connection
//!   moves the timer's deadline later, which is a compare-and-swap while the timer is still
//!   registered, instead of registering a new timer and removing it again.
//!
//! Requests go out in origin form (`GET /path HTTP/1.1`), with the `Host` the caller set.
//!
//! An `https://` backend's connections are TLS (feature `tls`): the TCP connection, then the
//! handshake with the client's [`BackendTls`](crate::tls::BackendTls) (the system's roots
//! when none was given), SNI and the certificate's name being the backend's host, both within
//! the connect timeout. A handshake that fails is a [`BackendUnavailable`] whose message says
//! why ([`BackendTlsError`](crate::tls::BackendTlsError)), logged at `warn`.
//! An `h2c://` backend ([`BackendScheme::H2c`]) gets HTTP/2 connections instead, which carry
//! many requests at once: the pool keeps them in a list per backend, and a request takes a
//! stream on the first one with fewer than [`Settings::max_streams`] requests in flight,
//! opening another only when all are at that limit (one at a time, so that requests arriving
//! together share the connection the first of them opens). A connection stays while it is
//! open; the backend closes one it no longer wants (GOAWAY) and hyper closes one no request
//! holds any more.
//!
//! An `https://` backend is offered ALPN `h2` and `http/1.1` (the default of
//! [`BackendTls`](crate::tls::BackendTls)); what it chooses on a connection decides how that
//! connection is spoken to (RFC 7301; `h2` is HTTP/2 over TLS, RFC 9113 §3.2): `h2` makes it
//! one of the backend's shared HTTP/2 connections, as for `h2c://`, anything else (or no
//! choice) an HTTP/1.1 one for the idle stacks. The [`Host`] remembers the last choice
//! ([`Protocol`]), so that the next request looks for a stream or an idle connection
//! straight away; every new connection's choice updates it, and a connection that cannot be
//! opened forgets it. Until the backend has chosen `http/1.1`, its connections are opened one
//! at a time, as HTTP/2 ones are, so that a burst of first requests to an `h2` backend shares
//! one connection. A request is put in the form of the connection it goes out on
//! ([`Host::prepare`]) only once that connection is known. A connection upgrade (WebSocket),
//! which only HTTP/1.1 has, goes out on an HTTP/1.1 connection whatever the backend chose: a
//! new one offers ALPN `http/1.1` alone (as HAProxy's `ws auto` falls back to HTTP/1.1).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use http::uri::Authority;
use tokio::time::Instant;

mod connect;

use super::future::Timer;
use super::live::Live;
pub(crate) use super::sender::Sender;
use super::sender::{Http2Conn, to_http1, to_http2};
use crate::{BackendAddr, BackendScheme, BoxError};

/// A new connection to a backend, on its way.
pub(crate) type Connecting<B> = Pin<Box<dyn Future<Output = Result<Sender<B>, BoxError>> + Send>>;

/// How long the pool keeps idle connections, and how many. (The connect timeout, which
/// changes while the pool runs, is the client's [`Live`] setting.)
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_idle: usize,
    /// The threads running a single-threaded runtime of their own that send through the pool:
    /// the first this many each get an idle stack of their own; more share them in turn.
    pub(crate) threads: usize,
    /// The requests an HTTP/2 connection carries at once before another is opened.
    pub(crate) max_streams: usize,
}

/// The hosts of one client. Clones share them.
pub(crate) struct Pool<B> {
    shared: Arc<Shared<B>>,
}

/// What a backend's connections are told apart by: its scheme and `host[:port]`.
type HostKey = (BackendScheme, Authority);

struct Shared<B> {
    settings: Settings,
    /// The client's settings that change while it runs: the connect timeout, here.
    live: Arc<Live>,
    /// The TLS client of `https://` backends, if one was given.
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::BackendTls>,
    hosts: Mutex<HashMap<HostKey, Weak<Host<B>>>>,
    sweeping: AtomicBool,
    /// Tells this pool from others in the threads' memory of their stacks.
    id: u64,
    /// Threads of single-threaded runtimes given a stack so far.
    threads_seen: AtomicUsize,
}

impl<B> Pool<B> {
    pub(crate) fn new(
        settings: Settings,
        live: Arc<Live>,
        #[cfg(feature = "tls")] tls: Option<crate::tls::BackendTls>,
    ) -> Self {
        static IDS: AtomicU64 = AtomicU64::new(0);
        Self {
            shared: Arc::new(Shared {
                settings: Settings {
                    threads: settings.threads.max(1),
                    max_streams: settings.max_streams.max(1),
                    ..settings
                },
                live,
                #[cfg(feature = "tls")]
                tls,
                hosts: Mutex::new(HashMap::new()),
                sweeping: AtomicBool::new(false),
                id: IDS.fetch_add(1, Ordering::Relaxed),
                threads_seen: AtomicUsize::new(0),
            }),
        }
    }

    /// The connections to the backend at `addr` (its scheme and authority), shared with
    /// every other caller asking for it while any holds them.
    pub(crate) fn host(&self, addr: &BackendAddr) -> Arc<Host<B>> {
        let key = (addr.scheme(), addr.authority().clone());
        let mut hosts = lock(&self.shared.hosts);
        if let Some(host) = hosts.get(&key).and_then(Weak::upgrade) {
            return host;
        }
        hosts.retain(|_, host| host.strong_count() > 0);
        let lists = 1 + self.shared.settings.threads;
        let host = Arc::new(Host {
            scheme: addr.scheme(),
            protocol: AtomicU8::new(Protocol::Unknown as u8),
            http2: Mutex::default(),
            opening: tokio::sync::Mutex::const_new(()),
            authority: addr.authority().clone(),
            port: addr.port(),
            settings: self.shared.settings,
            live: Arc::clone(&self.shared.live),
            idle: (0..lists).map(|_| Mutex::default()).collect(),
            pool: Arc::downgrade(&self.shared),
            pool_id: self.shared.id,
        });
        hosts.insert(key, Arc::downgrade(&host));
        host
    }
}

impl<B> Clone for Pool<B> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<B> Shared<B> {
    /// Drops the connections idle for too long, or closed, in every host.
    fn sweep(&self, now: Instant) {
        let hosts: Vec<Arc<Host<B>>> = lock(&self.hosts)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for host in hosts {
            for list in host.idle.iter() {
                let stale: Vec<Idle<B>> = {
                    let mut list = lock(list);
                    let (keep, stale) = std::mem::take(&mut *list)
                        .into_iter()
                        .partition(|idle| idle.usable(now, host.settings.idle_timeout));
                    *list = keep;
                    stale
                };
                // Closed outside the lock.
                drop(stale);
            }
            lock(&host.http2).retain(|conn| !conn.is_closed());
        }
    }
}

/// One idle connection.
struct Idle<B> {
    sender: Sender<B>,
    timer: Option<Timer>,
    since: Instant,
}

impl<B> Idle<B> {
    fn usable(&self, now: Instant, idle_timeout: Option<Duration>) -> bool {
        !self.sender.is_closed()
            && idle_timeout
                .is_none_or(|timeout| now.saturating_duration_since(self.since) < timeout)
    }
}

/// What an `https://` backend chose by ALPN on its latest connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Protocol {
    /// No connection yet, or the last one could not be opened.
    Unknown = 0,
    /// `http/1.1`, or no ALPN.
    Http1 = 1,
    /// `h2`.
    Http2 = 2,
}

/// The connections to one backend: an idle stack per worker thread (HTTP/1.1), or the shared
/// connections (HTTP/2).
pub(crate) struct Host<B> {
    /// `https://`: what the backend chose by ALPN last ([`Protocol`] as a `u8`).
    protocol: AtomicU8,
    /// HTTP/2: the open connections, oldest first.
    http2: Mutex<Vec<Arc<Http2Conn<B>>>>,
    /// HTTP/2: held while a connection is being opened.
    opening: tokio::sync::Mutex<()>,
    authority: Authority,
    scheme: BackendScheme,
    port: u16,
    settings: Settings,
    live: Arc<Live>,
    idle: Box<[Mutex<Vec<Idle<B>>>]>,
    pool: Weak<Shared<B>>,
    pool_id: u64,
}

impl<B> Host<B> {
    /// How long opening a connection may take, as the client is set now.
    fn connect_timeout(&self) -> Option<Duration> {
        self.live.connect_timeout()
    }

    /// The backend's `host:port`.
    pub(crate) fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Whether requests go to this backend over HTTP/2: an `h2c://` backend, or an
    /// `https://` one whose last connection chose `h2`.
    pub(crate) fn is_http2(&self) -> bool {
        self.scheme.is_http2() || (self.scheme.is_tls() && self.protocol() == Protocol::Http2)
    }

    /// Whether a new connection may be HTTP/2: `h2c://`, or `https://` until the backend has
    /// chosen `http/1.1`.
    fn may_be_http2(&self) -> bool {
        self.scheme.is_http2() || (self.scheme.is_tls() && self.protocol() != Protocol::Http1)
    }

    /// What the backend chose by ALPN last.
    pub(crate) fn protocol(&self) -> Protocol {
        match self.protocol.load(Ordering::Acquire) {
            1 => Protocol::Http1,
            2 => Protocol::Http2,
            _ => Protocol::Unknown,
        }
    }

    /// Remembers what the backend chose on its newest connection (or that it is not known).
    fn learn(&self, protocol: Protocol) {
        if !self.scheme.is_tls() {
            return;
        }
        let old = self.protocol.swap(protocol as u8, Ordering::AcqRel);
        if old != protocol as u8 && protocol != Protocol::Unknown {
            tracing::debug!(backend = %self.authority, ?protocol, "backend protocol chosen by ALPN");
        }
    }

    /// Puts a request written for HTTP/1.1 into the form `sender`'s connection sends: HTTP/2's
    /// on a shared connection; back to HTTP/1.1's (origin form, `Host`) otherwise, for a
    /// request that was put in HTTP/2's form for a connection that closed before sending it.
    pub(crate) fn prepare<T>(&self, req: http::Request<T>, sender: &Sender<B>) -> http::Request<T> {
        if sender.is_shared() {
            to_http2(req, &self.authority, self.scheme)
        } else {
            to_http1(req)
        }
    }

    /// HTTP/2: a stream on the oldest open connection below its stream limit, if any.
    fn checkout_http2(&self) -> Option<Sender<B>> {
        let mut conns = lock(&self.http2);
        conns.retain(|conn| !conn.is_closed());
        let max = self.settings.max_streams;
        let conn = conns.iter().find(|conn| conn.streams() < max)?;
        Some(conn.open())
    }

    /// HTTP/2 connections open and requests in flight on each, oldest first.
    #[cfg(test)]
    pub(crate) fn http2_streams(&self) -> Vec<usize> {
        lock(&self.http2)
            .iter()
            .map(|conn| conn.streams())
            .collect()
    }

    /// Whether `req` must go out on an HTTP/1.1 connection of this backend: a connection
    /// upgrade (WebSocket) to an `https://` backend, which might choose `h2` otherwise. (An
    /// `h2c://` backend gets no upgrade: the client's is declined before.)
    pub(crate) fn needs_http1<T>(&self, req: &http::Request<T>) -> bool {
        self.scheme.is_tls() && req.headers().contains_key(http::header::UPGRADE)
    }

    /// The most recently used idle connection of this thread's stack, if any is still open
    /// and not idle for too long, with its response timer if it has one. For HTTP/2 (unless
    /// `http1`), a stream on a connection with room for one.
    #[inline]
    pub(crate) fn checkout(&self, http1: bool) -> Option<(Sender<B>, Option<Timer>)> {
        if self.is_http2() && !http1 {
            return self.checkout_http2().map(|sender| (sender, None));
        }
        let mut list = lock(&self.idle[self.list()]);
        let mut top = list.pop()?;
        let idle_timeout = self.settings.idle_timeout;
        let now = idle_timeout.map(|_| Instant::now());
        // Older ones lie below; drop any stale one met on the way.
        while now.is_some_and(|now| !top.usable(now, idle_timeout)) {
            top = list.pop()?;
        }
        Some((top.sender, top.timer))
    }

    /// Puts a connection whose response has ended back, or drops it when it is closed or the
    /// stack is full.
    ///
    /// Its task may not have taken in the end of the response yet (when it runs on another
    /// thread): it is put back all the same, and whoever takes it waits the moment it takes to
    /// be ready.
    pub(crate) fn checkin(&self, sender: Sender<B>, timer: Option<Timer>) {
        // An HTTP/2 stream ends when its sender is dropped; the connection stays listed.
        if sender.is_shared() || sender.is_closed() || self.settings.max_idle == 0 {
            return;
        }
        self.push(sender, timer);
    }

    fn push(&self, sender: Sender<B>, timer: Option<Timer>) {
        let since = Instant::now();
        let full = {
            let mut list = lock(&self.idle[self.list()]);
            if list.len() >= self.settings.max_idle {
                Some((sender, timer))
            } else {
                list.push(Idle {
                    sender,
                    timer,
                    since,
                });
                None
            }
        };
        // Closed outside the lock.
        drop(full);
    }

    /// This thread's idle stack: its own if it runs a single-threaded runtime, else the shared
    /// one (0). Asked of the pool on the thread's first use, then remembered by the thread.
    #[inline]
    fn list(&self) -> usize {
        STACKS.with(|stacks| {
            let mut stacks = stacks.borrow_mut();
            if let Some(&(_, list)) = stacks.iter().find(|(id, _)| *id == self.pool_id) {
                return list;
            }
            let list = self
                .pool
                .upgrade()
                .map_or(0, |pool| pool.stack_for_this_thread());
            if stacks.len() == REMEMBERED {
                stacks.remove(0);
            }
            stacks.push((self.pool_id, list));
            list
        })
    }

    /// Starts the pool's sweeping task, once.
    fn start_sweeping(&self, every: Duration)
    where
        B: Send + 'static,
    {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        if pool.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            pool.sweeping.store(false, Ordering::Release);
            return;
        };
        let pool = Arc::downgrade(&pool);
        runtime.spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                let Some(pool) = pool.upgrade() else {
                    break;
                };
                pool.sweep(Instant::now());
            }
        });
    }
}

impl<B> fmt::Debug for Host<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let idle: usize = self.idle.iter().map(|list| lock(list).len()).sum();
        f.debug_struct("Host")
            .field("scheme", &self.scheme)
            .field("protocol", &self.protocol())
            .field("authority", &self.authority)
            .field("idle", &idle)
            .finish()
    }
}

impl<B> Shared<B> {
    /// The idle stack of the calling thread, on its first use: one of its own, in turn, if
    /// it runs a single-threaded runtime, whose connections only it drives; the shared one
    /// for the threads of a multi-threaded runtime, whose tasks move between threads.
    fn stack_for_this_thread(&self) -> usize {
        let single = tokio::runtime::Handle::try_current()
            .is_ok_and(|rt| rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        if !single {
            return 0;
        }
        let n = self.threads_seen.fetch_add(1, Ordering::Relaxed);
        1 + n % self.settings.threads
    }
}

/// How many pools a thread remembers its stack in; one it forgot gives it a stack again.
const REMEMBERED: usize = 8;

thread_local! {
    /// The idle stack this thread was given in each pool it used lately: (pool id, stack).
    static STACKS: RefCell<Vec<(u64, usize)>> = const { RefCell::new(Vec::new()) };
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
