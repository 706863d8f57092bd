//! Connection upgrades (WebSocket and the like): once the backend answers `101 Switching
//! Protocols`, the client's connection and the backend's are joined into a byte tunnel.
//!
//! An HTTP/1.1 request whose `Connection` lists `upgrade` is forwarded with its `Connection:
//! upgrade` and `Upgrade` headers (RFC 9110 §7.8), which are otherwise hop-by-hop. If the
//! backend answers `101`, the client gets the `101` with the backend's `Upgrade` header, and
//! a task copies bytes both ways ([`tokio::io::copy_bidirectional`]) until either side closes;
//! any other answer is an ordinary response and the connection stays HTTP.
//!
//! The server that received the request must support upgrades (hyper's
//! `serve_connection_with_upgrades`, or axum): the request's
//! [`OnUpgrade`](hyper::upgrade::OnUpgrade) extension is what the tunnel takes over. Without
//! it, the upgrade headers are removed as before.
//!
//! Tunnels are counted per [`ProxyClient`](super::ProxyClient), so a server can wait for them
//! at shutdown and close the ones still open when its grace period ends.

use std::fmt;
use std::sync::Arc;

use http::uri::Authority;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tracing::debug;

use super::limit::Slot;
use crate::BoxError;

/// The open tunnels of one client.
pub(crate) struct Tunnels {
    /// `true` once they must close; every tunnel holds a receiver, so the receiver count is
    /// the number open.
    close: watch::Sender<bool>,
}

impl Tunnels {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            close: watch::Sender::new(false),
        })
    }

    /// Tunnels open now.
    pub(crate) fn open(&self) -> usize {
        self.close.receiver_count()
    }

    /// Completes when no tunnel is open.
    pub(crate) async fn closed(&self) {
        self.close.closed().await;
    }

    /// Closes every open tunnel, and any opened later.
    pub(crate) fn close_all(&self) {
        self.close.send_replace(true);
    }

    /// Joins `client` and `backend` once both upgrades complete, on a task of its own. `slot`
    /// (the backend's place under its cap, if it has one) is held until the tunnel closes.
    pub(crate) fn spawn(
        &self,
        client: OnUpgrade,
        backend: OnUpgrade,
        backend_addr: Authority,
        slot: Option<Slot>,
    ) {
        let mut closing = self.close.subscribe();
        tokio::spawn(async move {
            let tunnel = async {
                let (client, backend) = tokio::try_join!(client, backend)?;
                let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
                let copied = tokio::io::copy_bidirectional(&mut client, &mut backend).await?;
                Ok::<_, BoxError>(copied)
            };
            tokio::select! {
                result = tunnel => match result {
                    Ok((up, down)) => debug!(backend = %backend_addr, up, down, "tunnel closed"),
                    Err(error) => debug!(backend = %backend_addr, %error, "tunnel failed"),
                },
                _ = closing.wait_for(|close| *close) => {
                    debug!(backend = %backend_addr, "tunnel closed at shutdown");
                }
            }
            drop(slot);
        });
    }
}

impl fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tunnels")
            .field("open", &self.open())
            .finish()
    }
}
