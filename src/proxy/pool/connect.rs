//! Opening a connection to a backend: TCP (with `TCP_NODELAY`), then TLS for `https://`, both
//! within the connect timeout; then the HTTP/1.1 handshake, or for `h2c://` the HTTP/2 one on a
//! connection the backend's requests share. The connection's task is spawned on the current
//! runtime.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use http::uri::Authority;
use http_body::Body;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tracing::debug;

use super::{Connecting, Host, Http2Conn, Sender, lock};
use crate::{BackendScheme, BackendTimeout, BackendUnavailable, BoxError};

impl<B> Host<B> {
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
        match self.connect_timeout() {
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
