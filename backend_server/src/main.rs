//! `backend_server [ADDR PORT]`: serves the routes of the [`backend_server`] library.

use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: backend_server [ADDR PORT]

A small HTTP server to balance over. Listens on ADDR:PORT, 127.0.0.1:1080 by default,
and stops gracefully on SIGINT or SIGTERM.

Routes (any method):
  /                             Hello from Rust server at ADDR:PORT
  /health                       OK
  /echo                         the request body back, with x-echo-method, x-echo-path
                                and the x-test-* request headers
  /status/{code}                that status
  /stream?chunks=N&delay_ms=D   N chunks, one every D ms
  /sleep?ms=N                   answers after N ms
  /headers                      the request headers as JSON
  /bytes?n=N                    N bytes
  /upload?ms=N                  reads the request body, then answers after N ms
";

/// How long requests in flight may take to finish after a signal.
const GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = match parse_args(&args) {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(addr))
}

/// `Ok(None)` asks for the usage.
fn parse_args(args: &[String]) -> Result<Option<SocketAddr>, String> {
    match args {
        [] => Ok(Some(SocketAddr::from(([127, 0, 0, 1], 1080)))),
        [flag] if flag == "--help" || flag == "-h" => Ok(None),
        [ip, port] => {
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| format!("invalid address `{ip}`: expected an IP such as 127.0.0.1"))?;
            let port: u16 = port
                .parse()
                .map_err(|_| format!("invalid port `{port}`: expected 0 to 65535"))?;
            Ok(Some(SocketAddr::new(ip, port)))
        }
        _ => Err(format!(
            "expected ADDR PORT or nothing, got {} arguments",
            args.len()
        )),
    }
}

async fn run(addr: SocketAddr) -> ExitCode {
    let listener = match backend_server::bind(addr) {
        Ok(listener) => listener,
        Err(err) => {
            let reason = match err.kind() {
                io::ErrorKind::AddrInUse => "address already in use".to_owned(),
                _ => err.to_string(),
            };
            eprintln!("error: cannot listen on {addr}: {reason}");
            return ExitCode::FAILURE;
        }
    };
    let server = backend_server::Server::new(listener).grace_period(GRACE);
    match server.local_addr() {
        Ok(local) => println!("listening on http://{local}"),
        Err(_) => println!("listening on http://{addr}"),
    }
    let _ = io::stdout().flush();

    match server.run(signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_are_positional() {
        assert_eq!(
            parse_args(&args(&[])),
            Ok(Some("127.0.0.1:1080".parse().unwrap()))
        );
        assert_eq!(
            parse_args(&args(&["127.0.0.2", "1081"])),
            Ok(Some("127.0.0.2:1081".parse().unwrap()))
        );
        assert_eq!(
            parse_args(&args(&["::1", "80"])),
            Ok(Some("[::1]:80".parse().unwrap()))
        );
        assert_eq!(parse_args(&args(&["--help"])), Ok(None));
        assert!(parse_args(&args(&["127.0.0.1"])).is_err());
        assert!(parse_args(&args(&["localhost", "80"])).is_err());
        assert!(parse_args(&args(&["127.0.0.1", "65536"])).is_err());
        assert!(parse_args(&args(&["127.0.0.1", "80", "x"])).is_err());
    }
}
