//! The clock the algorithms and the retry budget read: nanoseconds since a process-wide start,
//! as a `u64` that fits in an atomic.
//!
//! Used by [`LeastTime`](crate::algo::LeastTime) to stamp its estimates. It reads tokio's clock, so
//! tests run it under `tokio::time::pause()` and `advance`.
//!
//! [`StickyRoundRobin`](crate::algo::StickyRoundRobin) expires clients idle for minutes, and reads
//! [`coarse_now_ns`] for every request instead: on Linux the kernel's coarse monotonic clock,
//! as fine as its tick (1 to 4 ms). On the 2-core benchmark machine a read of it costs 6.6 ns
//! against 23 ns for `Instant::now`, which was a sixth of a sticky pick. The retry layer's
//! [`RetryBudget`](crate::retry::RetryBudget) reads it for every request too, to find its
//! window (a second long by default).

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

/// Nanoseconds on the kernel's coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`: as fine as
/// the scheduler tick, 1 to 4 ms), for timeouts of seconds and more. Its zero is not
/// [`now_ns`]'s: compare its readings only with each other.
///
/// Elsewhere than Linux it is [`now_ns`]; so it is in this crate's unit tests, which pause and
/// advance tokio's clock.
#[inline]
pub(crate) fn coarse_now_ns() -> u64 {
    #[cfg(all(target_os = "linux", not(test)))]
    {
        kernel_coarse_ns()
    }
    #[cfg(not(all(target_os = "linux", not(test))))]
    {
        now_ns()
    }
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds (since boot).
#[cfg(target_os = "linux")]
#[inline]
fn kernel_coarse_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The clock sticky round robin reads outside unit tests: it follows real time to within
    /// a tick and never goes back.
    #[cfg(target_os = "linux")]
    #[test]
    fn kernel_coarse_clock_follows_real_time() {
        // Each reading is bracketed by real times taken just before and after it.
        let start = std::time::Instant::now();
        let read = || {
            let before = start.elapsed();
            let t = kernel_coarse_ns();
            (before, t, start.elapsed())
        };
        let (before0, t0, after0) = read();
        let mut last = t0;
        let (before, after) = loop {
            let (before, t, after) = read();
            assert!(t >= last, "went back from {last} to {t}");
            last = t;
            if before >= Duration::from_millis(50) {
                break (before, after);
            }
        };
        // Between the brackets, give or take a tick (at most 10 ms, at 100 Hz), however the
        // thread was scheduled.
        let moved = Duration::from_nanos(last - t0);
        let tick = Duration::from_millis(10);
        let (low, high) = (before.saturating_sub(after0 + tick), after - before0 + tick);
        assert!(
            low <= moved && moved <= high,
            "{moved:?} not within {low:?}..{high:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time() {
        let t0 = now_ns();
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert_eq!(now_ns() - t0, 1_500_000_000);
        assert!(now_ns() >= t0);
    }
}
