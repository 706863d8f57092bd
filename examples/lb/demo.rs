//! The backends of `--demo`: three small HTTP servers on 127.0.0.1, registered with weights 3,
//! 2 and 1.
//!
//! They answer as `backend_server` does (the walk-through's backends), so the demo prints the
//! same lines: `GET /` its greeting, `Hello from Rust server at 127.0.0.1:PORT`, `GET /health`
//! `200 OK`, any other path `404`. They are written here with the crate's own dependencies
//! (hyper and hyper-util), not with `backend_server`, a dev-dependency of the workspace: a
//! balancer installed with `cargo install` has `--demo` too.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tower_lb::BackendAddr;
use tower_lb::server::Server;

/// The weights of the demo backends, one backend each.
const WEIGHTS: [u32; 3] = [3, 2, 1];

/// Starts the demo backends on 127.0.0.1 and registers them with weights 3, 2 and 1. They run
/// until the process exits.
pub(crate) async fn start(server: &Server) -> io::Result<()> {
    for weight in WEIGHTS {
        let addr = spawn().await?;
        let backend = BackendAddr::try_from(addr).expect("a bound port is not 0");
        server.registry().register(backend, weight);
        tracing::info!(backend = %addr, weight, "demo backend registered");
    }
    Ok(())
}

/// Starts one demo backend on a free port of 127.0.0.1, on a task of its own; its address.
pub(crate) async fn spawn() -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, addr));
    Ok(addr)
}

/// Serves HTTP/1.1 and h2c on `listener`, each connection on a task of its own.
async fn serve(listener: TcpListener, addr: SocketAddr) {
    let hello = Bytes::from(format!("Hello from Rust server at {addr}\n"));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Out of file descriptors, say: back off a little rather than spin.
                tracing::debug!(backend = %addr, %error, "demo backend: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let hello = hello.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let res = answer(&req, &hello);
                async move { Ok::<_, Infallible>(res) }
            });
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(backend = %addr, %error, "demo backend: connection failed");
            }
        });
    }
}

/// The answer to `req`, by its path alone (any method), with `hello` for `/`.
fn answer<B>(req: &Request<B>, hello: &Bytes) -> Response<Full<Bytes>> {
    let (status, body) = match req.uri().path() {
        "/" => (StatusCode::OK, hello.clone()),
        "/health" => (StatusCode::OK, Bytes::from_static(b"OK")),
        _ => (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
    };
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::{HeaderMap, Method, Request, StatusCode};
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    /// What a server answered: status, content type and body.
    type Answer = (StatusCode, Option<http::HeaderValue>, Bytes);

    async fn ask(method: Method, url: String) -> Answer {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let req = Request::builder()
            .method(method)
            .uri(url)
            .body(Empty::new())
            .unwrap();
        let res = client.request(req).await.expect("the server answers");
        let status = res.status();
        let headers: HeaderMap = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            headers.get(http::header::CONTENT_TYPE).cloned(),
            body,
        )
    }

    #[tokio::test]
    async fn demo_backends_answer_as_backend_server_does() {
        let demo = super::spawn().await.unwrap();
        let reference = backend_server::spawn("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        for (method, path) in [
            (Method::GET, "/"),
            (Method::HEAD, "/"),
            (Method::POST, "/"),
            (Method::GET, "/health"),
            (Method::GET, "/nope"),
        ] {
            let got = ask(method.clone(), format!("http://{demo}{path}")).await;
            let want = ask(method.clone(), format!("{}{path}", reference.url())).await;
            // The same answer, but for the address in the greeting.
            let want_body = String::from_utf8_lossy(&want.2)
                .replace(&reference.addr().to_string(), &demo.to_string());
            assert_eq!(
                (&got.0, &got.1, String::from_utf8_lossy(&got.2)),
                (&want.0, &want.1, want_body.into()),
                "{method} {path}"
            );
        }
        let (status, _, body) = ask(Method::GET, format!("http://{demo}/")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, format!("Hello from Rust server at {demo}\n"));
        let (status, _, _) = ask(Method::GET, format!("http://{demo}/health")).await;
        assert_eq!(status, StatusCode::OK);
    }
}
