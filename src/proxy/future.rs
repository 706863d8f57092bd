//! The future returned by [`HttpBackend`](super::HttpBackend).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::uri::Authority;
use http::{Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tracing::debug;

use super::body::{BackendBody, Upload};
use super::error::{BackendTimeout, classify};
use super::headers::{restore_upgrade, strip_hop_by_hop};
use super::limit::Slot;
use super::upgrade::Tunnels;
use crate::BoxError;

/// The client's side of a connection upgrade, waiting for the backend's `101`.
#[derive(Debug)]
pub(crate) struct Upgrade {
    pub(crate) client: OnUpgrade,
    pub(crate) tunnels: Arc<Tunnels>,
}

pin_project! {
    /// Response future of [`HttpBackend`](super::HttpBackend): the backend's response head,
    /// with hop-by-hop headers removed and the body streaming behind it.
    #[derive(Debug)]
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State {
        Waiting {
            #[pin]
            inner: legacy::ResponseFuture,
            // The deadline: for the next upload chunk while the body is being sent, then for
            // the response head. `None` without a timeout.
            #[pin]
            sleep: Option<Sleep>,
            timeout: Duration,
            // Until the request body is sent.
            upload: Option<Arc<Upload>>,
            // Upload progress when the deadline was last set.
            seen: u64,
            backend: Authority,
            // The place under the backend's cap, for the response body.
            slot: Option<Slot>,
            // Boxed: only upgrade requests have one.
            upgrade: Option<Box<Upgrade>>,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl ResponseFuture {
    pub(crate) fn new(
        inner: legacy::ResponseFuture,
        timeout: Option<Duration>,
        upload: Option<Arc<Upload>>,
        backend: Authority,
        slot: Option<Slot>,
        upgrade: Option<Box<Upgrade>>,
    ) -> Self {
        Self {
            state: State::Waiting {
                inner,
                sleep: timeout.map(tokio::time::sleep),
                timeout: timeout.unwrap_or_default(),
                upload,
                seen: 0,
                backend,
                slot,
                upgrade,
            },
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }
}

/// The backend's `101` for an upgrade request: the tunnel starts on its own task and holds the
/// slot; the client gets the `101` with the backend's `Upgrade`.
fn switch_protocols(
    mut res: Response<Incoming>,
    upgrade: Option<Box<Upgrade>>,
    backend: &Authority,
    slot: Option<Slot>,
) -> Result<Response<BackendBody>, BoxError> {
    let protocol = strip_hop_by_hop(res.headers_mut());
    let (Some(upgrade), Some(protocol)) = (upgrade, protocol) else {
        debug!(backend = %backend, "101 without an upgrade asked and agreed");
        return Err("the backend switched protocols without an agreed upgrade".into());
    };
    restore_upgrade(res.headers_mut(), protocol);
    let on_upgrade = hyper::upgrade::on(&mut res);
    let Upgrade { client, tunnels } = *upgrade;
    tunnels.spawn(client, on_upgrade, backend.clone(), slot);
    debug!(backend = %backend, "connection upgraded");
    Ok(res.map(|body| BackendBody::new(body, None)))
}

impl Future for ResponseFuture {
    type Output = Result<Response<BackendBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Waiting {
                inner,
                sleep,
                timeout,
                upload,
                seen,
                backend,
                slot,
                upgrade,
            } => {
                if let Poll::Ready(res) = inner.poll(cx) {
                    return Poll::Ready(match res {
                        Ok(res) if res.status() == StatusCode::SWITCHING_PROTOCOLS => {
                            switch_protocols(res, upgrade.take(), backend, slot.take())
                        }
                        Ok(mut res) => {
                            strip_hop_by_hop(res.headers_mut());
                            Ok(res.map(|body| BackendBody::new(body, slot.take())))
                        }
                        Err(err) => {
                            let err = classify(err, backend);
                            debug!(backend = %backend, error = %err, "forwarding failed");
                            Err(err)
                        }
                    });
                }
                let Some(mut sleep) = sleep.as_pin_mut() else {
                    return Poll::Pending;
                };
                if let Some(up) = upload.as_ref() {
                    up.register(cx.waker());
                    if up.is_done() {
                        // The body is sent: the wait for the response head starts now.
                        *upload = None;
                        sleep.as_mut().reset(Instant::now() + *timeout);
                    }
                }
                loop {
                    ready!(sleep.as_mut().poll(cx));
                    match upload.as_ref().map(|up| up.progress()) {
                        // The upload is still moving: give it another period.
                        Some(progress) if progress != *seen => {
                            *seen = progress;
                            sleep.as_mut().reset(Instant::now() + *timeout);
                        }
                        _ => break,
                    }
                }
                debug!(backend = %backend, timeout = ?timeout, "backend response timed out");
                Poll::Ready(Err(
                    BackendTimeout::response(backend.clone(), *timeout).into()
                ))
            }
            StateProj::Failed { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion")))
            }
        }
    }
}
