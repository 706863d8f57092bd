//! A benchmark reference, not part of tower-lb: the floor of what a proxy costs on tokio.
//!
//! It forwards TCP byte for byte. Each client connection is pinned at accept time to one
//! backend (round robin) over a connection of its own, and [`copy_bidirectional`] moves the
//! bytes both ways. It parses no HTTP, rewrites no header, checks no health, times nothing out.
//! Per keep-alive request it makes the same four socket calls as an HTTP proxy: read from the
//! client, write to the backend, read the answer, write it to the client.
//!
//! `benches/compare/compare.py` runs it next to tower-lb, nginx and HAProxy (and HAProxy in
//! `mode tcp`, the same floor in C). Whatever rate an HTTP balancer reaches, it cannot beat
//! this one by much on the same machine: what remains is the kernel's work for those four calls.
//!
//! ```text
//! cargo run --release --example tcp_forward -- --port 19093 --workers 1 \
//!     --backend 127.0.0.1:19081 --backend 127.0.0.1:19082
//! ```
//!
//! [`copy_bidirectional`]: tokio::io::copy_bidirectional

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Parser;
use tokio::net::{TcpListener, TcpStream};

/// A round-robin TCP forwarder: the floor of a proxy's cost, for benchmarks.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Port to listen on.
    #[arg(long)]
    port: u16,
    /// Runtime threads; 1 runs a current-thread runtime, like `lb --workers 1`.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// A backend's address (host:port); repeat for more.
    #[arg(long = "backend", required = true)]
    backends: Vec<SocketAddr>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match args.workers {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    };
    let result = runtime.and_then(|runtime| runtime.block_on(serve(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tcp_forward: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind((args.bind, args.port)).await?;
    let backends: Arc<[SocketAddr]> = args.backends.into();
    let next = AtomicUsize::new(0);
    loop {
        let (mut client, _) = listener.accept().await?;
        let backend = backends[next.fetch_add(1, Ordering::Relaxed) % backends.len()];
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(backend).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
    }
}
