use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

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
    let backend = backend_server::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let argv: Vec<std::ffi::OsString> = [
        "lb",
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--backend",
        &backend.url(),
        "--grace",
        "5",
    ]
    .iter()
    .map(Into::into)
    .collect();
    let args = crate::cli::Args::parse_from(&argv);
    let running = tokio::spawn(crate::run(args, argv));

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
