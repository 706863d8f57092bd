//! [`BackendTls`]: how the balancer connects to `https://` backends.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::files::load_certs;
use super::{ALPN_H2, ALPN_HTTP1, CertPair, TlsConfigError, VERSIONS, provider};

/// The client side of TLS to `https://` backends: which certificates are trusted, and the
/// client certificate, if any. Build one with [`BackendTls::builder`]; give it to
/// [`ProxyClientBuilder::backend_tls`](crate::proxy::ProxyClientBuilder::backend_tls). A
/// client without one trusts the system's roots ([`BackendTls::system`]). See the
/// [module docs](super).
///
/// Clones share the configuration.
#[derive(Clone)]
pub struct BackendTls {
    config: Arc<ClientConfig>,
    /// `config` offering `http/1.1` only: for connection upgrades (WebSocket), which only
    /// HTTP/1.1 has.
    http1: Arc<ClientConfig>,
    /// The settings it was built from, if by [`BackendTlsBuilder::build`]: shown by `Debug`,
    /// so two configurations from different files tell apart (a reload compares them).
    built_from: Option<Arc<BackendTlsBuilder>>,
}

impl BackendTls {
    /// The ALPN protocols offered by default, in order of preference: `h2`, then `http/1.1`,
    /// so HTTP/2 is spoken where the backend speaks it, as Envoy's `auto_config` and HAProxy's
    /// `alpn h2,http/1.1` do.
    pub const DEFAULT_ALPN: [&'static [u8]; 2] = [ALPN_H2, ALPN_HTTP1];

    /// Starts configuring: the system's roots, no client certificate, ALPN
    /// [`DEFAULT_ALPN`](Self::DEFAULT_ALPN).
    pub fn builder() -> BackendTlsBuilder {
        BackendTlsBuilder::new()
    }

    /// The system's roots, nothing else; built once per process.
    pub fn system() -> Self {
        static SYSTEM: OnceLock<BackendTls> = OnceLock::new();
        SYSTEM
            .get_or_init(|| {
                let roots = system_roots();
                Self::from_config(
                    client_config(roots, None, default_alpn())
                        .expect("a client configuration without client certificate always builds"),
                )
            })
            .clone()
    }

    /// A configuration of your own (built with any provider).
    pub fn from_config(config: impl Into<Arc<ClientConfig>>) -> Self {
        let config = config.into();
        let http1 = if config.alpn_protocols.iter().all(|p| p == ALPN_HTTP1) {
            Arc::clone(&config)
        } else {
            let mut http1 = (*config).clone();
            http1.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
            Arc::new(http1)
        };
        Self {
            config,
            http1,
            built_from: None,
        }
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// The TLS handshake over `stream` with the backend named `host` (a name, or an IP address,
    /// an IPv6 one with or without brackets), which is the SNI name and the name its
    /// certificate must be valid for.
    pub async fn connect<T>(&self, host: &str, stream: T) -> io::Result<TlsStream<T>>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        self.connect_with(&self.config, host, stream).await
    }

    /// [`connect`](Self::connect) offering ALPN `http/1.1` alone, whatever the configuration
    /// offers: for a connection that must be HTTP/1.1 (an upgrade).
    pub(crate) async fn connect_http1<T>(&self, host: &str, stream: T) -> io::Result<TlsStream<T>>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        self.connect_with(&self.http1, host, stream).await
    }

    async fn connect_with<T>(
        &self,
        config: &Arc<ClientConfig>,
        host: &str,
        stream: T,
    ) -> io::Result<TlsStream<T>>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name = ServerName::try_from(bare.to_owned())
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        TlsConnector::from(Arc::clone(config))
            .connect(name, stream)
            .await
    }
}

impl fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendTls")
            .field(
                "alpn_protocols",
                &self
                    .config
                    .alpn_protocols
                    .iter()
                    .map(|p| String::from_utf8_lossy(p))
                    .collect::<Vec<_>>(),
            )
            .field(
                "client_auth",
                &self.config.client_auth_cert_resolver.has_certs(),
            )
            .field("built_from", &self.built_from)
            .finish_non_exhaustive()
    }
}

/// Configures a [`BackendTls`].
///
/// | setting | default |
/// |---|---|
/// | [`system_roots`](Self::system_roots) | on: the system's trusted roots ([rustls-native-certs](https://docs.rs/rustls-native-certs)) |
/// | [`ca_file`](Self::ca_file) | none |
/// | [`client_cert`](Self::client_cert) | none |
/// | [`alpn_protocols`](Self::alpn_protocols) | `h2`, `http/1.1` |
///
/// ```no_run
/// use tower_lb::tls::BackendTls;
///
/// let tls = BackendTls::builder()
///     .ca_file("ca.pem")
///     .client_cert("client.pem", "client.key")
///     .build()
///     .unwrap();
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct BackendTlsBuilder {
    system_roots: bool,
    ca_files: Vec<PathBuf>,
    client_cert: Option<CertPair>,
    alpn_protocols: Vec<Vec<u8>>,
}

impl Default for BackendTlsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BackendTlsBuilder {
    /// The defaults in the table above.
    pub fn new() -> Self {
        Self {
            system_roots: true,
            ca_files: Vec::new(),
            client_cert: None,
            alpn_protocols: default_alpn(),
        }
    }

    /// Whether the system's roots are trusted.
    pub fn system_roots(mut self, enabled: bool) -> Self {
        self.system_roots = enabled;
        self
    }

    /// Trusts the CA certificates in the PEM file `path` too; repeat for more.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_files.push(path.into());
        self
    }

    /// Presents this certificate and key to backends that ask for one (mutual TLS).
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some(CertPair::new(cert, key));
        self
    }

    /// The ALPN protocols offered, in order of preference. The pool speaks HTTP/2 on a
    /// connection whose backend chose `h2`, and HTTP/1.1 on one where it chose `http/1.1` or
    /// nothing (see [`ProxyClient`](crate::proxy::ProxyClient)); offer only
    /// [`ALPN_HTTP1`](super::ALPN_HTTP1) to keep every `https://` backend on HTTP/1.1.
    pub fn alpn_protocols(mut self, protocols: impl IntoIterator<Item = Vec<u8>>) -> Self {
        self.alpn_protocols = protocols.into_iter().collect();
        self
    }

    /// Reads the files; fails, naming the file, if one does not load.
    pub fn build(self) -> Result<BackendTls, TlsConfigError> {
        let mut roots = if self.system_roots {
            system_roots()
        } else {
            RootCertStore::empty()
        };
        for path in &self.ca_files {
            for cert in load_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|error| TlsConfigError::file(path, error))?;
            }
        }
        let client_cert = match &self.client_cert {
            Some(pair) => Some((pair.load()?, pair.key.as_path())),
            None => None,
        };
        let config = client_config(roots, client_cert, self.alpn_protocols.clone())?;
        Ok(BackendTls {
            built_from: Some(Arc::new(self)),
            ..BackendTls::from_config(config)
        })
    }
}

/// [`BackendTls::DEFAULT_ALPN`], as rustls takes it.
fn default_alpn() -> Vec<Vec<u8>> {
    BackendTls::DEFAULT_ALPN.map(<[u8]>::to_vec).into()
}

/// A client certificate chain and its key, with the key's file (named when they do not match).
type ClientCert<'a> = (
    (
        Vec<rustls_pki_types::CertificateDer<'static>>,
        rustls_pki_types::PrivateKeyDer<'static>,
    ),
    &'a std::path::Path,
);

fn client_config(
    roots: RootCertStore,
    client_cert: Option<ClientCert<'_>>,
    alpn_protocols: Vec<Vec<u8>>,
) -> Result<ClientConfig, TlsConfigError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(TlsConfigError::other)?
        .with_root_certificates(roots);
    let mut config = match client_cert {
        Some(((certs, key), key_file)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|error| TlsConfigError::file(key_file, error))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn_protocols;
    Ok(config)
}

/// The system's trusted roots; those that do not load are skipped (logged at debug).
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(%error, "a system root certificate was not loaded");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system root certificates loaded");
    roots
}
