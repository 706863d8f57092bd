//! The future returned by [`HttpBackend`](super::HttpBackend).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::uri::Authority;
use http::{Request, Response, StatusCode};
use http_body::Body;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tracing::debug;

use super::body::{BackendBody, Upload, UploadBody};
use super::error::classify;
use super::headers::{restore_upgrade, strip_hop_by_hop};
use super::limit::Slot;
use super::pool::{Connecting, Host, Sender};
use super::sender::Sent;
use super::upgrade::Tunnels;
use crate::BackendTimeout;
use crate::BoxError;
use crate::balance::ConnectTime;

/// The client's side of a connection upgrade, waiting for the backend's `101`.
#[derive(Debug)]
pub(crate) struct Upgrade {
    pub(crate) client: OnUpgrade,
    pub(crate) tunnels: Arc<Tunnels>,
}

/// The response timer of a connection.
///
/// It stays with the connection in the pool between requests: the next request on it moves
/// the deadline later, a compare-and-swap while the timer is still registered, rather than
/// registering a new timer in the runtime's timer wheel and removing it again.
pub(crate) struct Timer {
    sleep: Pin<Box<Sleep>>,
    // The runtime whose timer driver it is registered with; it is reused only there.
    runtime: tokio::runtime::Id,
}

impl Timer {
    /// A timer expiring `timeout` from now: `pooled`, when it belongs to the current runtime,
    /// or a new one.
    fn start(pooled: Option<Self>, timeout: Duration) -> Self {
        let runtime = tokio::runtime::Handle::current().id();
        let deadline = Instant::now() + timeout;
        match pooled {
            Some(mut timer) if timer.runtime == runtime => {
                timer.sleep.as_mut().reset(deadline);
                timer
            }
            _ => Self {
                sleep: Box::pin(tokio::time::sleep_until(deadline)),
                runtime,
            },
        }
    }
}

pin_project! {
    /// Response future of [`HttpBackend`](super::HttpBackend): the backend's response head,
    /// with hop-by-hop headers removed and the body streaming behind it.
    pub struct ResponseFuture<B = Incoming> {
        attempt: Attempt<B>,
        // The deadline: for the next upload chunk while the body is being sent, then for
        // the response head. `None` without a timeout. It goes back to the pool with the
        // connection.
        sleep: Option<Timer>,
        timeout: Duration,
        // Until the request body is sent.
        upload: Option<Arc<Upload>>,
        // Upload progress when the deadline was last set.
        seen: u64,
        host: Option<Arc<Host<B>>>,
        // The place under the backend's cap, for the response body.
        slot: Option<Slot>,
        // Boxed: only upgrade requests have one.
        upgrade: Option<Box<Upgrade>>,
    }
}

enum Attempt<B> {
    /// No idle connection: opening one, with the request to send on it.
    Connect {
        connecting: Connecting<B>,
        req: Option<Request<UploadBody<B>>>,
        /// When the connect started.
        since: Instant,
    },
    /// A pooled connection whose task has not taken in the end of its last response yet.
    Ready {
        sender: Option<Sender<B>>,
        req: Option<Request<UploadBody<B>>>,
    },
    /// Sent on `sender`'s connection, waiting for the response head: a pooled one, or one
    /// just opened, in `connect`.
    Send {
        sent: Sent<B>,
        sender: Option<Sender<B>>,
        connect: Option<Duration>,
    },
    Failed {
        error: Option<BoxError>,
    },
}

impl<B> Attempt<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Sends `req` on a pooled connection, with the connection's timer, or on a new one.
    fn start(host: &Arc<Host<B>>, req: Request<UploadBody<B>>) -> (Self, Option<Timer>) {
        let http1 = host.needs_http1(&req);
        let Some((sender, timer)) = host.checkout(http1) else {
            let connect = Self::Connect {
                connecting: host.connect(http1),
                req: Some(req),
                since: Instant::now(),
            };
            return (connect, None);
        };
        if sender.is_ready() {
            return (Self::send(host, sender, req, None), timer);
        }
        let ready = Self::Ready {
            sender: Some(sender),
            req: Some(req),
        };
        (ready, timer)
    }

    /// Sends `req`, in the form of `sender`'s connection (HTTP/1.1 or HTTP/2): a pooled one,
    /// or one just opened in `connect`.
    fn send(
        host: &Host<B>,
        mut sender: Sender<B>,
        req: Request<UploadBody<B>>,
        connect: Option<Duration>,
    ) -> Self {
        let req = host.prepare(req, &sender);
        Self::Send {
            sent: sender.send(req),
            sender: Some(sender),
            connect,
        }
    }
}

impl<B> ResponseFuture<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(
        host: Arc<Host<B>>,
        req: Request<UploadBody<B>>,
        timeout: Option<Duration>,
        upload: Option<Arc<Upload>>,
        slot: Option<Slot>,
        upgrade: Option<Box<Upgrade>>,
    ) -> Self {
        let (attempt, timer) = Attempt::start(&host, req);
        Self {
            attempt,
            sleep: timeout.map(|timeout| Timer::start(timer, timeout)),
            timeout: timeout.unwrap_or_default(),
            upload,
            seen: 0,
            host: Some(host),
            slot,
            upgrade,
        }
    }
}

impl<B> ResponseFuture<B> {
    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            attempt: Attempt::Failed { error: Some(error) },
            sleep: None,
            timeout: Duration::ZERO,
            upload: None,
            seen: 0,
            host: None,
            slot: None,
            upgrade: None,
        }
    }
}

impl<B> fmt::Debug for ResponseFuture<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.attempt {
            Attempt::Connect { .. } => "connecting",
            Attempt::Ready { .. } => "waiting for a pooled connection",
            Attempt::Send { .. } => "sent",
            Attempt::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("host", &self.host)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The backend's `101` for an upgrade request: the tunnel starts on its own task and holds the
/// slot; the client gets the `101` with the backend's `Upgrade`.
fn switch_protocols<B>(
    mut res: Response<Incoming>,
    upgrade: Option<Box<Upgrade>>,
    backend: &Authority,
    slot: Option<Slot>,
) -> Result<Response<BackendBody<B>>, BoxError> {
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
    Ok(res.map(|body| BackendBody::new(body, None, None)))
}

impl<B> Future for ResponseFuture<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<BackendBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        loop {
            match this.attempt {
                Attempt::Connect {
                    connecting,
                    req,
                    since,
                } => match connecting.as_mut().poll(cx) {
                    Poll::Ready(Ok(sender)) => {
                        let host = this.host.as_ref().expect("a host for every attempt");
                        let req = req.take().expect("polled after completion");
                        let connect = since.elapsed();
                        *this.attempt = Attempt::send(host, sender, req, Some(connect));
                    }
                    // Already a `BackendUnavailable` or a `BackendTimeout`.
                    Poll::Ready(Err(error)) => {
                        let host = this.host.as_deref().map(Host::authority);
                        debug!(backend = ?host, %error, "connect failed");
                        return Poll::Ready(Err(error));
                    }
                    Poll::Pending => break,
                },
                Attempt::Ready { sender, req } => {
                    let ready = sender
                        .as_mut()
                        .expect("polled after completion")
                        .poll_ready(cx);
                    match ready {
                        Poll::Ready(Ok(())) => {
                            let host = this.host.as_ref().expect("a host for every attempt");
                            let sender = sender.take().expect("polled after completion");
                            let req = req.take().expect("polled after completion");
                            *this.attempt = Attempt::send(host, sender, req, None);
                        }
                        // Closed meanwhile: another connection.
                        Poll::Ready(Err(_)) => {
                            let host = this.host.as_ref().expect("a host for every attempt");
                            let req = req.take().expect("polled after completion");
                            *this.attempt = Attempt::start(host, req).0;
                        }
                        Poll::Pending => break,
                    }
                }
                Attempt::Send {
                    sent,
                    sender,
                    connect,
                } => {
                    let host = this.host.as_ref().expect("a host for every attempt");
                    match sent.as_mut().poll(cx) {
                        Poll::Ready(Ok(res)) if res.status() == StatusCode::SWITCHING_PROTOCOLS => {
                            // The connection is the tunnel's now.
                            return Poll::Ready(switch_protocols(
                                res,
                                this.upgrade.take(),
                                host.authority(),
                                this.slot.take(),
                            ));
                        }
                        Poll::Ready(Ok(mut res)) => {
                            strip_hop_by_hop(res.headers_mut());
                            if let Some(connect) = *connect {
                                res.extensions_mut().insert(ConnectTime(connect));
                            }
                            // The timer goes back to the pool with the connection.
                            let reuse = sender
                                .take()
                                .map(|sender| (sender, this.sleep.take(), Arc::clone(host)));
                            let slot = this.slot.take();
                            return Poll::Ready(Ok(
                                res.map(|body| BackendBody::new(body, slot, reuse))
                            ));
                        }
                        Poll::Ready(Err(mut error)) => {
                            if connect.is_none() {
                                if let Some(req) = error.take_message() {
                                    // The pooled connection closed before the request went
                                    // out: it can go on another one.
                                    debug!(
                                        backend = %host.authority(),
                                        error = %error.error(),
                                        "pooled connection closed; sending on another",
                                    );
                                    *this.attempt = Attempt::start(host, req).0;
                                    continue;
                                }
                            }
                            let error = classify(error.into_error(), host.authority());
                            debug!(backend = %host.authority(), %error, "forwarding failed");
                            return Poll::Ready(Err(error));
                        }
                        Poll::Pending => break,
                    }
                }
                Attempt::Failed { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
            }
        }

        let Some(Timer { sleep, .. }) = this.sleep.as_mut() else {
            return Poll::Pending;
        };
        if let Some(up) = this.upload.as_ref() {
            up.register(cx.waker());
            if up.is_done() {
                // The body is sent: the wait for the response head starts now.
                *this.upload = None;
                sleep.as_mut().reset(Instant::now() + *this.timeout);
            }
        }
        loop {
            ready!(sleep.as_mut().poll(cx));
            match this.upload.as_ref().map(|up| up.progress()) {
                // The upload is still moving: give it another period.
                Some(progress) if progress != *this.seen => {
                    *this.seen = progress;
                    sleep.as_mut().reset(Instant::now() + *this.timeout);
                }
                _ => break,
            }
        }
        let backend = this
            .host
            .as_deref()
            .expect("a host for every attempt")
            .authority()
            .clone();
        debug!(backend = %backend, timeout = ?this.timeout, "backend response timed out");
        Poll::Ready(Err(BackendTimeout::response(backend, *this.timeout).into()))
    }
}
