//! The clock the algorithms read: nanoseconds since a process-wide start, as a `u64` that fits
//! in an atomic.
//!
//! Used by [`LeastTime`](super::LeastTime) to stamp its estimates and by
//! [`StickyRoundRobin`](super::StickyRoundRobin) to expire idle clients. It reads tokio's
//! clock, so tests run it under `tokio::time::pause()` and `advance`.

use std::sync::OnceLock;

use tokio::time::Instant;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Nanoseconds since the first call in this process (saturating at about 584 years).
#[inline]
pub(crate) fn now_ns() -> u64 {
    ns_at(Instant::now())
}

/// [`now_ns`] at `at`, for a caller that has just read the clock (0 before the first call).
#[inline]
pub(crate) fn ns_at(at: Instant) -> u64 {
    at.saturating_duration_since(base()).as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time() {
        let t0 = now_ns();
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert_eq!(now_ns() - t0, 1_500_000_000);
        assert!(now_ns() >= t0);
    }
}
