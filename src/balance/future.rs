//! The balancer's response future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::HeaderValue;
use http::header::SET_COOKIE;
use pin_project_lite::pin_project;

use super::body::{InFlight, TrackedBody};
use crate::{BoxError, NoAvailableBackend};

pub use crate::wait_list::Changed;

pin_project! {
    /// Response future of [`Balance`](super::Balance).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        NoBackend,
        Called {
            #[pin]
            inner: F,
            in_flight: Option<InFlight>,
            set_cookie: Option<HeaderValue>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) const fn no_backend() -> Self {
        Self {
            state: State::NoBackend,
        }
    }

    #[inline]
    pub(crate) fn called(inner: F, in_flight: InFlight, set_cookie: Option<HeaderValue>) -> Self {
        Self {
            state: State::Called {
                inner,
                in_flight: Some(in_flight),
                set_cookie,
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<TrackedBody<B>>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::NoBackend => Poll::Ready(Err(NoAvailableBackend::new().into())),
            StateProj::Called {
                inner,
                in_flight,
                set_cookie,
            } => {
                let result = ready!(inner.poll(cx));
                let mut in_flight = in_flight.take().expect("polled after completion");
                match result {
                    Ok(mut response) => {
                        in_flight.answered(response.status(), response.extensions());
                        if let Some(cookie) = set_cookie.take() {
                            response.headers_mut().append(SET_COOKIE, cookie);
                        }
                        Poll::Ready(Ok(response.map(|body| TrackedBody::new(body, in_flight))))
                    }
                    Err(error) => {
                        in_flight.failed();
                        Poll::Ready(Err(error.into()))
                    }
                }
            }
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
