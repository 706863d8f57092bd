//! Graceful shutdown on SIGTERM and SIGINT (Ctrl-C).

/// Resolves on SIGTERM or SIGINT (Ctrl-C). The handlers are installed before it returns, so
/// a signal sent from then on is never missed (nor kills the process).
pub(crate) fn shutdown() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
    };
    #[cfg(not(unix))]
    let signals = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    Ok(async move {
        signals.await;
        tracing::info!("shutting down: no new connections, finishing requests in flight");
    })
}

/// The signal handling, with the real program's code path: `run` and a SIGTERM.
#[cfg(all(test, unix))]
mod tests;
