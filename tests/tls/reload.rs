//! Reloading the certificates (what SIGHUP does): new handshakes see the new certificate, an
//! open connection keeps working, a bad file keeps the old certificate.

use tower_lb::server::Config;

use super::pki::{Pki, certs};
use super::support;
use super::{Sender, peer_cert, tls_connect, tls_lb_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_the_new_certificate_and_keeps_open_connections_and_bad_files_out() {
    let pki = Pki::new();
    let backend = support::backend().await;
    let (lb, tls) = tls_lb_with(&pki, Config::new().backend(support::spec(&backend, 1))).await;
    let pair = tls.pairs()[0].clone();
    let first = certs(&pair.cert)[0].to_vec();

    let open = tls_connect(&pki, lb.addr, "localhost", &[b"h2"])
        .await
        .unwrap();
    assert_eq!(peer_cert(&open), first);
    let mut open = Sender::new(open).await;
    assert_eq!(open.get("/").await.0, 200);

    // New files on disk, then the reload.
    pki.leaf("lb", &["localhost", "127.0.0.1"]);
    let second = certs(&pair.cert)[0].to_vec();
    assert_ne!(first, second);
    tls.reload().unwrap();
    let fresh = tls_connect(&pki, lb.addr, "localhost", &[b"h2"])
        .await
        .unwrap();
    assert_eq!(
        peer_cert(&fresh),
        second,
        "a new handshake sees the new certificate"
    );
    assert_eq!(Sender::new(fresh).await.get("/").await.0, 200);
    assert_eq!(
        open.get("/").await.0,
        200,
        "the open connection keeps working"
    );

    // A bad key file: the reload fails, naming it, and the certificate in use stays.
    std::fs::write(&pair.key, "not a key\n").unwrap();
    let error = tls.reload().unwrap_err();
    assert_eq!(error.path(), Some(pair.key.as_path()), "{error}");
    let after = tls_connect(&pki, lb.addr, "localhost", &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(peer_cert(&after), second);
    assert_eq!(Sender::new(after).await.get("/").await.0, 200);
    assert_eq!(open.get("/").await.0, 200);
    lb.stop().await;
}
