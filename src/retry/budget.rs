//! The default retry budget, [`RetryBudget`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tower::retry::budget::Budget;

use crate::clock::coarse_now_ns;

/// The windows `ttl` is cut into, as tower's `TpsBudget`.
const WINDOWS: usize = 10;

/// Finagle's retry budget, as tower's `TpsBudget` keeps it, without its lock: shared by every
/// clone of a [`Retry`](super::Retry) layer, and its default
/// ([`RetryLayer::default_budget`](super::RetryLayer::default_budget)).
///
/// Finagle's `RetryBudget` (and tower's [`TpsBudget`](tower::retry::budget::TpsBudget), which
/// follows it) lets retries add a share of the requests of the last `ttl` to the load, plus a
/// few a second so a quiet service can retry at all. Every request deposits, every retry
/// withdraws; the deposits are kept per tenth of `ttl` and expire with it.
///
/// tower's version takes a mutex and reads the clock on every deposit, that is, on every
/// request the [`Retry`](super::Retry) layer sees, and the mutex is one for the whole
/// balancer, shared by its worker threads. Here each tenth of `ttl` is one atomic word holding
/// the window's number and its balance: a deposit is a coarse clock read
/// (`CLOCK_MONOTONIC_COARSE` on Linux; windows are a second long by default) and one
/// compare-and-swap, which also starts the window when it is a new one. The amounts, the
/// reserve and the limits on the arguments are tower's.
pub struct RetryBudget {
    /// Per window, `number << 32 | balance as u32`: the window's number on the clock
    /// (`now / window`, wrapping at 2³²) and what was deposited in it minus what was withdrawn.
    /// Window `n` lives at `n % WINDOWS`; a stale number means the balance is an old
    /// window's, which counts as zero.
    windows: [AtomicU64; WINDOWS],
    window_ns: u64,
    reserve: i64,
    deposit: i32,
    withdraw: i32,
}

impl RetryBudget {
    /// A budget letting retries add `retry_percent` (0.2 = 20 %) of the requests deposited
    /// over the last `ttl`, plus `min_per_sec` retries a second.
    ///
    /// # Panics
    ///
    /// As tower's `TpsBudget::new`: when `ttl` is not between 1 and 60 seconds,
    /// `retry_percent` not between 0 and 1000, or `min_per_sec` is `i32::MAX` or more.
    pub fn new(ttl: Duration, min_per_sec: u32, retry_percent: f32) -> Self {
        assert!(ttl >= Duration::from_secs(1), "ttl under 1 s");
        assert!(ttl <= Duration::from_secs(60), "ttl over 60 s");
        assert!(
            (0.0..=1000.0).contains(&retry_percent),
            "retry_percent not within 0..=1000"
        );
        assert!(min_per_sec < i32::MAX as u32, "min_per_sec too large");
        // tower's amounts: a retry withdraws what 1 / retry_percent requests deposit.
        let (deposit, withdraw) = if retry_percent == 0.0 {
            (0, 1)
        } else if retry_percent <= 1.0 {
            (1, (1.0 / retry_percent) as i32)
        } else {
            (1000, (1000.0 / retry_percent) as i32)
        };
        let reserve = i64::from(min_per_sec)
            .saturating_mul(ttl.as_secs() as i64)
            .saturating_mul(i64::from(withdraw));
        Self {
            windows: Default::default(),
            window_ns: (ttl / WINDOWS as u32).as_nanos() as u64,
            reserve,
            deposit,
            withdraw,
        }
    }

    /// What may be withdrawn now, in deposit units: the reserve plus the balances of the
    /// current window and the `WINDOWS - 1` before it.
    pub fn balance(&self) -> i64 {
        self.balance_in(self.window_now())
    }

    /// [`balance`](Self::balance) in window `now`.
    fn balance_in(&self, now: u32) -> i64 {
        let live: i64 = self
            .windows
            .iter()
            .map(|w| w.load(Relaxed))
            .filter(|&word| now.wrapping_sub(number(word)) < WINDOWS as u32)
            .map(|word| i64::from(balance(word)))
            .sum();
        self.reserve + live
    }

    /// The current window's number.
    #[inline]
    fn window_now(&self) -> u32 {
        (coarse_now_ns() / self.window_ns) as u32
    }

    /// Adds `amount` to window `now`, starting it when its slot holds an older one.
    #[inline]
    fn add(&self, now: u32, amount: i32) {
        let slot = &self.windows[now as usize % WINDOWS];
        let mut word = slot.load(Relaxed);
        loop {
            let base = if number(word) == now {
                balance(word)
            } else {
                0
            };
            let next = pack(now, base.saturating_add(amount));
            match slot.compare_exchange_weak(word, next, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(seen) => word = seen,
            }
        }
    }
}

#[inline]
fn pack(number: u32, balance: i32) -> u64 {
    u64::from(number) << 32 | u64::from(balance as u32)
}

#[inline]
fn number(word: u64) -> u32 {
    (word >> 32) as u32
}

#[inline]
fn balance(word: u64) -> i32 {
    word as u32 as i32
}

impl Budget for RetryBudget {
    #[inline]
    fn deposit(&self) {
        if self.deposit != 0 {
            self.add(self.window_now(), self.deposit);
        }
    }

    /// Takes one retry's worth if the balance has it. Two retries at once may both see the
    /// last one, as with tower's budget: the bound is a rate, not a count.
    fn withdraw(&self) -> bool {
        let now = self.window_now();
        if self.balance_in(now) < i64::from(self.withdraw) {
            return false;
        }
        self.add(now, -self.withdraw);
        true
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("balance", &self.balance())
            .field("window", &Duration::from_nanos(self.window_ns))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> RetryBudget {
        // The default: 20 % over 10 s, plus 10 a second.
        RetryBudget::new(Duration::from_secs(10), 10, 0.2)
    }

    /// Advances the paused clock to the start of `b`'s next window, so that a test's windows
    /// begin where it expects them to.
    async fn to_window_start(b: &RetryBudget) {
        let into = coarse_now_ns() % b.window_ns;
        tokio::time::advance(Duration::from_nanos(b.window_ns - into)).await;
    }

    fn withdraw_all(b: &RetryBudget) -> usize {
        std::iter::from_fn(|| b.withdraw().then_some(())).count()
    }

    #[tokio::test(start_paused = true)]
    async fn without_deposits_the_reserve_allows_min_per_sec_times_ttl() {
        let b = budget();
        assert_eq!(withdraw_all(&b), 100);
        assert!(!b.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn every_five_requests_pay_for_one_retry_at_20_percent() {
        let b = RetryBudget::new(Duration::from_secs(10), 0, 0.2);
        assert!(!b.withdraw(), "nothing deposited, no reserve");
        for _ in 0..50 {
            b.deposit();
        }
        assert_eq!(withdraw_all(&b), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_expire_after_ttl_window_by_window() {
        let b = RetryBudget::new(Duration::from_secs(10), 0, 1.0);
        to_window_start(&b).await;
        // 10 deposits in each of the first three seconds (one window each).
        for _ in 0..3 {
            (0..10).for_each(|_| b.deposit());
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(b.balance(), 30);
        // At 10.5 s the first second's window has left the last 10 s.
        tokio::time::advance(Duration::from_millis(7_500)).await;
        assert_eq!(b.balance(), 20);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.balance(), 10);
        // A deposit in a reused slot starts it afresh instead of adding to the stale balance.
        b.deposit();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.balance(), 1);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.balance(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn withdrawals_count_against_the_window_they_are_made_in() {
        let b = RetryBudget::new(Duration::from_secs(10), 0, 1.0);
        to_window_start(&b).await;
        (0..5).for_each(|_| b.deposit());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(withdraw_all(&b), 5);
        // The deposits expire before the withdrawals do: the balance goes negative rather than
        // allowing the same retries again.
        tokio::time::advance(Duration::from_secs(8)).await;
        assert_eq!(b.balance(), -5);
        assert!(!b.withdraw());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(b.balance(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn over_100_percent_a_request_pays_for_several_retries() {
        let b = RetryBudget::new(Duration::from_secs(1), 0, 3.0);
        b.deposit();
        assert_eq!(withdraw_all(&b), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_percent_allows_the_reserve_only() {
        let b = RetryBudget::new(Duration::from_secs(2), 3, 0.0);
        (0..100).for_each(|_| b.deposit());
        assert_eq!(withdraw_all(&b), 6);
    }

    /// The same arithmetic as tower's `TpsBudget` over one window, which both budgets agree
    /// on exactly.
    #[tokio::test(start_paused = true)]
    async fn agrees_with_towers_tps_budget() {
        use tower::retry::budget::TpsBudget;
        for (ttl, min, percent, deposits) in [(10, 10, 0.2, 37), (1, 0, 0.5, 9), (5, 1, 2.5, 4)] {
            let ttl = Duration::from_secs(ttl);
            let ours = RetryBudget::new(ttl, min, percent);
            let tower = TpsBudget::new(ttl, min, percent);
            for _ in 0..deposits {
                ours.deposit();
                tower.deposit();
            }
            assert_eq!(
                withdraw_all(&ours),
                std::iter::from_fn(|| tower.withdraw().then_some(())).count(),
                "ttl {ttl:?}, min {min}, {percent}"
            );
        }
    }

    #[test]
    fn deposits_from_many_threads_are_all_counted() {
        let b = std::sync::Arc::new(RetryBudget::new(Duration::from_secs(60), 0, 1.0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = std::sync::Arc::clone(&b);
                std::thread::spawn(move || (0..10_000).for_each(|_| b.deposit()))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        // Within one window (6 s long) or two, every deposit is there.
        assert_eq!(b.balance(), 40_000);
    }
}
