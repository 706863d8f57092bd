//! [`TimedIo`]: a client connection's byte stream with the timeouts of the
//! [module docs](super), the bytes read ahead for its task replayed first, and the
//! balancer's own answers in place of hyper's. Generic over the stream: TCP, TLS, or a test's
//! in-memory pipe.

use std::fmt;
use std::future::Future;
use std::io;
use std::mem::{self, MaybeUninit};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

use super::Settings;
use super::answers::Answer;
use super::state::{ConnState, PARK_AFTER};

/// The most a read ahead takes from the stream ([`TimedIo::poll_next_bytes`]): a whole
/// request head, usually, so that hyper does not have to read again.
const READ_AHEAD: usize = 4096;

/// Where a connection stands, for its timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for, or reading, a request head, due by `deadline`; `started` once a byte of it
    /// arrived.
    Head { deadline: Instant, started: bool },
    /// Keep-alive, between two requests: the next must start by `deadline`.
    Idle { deadline: Instant },
    /// A request in flight: no timeout.
    Busy,
    /// HTTP/2: idle from `idle` (when no stream is open); `goaway` once the idle timeout
    /// struck and the task was asked to send `GOAWAY`.
    H2 { idle: Option<Instant>, goaway: bool },
    /// Upgraded: bytes pass through.
    Tunnel,
}

/// The client's byte stream, with the timeouts of the [module docs](super).
///
/// Its one timer is armed lazily: moving a deadline later (the usual case, from one request to
/// the next) changes nothing, and when the timer fires early it is set again for the deadline
/// of the moment. So a busy keep-alive connection resets its timer about once per timeout,
/// not twice per request.
pub(super) struct TimedIo<T> {
    inner: T,
    state: Arc<ConnState>,
    phase: Phase,
    // Requests dispatched, as of the last look.
    seen: u32,
    // Our own answer, once hyper began one of its own: what is left to write of it.
    answer: Option<Bytes>,
    sleep: Pin<Box<Sleep>>,
    // When `sleep` fires.
    armed: Instant,
    // When an idle connection may be parked (`Phase::Idle` only).
    park_at: Option<Instant>,
    // Everything written has been flushed.
    flushed: bool,
    // While a write to the client is blocked: when it gives up (the client timeout). Made on
    // the first blocked write, and kept.
    write_sleep: Option<Pin<Box<Sleep>>>,
    // Whether the last write was blocked (`write_sleep` counts from then).
    write_blocked: bool,
    // Bytes read and not used yet (read ahead by the task, or by a previous hyper
    // connection), served first.
    unread: Bytes,
    settings: Settings,
    // The connection's place under the server's cap.
    _permit: Option<OwnedSemaphorePermit>,
}

/// What the timer says.
enum Timer {
    /// The phase's deadline passed.
    Expired,
    /// The connection has been idle long enough to be parked.
    Park,
}

/// What a connection that waited for its next bytes got ([`TimedIo::poll_next_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Woke {
    /// Bytes: they wait in [`TimedIo::unread`] for the next reads.
    Bytes,
    /// The end of the stream, or an error: nothing more will come.
    Ended,
    /// The phase's deadline passed first.
    Expired,
}

impl<T> TimedIo<T> {
    pub(super) fn new(
        inner: T,
        state: Arc<ConnState>,
        settings: Settings,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        let deadline = Instant::now() + settings.header_timeout;
        Self {
            inner,
            state,
            phase: Phase::Head {
                deadline,
                started: false,
            },
            seen: 0,
            answer: None,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            armed: deadline,
            park_at: None,
            flushed: true,
            write_sleep: None,
            write_blocked: false,
            unread: Bytes::new(),
            settings,
            _permit: permit,
        }
    }

    /// Serves `bytes` to the next reads, before the stream's.
    pub(super) fn unread(&mut self, bytes: Bytes) {
        self.unread = bytes;
    }

    /// The bytes read and not served yet.
    pub(super) fn read_ahead(&self) -> &[u8] {
        &self.unread
    }

    /// The connection speaks HTTP/2: only the idle timeout applies, while no stream is open.
    pub(super) fn serve_http2(&mut self) {
        self.phase = Phase::H2 {
            idle: None,
            goaway: false,
        };
    }

    /// Moves to the phase the service's state implies (before a read, after a write).
    fn update(&mut self) {
        let (in_flight, dispatched) = self.state.counts();
        let busy = in_flight > 0;
        // A request may have come and gone since the last look.
        let new_request = dispatched != self.seen;
        self.seen = dispatched;
        self.phase = match self.phase {
            Phase::Tunnel => Phase::Tunnel,
            _ if self.state.upgraded() => Phase::Tunnel,
            Phase::H2 { goaway, .. } if busy => Phase::H2 { idle: None, goaway },
            Phase::H2 { idle: None, goaway } => {
                self.idle_until(Instant::now() + self.settings.idle_timeout, goaway)
            }
            Phase::H2 {
                idle: Some(_),
                goaway,
            } if new_request => {
                self.idle_until(Instant::now() + self.settings.idle_timeout, goaway)
            }
            Phase::Head { .. } | Phase::Idle { .. } | Phase::Busy if busy => Phase::Busy,
            Phase::Head { .. } | Phase::Idle { .. } if !new_request => self.phase,
            Phase::Head { .. } | Phase::Idle { .. } | Phase::Busy => {
                let now = Instant::now();
                self.park_at = Some(self.arm(now + PARK_AFTER));
                Phase::Idle {
                    deadline: self.arm(now + self.settings.idle_timeout),
                }
            }
            phase => phase,
        };
    }

    fn idle_until(&mut self, deadline: Instant, goaway: bool) -> Phase {
        Phase::H2 {
            idle: Some(self.arm(deadline)),
            goaway,
        }
    }

    /// Makes sure the timer fires by `deadline`; returns it.
    fn arm(&mut self, deadline: Instant) -> Instant {
        if deadline < self.armed {
            self.sleep.as_mut().reset(deadline);
            self.armed = deadline;
        }
        deadline
    }

    /// Polls the timer for the current phase: `Expired` once its deadline has passed, `Park`
    /// once an idle connection may be parked (once per idle period).
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<Timer> {
        loop {
            let Some(deadline) = self.deadline() else {
                return Poll::Pending;
            };
            let next = self.park_at.map_or(deadline, |park| park.min(deadline));
            if next < self.armed {
                self.sleep.as_mut().reset(next);
                self.armed = next;
            }
            ready!(self.sleep.as_mut().poll(cx));
            let now = Instant::now();
            if now >= deadline {
                return Poll::Ready(Timer::Expired);
            }
            if self.park_at.is_some_and(|park| now >= park) {
                self.park_at = None;
                if self.flushed {
                    return Poll::Ready(Timer::Park);
                }
            }
            // Fired for an earlier deadline: on to the current one.
            let next = self.park_at.map_or(deadline, |park| park.min(deadline));
            self.sleep.as_mut().reset(next);
            self.armed = next;
        }
    }

    /// Bytes arrived.
    fn received(&mut self) {
        match self.phase {
            Phase::Head { deadline, .. } => {
                self.phase = Phase::Head {
                    deadline,
                    started: true,
                }
            }
            Phase::Idle { .. } => {
                self.park_at = None;
                self.phase = Phase::Head {
                    deadline: self.arm(Instant::now() + self.settings.header_timeout),
                    started: true,
                }
            }
            _ => {}
        }
    }

    /// The deadline of the current phase, if it has one.
    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Head { deadline, .. } | Phase::Idle { deadline } => Some(deadline),
            Phase::H2 { idle, .. } => idle,
            Phase::Busy | Phase::Tunnel => None,
        }
    }

    /// After a write or flush: a response that just ended starts the idle time now, and its
    /// timer is registered here, since hyper may not read again until the client sends
    /// something (it only re-reads after a response when its own header timeout is on).
    #[inline]
    fn after_write(&mut self, cx: &mut Context<'_>) {
        let before = self.deadline();
        self.update();
        let after = self.deadline();
        if after.is_some() && after != before && self.sleep.as_mut().poll(cx).is_ready() {
            // Already past (a zero timeout): the read side must see it.
            cx.waker().wake_by_ref();
        }
    }

    /// Whether hyper is writing its own answer to a head it could not parse (no request was
    /// dispatched since the head began); if so, ours replaces it.
    fn answers_itself(&mut self, hyper_wrote: &[u8]) -> bool {
        if self.answer.is_some() {
            // Whatever follows hyper's answer (nothing, normally) is dropped with it.
            return true;
        }
        if !matches!(self.phase, Phase::Head { .. }) {
            return false;
        }
        self.update();
        if !matches!(self.phase, Phase::Head { .. }) {
            return false;
        }
        match Answer::instead_of(hyper_wrote) {
            Some(answer) => {
                tracing::debug!(status = %answer.status(), "unparsable request head: answered with JSend");
                self.answer = Some(answer.bytes());
                true
            }
            None => false,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> TimedIo<T> {
    /// For a connection no hyper connection serves: reads what the client sends next (up to
    /// [`READ_AHEAD`] bytes) and keeps it for the next reads, or says why nothing came.
    ///
    /// A read rather than a readiness check or a peek, which not every stream has (TLS has
    /// neither): what it reads is replayed to hyper.
    pub(super) fn poll_next_bytes(&mut self, cx: &mut Context<'_>) -> Poll<Woke> {
        let mut buf = [MaybeUninit::uninit(); READ_AHEAD];
        let mut buf = ReadBuf::uninit(&mut buf);
        match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Woke::Ended),
            Poll::Ready(Ok(())) => {
                let bytes = buf.filled();
                self.unread = if self.unread.is_empty() {
                    Bytes::copy_from_slice(bytes)
                } else {
                    [&self.unread[..], bytes].concat().into()
                };
                self.received();
                return Poll::Ready(Woke::Bytes);
            }
            Poll::Ready(Err(error)) => {
                tracing::debug!(%error, "connection failed");
                return Poll::Ready(Woke::Ended);
            }
            Poll::Pending => {}
        }
        loop {
            match ready!(self.poll_timer(cx)) {
                Timer::Expired => return Poll::Ready(Woke::Expired),
                // Parked already.
                Timer::Park => {}
            }
        }
    }

    /// Writes the rest of our own answer.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Self { inner, answer, .. } = self;
        if let Some(answer) = answer {
            while answer.has_remaining() {
                let n = ready!(Pin::new(&mut *inner).poll_write(cx, answer))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                answer.advance(n);
            }
        }
        Poll::Ready(Ok(()))
    }

    /// A write's outcome, under the client timeout: a write (or flush) the client leaves
    /// blocked for [`Settings::client_timeout`] fails with `TimedOut`, which ends the
    /// connection. Any progress starts the count again; tunnels have no such timeout.
    fn client_timeout<R>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if outcome.is_ready() || self.phase == Phase::Tunnel {
            self.write_blocked = false;
            return outcome;
        }
        if !self.write_blocked {
            self.write_blocked = true;
            let deadline = Instant::now() + self.settings.client_timeout;
            match &mut self.write_sleep {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.write_sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let Some(sleep) = self.write_sleep.as_mut() else {
            return Poll::Pending;
        };
        ready!(sleep.as_mut().poll(cx));
        tracing::debug!(timeout = ?self.settings.client_timeout, "client timed out: it read nothing of its response");
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client timed out: it read nothing of its response",
        )))
    }

    /// The deadline passed with nothing to read.
    fn expire(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.phase {
            Phase::H2 {
                idle: Some(_),
                goaway: false,
            } => {
                // `GOAWAY` first (RFC 9113 §6.8): the task asks hyper for a graceful shutdown,
                // which sends it and closes the connection, no stream being open. Should the
                // client hold the connection open regardless, it is closed one header
                // timeout later.
                tracing::debug!("idle HTTP/2 connection timed out: GOAWAY");
                self.state.ask_goaway();
                let deadline = Instant::now() + self.settings.header_timeout;
                self.phase = Phase::H2 {
                    idle: Some(deadline),
                    goaway: true,
                };
                self.sleep.as_mut().reset(deadline);
                self.armed = deadline;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Phase::Head { started: true, .. } => {
                tracing::debug!("request head timed out: 408");
                // Best effort: a fresh connection's send buffer always has room for it. (The
                // flush is for streams that buffer, such as TLS.)
                let answer = Answer::RequestTimeout.bytes();
                let mut inner = Pin::new(&mut self.inner);
                if let Poll::Ready(Ok(_)) = inner.as_mut().poll_write(cx, &answer) {
                    let _ = inner.poll_flush(cx);
                }
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head timed out",
                )))
            }
            _ => {
                tracing::debug!("idle connection timed out");
                // End of stream: hyper closes an idle connection quietly.
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.phase == Phase::Tunnel {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        this.update();
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            // All of it taken: let go of its allocation too.
            let bytes = if n == this.unread.len() {
                mem::take(&mut this.unread)
            } else {
                this.unread.split_to(n)
            };
            buf.put_slice(&bytes);
            this.received();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.received();
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => {}
        }
        loop {
            match ready!(this.poll_timer(cx)) {
                Timer::Expired => return this.expire(cx),
                // The connection's task takes it from here (and, in tests, nobody does: the
                // read goes on waiting).
                Timer::Park => this.state.ask_to_park(),
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    #[inline]
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.phase != Phase::Tunnel && this.answers_itself(buf) {
            // Taken as written; ours goes out now or with the flush.
            let _ = this.poll_answer(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        this.flushed = false;
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.client_timeout(cx, written)
    }

    #[inline]
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        if this.phase != Phase::Tunnel && this.answers_itself(first) {
            let _ = this.poll_answer(cx)?;
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        this.flushed = false;
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.client_timeout(cx, written)
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    #[inline]
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.answer.is_some() {
            ready!(this.poll_answer(cx))?;
        }
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        let flushed = this.client_timeout(cx, flushed);
        if let Poll::Ready(Ok(())) = flushed {
            this.flushed = true;
        }
        if this.phase != Phase::Tunnel {
            this.after_write(cx);
        }
        flushed
    }

    #[inline]
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.answer.is_some() {
            ready!(this.poll_answer(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<T> fmt::Debug for TimedIo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimedIo")
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
