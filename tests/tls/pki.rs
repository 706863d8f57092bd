//! Certificates made for the test with rcgen: a CA, leaves it signs, written as PEM files.

#![allow(unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tower_lb::tls::{BackendTls, CertPair};

/// A CA in a fresh directory, with its certificate in `ca.pem`.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_pem: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let id = format!(
            "tower-lb-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{id} CA"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, ca.pem()).unwrap();
        Self { dir, ca_pem, ca }
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by the CA, written as
    /// `<stem>.pem` and `<stem>.key` (over any earlier ones).
    pub fn leaf(&self, stem: &str, names: &[&str]) -> CertPair {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.ca)
            .unwrap();
        let pair = self.paths(stem);
        std::fs::write(&pair.cert, cert.pem()).unwrap();
        std::fs::write(&pair.key, key.serialize_pem()).unwrap();
        pair
    }

    /// Where [`leaf`](Self::leaf) writes `stem`.
    pub fn paths(&self, stem: &str) -> CertPair {
        CertPair::new(
            self.dir.join(format!("{stem}.pem")),
            self.dir.join(format!("{stem}.key")),
        )
    }

    /// A TLS client trusting this CA only, offering `alpn`.
    pub fn client(&self, alpn: &[&[u8]]) -> BackendTls {
        BackendTls::builder()
            .system_roots(false)
            .ca_file(&self.ca_pem)
            .alpn_protocols(alpn.iter().map(|p| p.to_vec()))
            .build()
            .unwrap()
    }

    /// A server configuration with `pair`, asking clients for a certificate this CA signed
    /// when `client_auth`; ALPN `http/1.1` only.
    pub fn server_config(&self, pair: &CertPair, client_auth: bool) -> Arc<rustls::ServerConfig> {
        self.server_config_alpn(pair, client_auth, &[b"http/1.1"])
    }

    /// [`server_config`](Self::server_config) choosing among `alpn` (none: no ALPN at all).
    pub fn server_config_alpn(
        &self,
        pair: &CertPair,
        client_auth: bool,
        alpn: &[&[u8]],
    ) -> Arc<rustls::ServerConfig> {
        let provider = provider();
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs(&self.ca_pem) {
                roots.add(cert).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&pair.key).unwrap();
        let mut config = builder.with_single_cert(certs(&pair.cert), key).unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

use rustls::pki_types::pem::PemObject;

/// The certificates in a PEM file.
pub fn certs(path: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// rustls' `ring` provider, as the balancer uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // Deprecated in rustls 0.23.48 for lacking post-quantum key exchange; the balancer's.
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}
