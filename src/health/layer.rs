use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;
use tower::discover::Discover;

use super::discover::HealthCheckDiscover;
use super::monitor::{Backends, HealthMonitor};
use super::outlier::OutlierDetection;
use super::probe::Probe;
use super::state::{Health, Policy};

/// The shortest probe interval; shorter ones are raised to it.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// How often and how strictly backends are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Config {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) rise: u32,
    pub(crate) fall: u32,
    pub(crate) initial: Health,
    pub(crate) policy: Policy,
}

impl Config {
    const DEFAULT: Self = Self {
        interval: HealthCheckLayer::DEFAULT_INTERVAL,
        timeout: HealthCheckLayer::DEFAULT_TIMEOUT,
        rise: 1,
        fall: 1,
        initial: Health::Healthy,
        policy: Policy {
            outlier: None,
            slow_start: None,
        },
    };
}

/// Adds active health checks to a [`Discover`] stream. See the [module docs](super).
///
/// Applied to a discovery stream `D` it gives a [`HealthCheckDiscover`], whose services are
/// [`HealthCheck`](super::HealthCheck)s: `Pending` while their backend fails its checks, so a
/// balancer on top never picks it.
///
/// `K` is the stream's key type, usually inferred from the stream the layer is applied to; the
/// layer needs it to hand out a typed [`HealthMonitor`]. Clones share one monitor.
///
/// Defaults: every 10 s ([`DEFAULT_INTERVAL`](Self::DEFAULT_INTERVAL)), 2 s timeout
/// ([`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT)), 1 failure to go down, 1 pass to come back,
/// backends start healthy; no outlier detection, no slow start.
#[must_use]
pub struct HealthCheckLayer<P, K> {
    probe: P,
    config: Config,
    backends: Arc<Backends<K>>,
    _key: PhantomData<fn(K)>,
}

/// The defaults, one constant each, read without naming a probe or key type:
/// `HealthCheckLayer::DEFAULT_INTERVAL`. The standalone server's `Config` and its command
/// line take theirs from here.
impl HealthCheckLayer<(), ()> {
    /// The default [`interval`](Self::interval): 10 s.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

    /// The default [`timeout`](Self::timeout): 2 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
}

impl<P, K> HealthCheckLayer<P, K> {
    /// Checks every backend with `probe`, with the default settings.
    pub fn new(probe: P) -> Self {
        Self {
            probe,
            config: Config::DEFAULT,
            backends: Arc::new(Backends::new()),
            _key: PhantomData,
        }
    }

    /// Time between the starts of two checks of a backend (default 10 s, at least 1 ms).
    ///
    /// The first check runs as soon as the backend is inserted. A check that takes longer than
    /// the interval delays the next one rather than overlapping it.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.config.interval = interval.max(MIN_INTERVAL);
        self
    }

    /// How long a check may take before it counts as failed (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Passes in a row that bring a down backend back (default 1; `0` is read as `1`).
    pub fn rise(mut self, rise: u32) -> Self {
        self.config.rise = rise.max(1);
        self
    }

    /// Failures in a row that take a backend down (default 1; `0` is read as `1`).
    pub fn fall(mut self, fall: u32) -> Self {
        self.config.fall = fall.max(1);
        self
    }

    /// The status of a backend when it is inserted, before its first check (default healthy).
    pub fn initial(mut self, health: Health) -> Self {
        self.config.initial = health;
        self
    }

    /// Backends start unhealthy and take traffic only after `rise` passed checks.
    pub fn initially_unhealthy(self) -> Self {
        self.initial(Health::Unhealthy)
    }

    /// Turns on passive health checks: backends whose responses fail too often in a row are
    /// ejected for a while (off by default). See the
    /// [module docs](super#passive-health-checks-outlier-ejection) and [`OutlierDetection`].
    pub fn outlier_detection(mut self, outlier: OutlierDetection) -> Self {
        self.config.policy.outlier = Some(outlier);
        self
    }

    /// Ramps up the share of requests a backend takes over `window` after it is inserted or
    /// becomes available again (off by default; `Duration::ZERO` turns it off). See the
    /// [module docs](super#slow-start).
    pub fn slow_start(mut self, window: Duration) -> Self {
        self.config.policy.slow_start = (!window.is_zero()).then_some(window);
        self
    }

    /// A handle listing the health of every backend the streams of this layer check.
    pub fn monitor(&self) -> HealthMonitor<K> {
        HealthMonitor::new(Arc::clone(&self.backends))
    }

    /// The probe.
    pub fn probe(&self) -> &P {
        &self.probe
    }
}

impl<D, P> Layer<D> for HealthCheckLayer<P, D::Key>
where
    D: Discover,
    D::Key: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    P: Probe<D::Key>,
{
    type Service = HealthCheckDiscover<D, P>;

    fn layer(&self, discover: D) -> Self::Service {
        HealthCheckDiscover::new(
            discover,
            self.probe.clone(),
            self.config,
            Arc::clone(&self.backends),
        )
    }
}

impl<P: Clone, K> Clone for HealthCheckLayer<P, K> {
    fn clone(&self) -> Self {
        Self {
            probe: self.probe.clone(),
            config: self.config,
            backends: Arc::clone(&self.backends),
            _key: PhantomData,
        }
    }
}

impl<P: fmt::Debug, K> fmt::Debug for HealthCheckLayer<P, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthCheckLayer")
            .field("probe", &self.probe)
            .field("interval", &self.config.interval)
            .field("timeout", &self.config.timeout)
            .field("rise", &self.config.rise)
            .field("fall", &self.config.fall)
            .field("initial", &self.config.initial)
            .field("outlier_detection", &self.config.policy.outlier)
            .field("slow_start", &self.config.policy.slow_start)
            .finish()
    }
}
