//! Balancing algorithms: how a balancer picks one ready backend for a request.
//!
//! Each algorithm is a picker type implementing [`Pick`]; [`Balance<D, P>`](crate::Balance)
//! runs any of them over a [`Discover`](tower::discover::Discover), and [`Algo`] names them
//! for choosing one at run time ([`LoadBalance`](crate::LoadBalance)).
//!
//! | [`Algo`] | picker | choose it when |
//! |---|---|---|
//! | `RR` | [`RoundRobin`] | equal backends, uniform requests |
//! | `WRR` | [`WeightedRoundRobin`] | backends of different capacity |
//! | `SRR` | [`StickyRoundRobin`] | clients keep state on a backend (sessions) |
//! | `LC` | [`LeastConn`] | long or uneven requests |
//! | `PTC` / `P2C` | [`PowerOfTwoChoices`] | many backends, a robust default |
//! | `SIH` | [`SourceIpHash`] | per-client caches; same client → same backend |
//! | `LT` | [`LeastTime`] | backends of different or varying speed |
//! | `Random` | [`Random`] | several balancers share one fleet |

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::balance::{Endpoint, Stats};

pub(crate) mod clock;
mod dynamic;
pub(crate) mod hash;
pub mod least_conn;
pub mod least_time;
pub mod p2c;
pub mod random;
pub(crate) mod refused;
pub(crate) mod rng;
pub mod round_robin;
pub mod source_ip_hash;
pub mod sticky;
pub mod weighted_round_robin;

pub use self::dynamic::{AlgoPick, AlgoTable};
pub use self::least_conn::LeastConn;
pub use self::least_time::LeastTime;
pub use self::p2c::PowerOfTwoChoices;
pub use self::random::Random;
pub use self::round_robin::RoundRobin;
pub use self::source_ip_hash::SourceIpHash;
pub use self::sticky::{StickyKey, StickyRoundRobin};
pub use self::weighted_round_robin::WeightedRoundRobin;

/// A balancing algorithm: picks one ready backend out of the current set.
///
/// A balancer calls [`build`](Pick::build) off the request path whenever its set of backends
/// changes, and [`pick`](Pick::pick) for every request. Counters live in each [`Endpoint`], so a
/// picker keeps only what its choice needs.
pub trait Pick<K>: Send + Sync + 'static {
    /// What the picker precomputes for one set of backends (a rotation, a hash ring, …).
    type Table: Send + Sync + 'static;

    /// Precomputes the table for `endpoints`, in the order [`pick`](Pick::pick) will see them.
    fn build(&self, endpoints: &[Arc<Endpoint<K>>]) -> Self::Table;

    /// Picks the index of a backend for `req`.
    ///
    /// `ready(i)` reports whether backend `i` can take the request now (and reserves it if so);
    /// a picker must return only an index for which `ready` returned `true`, and `None` when
    /// none did.
    fn pick<B>(
        &self,
        table: &Self::Table,
        endpoints: &[Arc<Endpoint<K>>],
        req: &http::Request<B>,
        ready: &mut impl FnMut(usize) -> bool,
    ) -> Option<usize>;

    /// Whether [`load_changed`](Pick::load_changed) should be called when a request starts or
    /// finishes.
    fn observes_load(&self) -> bool {
        false
    }

    /// Backend `slot`'s requests in flight changed.
    fn load_changed(&self, _table: &Self::Table, _endpoints: &[Arc<Endpoint<K>>], _slot: usize) {}

    /// Whether [`observe_latency`](Pick::observe_latency) should be called with response times.
    fn tracks_latency(&self) -> bool {
        false
    }

    /// A response from the backend with these `stats` arrived `rtt` after its request was sent.
    fn observe_latency(&self, _stats: &Stats, _rtt: Duration) {}
}

/// The balancing algorithms, by name.
///
/// Parses case-insensitively from the short names `RR`, `WRR`, `SRR`, `LC`, `PTC` (or `P2C`),
/// `SIH`, `LT`, `Random` and the long names (`round-robin`, `least-conn`, …); displays as the
/// canonical short name.
///
/// ```
/// use tower_lb::Algo;
/// assert_eq!("lc".parse::<Algo>().unwrap(), Algo::LeastConn);
/// assert_eq!("power-of-two-choices".parse::<Algo>().unwrap(), Algo::PowerOfTwoChoices);
/// assert_eq!(Algo::SourceIpHash.to_string(), "SIH");
/// assert!("fastest".parse::<Algo>().unwrap_err().to_string().contains("WRR"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algo {
    /// [`RoundRobin`].
    #[default]
    RoundRobin,
    /// [`WeightedRoundRobin`].
    WeightedRoundRobin,
    /// [`StickyRoundRobin`].
    StickyRoundRobin,
    /// [`LeastConn`].
    LeastConn,
    /// [`PowerOfTwoChoices`].
    PowerOfTwoChoices,
    /// [`SourceIpHash`].
    SourceIpHash,
    /// [`LeastTime`].
    LeastTime,
    /// [`Random`].
    Random,
}

impl Algo {
    /// Every algorithm, in the order of the docs.
    pub const ALL: [Algo; 8] = [
        Algo::RoundRobin,
        Algo::WeightedRoundRobin,
        Algo::StickyRoundRobin,
        Algo::LeastConn,
        Algo::PowerOfTwoChoices,
        Algo::SourceIpHash,
        Algo::LeastTime,
        Algo::Random,
    ];

    /// The canonical short name, as `Display` prints it.
    pub const fn short_name(self) -> &'static str {
        match self {
            Algo::RoundRobin => "RR",
            Algo::WeightedRoundRobin => "WRR",
            Algo::StickyRoundRobin => "SRR",
            Algo::LeastConn => "LC",
            Algo::PowerOfTwoChoices => "PTC",
            Algo::SourceIpHash => "SIH",
            Algo::LeastTime => "LT",
            Algo::Random => "Random",
        }
    }

    /// The long name.
    pub const fn long_name(self) -> &'static str {
        match self {
            Algo::RoundRobin => "round-robin",
            Algo::WeightedRoundRobin => "weighted-round-robin",
            Algo::StickyRoundRobin => "sticky-round-robin",
            Algo::LeastConn => "least-conn",
            Algo::PowerOfTwoChoices => "power-of-two-choices",
            Algo::SourceIpHash => "source-ip-hash",
            Algo::LeastTime => "least-time",
            Algo::Random => "random",
        }
    }

    fn aliases(self) -> &'static [&'static str] {
        match self {
            Algo::RoundRobin => &["rr", "round-robin", "roundrobin"],
            Algo::WeightedRoundRobin => &["wrr", "weighted-round-robin", "weighted"],
            Algo::StickyRoundRobin => &["srr", "sticky-round-robin", "sticky"],
            Algo::LeastConn => &["lc", "least-conn", "least-connections", "leastconn"],
            Algo::PowerOfTwoChoices => &["ptc", "p2c", "power-of-two-choices"],
            Algo::SourceIpHash => &["sih", "source-ip-hash", "ip-hash", "source"],
            Algo::LeastTime => &["lt", "least-time", "least-response-time", "peak-ewma"],
            Algo::Random => &["random", "rand"],
        }
    }
}

impl fmt::Display for Algo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.short_name())
    }
}

/// An algorithm name [`Algo`] does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAlgo {
    name: String,
}

impl fmt::Display for UnknownAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown algorithm {:?}; valid: ", self.name)?;
        for (i, algo) in Algo::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{} ({})", algo.short_name(), algo.long_name())?;
        }
        f.write_str(", P2C")
    }
}

impl std::error::Error for UnknownAlgo {}

impl FromStr for Algo {
    type Err = UnknownAlgo;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase().replace('_', "-");
        Algo::ALL
            .into_iter()
            .find(|algo| algo.aliases().contains(&lower.as_str()))
            .ok_or_else(|| UnknownAlgo { name: s.to_owned() })
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::weight::Weight;

    /// Endpoints keyed 0.. with the given weights, slots set as a balancer would.
    pub(crate) fn endpoints(weights: &[u32]) -> Vec<Arc<Endpoint<usize>>> {
        keyed(&weights.iter().copied().enumerate().collect::<Vec<_>>())
    }

    /// Endpoints with the given keys and weights, slots set as a balancer would.
    pub(crate) fn keyed(backends: &[(usize, u32)]) -> Vec<Arc<Endpoint<usize>>> {
        backends
            .iter()
            .enumerate()
            .map(|(slot, &(key, weight))| {
                let e = Arc::new(Endpoint::new(key, weight));
                e.stats().set_slot(slot);
                e
            })
            .collect()
    }

    /// Picks `n` times for a request without a peer; stops early when nothing is ready.
    pub(crate) fn pick_n<P: Pick<usize>>(
        picker: &P,
        endpoints: &[Arc<Endpoint<usize>>],
        n: usize,
        mut ready: impl FnMut(usize) -> bool,
    ) -> Vec<usize> {
        pick_n_for(picker, endpoints, n, &http::Request::new(()), &mut ready)
    }

    /// Picks `n` times for `req`.
    pub(crate) fn pick_n_for<P: Pick<usize>>(
        picker: &P,
        endpoints: &[Arc<Endpoint<usize>>],
        n: usize,
        req: &http::Request<()>,
        ready: &mut impl FnMut(usize) -> bool,
    ) -> Vec<usize> {
        let table = picker.build(endpoints);
        (0..n)
            .map_while(|_| picker.pick(&table, endpoints, req, ready))
            .collect()
    }

    #[test]
    fn unit_weight_for_plain_keys() {
        assert_eq!(7usize.weight(), 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_short_and_long_names_case_insensitively() {
        for algo in Algo::ALL {
            assert_eq!(algo.short_name().parse::<Algo>(), Ok(algo));
            assert_eq!(algo.short_name().to_lowercase().parse::<Algo>(), Ok(algo));
            assert_eq!(algo.long_name().to_uppercase().parse::<Algo>(), Ok(algo));
            assert_eq!(algo.to_string().parse::<Algo>(), Ok(algo));
        }
        assert_eq!("P2C".parse::<Algo>(), Ok(Algo::PowerOfTwoChoices));
        assert_eq!("least_conn".parse::<Algo>(), Ok(Algo::LeastConn));
    }

    #[test]
    fn unknown_name_lists_valid_ones() {
        let err = "fastest".parse::<Algo>().unwrap_err().to_string();
        for algo in Algo::ALL {
            assert!(err.contains(algo.short_name()), "{err}");
        }
        assert!(err.contains("\"fastest\""));
    }
}
