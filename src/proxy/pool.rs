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

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use http::uri::Authority;
use http_body::Body;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use super::future::Timer;
pub(crate) use super::sender::Sender;
use super::sender::{Http2Conn, to_http2};
use crate::{BackendAddr, BackendScheme, BackendTimeout, BackendUnavailable, BoxError};

/// A new connection to a backend, on its way.
pub(crate) type Connecting<B> = Pin<Box<dyn Future<Output = Result<Sender<B>, BoxError>> + Send>>;

/// How the pool connects and how long it keeps idle connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) connect_timeout: Option<Duration>,
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
            http2: Mutex::default(),
            opening: tokio::sync::Mutex::const_new(()),
            authority: addr.authority().clone(),
            port: addr.port(),
            settings: self.shared.settings,
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

/// The connections to one backend: an idle stack per worker thread (HTTP/1.1), or the shared
/// connections (HTTP/2).
pub(crate) struct Host<B> {
    /// HTTP/2: the open connections, oldest first.
    http2: Mutex<Vec<Arc<Http2Conn<B>>>>,
    /// HTTP/2: held while a connection is being opened.
    opening: tokio::sync::Mutex<()>,
    authority: Authority,
    scheme: BackendScheme,
    port: u16,
    settings: Settings,
    idle: Box<[Mutex<Vec<Idle<B>>>]>,
    pool: Weak<Shared<B>>,
    pool_id: u64,
}

impl<B> Host<B> {
    /// The backend's `host:port`.
    pub(crate) fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Whether requests go to this backend over HTTP/2.
    pub(crate) fn is_http2(&self) -> bool {
        self.scheme.is_http2()
    }

    /// Puts a request written for HTTP/1.1 into the form this backend's connections send.
    pub(crate) fn prepare<T>(&self, req: http::Request<T>) -> http::Request<T> {
        if self.is_http2() {
            to_http2(req, &self.authority)
        } else {
            req
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

    /// The most recently used idle connection of this thread's stack, if any is still open
    /// and not idle for too long, with its response timer if it has one. For HTTP/2, a
    /// stream on a connection with room for one.
    #[inline]
    pub(crate) fn checkout(&self) -> Option<(Sender<B>, Option<Timer>)> {
        if self.is_http2() {
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

    /// Opens a new connection, within the connect timeout; its task is spawned on the current
    /// runtime. For HTTP/2, waits for a connection another request is opening, and takes a
    /// stream on it if it has room.
    pub(crate) fn connect(self: &Arc<Self>) -> Connecting<B>
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        if let Some(idle_timeout) = self.settings.idle_timeout {
            self.start_sweeping(idle_timeout);
        }
        if self.is_http2() {
            let host = Arc::clone(self);
            return Box::pin(async move { host.connect_http2().await });
        }
        let host = Arc::clone(self);
        Box::pin(async move {
            let authority = host.authority.clone();
            match host.open().await? {
                Stream::Tcp(stream) => handshake(stream, authority).await,
                #[cfg(feature = "tls")]
                Stream::Tls(stream) => handshake(*stream, authority).await,
            }
        })
    }

    /// A new connection to the backend, before HTTP: TCP, then TLS for `https://`, both within
    /// the connect timeout.
    async fn open(&self) -> Result<Stream, BoxError> {
        let authority = &self.authority;
        let connecting = async {
            let stream = connect(authority, self.port).await.map_err(|error| {
                BoxError::from(BackendUnavailable::new(authority.clone(), error))
            })?;
            match self.scheme {
                BackendScheme::Http | BackendScheme::H2c => Ok::<_, BoxError>(Stream::Tcp(stream)),
                #[cfg(feature = "tls")]
                BackendScheme::Https => {
                    let tls = self
                        .pool
                        .upgrade()
                        .and_then(|pool| pool.tls.clone())
                        .unwrap_or_else(crate::tls::BackendTls::system);
                    match tls.connect(authority.host(), stream).await {
                        Ok(stream) => Ok(Stream::Tls(Box::new(stream))),
                        Err(error) => {
                            let error = crate::tls::BackendTlsError::new(authority.clone(), error);
                            tracing::warn!(backend = %authority, %error, "backend TLS handshake failed");
                            Err(BackendUnavailable::new(authority.clone(), error)
                                .with_reason()
                                .into())
                        }
                    }
                }
                #[cfg(not(feature = "tls"))]
                BackendScheme::Https => Err(BackendUnavailable::new(
                    authority.clone(),
                    "https backends need the `tls` feature of tower-lb",
                )
                .with_reason()
                .into()),
            }
        };
        match self.settings.connect_timeout {
            Some(timeout) => tokio::time::timeout(timeout, connecting)
                .await
                .map_err(|_| BackendTimeout::connect(authority.clone()))?,
            None => connecting.await,
        }
    }

    /// A stream on a new HTTP/2 connection, or on one opened meanwhile with room for it.
    async fn connect_http2(&self) -> Result<Sender<B>, BoxError>
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let _opening = self.opening.lock().await;
        if let Some(sender) = self.checkout_http2() {
            return Ok(sender);
        }
        let authority = self.authority.clone();
        // Only `h2c://` backends are spoken to over HTTP/2, and they are plain TCP: HTTP/2 over
        // TLS (ALPN h2) to backends is not offered yet.
        #[cfg(feature = "tls")]
        let Stream::Tcp(stream) = self.open().await? else {
            return Err(BackendUnavailable::new(
                authority,
                "HTTP/2 over TLS to backends is not supported",
            )
            .with_reason()
            .into());
        };
        #[cfg(not(feature = "tls"))]
        let Stream::Tcp(stream) = self.open().await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|error| BackendUnavailable::new(authority.clone(), error))?;
        let backend = authority.clone();
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                debug!(backend = %backend, %error, "backend connection failed");
            }
        });
        debug!(backend = %authority, "HTTP/2 connection opened");
        let conn = Arc::new(Http2Conn::new(sender));
        let sender = conn.open();
        lock(&self.http2).push(conn);
        Ok(sender)
    }
}

/// A new connection to a backend, before HTTP.
enum Stream {
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// HTTP/1.1 over `io`, whose connection task is spawned on the current runtime.
async fn handshake<B, T>(io: T, authority: Authority) -> Result<Sender<B>, BoxError>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = http1::Builder::new()
        // Head and body in one buffer and one write rather than `writev`: less kernel
        // time per request, measured.
        .writev(false)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|error| BackendUnavailable::new(authority.clone(), error))?;
    tokio::spawn(async move {
        if let Err(error) = conn.with_upgrades().await {
            debug!(backend = %authority, %error, "backend connection failed");
        }
    });
    Ok(Sender::Http1(sender))
}

impl<B> fmt::Debug for Host<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let idle: usize = self.idle.iter().map(|list| lock(list).len()).sum();
        f.debug_struct("Host")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .field("idle", &idle)
            .finish()
    }
}

/// A TCP connection to `authority`'s host on `port` with `TCP_NODELAY`: straight to an IP
/// address, or to each address a name resolves to in turn.
async fn connect(authority: &Authority, port: u16) -> io::Result<TcpStream> {
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let stream = match host.parse() {
        Ok(ip) => TcpStream::connect(SocketAddr::new(ip, port)).await?,
        Err(_) => {
            let mut last = None;
            let mut connected = None;
            for addr in tokio::net::lookup_host((host, port)).await? {
                match TcpStream::connect(addr).await {
                    Ok(stream) => {
                        connected = Some(stream);
                        break;
                    }
                    Err(error) => last = Some(error),
                }
            }
            match (connected, last) {
                (Some(stream), _) => stream,
                (None, Some(error)) => return Err(error),
                (None, None) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{host} resolves to no address"),
                    ));
                }
            }
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream)
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
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::AtomicUsize;

    use http::{Request, Response};
    use http_body_util::{BodyExt, Empty, Full};
    use hyper::body::Incoming;
    use tokio::net::TcpListener;
    use tower::{Service, ServiceExt};

    use super::*;
    use crate::proxy::{HttpBackend, ProxyClient};

    /// A backend answering `ok` at once to everything but `/hang`, which it never answers;
    /// counts the connections it accepted.
    async fn backend() -> (SocketAddr, Arc<AtomicUsize>) {
        backend_with(true).await
    }

    /// With `keep_alive` off, the backend closes each connection after one response.
    async fn backend_with(keep_alive: bool) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        if req.uri().path() == "/hang" {
                            std::future::pending::<()>().await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from("ok"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(keep_alive)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    async fn get(backend: &mut HttpBackend<Empty<bytes::Bytes>>) {
        let req = Request::get("/").body(Empty::new()).unwrap();
        let res = backend.ready().await.unwrap().call(req).await.unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "ok");
    }

    fn http_backend(
        addr: SocketAddr,
        client: ProxyClient<Empty<bytes::Bytes>>,
    ) -> HttpBackend<Empty<bytes::Bytes>> {
        HttpBackend::new(format!("http://{addr}").parse().unwrap(), client)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_are_reused_once_their_response_ends_and_workers_keep_their_own() {
        let (addr, accepted) = backend().await;
        let client = ProxyClient::builder().build();
        let mut b = http_backend(addr, client.clone());
        for _ in 0..20 {
            get(&mut b).await;
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection for 20 requests"
        );
        // Another backend for the same address shares the pool.
        let mut same = http_backend(addr, client.clone());
        get(&mut same).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        // A worker of a thread-per-core server (a thread with a single-threaded runtime of
        // its own) has connections of its own.
        let mut worker = http_backend(addr, client);
        tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for _ in 0..5 {
                    get(&mut worker).await;
                }
            });
        })
        .await
        .unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn connections_idle_for_longer_than_the_idle_timeout_are_not_reused() {
        let (addr, accepted) = backend().await;
        let client = ProxyClient::builder()
            .response_timeout(None)
            .pool_idle_timeout(Duration::from_secs(20))
            .build();
        let mut b = http_backend(addr, client);
        get(&mut b).await;
        get(&mut b).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(21)).await;
        get(&mut b).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "the stale one is left");
        tokio::time::advance(Duration::from_secs(5)).await;
        get(&mut b).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        let host = b.shared_host();
        assert_eq!(host.idle.iter().map(|l| lock(l).len()).sum::<usize>(), 1);
    }

    #[tokio::test]
    async fn a_pooled_connections_response_timer_is_armed_again_for_each_request() {
        let (addr, accepted) = backend().await;
        let timeout = Duration::from_millis(100);
        let client = ProxyClient::builder().response_timeout(timeout).build();
        let mut b = http_backend(addr, client);
        get(&mut b).await;
        // The connection's timer expires while it is idle in the pool...
        tokio::time::pause();
        tokio::time::advance(timeout * 2).await;
        tokio::time::resume();
        // ...and the next request on it still gets its whole timeout.
        get(&mut b).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "the connection was reused"
        );
        let start = Instant::now();
        let req = Request::get("/hang").body(Empty::new()).unwrap();
        let err = b.ready().await.unwrap().call(req).await.unwrap_err();
        assert!(start.elapsed() >= timeout);
        let err = err.downcast_ref::<BackendTimeout>().expect("a timeout");
        assert!(!err.is_connect());
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn no_connection_is_kept_with_max_idle_zero() {
        let (addr, accepted) = backend().await;
        let client = ProxyClient::builder().pool_max_idle_per_host(0).build();
        let mut b = http_backend(addr, client);
        get(&mut b).await;
        get(&mut b).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "no connection kept");
    }

    #[tokio::test]
    async fn connections_the_backend_closes_are_not_used_again() {
        let (addr, accepted) = backend_with(false).await;
        let mut b = http_backend(addr, ProxyClient::builder().build());
        for _ in 0..10 {
            get(&mut b).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 10);
    }

    /// An HTTP/2 (prior knowledge) backend: `/hang` waits until `release` fires, the rest
    /// answer `ok` at once; counts the connections it accepted.
    async fn h2_backend(release: Arc<tokio::sync::Notify>) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let release = Arc::clone(&release);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let release = Arc::clone(&release);
                        async move {
                            assert_eq!(req.version(), http::Version::HTTP_2);
                            if req.uri().path() == "/hang" {
                                release.notified().await;
                            }
                            Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from("ok"))))
                        }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn h2c_requests_share_one_connection_until_its_stream_limit() {
        let release = Arc::new(tokio::sync::Notify::new());
        let (addr, accepted) = h2_backend(Arc::clone(&release)).await;
        let client = ProxyClient::builder().http2_max_streams(3).build();
        let b: HttpBackend<Empty<bytes::Bytes>> =
            HttpBackend::new(format!("h2c://{addr}").parse().unwrap(), client);
        // Requests arriving together share the connection the first one opens.
        let hanging: Vec<_> = (0..3)
            .map(|_| {
                let mut b = b.clone();
                tokio::spawn(async move {
                    let req = Request::get("/hang").body(Empty::new()).unwrap();
                    let res = b.ready().await.unwrap().call(req).await.unwrap();
                    res.into_body().collect().await.unwrap().to_bytes()
                })
            })
            .collect();
        let host = Arc::clone(b.shared_host());
        tokio::time::timeout(Duration::from_secs(5), async {
            while host.http2_streams() != [3] {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("three streams on one connection");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // The first connection is full: the fourth request opens another.
        get(&mut b.clone()).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(host.http2_streams(), [3, 0]);
        release.notify_waiters();
        for task in hanging {
            assert_eq!(task.await.unwrap(), "ok");
        }
        // Their streams have ended: the first connection takes requests again.
        assert_eq!(host.http2_streams(), [0, 0]);
        for _ in 0..5 {
            get(&mut b.clone()).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
