use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;

use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::{Service, ServiceExt};

use super::*;
use crate::BackendTimeout;
use crate::proxy::{HttpBackend, ProxyClient};

/// A backend answering `ok` at once to everything but `/hang`, which it never answers;
/// counts the connections it accepted.
async fn backend() -> (SocketAddr, Arc<AtomicUsize>) {
    backend_with(true).await
}

/// With `keep_alive` off, the backend closes each connection after one response.
async fn backend_with(keep_alive: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    if req.uri().path() == "/hang" {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from("ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(keep_alive)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, accepted)
}

/// `GET /` through `backend`, which must answer `ok`; the response's head.
async fn get(backend: &mut HttpBackend<Empty<bytes::Bytes>>) -> http::response::Parts {
    let req = Request::get("/").body(Empty::new()).unwrap();
    let (head, body) = backend
        .ready()
        .await
        .unwrap()
        .call(req)
        .await
        .unwrap()
        .into_parts();
    assert_eq!(body.collect().await.unwrap().to_bytes(), "ok");
    head
}

/// `n` requests for `path` through clones of `b`, sent at once; each task gives its body.
fn spawn_gets(
    b: &HttpBackend<Empty<bytes::Bytes>>,
    n: usize,
    path: &'static str,
) -> Vec<tokio::task::JoinHandle<bytes::Bytes>> {
    (0..n)
        .map(|_| {
            let mut b = b.clone();
            tokio::spawn(async move {
                let req = Request::get(path).body(Empty::new()).unwrap();
                let res = b.ready().await.unwrap().call(req).await.unwrap();
                res.into_body().collect().await.unwrap().to_bytes()
            })
        })
        .collect()
}

fn http_backend(
    addr: SocketAddr,
    client: ProxyClient<Empty<bytes::Bytes>>,
) -> HttpBackend<Empty<bytes::Bytes>> {
    HttpBackend::new(format!("http://{addr}").parse().unwrap(), client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_reused_once_their_response_ends_and_workers_keep_their_own() {
    let (addr, accepted) = backend().await;
    let client = ProxyClient::builder().build();
    let mut b = http_backend(addr, client.clone());
    for _ in 0..20 {
        get(&mut b).await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection for 20 requests"
    );
    // Another backend for the same address shares the pool.
    let mut same = http_backend(addr, client.clone());
    get(&mut same).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // A worker of a thread-per-core server (a thread with a single-threaded runtime of
    // its own) has connections of its own.
    let mut worker = http_backend(addr, client);
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for _ in 0..5 {
                get(&mut worker).await;
            }
        });
    })
    .await
    .unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connections_idle_for_longer_than_the_idle_timeout_are_not_reused() {
    let (addr, accepted) = backend().await;
    let client = ProxyClient::builder()
        .response_timeout(None)
        .pool_idle_timeout(Duration::from_secs(20))
        .build();
    let mut b = http_backend(addr, client);
    get(&mut b).await;
    get(&mut b).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(21)).await;
    get(&mut b).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "the stale one is left");
    tokio::time::advance(Duration::from_secs(5)).await;
    get(&mut b).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    let host = b.shared_host();
    assert_eq!(host.idle.iter().map(|l| lock(l).len()).sum::<usize>(), 1);
}

#[tokio::test]
async fn a_pooled_connections_response_timer_is_armed_again_for_each_request() {
    let (addr, accepted) = backend().await;
    let timeout = Duration::from_millis(100);
    let client = ProxyClient::builder().response_timeout(timeout).build();
    let mut b = http_backend(addr, client);
    get(&mut b).await;
    // The connection's timer expires while it is idle in the pool...
    tokio::time::pause();
    tokio::time::advance(timeout * 2).await;
    tokio::time::resume();
    // ...and the next request on it still gets its whole timeout.
    get(&mut b).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the connection was reused"
    );
    let start = Instant::now();
    let req = Request::get("/hang").body(Empty::new()).unwrap();
    let err = b.ready().await.unwrap().call(req).await.unwrap_err();
    assert!(start.elapsed() >= timeout);
    let err = err.downcast_ref::<BackendTimeout>().expect("a timeout");
    assert!(!err.is_connect());
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn no_connection_is_kept_with_max_idle_zero() {
    let (addr, accepted) = backend().await;
    let client = ProxyClient::builder().pool_max_idle_per_host(0).build();
    let mut b = http_backend(addr, client);
    get(&mut b).await;
    get(&mut b).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "no connection kept");
}

#[tokio::test]
async fn connections_the_backend_closes_are_not_used_again() {
    let (addr, accepted) = backend_with(false).await;
    let mut b = http_backend(addr, ProxyClient::builder().build());
    for _ in 0..10 {
        get(&mut b).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 10);
}

/// An HTTP/2 (prior knowledge) backend: `/hang` waits until `release` fires, the rest
/// answer `ok` at once; counts the connections it accepted.
async fn h2_backend(release: Arc<tokio::sync::Notify>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let release = Arc::clone(&release);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let release = Arc::clone(&release);
                    async move {
                        assert_eq!(req.version(), http::Version::HTTP_2);
                        if req.uri().path() == "/hang" {
                            release.notified().await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from("ok"))))
                    }
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_requests_share_one_connection_until_its_stream_limit() {
    let release = Arc::new(tokio::sync::Notify::new());
    let (addr, accepted) = h2_backend(Arc::clone(&release)).await;
    let client = ProxyClient::builder().http2_max_streams(3).build();
    let b: HttpBackend<Empty<bytes::Bytes>> =
        HttpBackend::new(format!("h2c://{addr}").parse().unwrap(), client);
    // Requests arriving together share the connection the first one opens.
    let hanging = spawn_gets(&b, 3, "/hang");
    let host = Arc::clone(b.shared_host());
    tokio::time::timeout(Duration::from_secs(5), async {
        while host.http2_streams() != [3] {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("three streams on one connection");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // The first connection is full: the fourth request opens another.
    get(&mut b.clone()).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(host.http2_streams(), [3, 0]);
    release.notify_waiters();
    for task in hanging {
        assert_eq!(task.await.unwrap(), "ok");
    }
    // Their streams have ended: the first connection takes requests again.
    assert_eq!(host.http2_streams(), [0, 0]);
    for _ in 0..5 {
        get(&mut b.clone()).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// A TLS backend for `localhost` choosing among `alpn`, answering `<version>` after 200 ms;
/// counts the connections it accepted. With a client trusting its certificate only.
#[cfg(feature = "tls")]
async fn tls_backend(alpn: &[&[u8]]) -> (SocketAddr, Arc<AtomicUsize>, crate::tls::BackendTls) {
    use rustls::pki_types::PrivateKeyDer;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.cert.der().clone()],
            PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into()),
        )
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let version = format!("{:?}", req.version());
                    Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from(version))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    let dir = std::env::temp_dir().join(format!(
        "tower-lb-pool-{}-{}",
        std::process::id(),
        addr.port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let tls = crate::tls::BackendTls::builder()
        .system_roots(false)
        .ca_file(&ca)
        .build()
        .unwrap();
    (addr, accepted, tls)
}

/// `n` requests at once through `b`; their bodies.
#[cfg(feature = "tls")]
async fn burst(b: &HttpBackend<Empty<bytes::Bytes>>, n: usize) -> Vec<bytes::Bytes> {
    let mut bodies = Vec::new();
    for task in spawn_gets(b, n, "/") {
        bodies.push(task.await.unwrap());
    }
    bodies
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_requests_to_an_h2_tls_backend_share_one_connection_up_to_the_stream_limit() {
    let (addr, accepted, tls) = tls_backend(&[b"h2"]).await;
    let client = ProxyClient::builder()
        .backend_tls(tls)
        .http2_max_streams(10)
        .build();
    let b: HttpBackend<Empty<bytes::Bytes>> = HttpBackend::new(
        format!("https://localhost:{}", addr.port())
            .parse()
            .unwrap(),
        client,
    );
    let host = Arc::clone(b.shared_host());
    assert_eq!(host.protocol(), Protocol::Unknown);
    // Ten first requests at once: they wait for the connection the first opens, and learn it
    // is HTTP/2 from it.
    let bodies = burst(&b, 10).await;
    assert!(bodies.iter().all(|body| body == "HTTP/2.0"), "{bodies:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(host.protocol(), Protocol::Http2);
    assert!(host.is_http2());
    // Twenty at once: the connection's ten streams, then another connection.
    let bodies = burst(&b, 20).await;
    assert!(bodies.iter().all(|body| body == "HTTP/2.0"), "{bodies:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(host.http2_streams(), [0, 0]);
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_tls_backend_is_remembered_and_gets_a_connection_per_request_in_flight() {
    let (addr, accepted, tls) = tls_backend(&[b"http/1.1"]).await;
    let client = ProxyClient::builder().backend_tls(tls).build();
    let b: HttpBackend<Empty<bytes::Bytes>> = HttpBackend::new(
        format!("https://localhost:{}", addr.port())
            .parse()
            .unwrap(),
        client,
    );
    let host = Arc::clone(b.shared_host());
    assert_eq!(burst(&b, 1).await, ["HTTP/1.1"]);
    assert_eq!(host.protocol(), Protocol::Http1);
    assert!(!host.is_http2());
    // Known to be HTTP/1.1: five at once take a connection each (the pooled one serves one
    // of them), none a stream.
    let bodies = burst(&b, 5).await;
    assert!(bodies.iter().all(|body| body == "HTTP/1.1"), "{bodies:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
    assert!(host.http2_streams().is_empty());
}

#[tokio::test]
async fn a_response_that_opened_a_connection_says_how_long_the_connect_took() {
    use crate::balance::ConnectTime;
    let (addr, accepted) = backend().await;
    let mut b = http_backend(addr, ProxyClient::builder().build());
    let mut connect_times = Vec::new();
    for _ in 0..3 {
        let head = get(&mut b).await;
        connect_times.push(head.extensions.get::<ConnectTime>().copied());
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert!(
        matches!(connect_times[0], Some(ConnectTime(d)) if d > Duration::ZERO),
        "{connect_times:?}"
    );
    assert_eq!(connect_times[1..], [None, None], "pooled: no connect");
}
