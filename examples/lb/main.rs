//! The standalone balancer: `tower-lb` as a program.
//!
//! ```text
//! cargo run --release --example lb -- --demo
//! curl localhost:8080/
//! curl --json '{"address": "http://127.0.0.1:1080", "weight": 5}' localhost:8080/register
//! curl localhost:8080/backends
//! curl -X DELETE --json '{"address": "http://127.0.0.1:1080"}' localhost:8080/register
//! ```
//!
//! Installed on a machine's `PATH` (as `lb`) with
//! `cargo install --path . --example lb`, run from a checkout.
//!
//! Every flag is described by `--help`. The original Go balancer's single-dash spelling
//! (`-algo WRR`, `-port 8081`) is accepted too. Logs follow `RUST_LOG` (default `info`).
//!
//! The rooms: [`cli`] parses the command line into a [`Config`], [`signal`] turns SIGTERM and
//! SIGINT into a graceful shutdown, [`demo`] runs the backends of `--demo`; this file starts
//! the logs and the runtime and runs the [`Server`].

use std::io::IsTerminal;
use std::process::ExitCode;

use tower_lb::server::{Config, Server};
use tracing_subscriber::EnvFilter;

mod cli;
mod demo;
mod signal;

fn main() -> ExitCode {
    let args = cli::Args::from_env();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    // One thread per worker, each with its own runtime and listening socket
    // (`Config::workers`); this single-threaded one keeps health checks, the admin listener
    // and signals, and is the only one with `--workers 1`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = runtime
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|runtime| runtime.block_on(run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("lb: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Binds, starts the demo backends if asked, and serves until SIGTERM or SIGINT.
async fn run(args: cli::Args) -> Result<(), String> {
    let config: Config = args.with_tls(args.config()).unwrap_or_else(|e| e.exit());
    let addr = config.addr;
    let server = Server::bind(config)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    if args.demo {
        demo::start(&server)
            .await
            .map_err(|e| format!("cannot start the demo backends: {e}"))?;
    }
    let signal = signal::shutdown().map_err(|e| format!("cannot handle signals: {e}"))?;
    if let Some(tls) = server.tls() {
        let reload = signal::reload_on_hangup(tls.clone())
            .map_err(|e| format!("cannot handle signals: {e}"))?;
        tokio::spawn(reload);
    }
    server
        .run(signal)
        .await
        .map_err(|e| format!("server failed: {e}"))
}
