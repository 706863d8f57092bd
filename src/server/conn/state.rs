//! What a connection's IO ([`TimedIo`](super::timed_io::TimedIo)) and its service
//! ([`Tracked`](super::tracked::Tracked)) share: its requests in flight, whether it was
//! upgraded, and whether its task may park it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How long a keep-alive connection waits for its next request before it gives its buffers
/// back (see [`Connection::serve`](super::task::Connection::serve)): long enough that a busy
/// connection never parks, short enough that a burst of connections going idle does not pile
/// up buffers.
pub(super) const PARK_AFTER: Duration = Duration::from_millis(100);

/// What a connection's IO and service share.
#[derive(Debug, Default)]
pub(super) struct ConnState {
    /// Requests whose response has not ended (low 32 bits), and requests dispatched so far,
    /// wrapping (high 32 bits): one atomic operation at each end of a request.
    counts: AtomicU64,
    /// A `101` went out: the connection is a tunnel now.
    upgraded: AtomicBool,
    /// The connection has been idle for [`PARK_AFTER`], its last response flushed: its task
    /// may take it back from hyper.
    park: AtomicBool,
    /// An HTTP/2 connection reached its idle timeout: its task sends `GOAWAY`.
    goaway: AtomicBool,
}

/// One more request dispatched and in flight.
const STARTED: u64 = 1 + (1 << 32);

impl ConnState {
    /// Requests in flight, and requests dispatched so far (wrapping).
    pub(super) fn counts(&self) -> (u32, u32) {
        let counts = self.counts.load(Ordering::Acquire);
        (counts as u32, (counts >> 32) as u32)
    }

    /// A request was dispatched.
    pub(super) fn start(&self) {
        self.counts.fetch_add(STARTED, Ordering::AcqRel);
    }

    /// A request's response ended (or was dropped).
    pub(super) fn end(&self) {
        self.counts.fetch_sub(1, Ordering::AcqRel);
    }

    /// A `101 Switching Protocols` went out.
    pub(super) fn upgrade(&self) {
        self.upgraded.store(true, Ordering::Release);
    }

    /// Whether the connection is a tunnel now.
    pub(super) fn upgraded(&self) -> bool {
        self.upgraded.load(Ordering::Acquire)
    }

    /// The IO saw the connection idle for [`PARK_AFTER`] with everything flushed.
    pub(super) fn ask_to_park(&self) {
        self.park.store(true, Ordering::Release);
    }

    /// The IO saw an HTTP/2 connection idle for the idle timeout.
    pub(super) fn ask_goaway(&self) {
        self.goaway.store(true, Ordering::Release);
    }

    /// Whether the task should send `GOAWAY` now; clears the request.
    pub(super) fn take_goaway(&self) -> bool {
        self.goaway.load(Ordering::Relaxed) && self.goaway.swap(false, Ordering::AcqRel)
    }

    /// Whether the connection may be parked now; clears the request.
    pub(super) fn take_park(&self) -> bool {
        self.park.load(Ordering::Relaxed)
            && self.park.swap(false, Ordering::AcqRel)
            && self.counts().0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_in_flight_and_dispatched() {
        let state = ConnState::default();
        state.start();
        state.start();
        assert_eq!(state.counts(), (2, 2));
        state.end();
        assert_eq!(state.counts(), (1, 2));
        // Parking is refused while a request is in flight, and the ask is used up.
        state.ask_to_park();
        assert!(!state.take_park());
        state.end();
        assert!(!state.take_park(), "asked once, taken once");
        state.ask_to_park();
        assert!(state.take_park());
    }
}
