//! Graceful shutdown on SIGTERM and SIGINT (Ctrl-C); reloads on SIGHUP (the configuration
//! and the TLS certificates) and when the config file changes.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

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

/// How often the config file's modification time is checked.
const FILE_POLL: Duration = Duration::from_secs(1);

/// SIGHUP and changes of the config file; see [`reloads`].
pub(crate) struct Reloads {
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
    file: Option<PathBuf>,
}

/// Reloads, from now on: each SIGHUP (its handler is installed before this returns, so it
/// no longer ends the process), and each change of `file`'s modification time or size.
pub(crate) fn reloads(file: Option<PathBuf>) -> std::io::Result<Reloads> {
    Ok(Reloads {
        #[cfg(unix)]
        hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?,
        file,
    })
}

impl Reloads {
    /// Calls `reload` with the cause ("SIGHUP" or "file changed") of each reload, forever.
    pub(crate) async fn run(mut self, mut reload: impl FnMut(&'static str)) {
        // Its inode too (on Unix): a file replaced by a rename with the same size within one
        // tick of the kernel's coarse file clock is still seen as changed.
        let stamp = |file: &Option<PathBuf>| -> Option<(SystemTime, u64, u64)> {
            let meta = std::fs::metadata(file.as_ref()?).ok()?;
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&meta);
            #[cfg(not(unix))]
            let inode = 0;
            Some((meta.modified().ok()?, meta.len(), inode))
        };
        let mut seen = stamp(&self.file);
        let mut poll = tokio::time::interval(FILE_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let hangup = self.hangup.recv();
            #[cfg(not(unix))]
            let hangup = std::future::pending::<Option<()>>();
            let cause = tokio::select! {
                _ = hangup => "SIGHUP",
                _ = poll.tick() => {
                    let now = stamp(&self.file);
                    if self.file.is_none() || now == seen {
                        continue;
                    }
                    "file changed"
                }
            };
            // A SIGHUP after an edit reloads once, not again at the next poll.
            seen = stamp(&self.file);
            reload(cause);
        }
    }
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
