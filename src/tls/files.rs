//! Reading certificates and keys from PEM files.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsConfigError;

/// A certificate file and its private key file, both PEM: the certificate first in its file,
/// then its chain; one private key (PKCS #8, PKCS #1 or SEC1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    /// The certificate chain's file.
    pub cert: PathBuf,
    /// The private key's file.
    pub key: PathBuf,
}

impl CertPair {
    /// The pair of `cert` and `key`.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
        }
    }

    /// Reads both files.
    pub(crate) fn load(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsConfigError> {
        Ok((load_certs(&self.cert)?, load_key(&self.key)?))
    }
}

/// Every certificate in the PEM file `path`, in order; at least one.
pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let bad = |reason: &dyn std::fmt::Display| TlsConfigError::file(path, reason);
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|error| bad(&pem_error(error)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| bad(&pem_error(error)))?;
    if certs.is_empty() {
        return Err(bad(
            &"no certificate found (expected a PEM CERTIFICATE block)",
        ));
    }
    Ok(certs)
}

/// The private key in the PEM file `path`.
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| {
        let reason = match error {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no private key found (expected a PEM PRIVATE KEY block)".to_owned()
            }
            other => pem_error(other),
        };
        TlsConfigError::file(path, reason)
    })
}

/// The reason a PEM file did not load, as a sentence.
fn pem_error(error: rustls_pki_types::pem::Error) -> String {
    match error {
        rustls_pki_types::pem::Error::Io(error) => error.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM item found".to_owned(),
        other => format!("not valid PEM: {other}"),
    }
}
