//! The health of one backend, shared by its probe task, its services and the monitor.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::BoxError;

/// Whether a backend passes its health checks.
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
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Bits of [`BackendHealth::status`]; a backend takes requests only when none is set.
///
/// Only `DOWN` (failed active checks) exists today; passive outlier ejection and draining are
/// meant to add their own bits, so that each cause is set and cleared independently.
const DOWN: u8 = 1;

/// A point-in-time view of one backend's health, from [`HealthMonitor`](super::HealthMonitor)
/// or [`BackendHealth::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthSnapshot {
    /// The current status.
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
}

/// Off the request path: written after each check, read by the monitor.
#[derive(Debug, Default)]
struct Detail {
    last_check: Option<(SystemTime, Instant)>,
    last_error: Option<String>,
    consecutive_failures: u32,
    consecutive_successes: u32,
    checks: u64,
}

/// The shared health of one backend.
///
/// Its [`HealthCheck`](super::HealthCheck) services read the status with one atomic load per
/// `poll_ready`; the probe task and [`HealthMonitor`](super::HealthMonitor) update it. Every
/// change of status is logged and wakes the services waiting for the backend to come back.
pub struct BackendHealth {
    status: AtomicU8,
    /// Woken (all waiters) when the backend becomes available.
    available: Arc<Notify>,
    /// Counters and the last result; a per-backend lock, taken only off the request path.
    detail: Mutex<Detail>,
}

impl BackendHealth {
    /// A backend starting with `initial` status and no checks yet.
    pub fn new(initial: Health) -> Self {
        Self {
            status: AtomicU8::new(match initial {
                Health::Healthy => 0,
                Health::Unhealthy => DOWN,
            }),
            available: Arc::new(Notify::new()),
            detail: Mutex::new(Detail::default()),
        }
    }

    /// The status from the health checks.
    pub fn health(&self) -> Health {
        if self.status.load(Ordering::Acquire) & DOWN == 0 {
            Health::Healthy
        } else {
            Health::Unhealthy
        }
    }

    /// Whether the backend takes requests now; the one check on the request path.
    #[inline]
    pub fn is_available(&self) -> bool {
        self.status.load(Ordering::Acquire) == 0
    }

    /// A point-in-time view of the status and the last checks.
    pub fn snapshot(&self) -> HealthSnapshot {
        let detail = self.detail();
        HealthSnapshot {
            status: self.health(),
            last_check: detail.last_check.map(|(at, _)| at),
            since_last_check: detail.last_check.map(|(_, at)| at.elapsed()),
            last_error: detail.last_error.clone(),
            consecutive_failures: detail.consecutive_failures,
            consecutive_successes: detail.consecutive_successes,
            checks: detail.checks,
        }
    }

    /// Sets the status by hand, whatever the checks said; returns the previous status.
    ///
    /// The consecutive counters restart, so later checks move the backend again only after
    /// `rise` passes or `fall` failures, as with HAProxy's `set server health`.
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
        next
    }

    /// Sets the `DOWN` bit from `health` (callers hold the detail lock, which orders writers);
    /// wakes waiters if the backend became available.
    fn store(&self, health: Health) -> Health {
        let previous = match health {
            Health::Healthy => self.status.fetch_and(!DOWN, Ordering::AcqRel),
            Health::Unhealthy => self.status.fetch_or(DOWN, Ordering::AcqRel),
        };
        if previous != 0 && self.is_available() {
            self.available.notify_waiters();
        }
        if previous & DOWN == 0 {
            Health::Healthy
        } else {
            Health::Unhealthy
        }
    }

    /// The `Notify` woken when the backend becomes available.
    pub(crate) fn available(&self) -> &Arc<Notify> {
        &self.available
    }

    fn detail(&self) -> MutexGuard<'_, Detail> {
        // Every write leaves the detail consistent, so a poisoned lock is still usable.
        self.detail
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
            .field("status", &self.health())
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
}
