use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Held by each test that signals this process: a signal reaches every test's balancer.
static SIGNALS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sends SIGTERM to this process.
fn sigterm() {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish_and_run_returns_ok() {
    let _signals = SIGNALS.lock().await;
    let backend = backend_server::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args = crate::cli::Args::parse_from([
        "lb",
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--backend",
        &backend.url(),
        "--grace",
        "5",
    ]);
    let running = tokio::spawn(crate::run(args));

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let get = |path: &str| {
        let client = client.clone();
        let url = format!("http://127.0.0.1:{port}{path}").parse().unwrap();
        async move {
            let res = client.get(url).await?;
            let status = res.status();
            let body = res.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while get("/").await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "lb never answered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let in_flight: Vec<_> = (0..5).map(|_| tokio::spawn(get("/sleep?ms=500"))).collect();
    while backend.stats().requests() < 6 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "requests never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sigterm();
    for request in in_flight {
        let (status, body) = request.await.unwrap().expect("the request completes");
        assert_eq!(status, 200);
        assert_eq!(body, "slept 500 ms\n");
    }
    let result = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("run returns after SIGTERM")
        .unwrap();
    assert_eq!(result, Ok(()), "run returns Ok, so main exits 0");
    assert!(get("/").await.is_err(), "the listener is closed");
}

/// SIGHUP reloads the certificates of `--tls-cert`: a new handshake sees the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_tls_certificates() {
    let _signals = SIGNALS.lock().await;
    let dir = std::env::temp_dir().join(format!("tower-lb-sighup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let write = || {
        let pair = rcgen::KeyPair::generate().unwrap();
        let der = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&pair)
            .unwrap();
        std::fs::write(&cert, der.pem()).unwrap();
        std::fs::write(&key, pair.serialize_pem()).unwrap();
        der.der().to_vec()
    };
    let first = write();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args = crate::cli::Args::parse_from([
        "lb",
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let running = tokio::spawn(crate::run(args));
    // The certificate a new handshake gets (trusting it, whichever it is).
    let served = || async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let tls = tower_lb::tls::BackendTls::builder()
            .system_roots(false)
            .ca_file(&cert)
            .build()
            .unwrap();
        let stream = tls.connect("localhost", tcp).await?;
        Ok::<_, std::io::Error>(stream.get_ref().1.peer_certificates().unwrap()[0].to_vec())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let got = loop {
        match served().await {
            Ok(got) => break got,
            Err(_) => {
                assert!(tokio::time::Instant::now() < deadline, "lb never answered");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    assert_eq!(got, first);

    let second = write();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    loop {
        if served().await.ok().as_deref() == Some(&second[..]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sigterm();
    running.await.unwrap().unwrap();
}
