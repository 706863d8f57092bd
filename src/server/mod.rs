//! The standalone balancer: the library's pieces stacked into an HTTP server.
//!
//! A [`Server`] listens on one address and, for every request:
//!
//! - `/register` and `/backends` go to the [`Admin`] API, which
//!   registers (after one check), drains and lists the backends of the server's [`Registry`],
//!   and so does `/metrics` (the Prometheus metrics of [`ServerStats`], with the `metrics`
//!   feature)
//!   — from loopback peers only, unless [`Config::admin_token`] is set. With
//!   [`Config::admin_bind`] the admin API has its own listener and the main one forwards those
//!   paths to the backends like any other;
//! - anything else goes to a [`LoadBalance`](crate::LoadBalance) with the configured
//!   [`Algo`] over the registry's backends, each an
//!   [`HttpBackend`] under a
//!   [`HealthCheckLayer`] with an
//!   [`HttpProbe`]: a backend that fails its check is `Pending` and
//!   skipped until it passes again. Errors become JSend responses
//!   ([`proxy::error_response`](crate::proxy::error_response)): `503
//!   {"status":"error","data":"error no available server"}` when no backend is ready, `502`
//!   or `504` when the backend fails. A request that failed before the backend could act on
//!   it (connection refused, or closed before any byte of a response) is
//!   [retried](crate::retry) on another backend: idempotent methods without a body, up to
//!   [`Config::retries`] times, within a budget of about 20 % extra load.
//!
//! ```text
//!  client ──▶ Server ──/register──▶ Admin ──probe, register──▶ Registry
//!               │                                                 │ discover
//!               └──▶ Retry ──▶ LoadBalance ◀── HealthCheckDiscover ◀┘
//!                                  │ PeerAddr in extensions
//!                                  ▼
//!                              HttpBackend ──▶ backend
//! ```
//!
//! Connections are served by hyper (HTTP/1.1 with keep-alive, HTTP/1.0, and HTTP/2 over
//! cleartext with prior knowledge, told apart by the connection's first bytes, all forwarded
//! as HTTP/1.1; upgrades such as WebSocket are [tunnelled](crate::proxy#upgrades)) with
//! `TCP_NODELAY`. A keep-alive HTTP/1 connection idle for 100 ms between two requests is
//! taken back from hyper, which frees its buffers, and served anew when the next request
//! arrives: an idle connection costs a few KiB (about 7 KiB in all with 10,000 of them), not
//! hyper's 16 KiB of buffers. The request path allocates little of its own beyond the
//! [`PeerAddr`](crate::PeerAddr) extension (and, for a request that may be retried, a copy of
//! its head and a [`Tried`](crate::balance::Tried)): the response body is an
//! [`Either`](http_body_util::Either) of the backend's streamed body and the server's own JSend
//! bodies, and the response future is a plain enum.
//!
//! With [`Config::workers`] above 1 the server is thread-per-core, as nginx and HAProxy are:
//! each worker thread runs a single-threaded runtime with a listening socket of its own on the
//! address (`SO_REUSEPORT`) and reuses only the backend connections it opened, so a request
//! never changes threads; the balancer, registry, health checks and connection cap are
//! shared.
//!
//! # Connections
//!
//! What protects the balancer and its backends from slow, idle, oversized or too many
//! clients, each a [`Config`] setting (and a flag of `examples/lb`):
//!
//! | setting | default | what happens |
//! |---|---|---|
//! | [`client_header_timeout`](Config::client_header_timeout) | 10 s | a request head not complete in time (from the connect, or from its first byte on a keep-alive connection) gets `408` and the connection is closed; one that never started is closed silently |
//! | [`idle_timeout`](Config::idle_timeout) | 60 s | a keep-alive connection idle that long between requests (HTTP/2: with no stream open) is closed; an HTTP/2 client gets `GOAWAY` first |
//! | [`client_timeout`](Config::client_timeout) | 60 s | a client that reads nothing of its response for that long (the connection's writes stay blocked) is cut off |
//! | [`max_header_size`](Config::max_header_size) | 64 KiB | a larger request head gets `431` and the connection is closed |
//! | [`max_connections`](Config::max_connections) | 10 000 | at the cap the server stops accepting; new connections wait in the kernel's backlog |
//! | [`ProxyClientBuilder::connect_timeout`](crate::proxy::ProxyClientBuilder::connect_timeout) | 1 s | `504` |
//! | [`ProxyClientBuilder::response_timeout`](crate::proxy::ProxyClientBuilder::response_timeout) | 30 s | `504` |
//! | [`ProxyClientBuilder::max_conns_per_backend`](crate::proxy::ProxyClientBuilder::max_conns_per_backend) | no cap | a backend at its cap takes no more requests until one's response body ends |
//! | [`queue_timeout`](Config::queue_timeout) | 0 | when no backend can take a request, wait this long for one before the `503` |
//! | [`shutdown_timeout`](Config::shutdown_timeout) | 30 s | the grace period of a graceful shutdown |
//!
//! A [`Reload`] changes the three client timeouts for the connections accepted after it, and
//! the connect and response timeouts and the per-backend cap for the requests that start after
//! it; the rest of this table takes a restart.
//!
//! The answers the server writes itself are JSend: `{"status":"fail","data":{"title":"request
//! timeout"}}` (408), `"bad request"` (400, a head that does not parse), `"request header
//! fields too large"` (431), `"uri too long"` (414); `{"status":"error","data":"error backend
//! timeout"}` (504) and the rest of [`proxy::error_response`](crate::proxy::error_response).
//!
//! The two client timeouts are kept on the socket rather than by hyper, whose
//! `header_read_timeout` also bounds the idle time between keep-alive requests and closes
//! without a response. A request in flight is not timed by them (the backend timeouts apply);
//! an upgraded connection is a tunnel to its backend, with no timeout, until either side
//! closes.
//!
//! [`Server::run`] stops gracefully: it stops accepting when its shutdown future completes,
//! closes idle keep-alive connections at once, lets requests in flight and open tunnels
//! finish for up to [`Config::shutdown_timeout`], then closes whatever is left and returns
//! `Ok`.
//!
//! # TLS
//!
//! With [`Config::tls`] the main listener (every worker's) is HTTPS only: each accepted
//! connection does its TLS handshake ([`ServerTls`]: certificates by
//! SNI, TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`) within
//! [`client_header_timeout`](Config::client_header_timeout), then is served as a plain one is
//! (the same timeouts, parking and shutdown; HTTP/2 when ALPN chose it), its requests carrying
//! [`ClientTls`](crate::proxy::ClientTls) so that backends see `X-Forwarded-Proto: https`. A
//! failed or timed-out handshake closes that connection only (logged at debug, counted by
//! [`ServerTls::handshake_failures`](crate::tls::ServerTls::handshake_failures)).
//! [`Server::tls`] reloads the certificates for the next handshakes. The admin listener of
//! [`Config::admin_bind`] stays plain, and [`Config::redirect_http`] adds a plain listener that
//! answers `308` to `https://`.
//!
//! `examples/lb/` is the command-line program around it.
//!
//! # Examples
//!
//! ```
//! use http_body_util::{BodyExt, Empty};
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower_lb::Algo;
//! use tower_lb::server::{Config, Server};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let config = Config::new().bind(([127, 0, 0, 1], 0)).algo(Algo::WeightedRoundRobin);
//! let server = Server::bind(config).await?;
//! let url = format!("http://{}/", server.local_addr());
//! // Backends can be registered here, before `run`:
//! // server.registry().register("http://127.0.0.1:1080".parse().unwrap(), 5);
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let running = tokio::spawn(server.run(async { let _ = stopped.await; }));
//!
//! // No backend yet.
//! let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
//! let res = client.get(url.parse().unwrap()).await.unwrap();
//! assert_eq!(res.status(), 503);
//! let body = res.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body, r#"{"status":"error","data":"error no available server"}"#);
//!
//! stop.send(()).unwrap();
//! running.await.unwrap()?;
//! # Ok(())
//! # }
//! ```

pub mod access_log;
mod config;
mod conn;
#[cfg(feature = "etcd")]
mod etcd;
mod reload;
mod service;
mod stats;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};

use self::access_log::AccessLog;
use self::conn::Connections;
use self::service::{Client, Handler, Routes, Serve};
#[cfg(doc)]
use crate::admin::Admin;
use crate::health::{Health, HealthMonitor};
#[cfg(doc)]
use crate::health::{HealthCheckLayer, HttpProbe};
use crate::proxy::HttpBackend;
use crate::tls::ServerTls;
use crate::{Algo, BackendAddr, Registry, Weighted};

pub use self::config::Config;
#[cfg(feature = "etcd")]
pub use self::config::EtcdConfig;
pub use self::reload::{Reload, Reloaded};
pub use self::service::{Backend, Balancer, ResponseBody};
pub use self::stats::ServerStats;

/// Pending connections the kernel queues before `accept`.
const BACKLOG: u32 = 4096;

/// The standalone balancer, bound and ready to run. See the [module docs](self).
pub struct Server {
    /// One listening socket per worker (one in all without workers of its own), all on
    /// `local_addr`; registered with a runtime only once a worker runs on it.
    listeners: Vec<std::net::TcpListener>,
    local_addr: SocketAddr,
    /// The separate admin listener and its address, with [`Config::admin_bind`].
    admin: Option<(TcpListener, SocketAddr)>,
    /// The plain listener redirecting to HTTPS and its address, with [`Config::redirect_http`].
    redirect: Option<(TcpListener, SocketAddr)>,
    /// TLS on the main listeners, with [`Config::tls`].
    tls: Option<ServerTls>,
    registry: Registry<BackendAddr, Backend>,
    /// Swapped whole by a [`Reload`].
    routes: Arc<ArcSwap<Routes>>,
    reload: Reload,
    /// DNS and backends-file discovery, stopped when the server is.
    discovery: reload::Tasks,
    /// Where proxied requests are logged, with [`Config::access_log`].
    access_log: Option<AccessLog>,
    algo: Algo,
    health_interval: Duration,
    shutdown_timeout: Duration,
    connections: Connections,
    /// Keeps the registry equal to etcd's keys, with [`Config::etcd`]; stops when dropped.
    #[cfg(feature = "etcd")]
    etcd: Option<crate::discover::EtcdSync>,
    stats: ServerStats,
}

impl Server {
    /// Listens on `config.addr`, builds the balancer and registers the configured backends.
    ///
    /// Must be called within a tokio runtime (the balancer and health checks run tasks);
    /// nothing is served until [`run`](Self::run).
    pub async fn bind(config: Config) -> io::Result<Self> {
        let listeners = listen_all(config.addr, config.workers)?;
        let local_addr = listeners[0].local_addr()?;
        let admin_listener = match config.admin_addr {
            Some(addr) => {
                let listener = listen(addr)?;
                let addr = listener.local_addr()?;
                Some((listener, addr))
            }
            None => None,
        };
        let redirect_listener = match config.redirect_http {
            Some(addr) => {
                let listener = listen(addr)?;
                let addr = listener.local_addr()?;
                Some((listener, addr))
            }
            None => None,
        };

        // Each worker reuses only the backend connections it opened; so does the runtime
        // `run` runs on (health checks, the admin listener), one more.
        let client: Client = config
            .proxy_client
            .clone()
            .pool_threads(config.workers + 1)
            .build();
        let connections = Connections::new(
            conn::Settings {
                header_timeout: config.client_header_timeout,
                idle_timeout: config.idle_timeout,
                client_timeout: config.client_timeout,
                max_header_size: config.max_header_size,
                max_connections: config.max_connections,
            },
            client.clone(),
        );
        // A `BackendAddr` is valid once parsed: making its service cannot fail.
        let make_client = client.clone();
        let registry = Registry::new(move |addr: &BackendAddr| {
            HttpBackend::new(addr.clone(), make_client.clone())
        });
        #[cfg(feature = "etcd")]
        let (etcd, registrations) = match &config.etcd {
            Some(etcd) => {
                let (sync, registrations) =
                    etcd::connect(etcd, &registry, config.health_timeout).await?;
                (Some(sync), Some(registrations))
            }
            None => (None, None),
        };
        #[cfg(feature = "etcd")]
        let static_backends = etcd.is_none();
        #[cfg(not(feature = "etcd"))]
        let static_backends = true;
        if static_backends {
            for backend in &config.backends {
                registry.register(backend.address().clone(), backend.weight());
            }
        }
        let discovery = reload::start_discovery(&config, &registry);

        let access_log = match config.access_log.clone() {
            Some(target) => Some(AccessLog::open(target, config.access_log_format)?),
            None => None,
        };

        // What every build of the routes shares: the access log, the etcd write-through, and
        // the status page's and `/metrics`'s sources. Those read the routes in use through
        // `stats`, which is told where they are once they are built.
        let stats = ServerStats::new(Arc::clone(connections.counters()));
        let mut shared = reload::Shared {
            access_log: access_log.clone(),
            status: Some(crate::admin::status::StatusSource::new({
                let stats = stats.clone();
                move || stats.snapshot()
            })),
            ..reload::Shared::default()
        };
        #[cfg(feature = "etcd")]
        {
            shared.etcd = registrations;
        }
        #[cfg(feature = "metrics")]
        {
            shared.metrics = Some(Arc::new(stats.registry()));
        }
        let routes = Arc::new(ArcSwap::from_pointee(reload::routes(
            &config, &registry, &client, &shared,
        )));
        stats.set_routes(&routes);
        let reload = Reload::new(
            Arc::clone(&routes),
            registry.clone(),
            client,
            connections.timeouts().clone(),
            config.clone(),
            shared,
        );

        Ok(Self {
            listeners,
            local_addr,
            admin: admin_listener,
            redirect: redirect_listener,
            tls: config.tls.clone(),
            registry,
            routes,
            reload,
            discovery,
            access_log,
            stats,
            algo: config.algo,
            health_interval: config.health_interval,
            shutdown_timeout: config.shutdown_timeout,
            connections,
            #[cfg(feature = "etcd")]
            etcd,
        })
    }

    /// A handle that applies a new [`Config`] to this server while it runs: see [`Reload`]
    /// for what changes live.
    pub fn reload_handle(&self) -> Reload {
        self.reload.clone()
    }

    /// The address the server listens on (with the port chosen when `0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the separate admin listener, with [`Config::admin_bind`] (with the port
    /// chosen when `0` was asked for).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|&(_, addr)| addr)
    }

    /// The address of the plain listener that redirects to HTTPS, with
    /// [`Config::redirect_http`] (with the port chosen when `0` was asked for).
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect.as_ref().map(|&(_, addr)| addr)
    }

    /// The main listener's TLS, with [`Config::tls`]: [`ServerTls::reload`] on it (or on any
    /// clone of the one configured) swaps the certificates for the next handshakes.
    pub fn tls(&self) -> Option<&ServerTls> {
        self.tls.as_ref()
    }

    /// The set of backends: register and deregister them programmatically, as `/register`
    /// does (but without the check at registration). Keys are normalised addresses
    /// ([`BackendAddr`]).
    pub fn registry(&self) -> &Registry<BackendAddr, Backend> {
        &self.registry
    }

    /// The access log, with [`Config::access_log`]: [`reopen`](AccessLog::reopen) it after
    /// a rotation.
    pub fn access_log(&self) -> Option<&AccessLog> {
        self.access_log.as_ref()
    }

    /// The health of every registered backend.
    ///
    /// A [`Reload`] that rebuilds the balancer starts new health checks: this monitor then
    /// stops following them.
    pub fn health(&self) -> HealthMonitor<Weighted<BackendAddr>> {
        self.routes.load().monitor.clone()
    }

    /// The balancer, with its live set of backends and their counters.
    ///
    /// A [`Reload`] that changes a live setting other than the backends swaps in a new
    /// balancer: this one then stops getting requests.
    pub fn balancer(&self) -> Balancer {
        self.routes.load().balancer.clone()
    }

    /// Where every number the server keeps is read, now and while it runs: the balancer's
    /// and its backends', with their health, the client connections, the queue and the
    /// retries. See
    /// [`stats`](crate::stats) for what each means.
    pub fn stats(&self) -> ServerStats {
        self.stats.clone()
    }

    /// Serves until `shutdown` completes, then shuts down gracefully: stops accepting,
    /// closes idle connections, lets requests in flight and upgraded connections finish (for
    /// at most [`Config::shutdown_timeout`]) and closes the rest.
    ///
    /// With [`Config::workers`] above 1, the workers' threads start here and are joined before
    /// this returns.
    ///
    /// Errors on single connections, and failures to accept, are logged and never stop it.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        tracing::info!(
            addr = %self.local_addr,
            algo = %self.algo,
            health_interval = ?self.health_interval,
            backends = self.registry.len(),
            workers = self.listeners.len(),
            tls = self.tls.is_some(),
            redirect_http = %self.redirect_addr().map_or_else(|| "off".to_owned(), |a| a.to_string()),
            admin = %self.admin_addr().map_or_else(|| "same listener".to_owned(), |a| a.to_string()),
            "tower-lb listening",
        );
        let https_port = self.local_addr.port();
        let Self {
            mut listeners,
            admin,
            redirect,
            tls,
            routes,
            shutdown_timeout,
            connections,
            discovery,
            ..
        } = self;
        // Discovery stops with the server.
        let _discovery = discovery;
        let admin_listener = admin.as_ref().map(|(listener, _)| listener);
        let redirect_listener = redirect
            .as_ref()
            .map(|(listener, _)| (listener, https_port));
        let main_serve = match admin_listener {
            Some(_) => Serve::Proxy,
            None => Serve::All,
        };
        if listeners.len() == 1 {
            let listener = TcpListener::from_std(listeners.remove(0))?;
            let listeners = Listeners {
                main: Some((&listener, main_serve)),
                tls: tls.as_ref(),
                admin: admin_listener,
                redirect: redirect_listener,
            };
            listeners.serve(&connections, &routes, shutdown).await;
            drop(listener);
            drop(admin);
            drop(redirect);
            connections.shutdown(shutdown_timeout).await;
            return Ok(());
        }

        // Workers of their own: one thread, runtime and listening socket each. This runtime
        // keeps the admin listener, if any, and the shutdown.
        let runtimes = listeners
            .iter()
            .map(|_| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            })
            .collect::<io::Result<Vec<_>>>()?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut workers = Vec::with_capacity(listeners.len());
        for (index, (runtime, listener)) in runtimes.into_iter().zip(listeners).enumerate() {
            let worker = Worker {
                index,
                listener,
                serve: main_serve,
                tls: tls.clone(),
                connections: connections.sibling(),
                routes: Arc::clone(&routes),
                stopped: stopped.clone(),
                grace: shutdown_timeout,
            };
            let (done, finished) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("tower-lb-worker-{index}"))
                .spawn(move || {
                    runtime.block_on(worker.run());
                    drop(runtime);
                    let _ = done.send(());
                });
            match thread {
                Ok(thread) => workers.push((thread, finished)),
                Err(error) => {
                    // The workers started so far stop before the error is returned.
                    stop.send_replace(true);
                    for (thread, finished) in workers {
                        let _ = finished.await;
                        let _ = thread.join();
                    }
                    return Err(error);
                }
            }
        }
        let listeners = Listeners {
            main: None,
            tls: None,
            admin: admin_listener,
            redirect: redirect_listener,
        };
        listeners.serve(&connections, &routes, shutdown).await;
        stop.send_replace(true);
        drop(admin);
        drop(redirect);
        let admin_done = connections.shutdown(shutdown_timeout);
        let workers_done = async {
            for (thread, finished) in workers {
                // The thread has finished its work when this resolves (or panicked).
                let _ = finished.await;
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
        };
        tokio::join!(admin_done, workers_done);
        Ok(())
    }
}

/// One worker of a server with [`Config::workers`] above 1: its own thread, runtime and
/// listening socket.
struct Worker {
    index: usize,
    listener: std::net::TcpListener,
    serve: Serve,
    tls: Option<ServerTls>,
    connections: Connections,
    routes: Arc<ArcSwap<Routes>>,
    stopped: tokio::sync::watch::Receiver<bool>,
    grace: Duration,
}

impl Worker {
    async fn run(mut self) {
        match TcpListener::from_std(self.listener) {
            Ok(listener) => {
                let listeners = Listeners {
                    main: Some((&listener, self.serve)),
                    tls: self.tls.as_ref(),
                    admin: None,
                    redirect: None,
                };
                let stopped = async {
                    let _ = self.stopped.wait_for(|stopped| *stopped).await;
                };
                listeners
                    .serve(&self.connections, &self.routes, stopped)
                    .await;
            }
            Err(error) => tracing::error!(worker = self.index, %error, "worker cannot listen"),
        }
        self.connections.shutdown(self.grace).await;
    }
}

/// The listeners one runtime accepts on.
struct Listeners<'a> {
    main: Option<(&'a TcpListener, Serve)>,
    /// TLS on the main listener.
    tls: Option<&'a ServerTls>,
    admin: Option<&'a TcpListener>,
    /// The plain listener redirecting to HTTPS, and the HTTPS port.
    redirect: Option<(&'a TcpListener, u16)>,
}

impl Listeners<'_> {
    /// Accepts and serves connections until `shutdown` completes.
    async fn serve(
        &self,
        connections: &Connections,
        routes: &Arc<ArcSwap<Routes>>,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        // A place under the connection cap, taken before the next accept on the main listener.
        let mut admitted = None;
        loop {
            // The admin listener first: its rare connections must not wait behind a busy
            // main listener.
            let (stream, peer, serve, permit) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = accept_on(self.admin) => match accepted {
                    Ok((stream, peer)) => (stream, peer, Serve::Admin, None),
                    Err(error) => {
                        accept_error(error).await;
                        continue;
                    }
                },
                accepted = accept_on(self.redirect.map(|(listener, _)| listener)) => match accepted {
                    Ok((stream, peer)) => {
                        let https_port = self.redirect.map_or(443, |(_, port)| port);
                        (stream, peer, Serve::Redirect { https_port }, None)
                    }
                    Err(error) => {
                        accept_error(error).await;
                        continue;
                    }
                },
                // At the connection cap this waits, and connections queue in the backlog.
                permit = connections.admit(), if admitted.is_none() && self.main.is_some() => {
                    admitted = Some(permit);
                    continue;
                }
                accepted = accept_on(self.main.map(|(listener, _)| listener)), if admitted.is_some() => {
                    match accepted {
                        Ok((stream, peer)) => {
                            let serve = self.main.map_or(Serve::All, |(_, serve)| serve);
                            (stream, peer, serve, admitted.take().flatten())
                        }
                        Err(error) => {
                            accept_error(error).await;
                            continue;
                        }
                    }
                }
            };
            // Only the main listener is TLS.
            let tls = self
                .tls
                .filter(|_| matches!(serve, Serve::All | Serve::Proxy));
            let handler = Handler {
                routes: Arc::clone(routes),
                peer,
                serve,
                tls: tls.is_some(),
            };
            match tls {
                Some(tls) => connections.serve_tls(stream, peer, permit, tls, handler),
                None => connections.serve(stream, peer, permit, handler),
            }
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut f = f.debug_struct("Server");
        f.field("local_addr", &self.local_addr)
            .field("algo", &self.algo)
            .field("registry", &self.registry);
        #[cfg(feature = "etcd")]
        f.field("etcd", &self.etcd);
        f.finish_non_exhaustive()
    }
}

/// A listener with `SO_REUSEADDR` and a deep backlog.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::from_std(listen_std(addr, false)?)
}

/// `workers` listening sockets on `addr`, with `SO_REUSEPORT` when there are several, so the
/// kernel spreads connections over them; port `0` is the same free port for all.
fn listen_all(addr: SocketAddr, workers: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let shared = workers > 1;
    let first = listen_std(addr, shared)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(listen_std(addr, shared)?);
    }
    Ok(listeners)
}

/// A non-blocking listening socket with `SO_REUSEADDR`, a deep backlog and, if `shared`,
/// `SO_REUSEPORT`.
fn listen_std(addr: SocketAddr, shared: bool) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if shared {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG as i32)?;
    Ok(socket.into())
}

/// Accepts on `listener`; never, without one.
async fn accept_on(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Errors of `accept`: those of one connection are skipped; anything else (out of file
/// descriptors or memory) is logged and waited out, rather than retried in a busy loop.
async fn accept_error(error: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    ) {
        return;
    }
    tracing::warn!(%error, "accept failed; retrying in 50 ms");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Whether the balancer serves the backend with this weight, and the health checks, which
/// start when the balancer takes a backend in, have run once on it (so that the answer to a
/// registration does not race that first check); makes it healthy, since it just passed the
/// check at registration.
fn serving(
    balancer: Balancer,
    monitor: HealthMonitor<Weighted<BackendAddr>>,
) -> impl Fn(&BackendAddr, u32) -> bool + Send + Sync + 'static {
    move |uri, weight| {
        let in_set = balancer
            .endpoints()
            .iter()
            .any(|e| e.key().key() == uri && e.weight() == weight);
        if !in_set {
            return false;
        }
        let Some(health) = monitor.get(uri) else {
            return true;
        };
        if health.checks == 0 {
            return false;
        }
        if health.status != Health::Healthy {
            monitor.set_health(uri, Health::Healthy);
        }
        true
    }
}
