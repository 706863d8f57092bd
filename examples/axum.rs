//! tower-lb inside an axum app: `/api/*` is balanced over HTTP backends, the rest is the app's.
//!
//! ```text
//! cargo run --example axum            # listens on 127.0.0.1:3000 with two demo backends
//! curl localhost:3000/                # "served by the axum app"
//! curl localhost:3000/api/            # a backend's greeting, alternating
//! ```
//!
//! The balancer is an ordinary tower service: `ServiceBuilder::new().layer(LoadBalanceLayer::new(
//! Algo::LeastConn))` over a health-checked [`Registry`] stream, mounted with
//! `Router::nest_service`. Errors become JSend responses through `HandleErrorLayer`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use tower::ServiceBuilder;
use tower_lb::health::{HealthCheckLayer, HttpProbe};
use tower_lb::proxy::{HttpBackend, ProxyClient};
use tower_lb::{Algo, BackendAddr, BoxError, LoadBalanceLayer, Registry};

/// The app: its own routes, and `/api` balanced over whatever `registry` holds.
fn app(registry: &Registry<BackendAddr, HttpBackend<Body>>) -> Router {
    let balancer = ServiceBuilder::new()
        // Turn balancer and backend errors (no backend ready, refused, timed out) into
        // 503/502/504 JSend answers.
        .layer(HandleErrorLayer::new(|error: BoxError| async move {
            tower_lb::proxy::error_response(&error)
        }))
        .map_response(|res: http::Response<_>| res.map(Body::new))
        .layer(LoadBalanceLayer::new(Algo::LeastConn))
        .layer(HealthCheckLayer::new(HttpProbe::new("/health")).interval(Duration::from_secs(5)))
        .service(registry.discover());

    Router::new()
        .route("/", get(|| async { "served by the axum app\n" }))
        .nest_service("/api", balancer)
}

/// A registry whose backends are HTTP servers reached through one pooled client.
fn registry() -> Registry<BackendAddr, HttpBackend<Body>> {
    let client = ProxyClient::builder().build::<Body>();
    Registry::new(move |addr: &BackendAddr| HttpBackend::new(addr.clone(), client.clone()))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // Two demo backends; in an application these come from config or service discovery.
    let registry = registry();
    let mut demo = Vec::new();
    for _ in 0..2 {
        let backend = backend_server::spawn("127.0.0.1:0".parse().unwrap()).await?;
        registry.register(backend.url().parse().unwrap(), 1);
        demo.push(backend);
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    // `ConnectInfo` gives the balancer each client's address (for SIH/SRR and X-Forwarded-For).
    axum::serve(
        listener,
        app(&registry).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn get(
        client: &hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            http_body_util::Empty<bytes::Bytes>,
        >,
        url: String,
    ) -> (u16, String) {
        let res = client.get(url.parse().unwrap()).await.unwrap();
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn axum_app_serves_its_routes_and_balances_api() {
        let registry = registry();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = app(&registry).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();

        assert_eq!(
            get(&client, format!("http://{addr}/")).await,
            (200, "served by the axum app\n".to_string())
        );
        // No backend yet: the balancer fails fast and the app answers 503 JSend.
        let (status, body) = get(&client, format!("http://{addr}/api/")).await;
        assert_eq!(status, 503);
        assert_eq!(
            body,
            r#"{"status":"error","data":"error no available server"}"#
        );

        let a = backend_server::spawn("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let b = backend_server::spawn("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        registry.register(a.url().parse().unwrap(), 1);
        registry.register(b.url().parse().unwrap(), 1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let (status, body) = get(&client, format!("http://{addr}/api/")).await;
            if status == 200 {
                seen.insert(body);
            }
            if seen.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let expected: std::collections::BTreeSet<_> = [&a, &b]
            .iter()
            .map(|h| format!("Hello from Rust server at {}\n", h.addr()))
            .collect();
        assert_eq!(seen, expected, "both backends answer through the app");
    }
}
