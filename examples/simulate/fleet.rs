//! The fleet file: the load and the backends a simulation runs against.

use std::path::Path;
use std::time::Duration;

use rand::Rng;
use rand::rngs::SmallRng;
use serde::Deserialize;
use tower_lb::Algo;

/// A fleet file, e.g. `examples/fleets/slow-node.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fleet {
    /// Requests a second, arriving as a Poisson process (open loop: arrivals do not wait for
    /// answers).
    pub(crate) rate: f64,
    /// Requests simulated per algorithm.
    #[serde(default = "default_requests")]
    pub(crate) requests: usize,
    /// Distinct clients (source addresses) the requests come from, for the hashing and
    /// sticky algorithms.
    #[serde(default = "default_clients")]
    pub(crate) clients: u32,
    /// The algorithms to compare, by name; all by default.
    #[serde(default)]
    pub(crate) algorithms: Vec<String>,
    /// Seed of the arrivals, latencies and pickers.
    #[serde(default = "default_seed")]
    pub(crate) seed: u64,
    #[serde(rename = "backend")]
    pub(crate) backends: Vec<Backend>,
}

fn default_requests() -> usize {
    1_000_000
}

fn default_clients() -> u32 {
    10_000
}

fn default_seed() -> u64 {
    1
}

/// One backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Backend {
    pub(crate) name: String,
    /// Its weight, for the weighted algorithms.
    #[serde(default = "default_weight")]
    pub(crate) weight: u32,
    /// How it behaves from the start.
    #[serde(flatten)]
    pub(crate) behaviour: Behaviour,
    /// How it changes: each entry applies from `at` seconds on.
    #[serde(default, rename = "change")]
    pub(crate) changes: Vec<Change>,
}

fn default_weight() -> u32 {
    1
}

/// What a backend does with a request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Behaviour {
    /// The time it takes to answer once it works on a request.
    pub(crate) latency: Latency,
    /// Requests it works on at once; more wait in its queue (first come, first served).
    /// 0 for no limit.
    #[serde(default)]
    pub(crate) capacity: usize,
    /// The share of requests it answers `503` at once (in [`error_latency_ms`]).
    #[serde(default)]
    pub(crate) error_rate: f64,
    /// How long a failing answer takes, in milliseconds.
    #[serde(default = "default_error_latency")]
    pub(crate) error_latency_ms: f64,
}

fn default_error_latency() -> f64 {
    0.1
}

/// A change of behaviour from `at` seconds into the run; unset fields stay as they were.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Change {
    pub(crate) at: f64,
    pub(crate) latency: Option<Latency>,
    pub(crate) capacity: Option<usize>,
    pub(crate) error_rate: Option<f64>,
}

/// A latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(tag = "dist", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum Latency {
    /// Always `ms`.
    Fixed { ms: f64 },
    /// Exponential with mean `mean_ms`.
    Exponential { mean_ms: f64 },
    /// Log-normal with median `median_ms` and shape `sigma` (the standard deviation of the
    /// logarithm).
    Lognormal { median_ms: f64, sigma: f64 },
}

impl Latency {
    /// One draw.
    pub(crate) fn sample(&self, rng: &mut SmallRng) -> Duration {
        let ms = match *self {
            Latency::Fixed { ms } => ms,
            Latency::Exponential { mean_ms } => -mean_ms * (1.0 - rng.random::<f64>()).ln(),
            Latency::Lognormal { median_ms, sigma } => {
                // Box–Muller: one standard normal draw.
                let (u1, u2) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                median_ms * (sigma * z).exp()
            }
        };
        Duration::from_secs_f64(ms.max(0.0) / 1e3)
    }

    fn check(&self) -> Result<(), String> {
        let ok = match *self {
            Latency::Fixed { ms } => ms >= 0.0,
            Latency::Exponential { mean_ms } => mean_ms > 0.0,
            Latency::Lognormal { median_ms, sigma } => median_ms > 0.0 && sigma >= 0.0,
        };
        if ok {
            Ok(())
        } else {
            Err(format!("latency {self:?}: times must be positive"))
        }
    }
}

impl Behaviour {
    /// This behaviour with `change` applied.
    pub(crate) fn with(&self, change: &Change) -> Self {
        Self {
            latency: change.latency.unwrap_or(self.latency),
            capacity: change.capacity.unwrap_or(self.capacity),
            error_rate: change.error_rate.unwrap_or(self.error_rate),
            error_latency_ms: self.error_latency_ms,
        }
    }
}

impl Fleet {
    /// Reads and checks a fleet file; the error names the file and what is wrong.
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let fleet: Fleet = toml::from_str(text).map_err(|e| e.to_string())?;
        fleet.check()?;
        Ok(fleet)
    }

    fn check(&self) -> Result<(), String> {
        if !(self.rate > 0.0 && self.rate.is_finite()) {
            return Err(format!("rate = {}: must be more than 0", self.rate));
        }
        if self.requests == 0 || self.clients == 0 {
            return Err("requests and clients must be at least 1".into());
        }
        if self.backends.is_empty() {
            return Err("no [[backend]]".into());
        }
        for b in &self.backends {
            let named = |e: String| format!("backend {:?}: {e}", b.name);
            b.behaviour.latency.check().map_err(named)?;
            let rates = std::iter::once(b.behaviour.error_rate)
                .chain(b.changes.iter().filter_map(|c| c.error_rate));
            for rate in rates {
                if !(0.0..=1.0).contains(&rate) {
                    return Err(named(format!("error_rate = {rate}: must be in 0..=1")));
                }
            }
            for change in &b.changes {
                if let Some(latency) = &change.latency {
                    latency.check().map_err(named)?;
                }
                if change.at.is_nan() || change.at < 0.0 {
                    return Err(named(format!(
                        "change at = {}: must be 0 or more",
                        change.at
                    )));
                }
            }
            if b.weight == 0 {
                return Err(named("weight must be at least 1".into()));
            }
        }
        self.algos()?;
        Ok(())
    }

    /// The algorithms to compare.
    pub(crate) fn algos(&self) -> Result<Vec<Algo>, String> {
        if self.algorithms.is_empty() {
            return Ok(Algo::ALL.to_vec());
        }
        self.algorithms
            .iter()
            .map(|name| name.parse::<Algo>().map_err(|e| e.to_string()))
            .collect()
    }
}

impl Backend {
    /// The behaviour `at` into the run.
    pub(crate) fn behaviour_at(&self, at: Duration) -> Behaviour {
        let secs = at.as_secs_f64();
        let mut behaviour = self.behaviour.clone();
        for change in self.changes.iter().filter(|c| c.at <= secs) {
            behaviour = behaviour.with(change);
        }
        behaviour
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    const FLEET: &str = r#"
        rate = 1000
        requests = 10
        [[backend]]
        name = "a"
        latency = { dist = "lognormal", median_ms = 2, sigma = 0.5 }
        capacity = 4
        [[backend]]
        name = "b"
        latency = { dist = "fixed", ms = 2 }
        [[backend.change]]
        at = 10
        latency = { dist = "exponential", mean_ms = 40 }
        error_rate = 0.5
    "#;

    #[test]
    fn reads_a_fleet_with_its_defaults_and_changes() {
        let fleet = Fleet::parse(FLEET).unwrap();
        assert_eq!(fleet.clients, 10_000);
        assert_eq!(fleet.algos().unwrap(), Algo::ALL);
        let b = &fleet.backends[1];
        assert_eq!(b.behaviour_at(Duration::from_secs(9)).error_rate, 0.0);
        let late = b.behaviour_at(Duration::from_secs(10));
        assert_eq!(late.error_rate, 0.5);
        assert_eq!(late.latency, Latency::Exponential { mean_ms: 40.0 });
        assert_eq!(late.capacity, 0);
    }

    #[test]
    fn bad_fleets_say_what_is_wrong() {
        for (text, needle) in [
            (
                "rate = 0\n[[backend]]\nname='a'\nlatency={dist='fixed',ms=1}",
                "rate",
            ),
            ("rate = 1", "backend"),
            (
                "rate = 1\n[[backend]]\nname='a'\nlatency={dist='fixed',ms=1}\nerror_rate=2",
                "error_rate",
            ),
            (
                "rate = 1\n[[backend]]\nname='a'\nlatency={dist='gauss',ms=1}",
                "gauss",
            ),
            (
                "rate = 1\nspeed = 2\n[[backend]]\nname='a'\nlatency={dist='fixed',ms=1}",
                "speed",
            ),
            (
                "rate = 1\nalgorithms=['fastest']\n[[backend]]\nname='a'\nlatency={dist='fixed',ms=1}",
                "fastest",
            ),
        ] {
            let err = Fleet::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn distributions_have_their_medians() {
        let mut rng = SmallRng::seed_from_u64(1);
        let median = |l: Latency, rng: &mut SmallRng| {
            let mut v: Vec<f64> = (0..20_001)
                .map(|_| l.sample(rng).as_secs_f64() * 1e3)
                .collect();
            v.sort_by(f64::total_cmp);
            v[10_000]
        };
        assert_eq!(median(Latency::Fixed { ms: 3.0 }, &mut rng), 3.0);
        let ln2 = std::f64::consts::LN_2;
        let exp = median(Latency::Exponential { mean_ms: 10.0 }, &mut rng);
        assert!((exp - 10.0 * ln2).abs() < 0.3, "{exp}");
        let logn = median(
            Latency::Lognormal {
                median_ms: 5.0,
                sigma: 0.8,
            },
            &mut rng,
        );
        assert!((logn - 5.0).abs() < 0.2, "{logn}");
    }
}
