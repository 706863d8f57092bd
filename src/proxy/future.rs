//! The future returned by [`HttpBackend`](super::HttpBackend).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Response;
use http::uri::Authority;
use hyper::body::Incoming;
use hyper_util::client::legacy;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tracing::debug;

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
            #[pin]
            sleep: Option<Sleep>,
            timeout: Duration,
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
        backend: Authority,
    ) -> Self {
        Self {
            state: State::Waiting {
                inner,
                sleep: timeout.map(tokio::time::sleep),
                timeout: timeout.unwrap_or_default(),
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
                if let Some(sleep) = sleep.as_pin_mut() {
                    ready!(sleep.poll(cx));
                    debug!(backend = %backend, timeout = ?timeout, "backend response timed out");
                    return Poll::Ready(Err(
                        BackendTimeout::response(backend.clone(), *timeout).into()
                    ));
                }
                Poll::Pending
            }
            StateProj::Failed { error } => {
                Poll::Ready(Err(error.take().expect("polled after completion")))
            }
        }
    }
}
