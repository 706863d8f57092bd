//! The balancer with TLS, end to end: its TLS listener (certificates made by rcgen in the
//! test; curl and a hyper/rustls client, over HTTP/1.1 and HTTP/2), SNI, reloads, the
//! redirect listener, malformed and idle clients, and `https://` backends (hyper/rustls
//! servers in the test, one requiring a client certificate; HTTP/2 ones chosen by ALPN, tonic
//! among them).

#[path = "../support/mod.rs"]
mod support;

mod backends;
mod front;
mod http2;
mod malformed;
mod pki;
mod reload;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tower_lb::server::Config;
use tower_lb::tls::{ClientTlsStream, ServerTls};

use self::pki::Pki;
use self::support::Lb;

/// A balancer on 127.0.0.1 serving TLS with a certificate for `localhost` and 127.0.0.1,
/// over `config`; with its TLS configuration.
async fn tls_lb_with(pki: &Pki, config: Config) -> (Lb, ServerTls) {
    let pair = pki.leaf("lb", &["localhost", "127.0.0.1"]);
    let tls = ServerTls::from_pairs([pair]).unwrap();
    (support::start(config.tls(tls.clone())).await, tls)
}

/// [`tls_lb_with`] without its TLS configuration.
async fn tls_lb(pki: &Pki, config: Config) -> Lb {
    tls_lb_with(pki, config).await.0
}

/// A TLS connection to `addr`, for the name `sni`, with the client of `pki` offering `alpn`.
async fn tls_connect(
    pki: &Pki,
    addr: SocketAddr,
    sni: &str,
    alpn: &[&[u8]],
) -> std::io::Result<ClientTlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    pki.client(alpn).connect(sni, tcp).await
}

/// A hyper client connection over `tls`: HTTP/2 if ALPN chose `h2`, HTTP/1.1 otherwise.
enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    async fn new(tls: ClientTlsStream<TcpStream>) -> Self {
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        if h2 {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            Self::H2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Self::H1(sender)
        }
    }

    /// `GET path` with `Host: localhost`: the status and body.
    async fn get(&mut self, path: &str) -> (StatusCode, Bytes) {
        let res = self.send(path, &[]).await;
        let status = res.status();
        (status, res.into_body().collect().await.unwrap().to_bytes())
    }

    async fn send(&mut self, path: &str, headers: &[(&str, &str)]) -> Response<Incoming> {
        let mut req = Request::get(path);
        match self {
            Self::H1(_) => req = req.header("host", "localhost"),
            Self::H2(_) => req = req.uri(format!("https://localhost{path}")),
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Empty::new()).unwrap();
        let exchange = async {
            match self {
                Self::H1(sender) => {
                    sender.ready().await?;
                    sender.send_request(req).await
                }
                Self::H2(sender) => {
                    sender.ready().await?;
                    sender.send_request(req).await
                }
            }
        };
        tokio::time::timeout(support::DEADLINE, exchange)
            .await
            .expect("a response in time")
            .expect("a response")
    }
}

/// The leaf certificate `tls`'s server presented.
fn peer_cert(tls: &ClientTlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Runs `curl` with `args`, failing with a clear message if it is not installed; its stdout.
fn curl(args: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is needed for this test: apt-get install curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `curl` speaking `version` (`--http2` or `--http1.1`) to `path` of the balancer listening on
/// 127.0.0.1:`port`, as `https://localhost`, trusting `pki`'s CA; run off the runtime. Its
/// output: the body, then the HTTP version curl used, on a line of its own.
async fn curl_localhost(pki: &Pki, port: u16, version: &'static str, path: &str) -> String {
    let ca = pki.ca_pem.to_str().unwrap().to_owned();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = format!("https://localhost:{port}{path}");
    tokio::task::spawn_blocking(move || {
        curl(&[
            version,
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
            "--write-out",
            "\n%{http_version}",
            &url,
        ])
    })
    .await
    .unwrap()
}

/// Serves `config` over TLS on 127.0.0.1 with a hyper server answering `GET /health` with
/// `200` and anything else with `tls backend <addr>`; its address.
async fn https_backend(config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                    let body = format!(
                        "tls backend {addr} {}",
                        req.headers()
                            .get("x-forwarded-proto")
                            .map_or("-", |v| v.to_str().unwrap())
                    );
                    Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                        Bytes::from(body),
                    )))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}
