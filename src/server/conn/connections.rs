//! [`Connections`]: the server's client connections as a whole. The connection cap, a task
//! per connection, and the graceful shutdown of them all.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::ConnService;
use super::state::ConnState;
use super::task::Connection;
use super::timed_io::TimedIo;
use super::tracked::Tracked;
use crate::server::service::Client;
use crate::stats::ConnectionCounters;
use crate::tls::ServerTls;

/// What a connection is allowed; from the [`Config`](crate::server::Config).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    /// How long a write to the client may stay blocked (the client not reading).
    pub(crate) client_timeout: Duration,
    pub(crate) max_header_size: usize,
    pub(crate) max_connections: Option<usize>,
}

/// The timeouts of the connections accepted from now on, shared by every worker's
/// [`Connections`]: a [`Reload`](crate::server::Reload) sets them, and each new connection
/// reads them once (an `ArcSwap` load per accept, no lock), keeping what it read.
#[derive(Debug, Clone)]
pub(crate) struct ClientTimeouts(Arc<ArcSwap<Settings>>);

impl ClientTimeouts {
    /// The header, idle and client timeouts of the connections accepted from now on.
    pub(crate) fn set(
        &self,
        header_timeout: Duration,
        idle_timeout: Duration,
        client_timeout: Duration,
    ) {
        let settings = Settings {
            header_timeout,
            idle_timeout,
            client_timeout,
            ..**self.0.load()
        };
        self.0.store(Arc::new(settings));
    }

    /// What a connection accepted now gets.
    fn get(&self) -> Settings {
        **self.0.load()
    }
}

/// The server's connections: accepts under the cap, serves each on its own task, and shuts
/// them all down.
pub(crate) struct Connections {
    builders: Arc<Builders>,
    /// Read at each accept; the header size and the connection cap in it are those the
    /// connections were made with, whatever a reload stores.
    settings: ClientTimeouts,
    cap: Option<Arc<Semaphore>>,
    /// Where the shutdown stands; every connection's task holds a receiver, so the receiver
    /// count is the number of connections open.
    stage: watch::Sender<Stage>,
    /// Connections parked now: idle, with no hyper state.
    parked: Arc<AtomicUsize>,
    /// Connections accepted and open, shared by every worker.
    counters: Arc<ConnectionCounters>,
    client: Client,
}

/// hyper's connection builders, one per protocol.
pub(super) struct Builders {
    pub(super) http1: http1::Builder,
    pub(super) http2: http2::Builder<TokioExecutor>,
}

/// Where a graceful shutdown stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Serving,
    /// Finish the requests in flight, close idle connections.
    Draining,
    /// The grace period is over: close everything.
    Cut,
}

impl Connections {
    pub(crate) fn new(settings: Settings, client: Client) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            // Ours are kept by `TimedIo`; see the module docs.
            .header_read_timeout(None)
            // hyper answers `431` to a longer request head. Its read buffer alone is not an
            // exact limit: a head that arrives in a few large reads may fit in what it
            // reserved beyond the maximum.
            .max_header_size(settings.max_header_size)
            .max_buf_size(settings.max_header_size)
            // One buffer per write (`send`) rather than `writev` of the head and the body:
            // less kernel time per response, measured; bodies are copied once into it.
            .writev(false);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(settings.max_header_size).unwrap_or(u32::MAX));
        Self {
            builders: Arc::new(Builders { http1, http2 }),
            settings: ClientTimeouts(Arc::new(ArcSwap::from_pointee(settings))),
            cap: settings
                .max_connections
                .map(|max| Arc::new(Semaphore::new(max))),
            stage: watch::Sender::new(Stage::Serving),
            parked: Arc::default(),
            counters: Arc::default(),
            client,
        }
    }

    /// The connections of another worker: same settings and client, the same connection
    /// cap (one count for the whole server), a graceful shutdown of their own.
    pub(crate) fn sibling(&self) -> Self {
        Self {
            builders: Arc::clone(&self.builders),
            settings: self.settings.clone(),
            cap: self.cap.clone(),
            stage: watch::Sender::new(Stage::Serving),
            parked: Arc::default(),
            counters: Arc::clone(&self.counters),
            client: self.client.clone(),
        }
    }

    /// Where the timeouts of new connections are changed, for this server's every worker.
    pub(crate) fn timeouts(&self) -> &ClientTimeouts {
        &self.settings
    }

    /// A place for one more connection: waits while the server is at its connection cap.
    pub(crate) async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        match &self.cap {
            Some(cap) => Arc::clone(cap).acquire_owned().await.ok(),
            None => None,
        }
    }

    /// Connections open now (upgraded ones excluded).
    pub(crate) fn count(&self) -> usize {
        self.stage.receiver_count()
    }

    /// Connections accepted and open (upgraded ones excluded), for every worker.
    pub(crate) fn counters(&self) -> &Arc<ConnectionCounters> {
        &self.counters
    }

    /// Idle keep-alive connections parked now, without hyper's buffers.
    pub(crate) fn parked(&self) -> usize {
        self.parked.load(Ordering::Relaxed)
    }

    /// Serves the TCP connection `stream` with `service` on a task of its own, with
    /// `TCP_NODELAY`.
    pub(crate) fn serve<S>(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        permit: Option<OwnedSemaphorePermit>,
        service: S,
    ) where
        S: ConnService,
    {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "TCP_NODELAY not set");
        }
        self.serve_io(stream, peer, permit, service);
    }

    /// Serves the TCP connection `stream` over TLS with `tls`'s configuration in force now,
    /// on a task of its own: the handshake first, within the header timeout, then as
    /// [`serve_io`](Self::serve_io) does (HTTP/2 when the client chose it by ALPN: its
    /// connection preface tells it, as on a plain connection). A handshake that fails or times
    /// out (a client that is not TLS, that gave up, or is too slow) closes the connection,
    /// logged at debug and counted by `tls`; it costs no one else anything.
    pub(crate) fn serve_tls<S>(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        permit: Option<OwnedSemaphorePermit>,
        tls: &ServerTls,
        service: S,
    ) where
        S: ConnService,
    {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "TCP_NODELAY not set");
        }
        let acceptor = tls.acceptor();
        let tls = tls.clone();
        let settings = self.settings.get();
        let connection = self.connection(peer);
        tokio::spawn(async move {
            let accepted =
                tokio::time::timeout(settings.header_timeout, acceptor.accept(stream)).await;
            let io = match accepted {
                Ok(Ok(io)) => io,
                Ok(Err(error)) => {
                    tls.record_handshake_failure();
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tls.record_handshake_failure();
                    tracing::debug!(%peer, timeout = ?settings.header_timeout, "TLS handshake timed out");
                    return;
                }
            };
            let state = Arc::new(ConnState::default());
            let io = TimedIo::new(io, Arc::clone(&state), settings, permit);
            connection.serve(io, Tracked::new(service, state)).await;
        });
    }

    /// One connection's task, counted as open from now.
    fn connection(&self, peer: SocketAddr) -> Connection {
        Connection {
            builders: Arc::clone(&self.builders),
            stage: self.stage.subscribe(),
            parked: Arc::clone(&self.parked),
            peer,
            _open: self.counters.open(),
        }
    }

    /// Serves the connection `io` (TCP, TLS, …) from `peer` with `service` on a task of its
    /// own.
    pub(crate) fn serve_io<T, S>(
        &self,
        io: T,
        peer: SocketAddr,
        permit: Option<OwnedSemaphorePermit>,
        service: S,
    ) where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: ConnService,
    {
        let state = Arc::new(ConnState::default());
        let io = TimedIo::new(io, Arc::clone(&state), self.settings.get(), permit);
        let service = Tracked::new(service, state);
        let connection = self.connection(peer);
        tokio::spawn(connection.serve(io, service));
    }

    /// Shuts down gracefully: idle connections close at once; those with requests in flight
    /// (and open tunnels) get up to `grace` to finish, then are closed.
    pub(crate) async fn shutdown(self, grace: Duration) {
        let Self { stage, client, .. } = self;
        tracing::info!(
            connections = stage.receiver_count(),
            tunnels = client.open_tunnels(),
            "shutting down",
        );
        stage.send_replace(Stage::Draining);
        let finished = async {
            stage.closed().await;
            client.tunnels_closed().await;
        };
        if tokio::time::timeout(grace, finished).await.is_err() {
            tracing::warn!(
                grace = ?grace,
                connections = stage.receiver_count(),
                tunnels = client.open_tunnels(),
                "requests still in flight at the end of the grace period were cut",
            );
            stage.send_replace(Stage::Cut);
            client.close_tunnels();
            // The tasks only have to notice.
            let _ = tokio::time::timeout(Duration::from_secs(1), stage.closed()).await;
        }
    }
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("settings", &self.settings.get())
            .field("open", &self.count())
            .field("parked", &self.parked())
            .finish_non_exhaustive()
    }
}
