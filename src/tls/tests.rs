use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{CertificateParams, KeyPair};

use super::*;

/// A fresh directory under the system's temporary one.
fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tower-lb-tls-unit-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A self-signed certificate for `names`, written as `<stem>.pem` and `<stem>.key`.
fn self_signed(dir: &Path, stem: &str, names: &[&str]) -> CertPair {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pair = CertPair::new(
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&pair.cert, cert.pem()).unwrap();
    std::fs::write(&pair.key, key.serialize_pem()).unwrap();
    pair
}

/// The certificate the configuration serves to a client hello for `name`.
fn served_cert(tls: &ServerTls, name: Option<&str>) -> Vec<u8> {
    // Resolve through a real handshake: a client that accepts any certificate.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let acceptor = tls.acceptor();
        let server = tokio::spawn(async move { acceptor.accept(server_io).await.map(|_| ()) });
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny))
            .with_no_client_auth();
        let server_name = rustls_pki_types::ServerName::try_from(name.unwrap_or("127.0.0.1"))
            .unwrap()
            .to_owned();
        let stream = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(server_name, client_io)
            .await
            .unwrap();
        server.await.unwrap().unwrap();
        stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    })
}

#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn der(pair: &CertPair) -> Vec<u8> {
    files::load_certs(&pair.cert).unwrap()[0].to_vec()
}

#[test]
fn sni_picks_the_certificate_valid_for_the_name_and_the_first_is_the_default() {
    let dir = temp_dir();
    let a = self_signed(&dir, "a", &["a.test"]);
    let b = self_signed(&dir, "b", &["b.test", "*.wild.test"]);
    let tls = ServerTls::from_pairs([a.clone(), b.clone()]).unwrap();
    assert_eq!(served_cert(&tls, Some("a.test")), der(&a));
    assert_eq!(served_cert(&tls, Some("b.test")), der(&b));
    assert_eq!(served_cert(&tls, Some("x.wild.test")), der(&b));
    assert_eq!(
        served_cert(&tls, Some("other.test")),
        der(&a),
        "the default"
    );
    assert_eq!(served_cert(&tls, None), der(&a), "no SNI (an IP address)");
    assert_eq!(
        tls.config().alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}

#[test]
fn a_bad_file_at_start_is_an_error_naming_it() {
    let dir = temp_dir();
    let good = self_signed(&dir, "good", &["a.test"]);
    let other = self_signed(&dir, "other", &["a.test"]);

    let missing = CertPair::new(dir.join("missing.pem"), good.key.clone());
    let err = ServerTls::from_pairs([missing]).unwrap_err();
    assert_eq!(err.path(), Some(dir.join("missing.pem").as_path()));
    assert!(
        err.to_string().contains("missing.pem: No such file"),
        "{err}"
    );

    let no_cert = CertPair::new(good.key.clone(), good.key.clone());
    let err = ServerTls::from_pairs([no_cert]).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("good.key: no certificate found (expected a PEM CERTIFICATE block)"),
        "{err}"
    );

    let no_key = CertPair::new(good.cert.clone(), good.cert.clone());
    let err = ServerTls::from_pairs([no_key]).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("good.pem: no private key found (expected a PEM PRIVATE KEY block)"),
        "{err}"
    );

    let mismatched = CertPair::new(good.cert.clone(), other.key.clone());
    let err = ServerTls::from_pairs([mismatched]).unwrap_err();
    assert_eq!(err.path(), Some(other.key.as_path()), "{err}");

    assert!(ServerTls::from_pairs([]).is_err());
}

#[test]
fn reload_serves_new_files_and_keeps_the_old_on_a_bad_one() {
    let dir = temp_dir();
    let first = self_signed(&dir, "site", &["a.test"]);
    let tls = ServerTls::from_pairs([first.clone()]).unwrap();
    let old = der(&first);
    assert_eq!(served_cert(&tls, Some("a.test")), old);

    // A broken certificate file: the old certificate stays.
    std::fs::write(&first.cert, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    let err = tls.reload().unwrap_err();
    assert_eq!(err.path(), Some(first.cert.as_path()), "{err}");
    assert_eq!(served_cert(&tls, Some("a.test")), old);
    assert_eq!(tls.reloads(), 0);

    // New files: served from the next handshake on.
    let second = self_signed(&dir, "site", &["a.test"]);
    tls.reload().unwrap();
    assert_eq!(tls.reloads(), 1);
    assert_ne!(der(&second), old);
    assert_eq!(served_cert(&tls, Some("a.test")), der(&second));
}

#[test]
fn backend_tls_names_a_bad_ca_file() {
    let dir = temp_dir();
    let pair = self_signed(&dir, "ca", &["ca.test"]);
    let err = BackendTls::builder()
        .system_roots(false)
        .ca_file(&pair.key)
        .build()
        .unwrap_err();
    assert_eq!(err.path(), Some(pair.key.as_path()), "{err}");
    let tls = BackendTls::builder()
        .system_roots(false)
        .ca_file(&pair.cert)
        .client_cert(&pair.cert, &pair.key)
        .build()
        .unwrap();
    assert!(tls.config().client_auth_cert_resolver.has_certs());
    // A key that is not the certificate's: the key file is named.
    let other = self_signed(&dir, "other", &["other.test"]);
    let err = BackendTls::builder()
        .client_cert(&pair.cert, &other.key)
        .build()
        .unwrap_err();
    assert_eq!(err.path(), Some(other.key.as_path()), "{err}");
    assert_eq!(
        tls.config().alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    assert_eq!(
        BackendTls::system().config().alpn_protocols,
        tls.config().alpn_protocols
    );
    let http1 = BackendTls::builder()
        .alpn_protocols([b"http/1.1".to_vec()])
        .build()
        .unwrap();
    assert_eq!(http1.config().alpn_protocols, [b"http/1.1".to_vec()]);
}
