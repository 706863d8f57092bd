//! The response body that writes its request's line when it ends.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::Buf;
use http::{Request, header};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::AccessLog;
use super::entry::Entry;
use crate::balance::Tried;
use crate::client_ip::ClientIp;
use crate::proxy::ServedBy;

/// A request on its way: its entry so far, and what tells the backend and the retries.
#[derive(Debug)]
pub(crate) struct Pending {
    log: AccessLog,
    start: Instant,
    entry: Entry,
    tried: Tried,
    served_by: ServedBy,
}

impl Pending {
    /// Starts the entry of `req`, and gives it what the balancer and the backend fill in.
    pub(crate) fn start<B>(log: &AccessLog, req: &mut Request<B>) -> Box<Self> {
        let tried = Tried::new();
        let served_by = ServedBy::new();
        req.extensions_mut().insert(tried.clone());
        req.extensions_mut().insert(served_by.clone());
        let headers = req.headers();
        Box::new(Self {
            log: log.clone(),
            start: Instant::now(),
            entry: Entry {
                time: SystemTime::now(),
                client: ClientIp::peer_of(req).map(|peer| peer.ip().to_canonical()),
                method: req.method().clone(),
                path: req
                    .uri()
                    .path_and_query()
                    .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned()),
                version: req.version(),
                referer: headers.get(header::REFERER).cloned(),
                user_agent: headers.get(header::USER_AGENT).cloned(),
                status: 0,
                backend: None,
                ttfb: Default::default(),
                total: Default::default(),
                bytes: 0,
                retries: 0,
            },
            tried,
            served_by,
        })
    }

    /// The response head is ready: its status, and the time to it.
    pub(crate) fn head(mut self: Box<Self>, status: http::StatusCode) -> Box<Self> {
        self.entry.status = status.as_u16();
        self.entry.ttfb = self.start.elapsed();
        self
    }

    /// The body ended (or was dropped): the line goes to the writer.
    fn finish(self: Box<Self>) {
        let Self {
            log,
            start,
            mut entry,
            tried,
            served_by,
        } = *self;
        entry.total = start.elapsed();
        entry.backend = served_by.get();
        entry.retries = tried.len().saturating_sub(1);
        log.log(entry);
    }
}

pin_project! {
    /// A response body that counts its bytes and, when it ends or is dropped, hands its
    /// request's line to the [`AccessLog`]. Without a log (`None`), the body as it is.
    #[derive(Debug)]
    pub struct Logged<B> {
        #[pin]
        inner: B,
        pending: Option<Box<Pending>>,
    }

    impl<B> PinnedDrop for Logged<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(pending) = this.project().pending.take() {
                pending.finish();
            }
        }
    }
}

impl<B> Logged<B> {
    /// `inner`, logged with `pending` if any.
    pub(crate) fn new(inner: B, pending: Option<Box<Pending>>) -> Self {
        Self { inner, pending }
    }
}

impl<B: Body> Body for Logged<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(pending) = this.pending {
            match &frame {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        pending.entry.bytes += data.remaining() as u64;
                    }
                }
                Some(Err(_)) | None => {
                    if let Some(pending) = this.pending.take() {
                        pending.finish();
                    }
                }
            }
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
