//! Bodies: the request body as sent to the backend (the client's body, reporting upload
//! progress so that the response timeout starts when the upload ends), and the response body
//! as returned to the client (the backend's, holding the backend's concurrency slot until it
//! ends).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes};
use futures_util::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::future::Timer;
use super::limit::Slot;
use super::pool::{Host, Sender};

/// Upload progress, shared by a request body and its response future.
#[derive(Debug, Default)]
pub(crate) struct Upload {
    frames: AtomicU64,
    done: AtomicBool,
    waker: AtomicWaker,
}

impl Upload {
    /// Frames sent so far.
    pub(crate) fn progress(&self) -> u64 {
        self.frames.load(Ordering::Acquire)
    }

    /// Whether the body has ended (or was dropped).
    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Wakes `waker` when the upload ends.
    pub(crate) fn register(&self, waker: &Waker) {
        self.waker.register(waker);
    }

    fn finish(&self) {
        if !self.done.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }
}

/// A request body that reports to an [`Upload`], if it has one; or a body of the balancer's
/// own (a health check's, on the same connections as the requests, whose body type it cannot
/// make): none, or fixed bytes (a gRPC check's request message).
///
/// Its chunks are [`Bytes`] whatever `B`'s are: hyper's own bodies' pass through as they are
/// (`Bytes::copy_to_bytes` of the whole is a move), others' are copied.
#[derive(Debug)]
pub(crate) struct UploadBody<B> {
    inner: Option<B>,
    fixed: Option<Bytes>,
    upload: Option<Arc<Upload>>,
}

impl<B> UploadBody<B> {
    pub(crate) fn new(inner: B, upload: Option<Arc<Upload>>) -> Self {
        Self {
            inner: Some(inner),
            fixed: None,
            upload,
        }
    }

    /// A body of `bytes`, in one chunk.
    pub(crate) fn full(bytes: Bytes) -> Self {
        Self {
            inner: None,
            fixed: Some(bytes).filter(|b| !b.is_empty()),
            upload: None,
        }
    }
}

impl<B: Body + Unpin> Body for UploadBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(this.fixed.take().map(|bytes| Ok(Frame::data(bytes))));
        };
        let frame = ready!(Pin::new(&mut *inner).poll_frame(cx));
        if let Some(upload) = &this.upload {
            match &frame {
                Some(Ok(_)) => {
                    upload.frames.fetch_add(1, Ordering::AcqRel);
                    if inner.is_end_stream() {
                        upload.finish();
                    }
                }
                None | Some(Err(_)) => upload.finish(),
            }
        }
        Poll::Ready(frame.map(|frame| {
            frame.map(|frame| frame.map_data(|mut data| data.copy_to_bytes(data.remaining())))
        }))
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(inner) => inner.is_end_stream(),
            None => self.fixed.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(inner) => inner.size_hint(),
            None => SizeHint::with_exact(self.fixed.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

impl<B> Drop for UploadBody<B> {
    fn drop(&mut self) {
        // The client stopped sending it: the backend answered early, or the connection failed.
        if let Some(upload) = &self.upload {
            upload.finish();
        }
    }
}

/// The body of a response from [`HttpBackend`](super::HttpBackend): the backend's body,
/// streamed as it arrives.
///
/// When the body ends, the backend connection it came on goes back to the
/// [`ProxyClient`](super::ProxyClient)'s pool for the next request (`B` is the type of the
/// request bodies that connection carries). When the backend has a
/// [concurrency cap](super::ProxyClientBuilder::max_conns_per_backend), the body holds the
/// request's place under it until the body ends (or fails, or is dropped).
pub struct BackendBody<B = Incoming> {
    inner: Incoming,
    slot: Option<Slot>,
    // The connection and its response timer, to put back in the pool once the body has ended.
    reuse: Option<Reuse<B>>,
}

/// A connection to put back in the pool: its sender, its response timer and its host.
pub(crate) type Reuse<B> = (Sender<B>, Option<Timer>, Arc<Host<B>>);

impl<B> BackendBody<B> {
    pub(crate) fn new(inner: Incoming, slot: Option<Slot>, reuse: Option<Reuse<B>>) -> Self {
        let mut body = Self { inner, slot, reuse };
        if body.inner.is_end_stream() {
            // No body at all: hyper may never poll it.
            body.end();
        }
        body
    }

    /// The backend is done with this request: its slot frees and its connection is reused.
    fn end(&mut self) {
        self.slot = None;
        if let Some((sender, timer, host)) = self.reuse.take() {
            host.checkin(sender, timer);
        }
    }

    /// The backend's body.
    pub fn get_ref(&self) -> &Incoming {
        &self.inner
    }

    /// The backend's body; the slot, if any, is freed, and its connection is not reused.
    pub fn into_inner(self) -> Incoming {
        self.inner
    }
}

impl<B> Body for BackendBody<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    #[inline]
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(_)) if !this.inner.is_end_stream() => {}
            Some(Ok(_)) | None => this.end(),
            // A failed body: the connection is not reused.
            Some(Err(_)) => {
                this.reuse = None;
                this.slot = None;
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

impl<B> fmt::Debug for BackendBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendBody")
            .field("inner", &self.inner)
            .field("slot", &self.slot)
            .field("reused", &self.reuse.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test]
    async fn progress_counts_frames_and_the_end_is_reported() {
        let upload = Arc::new(Upload::default());
        let frames = futures_util::stream::iter(
            ["a", "b"].map(|s| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(s)))),
        );
        let mut body = UploadBody::new(StreamBody::new(frames), Some(upload.clone()));
        body.frame().await.unwrap().unwrap();
        assert_eq!((upload.progress(), upload.is_done()), (1, false));
        body.frame().await.unwrap().unwrap();
        assert!(body.frame().await.is_none());
        assert_eq!((upload.progress(), upload.is_done()), (2, true));
    }

    #[test]
    fn dropping_the_body_ends_the_upload() {
        let upload = Arc::new(Upload::default());
        drop(UploadBody::new(
            http_body_util::Empty::<Bytes>::new(),
            Some(upload.clone()),
        ));
        assert!(upload.is_done());
    }
}
