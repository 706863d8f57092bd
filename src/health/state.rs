//! The health of one backend, shared by its probe task, its services and the monitor.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::outlier::OutlierDetection;
use super::pool::{DOWN, EJECTED, Pool, PoolGuard, RAMPING, UNAVAILABLE};
use crate::BoxError;
use crate::wait_list::WaitList;

/// The verdict of a backend's active health checks: up or down.
///
/// This is not where the backend stands — for that there is one type, [`BackendState`], which
/// also says whether it is ejected or draining. `Health` is what the checks decide (and what
/// an operator [sets by hand](BackendHealth::set_health), or a layer [starts
/// with](super::HealthCheckLayer::initial)): a backend ejected by outlier detection still
/// passes its checks, so its health is `Healthy` while its state is
/// [`Ejected`](BackendState::Ejected). It is [`BackendState::Unhealthy`] exactly when its
/// health is `Unhealthy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// The backend takes requests.
    #[default]
    Healthy,
    /// The backend failed its checks; it is `Pending` and never picked.
    Unhealthy,
}

impl Health {
    /// `"healthy"` or `"unhealthy"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }

    /// The verdict of the checks in a status word: its `DOWN` bit.
    const fn of(status: u8) -> Self {
        if status & DOWN == 0 {
            Self::Healthy
        } else {
            Self::Unhealthy
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Where a backend stands: the one state type that health checks, the admin API's listing
/// (`GET /backends`, field `state`) and metrics share.
///
/// It joins the verdict of the active checks ([`Health`]), outlier detection's ejections and
/// deregistration. A backend both down and ejected is `Unhealthy`: it comes back only once its
/// checks pass, whenever the ejection ends. A backend in its slow-start ramp is `Healthy`
/// (see [`HealthSnapshot::slow_start_remaining`]).
///
/// Serialised (`serde`) and displayed in lower case: `"healthy"`, `"unhealthy"`, `"ejected"`,
/// `"draining"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BackendState {
    /// Registered, passes its checks and not ejected: it takes requests (during a slow start,
    /// a growing share of them).
    #[default]
    Healthy,
    /// Registered, but failed its active checks: it takes no requests until it passes.
    Unhealthy,
    /// Registered and passes its checks, but ejected by outlier detection for failing
    /// requests: it takes none until the ejection ends.
    Ejected,
    /// Deregistered with requests still in flight: it takes no new ones and is gone when the
    /// last one ends. The health checks never report it (they stop at deregistration); the
    /// admin API's listing does.
    Draining,
}

impl BackendState {
    /// `"healthy"`, `"unhealthy"`, `"ejected"` or `"draining"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Ejected => "ejected",
            Self::Draining => "draining",
        }
    }

    /// The state of a checked backend from its status word: never `Draining`.
    const fn of(status: u8) -> Self {
        if status & DOWN != 0 {
            Self::Unhealthy
        } else if status & EJECTED != 0 {
            Self::Ejected
        } else {
            Self::Healthy
        }
    }
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What a layer turns on for each of its backends, besides the active checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) outlier: Option<OutlierDetection>,
    /// Never zero.
    pub(crate) slow_start: Option<Duration>,
}

/// The smallest share of requests a backend in its slow-start ramp admits: 10 %, as a
/// threshold on a uniform `u64`.
const MIN_ADMIT: u64 = u64::MAX / 10;

/// A point-in-time view of one backend's health, from [`HealthMonitor`](super::HealthMonitor)
/// or [`BackendHealth::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthSnapshot {
    /// The verdict of the active checks (an ejected backend is still `Healthy` here; see
    /// [`state`](Self::state)).
    pub status: Health,
    /// When the last check finished, `None` before the first one.
    pub last_check: Option<SystemTime>,
    /// How long ago the last check finished (on tokio's clock), `None` before the first one.
    pub since_last_check: Option<Duration>,
    /// Why the last check failed; `None` if it passed or none has run.
    pub last_error: Option<String>,
    /// Checks failed in a row, up to the last one.
    pub consecutive_failures: u32,
    /// Checks passed in a row, up to the last one.
    pub consecutive_successes: u32,
    /// Checks run since the backend was added.
    pub checks: u64,
    /// Checks failed since the backend was added (of [`checks`](Self::checks)).
    pub checks_failed: u64,
    /// Where the backend stands: healthy, unhealthy (from the checks) or ejected (by outlier
    /// detection); never `Draining`, which the health checks do not see.
    pub state: BackendState,
    /// Responses failed in a row (errors, `502`, `503`, `504`), counted only with outlier
    /// detection on; back to 0 at each ejection attempt.
    pub response_failures: u32,
    /// Ejections in the current streak; the last lasted `base × ejections`. Back to 0 once
    /// the backend has gone a whole maximum ejection time without one.
    pub ejections: u32,
    /// Ejections since the backend was added.
    pub total_ejections: u64,
    /// When the current ejection ends (wall clock), `None` if not ejected.
    pub ejected_until: Option<SystemTime>,
    /// How long the current ejection still lasts (on tokio's clock), `None` if not ejected.
    pub ejection_remaining: Option<Duration>,
    /// How long the backend's slow-start ramp still lasts (on tokio's clock), `None` when it
    /// takes its full share.
    pub slow_start_remaining: Option<Duration>,
}

/// Off the request path: written after each check, read by the monitor.
#[derive(Debug, Default)]
struct Detail {
    last_check: Option<(SystemTime, Instant)>,
    last_error: Option<String>,
    consecutive_failures: u32,
    consecutive_successes: u32,
    checks: u64,
    checks_failed: u64,
    /// Ejections in the current streak.
    ejections: u32,
    total_ejections: u64,
    /// Set exactly while the `EJECTED` bit is.
    ejected_until: Option<(SystemTime, Instant)>,
    last_ejection_end: Option<Instant>,
}

/// The shared health of one backend.
///
/// Its [`HealthCheck`](super::HealthCheck) services read the status with one atomic load per
/// `poll_ready`; the probe task, the responses (with outlier detection) and
/// [`HealthMonitor`](super::HealthMonitor) update it. The status has one bit per cause that
/// keeps a backend out — failed active checks, ejection by outlier detection — set and
/// cleared independently, and one for the slow-start ramp. Every change that makes the
/// backend available again wakes the services waiting for it.
pub struct BackendHealth {
    /// `DOWN`, `EJECTED` and `RAMPING` bits; changed only under the pool's lock.
    status: AtomicU8,
    /// Responses failed in a row (outlier detection).
    response_failures: AtomicU32,
    /// When the slow-start ramp began, in nanoseconds on the pool's clock.
    ramp_start: AtomicU64,
    /// Whether the layer counts this backend (until it is removed).
    member: AtomicBool,
    /// Woken (all waiters) when the backend becomes available.
    available: Arc<WaitList>,
    /// Counters and the last result; a per-backend lock, taken only off the request path.
    detail: Mutex<Detail>,
    policy: Policy,
    pool: Arc<Pool>,
    /// The backend's key, for logs.
    name: Box<str>,
}

impl BackendHealth {
    /// A backend starting with `initial` status and no checks yet.
    ///
    /// It stands alone: outlier detection and slow start, which need to know the other
    /// backends, are off. [`HealthCheckLayer`](super::HealthCheckLayer) makes its own.
    pub fn new(initial: Health) -> Self {
        let pool = Arc::new(Pool::new());
        Self::with_status(
            Self::initial_status(initial, None),
            Policy::default(),
            pool,
            "",
        )
    }

    /// A backend of a layer, counted in its `pool` until [`leave`](Self::leave).
    pub(crate) fn join(initial: Health, policy: Policy, pool: Arc<Pool>, name: &str) -> Self {
        let status = Self::initial_status(initial, policy.slow_start);
        pool.lock().join(status);
        let health = Self::with_status(status, policy, pool, name);
        health.member.store(true, Ordering::Relaxed);
        health
    }

    /// A new backend ramps up (with slow start) if it starts healthy.
    fn initial_status(initial: Health, slow_start: Option<Duration>) -> u8 {
        match (initial, slow_start) {
            (Health::Unhealthy, _) => DOWN,
            (Health::Healthy, Some(_)) => RAMPING,
            (Health::Healthy, None) => 0,
        }
    }

    fn with_status(status: u8, policy: Policy, pool: Arc<Pool>, name: &str) -> Self {
        Self {
            status: AtomicU8::new(status),
            response_failures: AtomicU32::new(0),
            ramp_start: AtomicU64::new(pool.nanos(Instant::now())),
            member: AtomicBool::new(false),
            available: WaitList::new(),
            detail: Mutex::new(Detail::default()),
            policy,
            pool,
            name: name.into(),
        }
    }

    /// The backend was removed from the layer: it no longer counts toward its limits.
    pub(crate) fn leave(&self) {
        let mut pool = self.pool.lock();
        if self.member.swap(false, Ordering::Relaxed) {
            pool.leave(self.status());
        }
    }

    /// The status from the health checks.
    pub fn health(&self) -> Health {
        Health::of(self.status())
    }

    /// Where the backend stands: healthy, unhealthy or ejected.
    pub fn state(&self) -> BackendState {
        BackendState::of(self.status())
    }

    /// Whether the backend takes requests now: it passes its checks and is not ejected.
    ///
    /// During a slow start it is available but admits only a share of the requests.
    #[inline]
    pub fn is_available(&self) -> bool {
        self.status() & UNAVAILABLE == 0
    }

    /// Whether outlier detection has ejected the backend.
    pub fn is_ejected(&self) -> bool {
        self.status() & EJECTED != 0
    }

    /// The status bits; `0` (available, not ramping) is the request path's fast case.
    #[inline]
    pub(crate) fn status(&self) -> u8 {
        self.status.load(Ordering::Acquire)
    }

    /// Whether responses are observed for outlier detection.
    #[inline]
    pub(crate) fn detects_outliers(&self) -> bool {
        self.policy.outlier.is_some()
    }

    /// A point-in-time view of the status and the last checks.
    pub fn snapshot(&self) -> HealthSnapshot {
        let detail = self.detail();
        let status = self.status();
        let now = Instant::now();
        HealthSnapshot {
            status: Health::of(status),
            last_check: detail.last_check.map(|(at, _)| at),
            since_last_check: detail.last_check.map(|(_, at)| at.elapsed()),
            last_error: detail.last_error.clone(),
            consecutive_failures: detail.consecutive_failures,
            consecutive_successes: detail.consecutive_successes,
            checks: detail.checks,
            checks_failed: detail.checks_failed,
            state: BackendState::of(status),
            response_failures: self.response_failures.load(Ordering::Relaxed),
            ejections: self.streak(&detail, now),
            total_ejections: detail.total_ejections,
            ejected_until: detail.ejected_until.map(|(at, _)| at),
            ejection_remaining: detail
                .ejected_until
                .map(|(_, until)| until.saturating_duration_since(now)),
            slow_start_remaining: (status & RAMPING != 0)
                .then(|| self.ramp_remaining(now))
                .flatten(),
        }
    }

    /// Sets the status by hand, whatever the checks said; returns the previous status.
    ///
    /// The consecutive counters restart, so later checks move the backend again only after
    /// `rise` passes or `fall` failures, as with HAProxy's `set server health`. An ejection
    /// goes on (see [`end_ejection`](Self::end_ejection)).
    pub fn set_health(&self, health: Health) -> Health {
        let mut detail = self.detail();
        detail.consecutive_failures = 0;
        detail.consecutive_successes = 0;
        let previous = self.store(health);
        drop(detail);
        previous
    }

    /// Records the result of one check and applies the `rise` / `fall` thresholds.
    ///
    /// Returns the new status if this check changed it.
    pub(crate) fn record(
        &self,
        result: &Result<(), BoxError>,
        rise: u32,
        fall: u32,
    ) -> Option<Health> {
        let mut detail = self.detail();
        detail.checks += 1;
        detail.last_check = Some((SystemTime::now(), Instant::now()));
        let current = self.health();
        let next = match result {
            Ok(()) => {
                detail.consecutive_successes = detail.consecutive_successes.saturating_add(1);
                detail.consecutive_failures = 0;
                detail.last_error = None;
                (current == Health::Unhealthy && detail.consecutive_successes >= rise)
                    .then_some(Health::Healthy)
            }
            Err(error) => {
                detail.checks_failed += 1;
                detail.consecutive_failures = detail.consecutive_failures.saturating_add(1);
                detail.consecutive_successes = 0;
                detail.last_error = Some(error.to_string());
                (current == Health::Healthy && detail.consecutive_failures >= fall)
                    .then_some(Health::Unhealthy)
            }
        };
        if let Some(next) = next {
            self.store(next);
        }
        drop(detail);
        self.pool.checks.bump();
        next
    }

    /// Sets or clears the `DOWN` bit from `health` (callers hold the detail lock, which
    /// orders the checks' writers); returns the previous health.
    fn store(&self, health: Health) -> Health {
        let mut pool = self.pool.lock();
        let previous = match health {
            Health::Healthy => self.change(&mut pool, |s| s & !DOWN),
            Health::Unhealthy => self.change(&mut pool, |s| s | DOWN),
        };
        Health::of(previous)
    }

    /// Applies `f` to the status under the pool's lock and keeps the layer's counts; returns
    /// the previous status.
    ///
    /// A backend that becomes available starts a slow-start ramp (if on) and wakes its
    /// waiters; one that becomes unavailable drops its ramp.
    fn change(&self, pool: &mut PoolGuard<'_>, f: impl FnOnce(u8) -> u8) -> u8 {
        let old = self.status();
        let mut new = f(old);
        let was_available = old & UNAVAILABLE == 0;
        let is_available = new & UNAVAILABLE == 0;
        if !is_available {
            new &= !RAMPING;
        } else if !was_available && self.policy.slow_start.is_some() {
            new |= RAMPING;
            // Published by the status store below.
            self.ramp_start
                .store(self.pool.nanos(Instant::now()), Ordering::Relaxed);
        }
        self.status.store(new, Ordering::Release);
        if self.member.load(Ordering::Relaxed) {
            pool.update(old, new);
        }
        if is_available && !was_available {
            self.available.wake_all();
        }
        old
    }

    /// The waiters woken when the backend becomes available.
    pub(crate) fn available(&self) -> &Arc<WaitList> {
        &self.available
    }

    fn detail(&self) -> MutexGuard<'_, Detail> {
        // Every write leaves the detail consistent, so a poisoned lock is still usable.
        self.detail
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Outlier detection.
impl BackendHealth {
    /// Counts the outcome of one response: on the request path, a load when it did not fail
    /// and nothing was failing before.
    #[inline]
    pub(crate) fn observe(self: &Arc<Self>, failed: bool) {
        if failed {
            self.response_failed();
        } else if self.response_failures.load(Ordering::Relaxed) != 0 {
            self.response_failures.store(0, Ordering::Relaxed);
        }
    }

    #[cold]
    fn response_failed(self: &Arc<Self>) {
        let Some(outlier) = self.policy.outlier else {
            return;
        };
        let failures = self.response_failures.fetch_add(1, Ordering::Relaxed) + 1;
        // Exactly one failure of a streak reaches the threshold; the count starts over whether
        // the ejection is allowed or not, so a refused one is tried again after as many more.
        if failures == outlier.consecutive_failures {
            self.response_failures.store(0, Ordering::Relaxed);
            self.eject(outlier, failures);
        }
    }

    /// Ejects the backend unless that would break the layer's limits.
    fn eject(self: &Arc<Self>, outlier: OutlierDetection, failures: u32) {
        // Only a timer ends an ejection; without a runtime to run it, do not start one.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(backend = %self.name, "not ejected: no tokio runtime");
            return;
        };
        let now = Instant::now();
        let mut detail = self.detail();
        let mut pool = self.pool.lock();
        if self.status() & UNAVAILABLE != 0 || !self.member.load(Ordering::Relaxed) {
            // Already out (down, ejected) or removed: nothing to take out of rotation.
            return;
        }
        let counts = pool.counts();
        let max_ejected = outlier.max_ejected(counts.members);
        if counts.ejected >= max_ejected || counts.available < 2 {
            drop((pool, detail));
            tracing::info!(
                backend = %self.name,
                failures,
                ejected = counts.ejected,
                max_ejected,
                available = counts.available,
                "backend not ejected: too many backends out"
            );
            return;
        }
        let ejected_for = self.next_ejection(&mut detail, outlier, now);
        let until = now + ejected_for;
        detail.ejected_until = Some((SystemTime::now() + ejected_for, until));
        self.change(&mut pool, |s| s | EJECTED);
        drop((pool, detail));
        tracing::warn!(backend = %self.name, failures, ejected_for = ?ejected_for, "backend ejected");
        let health = Arc::clone(self);
        runtime.spawn(async move {
            tokio::time::sleep_until(until).await;
            health.end_ejection_if_due();
        });
    }

    /// Counts one more ejection in the streak (which starts over after a whole maximum
    /// ejection time without one) and returns how long it lasts.
    fn next_ejection(
        &self,
        detail: &mut Detail,
        outlier: OutlierDetection,
        now: Instant,
    ) -> Duration {
        detail.ejections = self.streak(detail, now).saturating_add(1);
        detail.total_ejections += 1;
        outlier.ejection_time(detail.ejections)
    }

    /// The ejections in the current streak, as of `now`.
    fn streak(&self, detail: &Detail, now: Instant) -> u32 {
        match (
            detail.ejected_until,
            detail.last_ejection_end,
            self.policy.outlier,
        ) {
            (None, Some(end), Some(outlier))
                if now.saturating_duration_since(end) >= outlier.longest() =>
            {
                0
            }
            _ => detail.ejections,
        }
    }

    /// Ends the ejection now, whatever time it has left; `false` if the backend is not
    /// ejected. The backend takes requests again if it passes its checks.
    ///
    /// The count of ejections is kept: the next one lasts longer.
    pub fn end_ejection(&self) -> bool {
        self.finish_ejection(false)
    }

    /// Ends the ejection if its time is up (the timer may belong to an earlier ejection).
    pub(crate) fn end_ejection_if_due(&self) -> bool {
        self.finish_ejection(true)
    }

    fn finish_ejection(&self, only_if_due: bool) -> bool {
        let now = Instant::now();
        let mut detail = self.detail();
        let Some((_, until)) = detail.ejected_until else {
            return false;
        };
        if only_if_due && now < until {
            return false;
        }
        detail.ejected_until = None;
        detail.last_ejection_end = Some(now);
        let old = self.change(&mut self.pool.lock(), |s| s & !EJECTED);
        drop(detail);
        tracing::info!(backend = %self.name, down = old & DOWN != 0, "ejection ended");
        true
    }
}

/// Slow start.
impl BackendHealth {
    /// Whether a backend in its ramp (status `RAMPING`, available) takes this request: with
    /// probability `elapsed / slow_start`, at least 10 %; always if no other backend of the
    /// layer is available at full rate, so that the ramp never fails a request.
    pub(crate) fn admit(&self) -> bool {
        let Some(window) = self.policy.slow_start else {
            return true;
        };
        let window = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        let elapsed = self
            .pool
            .nanos(Instant::now())
            .saturating_sub(self.ramp_start.load(Ordering::Relaxed));
        if elapsed >= window {
            self.end_ramp();
            return true;
        }
        if self.pool.steady() == 0 {
            return true;
        }
        // elapsed < window, so the share fits in a u64.
        let share = ((u128::from(elapsed) << 64) / u128::from(window)) as u64;
        self.pool.rng.next_u64() < share.max(MIN_ADMIT)
    }

    /// Ends the ramp if its time is up; the probe task calls it after every check, so that
    /// the layer's counts are right even for a backend nobody asks.
    pub(crate) fn end_ramp_if_due(&self) {
        if self.status() & RAMPING != 0 && self.ramp_remaining(Instant::now()).is_none() {
            self.end_ramp();
        }
    }

    fn end_ramp(&self) {
        let mut pool = self.pool.lock();
        // Another caller may have ended it, or the backend gone down, since the check.
        if self.status() & RAMPING != 0 {
            self.change(&mut pool, |s| s & !RAMPING);
            drop(pool);
            tracing::debug!(backend = %self.name, "slow start ended");
        }
    }

    /// The time left in the ramp, `None` if it is over (or slow start is off).
    fn ramp_remaining(&self, now: Instant) -> Option<Duration> {
        let window = self.policy.slow_start?;
        let end = self.pool.instant(self.ramp_start.load(Ordering::Relaxed)) + window;
        let remaining = end.saturating_duration_since(now);
        (!remaining.is_zero()).then_some(remaining)
    }
}

impl Default for BackendHealth {
    fn default() -> Self {
        Self::new(Health::Healthy)
    }
}

impl fmt::Debug for BackendHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendHealth")
            .field("state", &self.state())
            .field("ramping", &(self.status() & RAMPING != 0))
            .field("response_failures", &self.response_failures)
            .field("detail", &*self.detail())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail() -> Result<(), BoxError> {
        Err("boom".into())
    }

    #[test]
    fn thresholds_count_consecutive_results() {
        let health = BackendHealth::new(Health::Healthy);
        assert_eq!(health.record(&fail(), 1, 2), None);
        assert_eq!(
            health.record(&Ok(()), 1, 2),
            None,
            "a pass resets the failures"
        );
        assert_eq!(health.record(&fail(), 1, 2), None);
        assert_eq!(health.record(&fail(), 1, 2), Some(Health::Unhealthy));
        assert!(!health.is_available());
        let snapshot = health.snapshot();
        assert_eq!(snapshot.status, Health::Unhealthy);
        assert_eq!(snapshot.consecutive_failures, 2);
        assert_eq!(snapshot.last_error.as_deref(), Some("boom"));
        assert_eq!(snapshot.checks, 4);
        assert_eq!(snapshot.checks_failed, 3);

        assert_eq!(health.record(&Ok(()), 3, 2), None);
        assert_eq!(health.record(&Ok(()), 3, 2), None);
        assert_eq!(health.record(&Ok(()), 3, 2), Some(Health::Healthy));
        assert!(health.is_available());
        assert_eq!(health.snapshot().last_error, None);
    }

    #[test]
    fn set_health_overrides_and_restarts_counters() {
        let health = BackendHealth::new(Health::Unhealthy);
        assert_eq!(health.health(), Health::Unhealthy);
        assert_eq!(health.set_health(Health::Healthy), Health::Unhealthy);
        assert!(health.is_available());
        assert_eq!(health.snapshot().consecutive_successes, 0);
        assert_eq!(health.snapshot().last_check, None);
    }

    #[test]
    fn health_displays_and_serializes_lowercase() {
        assert_eq!(Health::Unhealthy.to_string(), "unhealthy");
        assert_eq!(
            serde_json::to_string(&Health::Healthy).unwrap(),
            "\"healthy\""
        );
    }

    #[test]
    fn backend_state_displays_and_serializes_lowercase() {
        for (state, text) in [
            (BackendState::Healthy, "healthy"),
            (BackendState::Unhealthy, "unhealthy"),
            (BackendState::Ejected, "ejected"),
            (BackendState::Draining, "draining"),
        ] {
            assert_eq!(state.to_string(), text);
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{text}\"")
            );
        }
    }
}
