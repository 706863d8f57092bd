//! The TLS listener: curl and a hyper/rustls client over HTTP/1.1 and HTTP/2, SNI,
//! `X-Forwarded-Proto`, the admin API's access rules, and the redirect listener.

use std::collections::BTreeSet;

use tower_lb::admin::AdminToken;
use tower_lb::server::Config;
use tower_lb::tls::{CertPair, ServerTls};

use super::pki::Pki;
use super::support::{self, greeter};
use super::{Sender, curl_localhost, peer_cert, tls_connect, tls_lb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_each_backend_in_turn_over_http1_and_http2() {
    let pki = Pki::new();
    let backends = support::backends(3).await;
    let lb = tls_lb(&pki, Config::new().backends_from(support::specs(&backends))).await;
    let all: BTreeSet<String> = backends.iter().map(support::name).collect();
    for version in ["--http1.1", "--http2"] {
        let mut seen = BTreeSet::new();
        for _ in 0..3 {
            let answer = curl_localhost(&pki, lb.addr.port(), version, "/").await;
            let (body, http_version) = answer.rsplit_once('\n').unwrap();
            let expected = if version == "--http2" { "2" } else { "1.1" };
            assert_eq!(http_version, expected, "{answer}");
            seen.insert(greeter(body.as_bytes()));
        }
        assert_eq!(seen, all, "round robin over three backends with {version}");
    }
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rustls_client_is_served_over_h2_and_http1_and_the_backend_sees_https() {
    let pki = Pki::new();
    let backend = support::backend().await;
    let lb = tls_lb(&pki, Config::new().backend(support::spec(&backend, 1))).await;
    for (alpn, negotiated) in [
        (&[b"h2".as_slice(), b"http/1.1"][..], b"h2".as_slice()),
        (&[b"http/1.1".as_slice()][..], b"http/1.1".as_slice()),
    ] {
        let tls = tls_connect(&pki, lb.addr, "localhost", alpn).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(negotiated));
        let mut sender = Sender::new(tls).await;
        let (status, body) = sender.get("/headers").await;
        assert_eq!(status, 200);
        let headers: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(headers["x-forwarded-proto"], "https", "{headers}");
        // The connection carries more requests.
        let (status, body) = sender.get("/").await;
        assert_eq!(status, 200);
        assert_eq!(greeter(&body), support::name(&backend));
    }
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_for_each_name_and_the_first_is_the_default() {
    let pki = Pki::new();
    let a = pki.leaf("a", &["a.test"]);
    let b = pki.leaf("b", &["b.test"]);
    let tls = ServerTls::from_pairs([a.clone(), b.clone()]).unwrap();
    let lb = support::start(Config::new().tls(tls)).await;
    let der = |pair: &CertPair| super::pki::certs(&pair.cert)[0].to_vec();
    for (name, pair) in [("a.test", &a), ("b.test", &b)] {
        let tls = tls_connect(&pki, lb.addr, name, &[b"http/1.1"])
            .await
            .unwrap();
        assert_eq!(peer_cert(&tls), der(pair), "{name}");
    }
    // A name neither covers gets the first, which the client refuses.
    let err = tls_connect(&pki, lb.addr, "c.test", &[b"http/1.1"])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not valid for name \"c.test\""),
        "{err}"
    );
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_on_the_tls_listener_follows_the_same_access_rules() {
    let pki = Pki::new();
    // Loopback peers, no token: allowed.
    let lb = tls_lb(&pki, Config::new()).await;
    let tls = tls_connect(&pki, lb.addr, "localhost", &[b"http/1.1"])
        .await
        .unwrap();
    let (status, body) = Sender::new(tls).await.get("/backends").await;
    assert_eq!(status, 200, "{body:?}");
    lb.stop().await;

    // With a token: required, over TLS as over plain HTTP.
    let token: AdminToken = "s3cret-token-for-tests".parse().unwrap();
    let lb = tls_lb(&pki, Config::new().admin_token(token)).await;
    let tls = tls_connect(&pki, lb.addr, "localhost", &[b"h2"])
        .await
        .unwrap();
    let mut sender = Sender::new(tls).await;
    let res = sender.send("/backends", &[]).await;
    assert_eq!(res.status(), 401);
    let res = sender
        .send(
            "/backends",
            &[("authorization", "Bearer s3cret-token-for-tests")],
        )
        .await;
    assert_eq!(res.status(), 200);
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redirect_listener_answers_308_with_the_https_location() {
    let pki = Pki::new();
    let pair = pki.leaf("lb", &["localhost"]);
    let config = Config::new()
        .tls(ServerTls::from_pairs([pair]).unwrap())
        .redirect_http(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let server = tower_lb::server::Server::bind(config.bind(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let https_port = server.local_addr().port();
    let redirect = server.redirect_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let req = http::Request::post(format!("http://{redirect}/a/b?c=1"))
        .header("host", "example.test:80")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let res = support::send_request(&support::client(), req).await;
    assert_eq!(res.status, 308);
    assert_eq!(
        res.headers["location"],
        format!("https://example.test:{https_port}/a/b?c=1")
    );
    // Without a Host (HTTP/1.0) there is nowhere to redirect to.
    let mut raw = tokio::net::TcpStream::connect(redirect).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut raw, b"GET / HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let head = support::read_head(&mut raw).await;
    assert!(head.starts_with("HTTP/1.0 400 Bad Request\r\n"), "{head}");
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}
