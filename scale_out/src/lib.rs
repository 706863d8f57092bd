//! Several balancers sharing registrations through a real etcd, on loopback: the parts the
//! scale-out test (`tests/scale_out.rs`) and the propagation measurement
//! (`src/bin/propagation.rs`) start.
//!
//! - [`Etcd`]: Debian's `etcd` (package `etcd-server`) with its client and peer ports on
//!   127.0.0.1 and its data in a temporary folder; killed and restarted on the same data.
//! - [`Lb`]: the `lb` example built with the `etcd` feature ([`lb_binary`]), as a process of
//!   its own, following a prefix of that etcd.
//! - [`request`]: a plain HTTP/1.1 exchange from a chosen loopback address, so that each
//!   simulated client has its own peer IP (what SIH hashes).
//!
//! Every wait is bounded ([`DEADLINE`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::process::{Child, Command};

/// The longest any single wait of the harness lasts.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Where Debian's `etcd-server` installs etcd.
const ETCD: &str = "/usr/bin/etcd";

/// A free TCP port on 127.0.0.1 (free when asked; the OS does not hand it out again soon).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A real etcd on loopback; killed when dropped.
#[derive(Debug)]
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

impl Etcd {
    /// Starts etcd with a new data folder and waits until it answers.
    ///
    /// Panics naming the Debian package if `/usr/bin/etcd` is missing.
    pub async fn start() -> Self {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: install Debian's etcd-server (apt-get install etcd-server), \
             as .ci/run does"
        );
        let mut etcd = Self {
            child: None,
            dir: tempfile::tempdir().expect("a temporary folder"),
            client_port: free_port(),
            peer_port: free_port(),
        };
        etcd.restart().await;
        etcd
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Kills etcd (SIGKILL) and waits for it to exit.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill etcd");
        }
    }

    /// Starts etcd again on the same data folder and ports (after [`kill`](Self::kill)), and
    /// waits until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "etcd is running");
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).expect("etcd log");
        let child = Command::new(ETCD)
            .arg("--name=scale-out")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=scale-out={peer}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {ETCD}: {e}"));
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.client_port));
        eventually("etcd answers /health", || async {
            let (status, body) = request(addr, "GET", "/health", None, None).await.ok()?;
            (status == 200 && body.contains("true")).then_some(())
        })
        .await;
    }

    /// etcd's log so far, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }
}

/// The `lb` example built with the `etcd` feature: builds it once per process (with the
/// cargo that runs the tests, into the same target folder) and returns its path.
pub fn lb_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let output = std::process::Command::new(cargo)
            .args(["build", "--example", "lb", "--features", "etcd", "--message-format=json"])
            .arg("--manifest-path")
            .arg(&manifest)
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build --example lb --features etcd");
        assert!(
            output.status.success(),
            "cargo build --example lb --features etcd failed (etcd-client needs protoc: apt-get install protobuf-compiler)"
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "lb")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no lb executable")
    })
}

/// A balancer process (`lb --etcd …`) on 127.0.0.1; killed when dropped.
#[derive(Debug)]
pub struct Lb {
    child: Child,
    /// Where it listens (the admin API too).
    pub addr: SocketAddr,
}

impl Lb {
    /// Starts `lb` following `prefix` on `etcd_url`, with health checks every 200 ms, plus
    /// `extra` flags, and waits until it answers.
    pub async fn spawn(etcd_url: &str, prefix: &str, extra: &[&str]) -> Self {
        let port = free_port();
        let child = Command::new(lb_binary())
            .args([
                "--bind",
                "127.0.0.1",
                "--workers",
                "1",
                "--health-interval",
                "0.2",
            ])
            .args([
                "--port",
                &port.to_string(),
                "--etcd",
                etcd_url,
                "--etcd-prefix",
                prefix,
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start lb");
        let lb = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        eventually("lb answers GET /backends", || async {
            let (status, _) = lb.get("/backends").await.ok()?;
            (status == 200).then_some(())
        })
        .await;
        lb
    }

    /// Kills the process (SIGKILL: it cannot clean up) and waits for it to exit.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill lb");
    }

    /// `GET path` from 127.0.0.1.
    pub async fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        request(self.addr, "GET", path, None, None).await
    }

    /// `POST /register` of `address` with `weight`: the status and the body.
    pub async fn register(&self, address: &str, weight: u32) -> (u16, String) {
        let body = format!(r#"{{"address":"{address}","weight":{weight}}}"#);
        request(self.addr, "POST", "/register", Some(&body), None)
            .await
            .expect("POST /register")
    }

    /// `DELETE /register` of `address`: the status and the body.
    pub async fn deregister(&self, address: &str) -> (u16, String) {
        let body = format!(r#"{{"address":"{address}"}}"#);
        request(self.addr, "DELETE", "/register", Some(&body), None)
            .await
            .expect("DELETE /register")
    }

    /// The backend (`host:port`) that serves `GET /` from client `from`, or the status of
    /// the answer if it is not a backend's greeting.
    pub async fn pick_from(&self, from: IpAddr) -> Result<String, u16> {
        let (status, body) = request(self.addr, "GET", "/", None, Some(from))
            .await
            .map_err(|_| 0u16)?;
        match body.trim().strip_prefix("Hello from Rust server at ") {
            Some(name) if status == 200 => Ok(name.to_owned()),
            _ => Err(status),
        }
    }

    /// The backend that serves `GET /` from 127.0.0.1.
    pub async fn pick(&self) -> Result<String, u16> {
        self.pick_from(IpAddr::V4(Ipv4Addr::LOCALHOST)).await
    }
}

/// One HTTP/1.1 exchange on a new connection to `to` (from `from` if given), with
/// `Connection: close`: the status and the body (a chunked body decoded), within
/// [`DEADLINE`].
pub async fn request(
    to: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
    from: Option<IpAddr>,
) -> std::io::Result<(u16, String)> {
    let exchange = async {
        let socket = TcpSocket::new_v4()?;
        if let Some(from) = from {
            socket.bind(SocketAddr::new(from, 0))?;
        }
        let mut stream = socket.connect(to).await?;
        let body = json.unwrap_or("");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n");
        if json.is_some() {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        parse_response(&response)
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other(format!("{method} {path}: no answer"))))
}

fn parse_response(response: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    if !chunked {
        return Some((status, body.to_owned()));
    }
    let (mut rest, mut decoded) = (body, String::new());
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some((status, decoded));
        }
        decoded.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}

/// Polls `check` every 5 ms until it returns `Some`, panicking with `what` after
/// [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(DEADLINE, check)
        .await
        .unwrap_or_else(|| panic!("timed out after {DEADLINE:?} waiting until {what}"))
}

/// Polls `check` every 5 ms until it returns `Some`, or `None` after `limit`.
pub async fn within<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_plain_and_chunked() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"),
            Some((200, "hi".to_owned()))
        );
        assert_eq!(
            parse_response(
                b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            ),
            Some((503, "abcde".to_owned()))
        );
        assert_eq!(parse_response(b"garbage"), None);
    }
}
