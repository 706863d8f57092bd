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

/// Reopens the access log on each SIGUSR1 (after `logrotate` renamed it), as nginx does.
/// The handler is installed before it returns.
#[cfg(unix)]
pub(crate) fn reopen_on_sigusr1(
    log: tower_lb::server::access_log::AccessLog,
) -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut usr1 = signal(SignalKind::user_defined1())?;
    Ok(async move {
        while usr1.recv().await.is_some() {
            tracing::info!(target = %log.target(), "SIGUSR1: reopening the access log");
            log.reopen();
        }
    })
}

/// The signal handling, with the real program's code path: `run` and a SIGTERM.
#[cfg(all(test, unix))]
mod tests;
