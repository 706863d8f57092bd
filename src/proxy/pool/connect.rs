//! Opening a connection to a backend: TCP (with `TCP_NODELAY`), then TLS for `https://`, both
//! within the connect timeout; then the HTTP/2 handshake on a connection the backend's requests
//! share, for `h2c://` and for an `https://` backend that chose `h2` by ALPN, or else the
//! HTTP/1.1 one. The connection's task is spawned on the current runtime.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use http::uri::Authority;
use http_body::Body;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tracing::debug;

use super::{Connecting, Host, Http2Conn, Protocol, Sender, lock};
use crate::{BackendScheme, BackendTimeout, BackendUnavailable, BoxError};

impl<B> Host<B> {
    /// Opens a new connection, within the connect timeout; its task is spawned on the current
    /// runtime. For HTTP/2, waits for a connection another request is opening, and takes a
    /// stream on it if it has room. With `http1`, an HTTP/1.1 connection whatever the
    /// backend would choose (for an upgrade: a TLS connection offering ALPN `http/1.1` alone).
    pub(crate) fn connect(self: &Arc<Self>, http1: bool) -> Connecting<B>
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        if let Some(idle_timeout) = self.settings.idle_timeout {
            self.start_sweeping(idle_timeout);
        }
        let host = Arc::clone(self);
        if http1 && self.scheme.is_tls() {
            return Box::pin(async move {
                let authority = host.authority.clone();
                host.open(true).await?.handshake_http1(authority).await
            });
        }
        Box::pin(async move { host.new_connection().await })
    }

    /// A sender on a new connection: HTTP/2 if the backend speaks it (`h2c://`, or ALPN `h2`),
    /// else HTTP/1.1. While the connection may turn out to be HTTP/2 (`h2c://`, and `https://`
    /// until a backend has chosen `http/1.1`), connections are opened one at a time, and a
    /// request that waited takes a stream on the one opened meanwhile if it has room.
    async fn new_connection(&self) -> Result<Sender<B>, BoxError>
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let mut opening = None;
        if self.may_be_http2() {
            opening = Some(self.opening.lock().await);
            if let Some(sender) = self.checkout_http2() {
                return Ok(sender);
            }
            if !self.may_be_http2() {
                // The backend chose HTTP/1.1 meanwhile: its connections open side by side.
                opening = None;
            }
        }
        let stream = match self.open(false).await {
            Ok(stream) => stream,
            Err(error) => {
                // Whoever answers next may speak otherwise (a backend replaced): ask again.
                self.learn(Protocol::Unknown);
                return Err(error);
            }
        };
        let authority = self.authority.clone();
        if stream.is_http2(self.scheme) {
            self.learn(Protocol::Http2);
            let sender = match stream {
                Stream::Tcp(stream) => self.handshake_http2(stream).await,
                #[cfg(feature = "tls")]
                Stream::Tls(stream) => self.handshake_http2(*stream).await,
            };
            drop(opening);
            return sender;
        }
        self.learn(Protocol::Http1);
        drop(opening);
        stream.handshake_http1(authority).await
    }

    /// A new connection to the backend, before HTTP: TCP, then TLS for `https://` (offering
    /// ALPN `http/1.1` alone with `http1`), both within the connect timeout.
    #[cfg_attr(not(feature = "tls"), allow(unused_variables))]
    async fn open(&self, http1: bool) -> Result<Stream, BoxError> {
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
                    let handshake = if http1 {
                        tls.connect_http1(authority.host(), stream).await
                    } else {
                        tls.connect(authority.host(), stream).await
                    };
                    match handshake {
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
        match self.connect_timeout() {
            Some(timeout) => tokio::time::timeout(timeout, connecting)
                .await
                .map_err(|_| BackendTimeout::connect(authority.clone()))?,
            None => connecting.await,
        }
    }

    /// HTTP/2 over `io`: the connection is listed for the requests that follow, and the first
    /// stream on it is the caller's.
    async fn handshake_http2<T>(&self, io: T) -> Result<Sender<B>, BoxError>
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let authority = self.authority.clone();
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(io))
            .await
            .map_err(|error| BackendUnavailable::new(authority.clone(), error))?;
        let backend = authority.clone();
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                debug!(backend = %backend, %error, "backend connection failed");
            }
        });
        debug!(backend = %authority, scheme = %self.scheme, "HTTP/2 connection opened");
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

impl Stream {
    /// Whether HTTP/2 is spoken on it: prior knowledge for `h2c://`, ALPN `h2` over TLS.
    fn is_http2(&self, scheme: BackendScheme) -> bool {
        match self {
            Self::Tcp(_) => scheme == BackendScheme::H2c,
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN_H2),
        }
    }

    /// HTTP/1.1 on it ([`handshake`]).
    async fn handshake_http1<B>(self, authority: Authority) -> Result<Sender<B>, BoxError>
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        match self {
            Self::Tcp(stream) => handshake(stream, authority).await,
            #[cfg(feature = "tls")]
            Self::Tls(stream) => handshake(*stream, authority).await,
        }
    }
}

/// HTTP/1.1 over `io`, whose connection task is spawned on the current runtime.
async fn handshake<B, T>(io: T, authority: Authority) -> Result<Sender<B>, BoxError>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
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
