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
//! SIGINT into a graceful shutdown (and SIGUSR1 into reopening the access log), [`demo`]
//! runs the backends of `--demo`; this file starts
//! the logs and the runtime and runs the [`Server`].

use std::io::IsTerminal;
use std::process::ExitCode;

use tower_lb::server::{Config, Server};
use tracing_subscriber::EnvFilter;

mod cli;
mod config_file;
mod demo;
mod signal;

fn main() -> ExitCode {
    let argv = cli::normalize(std::env::args_os());
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
        .and_then(|runtime| runtime.block_on(run(args, argv)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("lb: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Binds, starts the demo backends if asked, and serves until SIGTERM or SIGINT, reloading
/// the configuration on SIGHUP and when the `--config` file changes, and the TLS
/// certificates on SIGHUP.
async fn run(args: cli::Args, argv: Vec<std::ffi::OsString>) -> Result<(), String> {
    let config: Config = args.with_tls(args.config()).unwrap_or_else(|e| e.exit());
    let addr = config.addr;
    let server = Server::bind(config).await.map_err(|e| {
        if e.to_string().starts_with("cannot open the access log") {
            e.to_string()
        } else {
            format!("cannot listen on {addr}: {e}")
        }
    })?;
    if args.demo {
        demo::start(&server)
            .await
            .map_err(|e| format!("cannot start the demo backends: {e}"))?;
    }
    #[cfg(unix)]
    if let Some(log) = server.access_log() {
        let reopen = signal::reopen_on_sigusr1(log.clone())
            .map_err(|e| format!("cannot handle signals: {e}"))?;
        tokio::spawn(reopen);
    }
    let signal = signal::shutdown().map_err(|e| format!("cannot handle signals: {e}"))?;
    let reloads =
        signal::reloads(args.config.clone()).map_err(|e| format!("cannot handle signals: {e}"))?;
    let reload = server.reload_handle();
    let tls = server.tls().cloned();
    tokio::spawn(reloads.run(move |cause| {
        let started = std::time::Instant::now();
        if let (Some(tls), "SIGHUP") = (&tls, cause) {
            // Connections already open keep their certificates; a file that does not load
            // is logged by `reload` and the old certificates kept.
            let _ = tls.reload();
        }
        match cli::Args::from_argv(&argv) {
            Ok(args) => {
                let reloaded = reload.apply(args.config());
                tracing::info!(
                    cause,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    backends_changed = reloaded.backends.len(),
                    rebuilt = reloaded.rebuilt,
                    timeouts = reloaded.timeouts,
                    "reload applied"
                );
            }
            Err(reason) => tracing::error!(
                cause,
                %reason,
                "configuration refused; the running one is kept"
            ),
        }
    }));
    server
        .run(signal)
        .await
        .map_err(|e| format!("server failed: {e}"))
}
