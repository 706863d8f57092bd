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
//! | `CHB` | [`BoundedLoadHash`] | caches under uneven keys; sticky, no backend over its share |
//! | `LT` | [`LeastTime`] | backends of different or varying speed |
//! | `Random` | [`Random`] | several balancers share one fleet |
//!
//! A picker of your own is any type implementing [`Pick`], run with
//! [`Balance::with_picker`](crate::Balance::with_picker); the README's "Writing your own
//! algorithm" walks through one (`examples/custom_pick.rs`).
//!
//! # Adding an algorithm
//!
//! An algorithm of this crate is one file and one line:
//!
//! 1. `src/algo/<name>.rs` holds its picker: the type and its [`Pick`] impl, a `Configure` impl
//!    that builds it from the run-time settings of [`AlgoPick`] (how clients are identified, an
//!    optional seed), module docs (what it does, when to choose it, where it comes from) and
//!    unit tests. Its [`Pick::Table`] must not depend on the key type. Helpers shared by several
//!    algorithms have their own modules: `hash` (stable hashes), `clock` (the nanosecond clock),
//!    `rng` (the seedable random source) and `refused` (backends that refused during a pick).
//! 2. One line in the `algorithms!` list of this file: the [`Algo`] variant, `module::Picker`,
//!    its short names (canonical first), long name, other accepted names, and a "choose it
//!    when" phrase. From that line the list declares the module and re-exports the picker, and
//!    generates the variant, [`Algo::ALL`], the names, parsing and display, [`Algo::about`]
//!    (for the standalone balancer's `--help`) and [`AlgoPick`]'s dispatch.
//!
//! Then give it a row in the table above (a unit test fails until the table matches the list)
//! and in the README's.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::balance::{Endpoint, Stats};

/// The one list of algorithms, one line each:
///
/// `Variant => module::Picker, [short names, canonical first], "long-name", [other names],
/// "choose it when";`
///
/// It calls `$then!` with the lines: `define_algo!` below (modules, [`Algo`] and its names)
/// and `define_dispatch!` in `dynamic.rs` ([`AlgoPick`]). The `#[default]` line is
/// [`Algo::default`]. Names parse case-insensitively, with `_` for `-`.
macro_rules! algorithms {
    ($then:ident) => {
        $then! {
            // Variant          => module::Picker,                            [short names],   "long name",             [aliases],                             "choose it when";
            #[default]
            RoundRobin          => round_robin::RoundRobin,                   ["RR"],          "round-robin",           ["roundrobin"],                        "equal backends, uniform requests";
            WeightedRoundRobin  => weighted_round_robin::WeightedRoundRobin,  ["WRR"],         "weighted-round-robin",  ["weighted"],                          "backends of different capacity";
            StickyRoundRobin    => sticky::StickyRoundRobin,                  ["SRR"],         "sticky-round-robin",    ["sticky"],                            "clients keep state on a backend (sessions)";
            LeastConn           => least_conn::LeastConn,                     ["LC"],          "least-conn",            ["least-connections", "leastconn"],    "long or uneven requests";
            PowerOfTwoChoices   => p2c::PowerOfTwoChoices,                    ["PTC", "P2C"],  "power-of-two-choices",  [],                                    "many backends, a robust default";
            SourceIpHash        => source_ip_hash::SourceIpHash,              ["SIH"],         "source-ip-hash",        ["ip-hash", "source"],                 "per-client caches; same client → same backend";
            BoundedLoadHash     => chb::BoundedLoadHash,                      ["CHB"],         "consistent-hash-bounded", ["bounded-load-hash", "hash-bounded"], "caches under uneven keys; sticky, no backend over its share";
            LeastTime           => least_time::LeastTime,                     ["LT"],          "least-time",            ["least-response-time", "peak-ewma"],  "backends of different or varying speed";
            Random              => random::Random,                            ["Random"],      "random",                ["rand"],                              "several balancers share one fleet";
        }
    };
}

/// Declares each algorithm's module and re-exports its picker; defines [`Algo`] and its names.
macro_rules! define_algo {
    ($(
        $(#[$attr:meta])*
        $variant:ident => $module:ident::$picker:ident,
        [$short:literal $(, $alt:literal)*], $long:literal, [$($alias:literal),*], $about:literal;
    )*) => {
        $(
            pub mod $module;
            pub use self::$module::$picker;
        )*

        /// The balancing algorithms, by name.
        ///
        /// Parses case-insensitively from the short names `RR`, `WRR`, `SRR`, `LC`, `PTC` (or
        /// `P2C`), `SIH`, `CHB`, `LT`, `Random` and the long names (`round-robin`, `least-conn`, …);
        /// displays as the canonical short name.
        ///
        /// ```
        /// use tower_lb::Algo;
        /// assert_eq!("lc".parse::<Algo>().unwrap(), Algo::LeastConn);
        /// assert_eq!("power-of-two-choices".parse::<Algo>().unwrap(), Algo::PowerOfTwoChoices);
        /// assert_eq!(Algo::SourceIpHash.to_string(), "SIH");
        /// assert_eq!(Algo::LeastConn.about(), "long or uneven requests");
        /// assert!("fastest".parse::<Algo>().unwrap_err().to_string().contains("WRR"));
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum Algo {
            $(
                #[doc = concat!("[`", stringify!($picker), "`] (`", $short, "`): ", $about, ".")]
                $(#[$attr])*
                $variant,
            )*
        }

        impl Algo {
            /// Every algorithm, in the order of the docs.
            pub const ALL: [Algo; [$(Algo::$variant),*].len()] = [$(Algo::$variant),*];

            /// The canonical short name, as `Display` prints it.
            pub const fn short_name(self) -> &'static str {
                match self {
                    $(Algo::$variant => $short,)*
                }
            }

            /// Every short name, the canonical one first (`PTC`, `P2C`).
            pub const fn short_names(self) -> &'static [&'static str] {
                match self {
                    $(Algo::$variant => &[$short $(, $alt)*],)*
                }
            }

            /// The long name.
            pub const fn long_name(self) -> &'static str {
                match self {
                    $(Algo::$variant => $long,)*
                }
            }

            /// Other names it parses from, besides its short and long names.
            pub const fn aliases(self) -> &'static [&'static str] {
                match self {
                    $(Algo::$variant => &[$($alias),*],)*
                }
            }

            /// When to choose it, in a few words (the "choose it when" column of the
            /// [module docs](self)).
            pub const fn about(self) -> &'static str {
                match self {
                    $(Algo::$variant => $about,)*
                }
            }

            /// The name of its picker type.
            #[cfg(test)]
            const fn picker_name(self) -> &'static str {
                match self {
                    $(Algo::$variant => stringify!($picker),)*
                }
            }
        }
    };
}

algorithms!(define_algo);

pub mod cookie;
mod dynamic;
mod hash;
mod refused;
pub(crate) mod rng;
mod walk;

pub use self::cookie::StickyCookie;
pub(crate) use self::dynamic::{AlgoConfig, Configure};
pub use self::dynamic::{AlgoPick, AlgoTable};
pub use self::sticky::{InvalidStickyKey, StickyKey};

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
    /// `ready(i)` reports whether backend `i` can take the request now, and reserves it if so:
    /// from then on the backend counts the request in flight ([`Endpoint::in_flight`]), so a
    /// picker that tracks load reads the new count right after the `true`. A picker must
    /// return the index for which `ready` last returned `true` (asking once more after a `true`
    /// moves the reservation), and `None` when none did.
    fn pick<B>(
        &self,
        table: &Self::Table,
        endpoints: &[Arc<Endpoint<K>>],
        req: &http::Request<B>,
        ready: &mut impl FnMut(usize) -> bool,
    ) -> Option<usize>;

    /// Whether [`load_changed`](Pick::load_changed) should be called when a request finishes.
    fn observes_load(&self) -> bool {
        false
    }

    /// Backend `slot`'s requests in flight went down: a request to it finished (its response
    /// body ended or was dropped, or it failed).
    ///
    /// Not called when a request starts: the pick that reserved the backend saw the count go
    /// up (see [`pick`](Pick::pick)), and updates whatever it keeps there.
    fn load_changed(&self, _table: &Self::Table, _endpoints: &[Arc<Endpoint<K>>], _slot: usize) {}

    /// Whether [`observe_latency`](Pick::observe_latency) should be called with response times.
    fn tracks_latency(&self) -> bool {
        false
    }

    /// A response from the backend with these `stats` arrived `rtt` after its request was sent
    /// (after the backend was picked: time in a queue in front of the balancer is not counted,
    /// and neither is a connect the response reports as [`ConnectTime`](crate::balance::ConnectTime)).
    ///
    /// `at` is when the response arrived, the end of `rtt`: a picker that stamps its samples
    /// uses it rather than reading the clock again.
    fn observe_latency(&self, _stats: &Stats, _rtt: Duration, _at: Instant) {}

    /// The `Set-Cookie` header value for the response to `req` from backend `slot`, if the
    /// picker sets one (a [sticky cookie](StickyCookie)); `None` by default. The balancer
    /// asks once per request, after [`pick`](Pick::pick).
    fn set_cookie<B>(
        &self,
        _table: &Self::Table,
        _req: &http::Request<B>,
        _slot: usize,
    ) -> Option<http::HeaderValue> {
        None
    }

    /// A request to the backend with these `stats` failed `elapsed` after it was sent: its
    /// service returned an error (connect refused, reset, timed out…) or it answered with a
    /// `5xx` status. Called instead of [`observe_latency`](Pick::observe_latency), when
    /// [`tracks_latency`](Pick::tracks_latency) is true. A latency-aware picker should count
    /// it as slow, not fast (see [`LeastTime::failure_penalty`]); by default it is ignored.
    fn observe_failure(&self, _stats: &Stats, _elapsed: Duration, _at: Instant) {}

    /// The [`Algo`] this picker runs, if it is one of the crate's, for reports such as
    /// [`Balance::snapshot`](crate::Balance::snapshot); `None` by default.
    fn algo(&self) -> Option<Algo> {
        None
    }
}

impl Algo {
    /// Whether it keeps a client on one backend: `SRR`, `SIH` and `CHB`, the algorithms a
    /// [sticky cookie](StickyCookie) is meant for.
    pub const fn is_sticky(self) -> bool {
        matches!(
            self,
            Algo::StickyRoundRobin | Algo::SourceIpHash | Algo::BoundedLoadHash
        )
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
        for algo in Algo::ALL {
            for alt in &algo.short_names()[1..] {
                write!(f, ", {alt}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for UnknownAlgo {}

impl FromStr for Algo {
    type Err = UnknownAlgo;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().replace('_', "-");
        let is = |known: &&str| known.eq_ignore_ascii_case(&name);
        Algo::ALL
            .into_iter()
            .find(|algo| {
                algo.short_names().iter().any(is)
                    || is(&algo.long_name())
                    || algo.aliases().iter().any(is)
            })
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

    /// Its short names, long name and aliases.
    fn all_names(algo: Algo) -> Vec<&'static str> {
        let mut names = algo.short_names().to_vec();
        names.push(algo.long_name());
        names.extend(algo.aliases());
        names
    }

    #[test]
    fn every_name_parses_back_to_its_algorithm() {
        for algo in Algo::ALL {
            assert_eq!(algo.short_names()[0], algo.short_name());
            for name in all_names(algo) {
                assert_eq!(name.parse::<Algo>(), Ok(algo), "{name}");
                assert_eq!(name.to_uppercase().parse::<Algo>(), Ok(algo), "{name}");
                assert_eq!(name.replace('-', "_").parse::<Algo>(), Ok(algo), "{name}");
                assert_eq!(format!(" {name}\t").parse::<Algo>(), Ok(algo), "{name}");
            }
            assert_eq!(algo.to_string(), algo.short_name());
            assert_eq!(format!("{algo:>4}"), format!("{:>4}", algo.short_name()));
        }
    }

    #[test]
    fn no_name_belongs_to_two_algorithms() {
        let mut seen = std::collections::HashMap::new();
        for algo in Algo::ALL {
            for name in all_names(algo) {
                let name = name.to_ascii_lowercase();
                assert!(!name.contains('_'), "{name}: names are spelled with '-'");
                if let Some(other) = seen.insert(name.clone(), algo) {
                    assert_eq!(other, algo, "{name} names both {other} and {algo}");
                }
            }
        }
    }

    #[test]
    fn every_algo_says_when_to_choose_it() {
        for algo in Algo::ALL {
            let about = algo.about();
            assert!(!about.trim().is_empty(), "{algo}");
            assert!(
                !about.contains('\n') && !about.ends_with('.'),
                "{algo}: {about:?}"
            );
        }
    }

    #[test]
    fn module_docs_table_matches_the_list() {
        let rows: Vec<&str> = include_str!("mod.rs")
            .lines()
            .filter(|line| line.starts_with("//! | `"))
            .collect();
        let expected: Vec<String> = Algo::ALL
            .iter()
            .map(|algo| {
                let shorts: Vec<String> = algo
                    .short_names()
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect();
                format!(
                    "//! | {} | [`{}`] | {} |",
                    shorts.join(" / "),
                    algo.picker_name(),
                    algo.about()
                )
            })
            .collect();
        assert_eq!(rows, expected);
    }

    #[test]
    fn readme_shows_the_custom_pick_example_verbatim() {
        let readme = include_str!("../../README.md");
        let example = include_str!("../../examples/custom_pick.rs");
        assert!(
            readme.contains(&format!("```rust\n{example}```\n")),
            "README.md's \"Writing your own algorithm\" must show examples/custom_pick.rs as it is"
        );
    }

    #[test]
    fn default_is_round_robin() {
        assert_eq!(Algo::default(), Algo::RoundRobin);
        assert_eq!(Algo::ALL.len(), 9);
    }

    #[test]
    fn unknown_name_lists_valid_ones() {
        let err = "fastest".parse::<Algo>().unwrap_err().to_string();
        for algo in Algo::ALL {
            assert!(err.contains(algo.short_name()), "{err}");
        }
        assert!(err.contains("\"fastest\""));
        assert_eq!(
            err,
            "unknown algorithm \"fastest\"; valid: RR (round-robin), WRR (weighted-round-robin), \
             SRR (sticky-round-robin), LC (least-conn), PTC (power-of-two-choices), \
             SIH (source-ip-hash), CHB (consistent-hash-bounded), LT (least-time), \
             Random (random), P2C"
        );
    }
}
