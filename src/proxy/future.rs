//! The future returned by [`HttpBackend`](super::HttpBackend).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Response;
use http::uri::Authority;
use hyper::body::Incoming;
use hyper_util::client::legacy;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tracing::debug;

use super::body::Upload;
use super::error::{BackendTimeout, classify};
use super::headers::strip_hop_by_hop;
use crate::BoxError;

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
    ) -> Self {
        Self {
            state: State::Waiting {
                inner,
                sleep: timeout.map(tokio::time::sleep),
                timeout: timeout.unwrap_or_default(),
                upload,
                seen: 0,
                backend,
            },
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Incoming>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Waiting {
                inner,
                sleep,
                timeout,
                upload,
                seen,
                backend,
            } => {
                if let Poll::Ready(res) = inner.poll(cx) {
                    return Poll::Ready(match res {
                        Ok(mut res) => {
                            strip_hop_by_hop(res.headers_mut());
                            Ok(res)
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
