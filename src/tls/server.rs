//! [`ServerTls`]: the listener's TLS configuration, chosen by SNI and reloadable from disk.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsAcceptor;

use super::{ALPN_H2, ALPN_HTTP1, CertPair, TlsConfigError, VERSIONS, provider};

/// The TLS configuration of a listener: certificate and key pairs chosen by SNI (the first is
/// the default), TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`; reloadable from its files with
/// [`reload`](Self::reload). See the [module docs](super).
///
/// Clones share the configuration: a reload through one is seen by all.
#[derive(Clone)]
pub struct ServerTls {
    shared: Arc<Shared>,
}

struct Shared {
    pairs: Vec<CertPair>,
    config: ArcSwap<ServerConfig>,
    handshake_failures: AtomicU64,
    reloads: AtomicU64,
}

impl ServerTls {
    /// Loads every pair (at least one); the first is the default certificate.
    ///
    /// Fails, naming the file, if one does not load or a key does not match its certificate.
    pub fn from_pairs(pairs: impl IntoIterator<Item = CertPair>) -> Result<Self, TlsConfigError> {
        let pairs: Vec<CertPair> = pairs.into_iter().collect();
        let config = build(&pairs)?;
        Ok(Self {
            shared: Arc::new(Shared {
                pairs,
                config: ArcSwap::from_pointee(config),
                handshake_failures: AtomicU64::new(0),
                reloads: AtomicU64::new(0),
            }),
        })
    }

    /// Reads the files again and, if they all load, serves the new certificates to every
    /// handshake from now on; connections already open are untouched. If one does not load,
    /// the certificates in use are kept, and the error (naming the file) is logged and
    /// returned.
    pub fn reload(&self) -> Result<(), TlsConfigError> {
        match build(&self.shared.pairs) {
            Ok(config) => {
                self.shared.config.store(Arc::new(config));
                self.shared.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(pairs = self.shared.pairs.len(), "TLS certificates reloaded");
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "TLS certificates not reloaded; the old ones are kept");
                Err(error)
            }
        }
    }

    /// The certificate and key files, in order.
    pub fn pairs(&self) -> &[CertPair] {
        &self.shared.pairs
    }

    /// The configuration new handshakes get now.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.shared.config.load_full()
    }

    /// An acceptor with the configuration in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config())
    }

    /// Successful reloads so far.
    pub fn reloads(&self) -> u64 {
        self.shared.reloads.load(Ordering::Relaxed)
    }

    /// Handshakes that failed or timed out so far (a client that is not TLS, that gave up, or
    /// that refused the certificate), as counted by the server.
    pub fn handshake_failures(&self) -> u64 {
        self.shared.handshake_failures.load(Ordering::Relaxed)
    }

    /// Counts one failed handshake.
    pub(crate) fn record_handshake_failure(&self) {
        self.shared
            .handshake_failures
            .fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("pairs", &self.shared.pairs)
            .field("reloads", &self.reloads())
            .field("handshake_failures", &self.handshake_failures())
            .finish()
    }
}

/// A server configuration over `pairs`.
fn build(pairs: &[CertPair]) -> Result<ServerConfig, TlsConfigError> {
    if pairs.is_empty() {
        return Err(TlsConfigError::other("no certificate and key given"));
    }
    let provider = provider();
    let mut keys = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let (certs, key) = pair.load()?;
        let key = CertifiedKey::from_der(certs, key, &provider)
            .map_err(|error| TlsConfigError::file(&pair.key, error))?;
        keys.push(Arc::new(key));
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(TlsConfigError::other)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { keys }));
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    Ok(config)
}

/// Picks the first certificate valid for the client's SNI name, or the first of all.
#[derive(Debug)]
struct SniResolver {
    keys: Vec<Arc<CertifiedKey>>,
}

impl SniResolver {
    fn for_name(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        let name = ServerName::try_from(name).ok()?;
        self.keys.iter().find(|key| {
            key.cert.first().is_some_and(|cert: &CertificateDer<'_>| {
                webpki::EndEntityCert::try_from(cert)
                    .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
            })
        })
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        client_hello
            .server_name()
            .and_then(|name| self.for_name(name))
            .or_else(|| self.keys.first())
            .cloned()
    }
}
