//! The standalone balancer under valgrind, as someone profiling it with callgrind or checking
//! it with memcheck runs it.
//!
//! valgrind maps no vDSO where the process's auxiliary vector says one is. rustix's own vDSO
//! lookup, behind the coarse clock that sticky round robin and the default retry budget read
//! on every request, read that memory and crashed the balancer on its first request.

mod support;

use std::process::{Command, Stdio};

use bytes::Bytes;
use http::StatusCode;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancer_forwards_requests_under_valgrind() {
    let backends = backends(2).await;
    let port = free_port();
    let lb = lb_binary();
    let mut args = vec![
        "--tool=none".to_owned(),
        lb.display().to_string(),
        "--bind".to_owned(),
        "127.0.0.1".to_owned(),
        "--port".to_owned(),
        port.to_string(),
        // Sticky round robin reads the coarse clock for every request, and so does the retry
        // budget of every algorithm.
        "--algo".to_owned(),
        "SRR".to_owned(),
    ];
    for backend in &backends {
        args.extend(["--backend".to_owned(), backend.url()]);
    }
    let mut child = Command::new("valgrind")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run valgrind (apt-get install valgrind)");

    let url = format!("http://127.0.0.1:{port}/");
    let client = client();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        // A crash ends the wait at once, with valgrind's report.
        if child.try_wait().unwrap().is_some() {
            let report = child.stderr.take().map(std::io::read_to_string);
            panic!("the balancer exited under valgrind: {report:?}");
        }
        if client.get(url.parse().unwrap()).await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the balancer did not answer under valgrind within {DEADLINE:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for _ in 0..20 {
        let reply = send(&client, http::Method::GET, &url, None, Bytes::new()).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert!(
            backends.iter().any(|b| reply.body.contains(&name(b))),
            "not a backend's answer: {reply:?}"
        );
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the balancer exited under valgrind"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
