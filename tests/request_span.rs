//! The per-request `tracing` span: with `tower_lb=debug`, the lines about a proxied request
//! carry its span with method, path and the backend picked.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use tower_lb::server::Config;
use tracing_subscriber::fmt::MakeWriter;

/// A log writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn subscriber(filter: &str, out: &Captured) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(out.clone())
        .with_ansi(false)
        .finish()
}

// A single-threaded runtime: the server, its connections and the test share the thread the
// subscriber is set on.
#[tokio::test(flavor = "current_thread")]
async fn each_request_has_a_span_with_its_backend() {
    let out = Captured::default();
    let _guard = tracing::subscriber::set_default(subscriber("tower_lb=debug", &out));
    let (backend, lb) = support::lb_with(Config::new()).await;
    assert_eq!(lb.get("/?secret=1").await.status, 200);
    lb.stop().await;
    let text = out.text();
    let span = format!("request{{method=GET path=\"/\" backend={}}}", backend.url());
    let story: Vec<&str> = text.lines().filter(|l| l.contains(&span)).collect();
    assert!(
        story.iter().any(|l| l.contains("forwarding")),
        "no forwarding line in {span}:\n{text}"
    );
    assert!(
        story
            .iter()
            .any(|l| l.contains("answered") && l.contains("status=200")),
        "no answer line in {span}:\n{text}"
    );
    assert!(!text.contains("secret"), "the query is not logged:\n{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn no_span_when_debug_is_off() {
    let out = Captured::default();
    let _guard = tracing::subscriber::set_default(subscriber("tower_lb=info", &out));
    let (_backend, lb) = support::lb_with(Config::new()).await;
    assert_eq!(lb.get("/").await.status, 200);
    lb.stop().await;
    let text = out.text();
    assert!(text.contains("tower-lb listening"), "info is on:\n{text}");
    assert!(!text.contains("request{"), "{text}");
}
