//! `https://` backends: served through the balancer, an untrusted certificate (`502` and the
//! health check's error in `/backends`), and a backend requiring a client certificate.

use tower_lb::BackendAddr;
use tower_lb::health::Health;
use tower_lb::proxy::ProxyClientBuilder;
use tower_lb::server::Config;
use tower_lb::tls::BackendTls;

use super::https_backend;
use super::pki::Pki;
use super::support;

/// A balancer (plain HTTP) over the `https://` backend `backend`, connecting with `tls`.
async fn lb_over(backend: &BackendAddr, tls: BackendTls) -> support::Lb {
    let config = Config::new()
        .health_interval(std::time::Duration::from_millis(200))
        .backend(backend.to_string().parse().unwrap())
        .proxy_client(ProxyClientBuilder::new().backend_tls(tls));
    support::start(config).await
}

pub(super) fn https_addr(addr: std::net::SocketAddr) -> BackendAddr {
    format!("https://localhost:{}", addr.port())
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_backend_serves_through_the_balancer() {
    let pki = Pki::new();
    let pair = pki.leaf("backend", &["localhost"]);
    let addr = https_backend(pki.server_config(&pair, false)).await;
    let backend = https_addr(addr);
    let tls = BackendTls::builder().ca_file(&pki.ca_pem).build().unwrap();
    let lb = lb_over(&backend, tls).await;
    lb.wait_health(&backend, Health::Healthy).await;
    let reply = lb.get("/").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, format!("tls backend {addr} http"));
    // Registration checks https backends too.
    let reply = lb
        .register(&format!(
            r#"{{"address": "https://127.0.0.1:{}"}}"#,
            addr.port()
        ))
        .await;
    // The certificate is for `localhost`, not 127.0.0.1: its check fails.
    assert_eq!(reply.status, 404, "{}", reply.body);
    let reply = lb
        .register(&format!(
            r#"{{"address": "https://localhost:{}/"}}"#,
            addr.port()
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_backend_certificate_is_a_502_and_its_check_error_is_listed() {
    let pki = Pki::new();
    let other = Pki::new();
    let pair = other.leaf("backend", &["localhost"]);
    let addr = https_backend(other.server_config(&pair, false)).await;
    let backend = https_addr(addr);
    // Trusts `pki`'s CA (and the system's roots), not `other`'s.
    let tls = BackendTls::builder().ca_file(&pki.ca_pem).build().unwrap();
    let lb = lb_over(&backend, tls).await;
    // Before its first check fails, a request meets the certificate error itself.
    let reply = lb.get("/").await;
    assert!(
        reply.status == 502 || reply.status == 503,
        "{} {}",
        reply.status,
        reply.body
    );
    lb.wait_health(&backend, Health::Unhealthy).await;
    let listed = lb.get("/backends").await.json();
    let error = listed["data"][0]["last_error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("TLS handshake with backend")
            && error.contains("invalid peer certificate")
            && error.contains("UnknownIssuer"),
        "{listed}"
    );
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_fails_the_request_with_502() {
    let pki = Pki::new();
    let other = Pki::new();
    let pair = other.leaf("backend", &["localhost"]);
    let addr = https_backend(other.server_config(&pair, false)).await;
    let backend = https_addr(addr);
    let client: tower_lb::proxy::ProxyClient<http_body_util::Empty<bytes::Bytes>> =
        ProxyClientBuilder::new()
            .backend_tls(BackendTls::builder().ca_file(&pki.ca_pem).build().unwrap())
            .build();
    let mut service = tower_lb::proxy::HttpBackend::new(backend, client);
    let req = http::Request::get("/").body(hyper_body()).unwrap();
    let error = tower::ServiceExt::oneshot(&mut service, req)
        .await
        .unwrap_err();
    assert_eq!(tower_lb::proxy::error_response(&error).status(), 502);
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
}

fn hyper_body() -> http_body_util::Empty<bytes::Bytes> {
    http_body_util::Empty::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_requiring_a_client_certificate_gets_the_configured_one() {
    let pki = Pki::new();
    let pair = pki.leaf("backend", &["localhost"]);
    let addr = https_backend(pki.server_config(&pair, true)).await;
    let backend = https_addr(addr);

    // Without a client certificate: refused.
    let tls = BackendTls::builder().ca_file(&pki.ca_pem).build().unwrap();
    let lb = lb_over(&backend, tls).await;
    lb.wait_health(&backend, Health::Unhealthy).await;
    lb.stop().await;

    // With one the backend's CA signed: served.
    let client = pki.leaf("client", &["tower-lb.test"]);
    let tls = BackendTls::builder()
        .ca_file(&pki.ca_pem)
        .client_cert(&client.cert, &client.key)
        .build()
        .unwrap();
    let lb = lb_over(&backend, tls).await;
    lb.wait_health(&backend, Health::Healthy).await;
    let reply = lb.get("/").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, format!("tls backend {addr} http"));
    lb.stop().await;
}
