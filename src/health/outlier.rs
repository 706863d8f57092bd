//! Passive health checks: the outlier-detection settings and how a response is judged.

use std::time::Duration;

use http::StatusCode;

/// The shortest ejection; shorter base times are raised to it.
const MIN_EJECTION: Duration = Duration::from_millis(1);

/// Passive health checks (outlier ejection), as in Envoy's `outlier_detection` with
/// `consecutive_gateway_failure`. See the
/// [module docs](super#passive-health-checks-outlier-ejection).
///
/// A backend whose responses fail [`consecutive_failures`](Self::consecutive_failures) times
/// in a row (errors from its service, `502`, `503` or `504`) is ejected: `Pending`, like an
/// unhealthy one, for `base_ejection × n` where `n` counts its ejections so far, at most
/// [`max_ejection`](Self::max_ejection). At most
/// [`max_ejection_percent`](Self::max_ejection_percent) of the backends are ejected at once,
/// and never the last available one.
///
/// | setting | default |
/// |---|---|
/// | [`consecutive_failures`](Self::consecutive_failures) | 5 |
/// | [`base_ejection`](Self::base_ejection) | 30 s |
/// | [`max_ejection`](Self::max_ejection) | 300 s |
/// | [`max_ejection_percent`](Self::max_ejection_percent) | 50 |
///
/// ```
/// use std::time::Duration;
/// use tower_lb::health::{HealthCheckLayer, OutlierDetection, probe_fn};
///
/// let outliers = OutlierDetection::new()
///     .consecutive_failures(3)
///     .base_ejection(Duration::from_secs(10))
///     .max_ejection(Duration::from_secs(120))
///     .max_ejection_percent(34);
/// # let probe = probe_fn(|_: &http::Uri| async { Ok::<(), std::io::Error>(()) });
/// # let _: HealthCheckLayer<_, http::Uri> =
/// HealthCheckLayer::new(probe).outlier_detection(outliers);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct OutlierDetection {
    pub(crate) consecutive_failures: u32,
    pub(crate) base_ejection: Duration,
    pub(crate) max_ejection: Duration,
    pub(crate) max_ejection_percent: u8,
}

impl OutlierDetection {
    /// The default [`consecutive_failures`](Self::consecutive_failures): 5, Envoy's
    /// `consecutive_gateway_failure`.
    pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;

    /// The default [`base_ejection`](Self::base_ejection): 30 s, Envoy's `base_ejection_time`.
    pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(30);

    /// The default [`max_ejection`](Self::max_ejection): 300 s, Envoy's `max_ejection_time`.
    pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);

    /// The default [`max_ejection_percent`](Self::max_ejection_percent): 50 (Envoy's is 10).
    pub const DEFAULT_MAX_EJECTION_PERCENT: u8 = 50;

    /// Envoy's defaults, but for `max_ejection_percent` (50 rather than 10): 5 failures in a
    /// row eject for 30 s, up to 300 s, at most half the backends at once.
    pub const fn new() -> Self {
        Self {
            consecutive_failures: Self::DEFAULT_CONSECUTIVE_FAILURES,
            base_ejection: Self::DEFAULT_BASE_EJECTION,
            max_ejection: Self::DEFAULT_MAX_EJECTION,
            max_ejection_percent: Self::DEFAULT_MAX_EJECTION_PERCENT,
        }
    }

    /// Failed responses in a row that eject a backend (default 5; `0` is read as `1`).
    pub const fn consecutive_failures(mut self, failures: u32) -> Self {
        self.consecutive_failures = if failures == 0 { 1 } else { failures };
        self
    }

    /// How long the first ejection lasts; the `n`-th lasts `n` times as long, up to
    /// [`max_ejection`](Self::max_ejection) (default 30 s, at least 1 ms).
    pub fn base_ejection(mut self, base: Duration) -> Self {
        self.base_ejection = base.max(MIN_EJECTION);
        self
    }

    /// The longest ejection (default 300 s; read as the base time if shorter).
    ///
    /// It is also how long a backend must go without being ejected for its count of
    /// ejections, and so its next ejection time, to start over from the base.
    pub const fn max_ejection(mut self, max: Duration) -> Self {
        self.max_ejection = max;
        self
    }

    /// The most backends ejected at once, in percent of the backends the layer checks,
    /// rounded down (default 50; above 100 is read as 100).
    ///
    /// As in Envoy, one backend may be ejected whatever the percentage (even `0`), as long as
    /// another one is available: ejection never takes the last available backend.
    pub const fn max_ejection_percent(mut self, percent: u8) -> Self {
        self.max_ejection_percent = if percent > 100 { 100 } else { percent };
        self
    }

    /// The longest ejection (never shorter than the base time).
    pub(crate) fn longest(&self) -> Duration {
        self.max_ejection.max(self.base_ejection)
    }

    /// How long the `nth` ejection in a row (1-based) lasts.
    pub(crate) fn ejection_time(&self, nth: u32) -> Duration {
        self.base_ejection
            .saturating_mul(nth.max(1))
            .min(self.longest())
    }

    /// How many of `members` backends may be ejected at once (before the last-available
    /// rule): the percentage rounded down, but at least one.
    pub(crate) fn max_ejected(&self, members: usize) -> usize {
        (members.saturating_mul(usize::from(self.max_ejection_percent)) / 100).max(1)
    }
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self::new()
    }
}

/// A response whose status outlier detection can read.
///
/// [`HealthCheck`](super::HealthCheck) requires it of its service's responses: with
/// [outlier detection](super::HealthCheckLayer::outlier_detection) on, a response whose
/// status is `502 Bad Gateway`, `503 Service Unavailable` or `504 Gateway Timeout` counts as a
/// failure of the backend, like an error from its service; any other response resets the
/// count. Implemented for [`http::Response`]; for a service that is not HTTP, implement it
/// returning `None`, and only errors count.
pub trait ResponseStatus {
    /// The status of the response, `None` if it has none.
    fn status(&self) -> Option<StatusCode>;
}

impl<B> ResponseStatus for http::Response<B> {
    #[inline]
    fn status(&self) -> Option<StatusCode> {
        Some(http::Response::status(self))
    }
}

/// Whether a response with this status counts as a failure of the backend: a gateway error.
#[inline]
pub(crate) fn is_failure(status: Option<StatusCode>) -> bool {
    matches!(
        status,
        Some(
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_time_grows_with_each_ejection_and_is_capped() {
        let o = OutlierDetection::new()
            .base_ejection(Duration::from_secs(30))
            .max_ejection(Duration::from_secs(100));
        let times: Vec<_> = (1..=5).map(|n| o.ejection_time(n).as_secs()).collect();
        assert_eq!(times, [30, 60, 90, 100, 100]);
        let short_max = o.max_ejection(Duration::from_secs(1));
        assert_eq!(short_max.longest(), Duration::from_secs(30));
        assert_eq!(short_max.ejection_time(3), Duration::from_secs(30));
    }

    #[test]
    fn max_ejected_rounds_down_but_allows_one() {
        let o = OutlierDetection::new().max_ejection_percent(50);
        assert_eq!(
            [1, 2, 3, 4, 5, 10].map(|n| o.max_ejected(n)),
            [1, 1, 1, 2, 2, 5]
        );
        assert_eq!(o.max_ejection_percent(0).max_ejected(10), 1);
        assert_eq!(o.max_ejection_percent(200).max_ejection_percent, 100);
        assert_eq!(o.consecutive_failures(0).consecutive_failures, 1);
    }

    #[test]
    fn only_gateway_errors_are_failures() {
        for code in [502, 503, 504] {
            assert!(is_failure(StatusCode::from_u16(code).ok()), "{code}");
        }
        for code in [200, 301, 404, 429, 500, 501, 505] {
            assert!(!is_failure(StatusCode::from_u16(code).ok()), "{code}");
        }
        assert!(!is_failure(None));
    }
}
