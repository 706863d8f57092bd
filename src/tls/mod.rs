//! TLS with [rustls]: the balancer's TLS listener ([`ServerTls`]) and the client side of
//! `https://` backends ([`BackendTls`]). Feature `tls` (part of `server`).
//!
//! **Crypto provider**: rustls' [`ring`](rustls::crypto::ring) provider. It builds from
//! crates.io with nothing but a C compiler (`cc`), where the `aws-lc-rs` provider, rustls'
//! default, also wants `cmake` (and NASM on Windows). Every configuration here is built with
//! that provider explicitly, so no process-wide default has to be installed.
//!
//! **Protocols**: TLS 1.3 and TLS 1.2, rustls' safe cipher suites only.
//!
//! **Listener** ([`ServerTls`]): one or more certificate and key PEM pairs ([`CertPair`]); the
//! certificate is chosen by the client's SNI name among those whose certificate is valid for
//! it (its subject alternative names, wildcards included), the first pair being the default
//! (for clients that send no name, or one no certificate covers), as nginx's `default_server`.
//! ALPN offers `h2` and `http/1.1`. [`ServerTls::reload`] reads the files again and swaps the
//! configuration in one atomic store (`arc-swap`): handshakes that start afterwards see the new
//! certificates, connections already open keep theirs; a file that does not load keeps the old
//! configuration and names the file in the error.
//!
//! **Backends** ([`BackendTls`]): a backend's certificate is verified against the system's
//! roots ([rustls-native-certs]) plus any CA file given, for the backend's host name (SNI is
//! that name; an IP address is checked against the certificate's IP addresses), with an
//! optional client certificate for backends that require one (mutual TLS).
//!
//! The PEM files are read with [`rustls_pki_types`]' PEM parser: certificates (`CERTIFICATE`
//! blocks, the leaf first, then its chain) and one private key (PKCS #8, PKCS #1 or SEC1).
//!
//! # Examples
//!
//! ```no_run
//! use tower_lb::tls::{BackendTls, CertPair, ServerTls};
//!
//! # fn main() -> Result<(), tower_lb::tls::TlsConfigError> {
//! let server = ServerTls::from_pairs([
//!     CertPair::new("example.com.pem", "example.com.key"),
//!     CertPair::new("api.example.com.pem", "api.example.com.key"),
//! ])?;
//! // On SIGHUP:
//! if let Err(error) = server.reload() {
//!     eprintln!("certificates not reloaded: {error}");
//! }
//!
//! let backends = BackendTls::builder().ca_file("internal-ca.pem").build()?;
//! # let _ = backends;
//! # Ok(())
//! # }
//! ```
//!
//! [rustls]: https://docs.rs/rustls
//! [rustls-native-certs]: https://docs.rs/rustls-native-certs

mod client;
mod error;
mod files;
mod server;

pub use self::client::{BackendTls, BackendTlsBuilder};
pub use self::error::{BackendTlsError, TlsConfigError};
pub use self::files::CertPair;
pub use self::server::ServerTls;

pub use tokio_rustls::{
    client::TlsStream as ClientTlsStream, server::TlsStream as ServerTlsStream,
};

/// The ALPN name of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";

/// The ALPN name of HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

use std::sync::Arc;

/// rustls' `ring` provider, which every configuration here is built with; made once.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<rustls::crypto::CryptoProvider>> =
        std::sync::OnceLock::new();
    // rustls 0.23.48 deprecates `ring::default_provider` to nudge towards post-quantum key
    // exchange, which only `aws-lc-rs` has; `ring` is chosen for building anywhere (above).
    #[allow(deprecated)]
    let make = || Arc::new(rustls::crypto::ring::default_provider());
    Arc::clone(PROVIDER.get_or_init(make))
}

/// TLS 1.3 and 1.2.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

#[cfg(test)]
mod tests;
