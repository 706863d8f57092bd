//! The `backend_server` binary: arguments, exit codes, and signals.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_backend_server");
const DEADLINE: Duration = Duration::from_secs(10);

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running server process, killed on drop.
struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Starts the binary on `127.0.0.1:port` and waits for its "listening" line.
    fn start(port: u16) -> Self {
        let mut child = Command::new(BIN)
            .args(["127.0.0.1", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(DEADLINE).expect("server printed nothing");
        assert_eq!(line, format!("listening on http://127.0.0.1:{port}\n"));
        Self { child }
    }

    fn wait(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < DEADLINE, "server did not exit");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// One HTTP/1.1 request; returns (status line, body).
fn get(port: u16, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let status = head.lines().next().unwrap().to_owned();
    (status, body.to_owned())
}

fn run_to_end(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status,
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn serves_its_own_address_and_health() {
    let port = free_port();
    let _server = Running::start(port);
    let (status, body) = get(port, "/");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        body,
        format!("Hello from Rust server at 127.0.0.1:{port}\n")
    );
    let (status, body) = get(port, "/health");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, "OK");
    let (status, _) = get(port, "/nope");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

#[test]
fn bad_arguments_exit_2_with_usage() {
    for args in [
        &["127.0.0.1"][..],
        &["127.0.0.1", "1081", "extra"],
        &["not-an-ip", "1081"],
        &["127.0.0.1", "99999"],
        &["127.0.0.1", "port"],
        &["--bogus"],
    ] {
        let (status, stdout, stderr) = run_to_end(args);
        assert_eq!(status.code(), Some(2), "{args:?}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(
            stderr.contains("usage: backend_server [ADDR PORT]"),
            "{args:?}: {stderr}"
        );
        assert!(stdout.is_empty());
    }
}

#[test]
fn help_prints_usage_and_exits_0() {
    let (status, stdout, stderr) = run_to_end(&["--help"]);
    assert_eq!(status.code(), Some(0));
    assert!(stdout.starts_with("usage: backend_server [ADDR PORT]"));
    assert!(stderr.is_empty());
}

#[test]
fn port_in_use_exits_1_with_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (status, stdout, stderr) = run_to_end(&["127.0.0.1", &port.to_string()]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        stderr,
        format!("error: cannot listen on 127.0.0.1:{port}: address already in use\n")
    );
    assert!(stdout.is_empty());
}

#[test]
fn sigterm_and_sigint_exit_0() {
    for sig in ["-TERM", "-INT"] {
        let port = free_port();
        let mut server = Running::start(port);
        assert_eq!(get(port, "/health").1, "OK");
        server.signal(sig);
        let status = server.wait();
        assert_eq!(status.code(), Some(0), "{sig}");
    }
}

#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let port = free_port();
    let mut server = Running::start(port);
    let request = thread::spawn(move || get(port, "/sleep?ms=500"));
    // Let the request reach the server before the signal.
    thread::sleep(Duration::from_millis(150));
    server.signal("-TERM");
    let (status, body) = request.join().unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, "slept 500 ms\n");
    assert_eq!(server.wait().code(), Some(0));
    // And it no longer listens.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}
