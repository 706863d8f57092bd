//! `GET /backends`: the registry, the balancer's counters and the health checks, joined.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tower::discover::Discover;

use crate::addr::BackendAddr;
use crate::algo::Pick;
use crate::balance::{Balance, Endpoint};
use crate::health::{BackendState, HealthSnapshot};
use crate::weight::Weighted;

/// What the admin API reads of a running balancer: the backends in its set and those it
/// still finishes requests on. Implemented by every [`Balance`] keyed by
/// [`Weighted<BackendAddr>`], such as the [`Server`](crate::server::Server)'s.
pub trait BalancerView: Send + Sync + 'static {
    /// The backends in the current set ([`Balance::endpoints`]).
    fn endpoints(&self) -> Vec<Arc<Endpoint<Weighted<BackendAddr>>>>;
    /// Backends removed from the set with requests still in flight ([`Balance::retired`]).
    fn retired(&self) -> Vec<Arc<Endpoint<Weighted<BackendAddr>>>>;
    /// Resolves once the set changes after this call ([`Balance::changed`]); the admin API
    /// waits on it for a change to apply. By default, never (a set that does not change).
    fn changed(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(std::future::pending())
    }
}

impl<D, P> BalancerView for Balance<D, P>
where
    D: Discover<Key = Weighted<BackendAddr>>,
    P: Pick<Weighted<BackendAddr>>,
    Self: Send + Sync + 'static,
{
    fn endpoints(&self) -> Vec<Arc<Endpoint<Weighted<BackendAddr>>>> {
        Balance::endpoints(self)
    }

    fn retired(&self) -> Vec<Arc<Endpoint<Weighted<BackendAddr>>>> {
        Balance::retired(self)
    }

    fn changed(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(Balance::changed(self))
    }
}

/// One backend in the `GET /backends` list. The field names are part of the API.
///
/// Counters are the balancer's, since the backend joined it (they are kept across weight
/// updates); health fields are the health checks'. A backend registered a moment ago that the
/// balancer has not taken in yet shows zero counters and no check. A draining backend is no
/// longer checked: its health fields are `null` (and `ejections` 0).
///
/// ```json
/// {"address":"http://127.0.0.1:18490","weight":1,"state":"ejected","in_flight":0,"served":3,
///  "failures":0,"last_check":"2026-11-25T23:56:20.373Z","last_error":null,"ejections":1,
///  "ejected_until":"2026-11-25T23:56:40.497Z","slow_start_remaining_ms":null}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BackendInfo {
    /// The normalised address, as `POST /register` reported it (a string in JSON).
    pub address: BackendAddr,
    /// The weight.
    pub weight: u32,
    /// Healthy, unhealthy, ejected or draining.
    pub state: BackendState,
    /// Requests sent to it whose response body has not ended.
    pub in_flight: usize,
    /// Requests it answered (any status).
    pub served: u64,
    /// Requests that failed with an error (refused, reset, timed out) rather than an answer.
    pub failures: u64,
    /// When its last health check finished, RFC 3339 in UTC with milliseconds
    /// (`2026-01-31T12:00:00.250Z`); `null` before the first one.
    pub last_check: Option<String>,
    /// Why its last health check failed; `null` if it passed or none has run.
    pub last_error: Option<String>,
    /// How many times outlier detection ejected it since it was registered.
    pub ejections: u64,
    /// When its current ejection ends (RFC 3339, UTC); `null` unless ejected.
    pub ejected_until: Option<String>,
    /// Milliseconds left in its slow-start ramp; `null` when it takes its full share.
    pub slow_start_remaining_ms: Option<u64>,
}

/// Joins the registered backends (in registration order), the balancer's set and retired
/// backends, and the health checks into the `GET /backends` list. Removed backends still
/// finishing requests come last, as [`Draining`](BackendState::Draining).
pub(crate) fn list(
    registered: Vec<(BackendAddr, u32)>,
    endpoints: &[Arc<Endpoint<Weighted<BackendAddr>>>],
    retired: &[Arc<Endpoint<Weighted<BackendAddr>>>],
    health: impl Fn(&BackendAddr) -> Option<HealthSnapshot>,
) -> Vec<BackendInfo> {
    // One lookup per registered backend, not a scan of the set for each.
    let in_set: HashMap<&BackendAddr, &Endpoint<Weighted<BackendAddr>>> =
        endpoints.iter().map(|e| (e.key().key(), &**e)).collect();
    let mut list = Vec::with_capacity(registered.len() + retired.len());
    for (uri, weight) in &registered {
        let snapshot = health(uri);
        // Not checked yet: healthy, as a new backend starts.
        let state = snapshot.as_ref().map_or(BackendState::Healthy, |s| s.state);
        let endpoint = in_set.get(uri).copied();
        list.push(info(uri, *weight, state, endpoint, snapshot));
    }
    for endpoint in retired {
        let uri = endpoint.key().key();
        if registered.iter().any(|(u, _)| u == uri) {
            // Registered again while draining: listed above, under its new registration.
            continue;
        }
        list.push(info(
            uri,
            endpoint.weight(),
            BackendState::Draining,
            Some(endpoint),
            None,
        ));
    }
    list
}

fn info(
    uri: &BackendAddr,
    weight: u32,
    state: BackendState,
    endpoint: Option<&Endpoint<Weighted<BackendAddr>>>,
    snapshot: Option<HealthSnapshot>,
) -> BackendInfo {
    let stats = endpoint.map(Endpoint::stats);
    let snapshot = snapshot.as_ref();
    BackendInfo {
        address: uri.clone(),
        weight,
        state,
        in_flight: stats.map_or(0, |s| s.in_flight()),
        served: stats.map_or(0, |s| s.served()),
        failures: stats.map_or(0, |s| s.failures()),
        last_check: snapshot.and_then(|s| s.last_check).map(rfc3339),
        last_error: snapshot.and_then(|s| s.last_error.clone()),
        ejections: snapshot.map_or(0, |s| s.total_ejections),
        ejected_until: snapshot.and_then(|s| s.ejected_until).map(rfc3339),
        slow_start_remaining_ms: snapshot
            .and_then(|s| s.slow_start_remaining)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    }
}

/// `time` as RFC 3339 (a profile of ISO 8601) in UTC with milliseconds:
/// `2026-01-31T12:00:00.250Z`. Times before 1970 show as the epoch.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01, by Howard Hinnant's
/// `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>).
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc_with_milliseconds() {
        let at = |secs: u64, ms: u64| {
            rfc3339(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
        assert_eq!(at(1_735_689_600, 250), "2025-01-01T00:00:00.250Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        // Days back from the date, the naive way, for every day from 1970 to 2370.
        let mut expected = (1970, 1, 1);
        let leap = |y: u64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        for days in 0..146_097 {
            assert_eq!(civil_from_days(days), expected, "{days}");
            let (y, m, d) = expected;
            let len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            expected = match (d == len, m == 12) {
                (false, _) => (y, m, d + 1),
                (true, false) => (y, m + 1, 1),
                (true, true) => (y + 1, 1, 1),
            };
        }
    }

    #[test]
    fn list_joins_registry_balancer_and_health() {
        let uri = |p: u16| -> BackendAddr { format!("http://127.0.0.1:{p}").parse().unwrap() };
        let endpoint = |p: u16, w: u32| Arc::new(Endpoint::new(Weighted::new(uri(p), w), w));
        let (a, b, gone) = (endpoint(1, 3), endpoint(2, 1), endpoint(3, 2));
        for _ in 0..10 {
            a.stats().record_served();
        }
        a.stats().record_failure();
        a.stats().start();
        a.stats().start();
        gone.stats().start();
        for _ in 0..4 {
            gone.stats().record_served();
        }
        let health = |u: &BackendAddr| {
            let h = crate::health::BackendHealth::new(crate::health::Health::Healthy);
            if *u == uri(2) {
                h.record(&Err("connection refused".into()), 1, 1);
            }
            (*u != uri(4)).then(|| h.snapshot())
        };
        let listed = list(
            vec![(uri(1), 3), (uri(2), 1), (uri(4), 7)],
            &[a, b],
            &[gone],
            health,
        );
        let summary: Vec<_> = listed
            .iter()
            .map(|i| {
                (
                    i.address.to_string(),
                    i.weight,
                    i.state,
                    i.in_flight,
                    i.served,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    String::from("http://127.0.0.1:1"),
                    3,
                    BackendState::Healthy,
                    2,
                    10
                ),
                (
                    String::from("http://127.0.0.1:2"),
                    1,
                    BackendState::Unhealthy,
                    0,
                    0
                ),
                // Registered, not in the balancer yet.
                (
                    String::from("http://127.0.0.1:4"),
                    7,
                    BackendState::Healthy,
                    0,
                    0
                ),
                (
                    String::from("http://127.0.0.1:3"),
                    2,
                    BackendState::Draining,
                    1,
                    4
                ),
            ]
        );
        assert_eq!(listed[0].failures, 1);
        assert_eq!(listed[1].last_error.as_deref(), Some("connection refused"));
        assert!(listed[1].last_check.as_ref().unwrap().ends_with('Z'));
        assert_eq!(listed[2].last_check, None);
    }
}
