//! Graceful shutdown on SIGTERM and SIGINT (Ctrl-C); TLS certificates reloaded on SIGHUP.

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

/// Reloads the TLS certificates from their files on every SIGHUP, for as long as it runs
/// ([`ServerTls::reload`](tower_lb::tls::ServerTls::reload): connections already open keep
/// theirs, a file that does not load is logged and the old certificates kept). The handler
/// is installed before it returns.
pub(crate) fn reload_on_hangup(
    tls: tower_lb::tls::ServerTls,
) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = signal(SignalKind::hangup())?;
        Ok(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the TLS certificates");
                // Logged by `reload` either way.
                let _ = tls.reload();
            }
        })
    }
    #[cfg(not(unix))]
    {
        let _ = tls;
        Ok(std::future::pending())
    }
}

/// The signal handling, with the real program's code path: `run` and a SIGTERM.
#[cfg(all(test, unix))]
mod tests;
