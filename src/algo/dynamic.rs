//! [`AlgoPick`]: the picker chosen at run time from an [`Algo`].
//!
//! Generated from the `algorithms!` list in the [parent module](super): one variant per
//! algorithm in [`AlgoPick`] and [`AlgoTable`], dispatched with a `match` (no boxing, no
//! virtual call), each picker built by its [`Configure`] impl.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::cookie::CookieTable;
use super::{Algo, Pick, StickyCookie, StickyKey};
use crate::balance::{Endpoint, Stats};
use crate::client_ip::ClientIp;

/// The run-time settings [`AlgoPick`] builds a picker from.
#[derive(Debug, Clone)]
pub(crate) struct AlgoConfig {
    /// How clients are identified: the IP hashed by source IP hash, the default client key of
    /// sticky round robin.
    pub(crate) client_ip: ClientIp,
    /// A fixed seed for the random choices, for reproducible runs; `None` seeds from the OS.
    pub(crate) seed: Option<u64>,
    /// What tells clients apart for the hashing and sticky algorithms, if not the client IP.
    pub(crate) key: Option<StickyKey>,
    /// Bounded-load hashing's cap on a backend's load, in percent of the average.
    pub(crate) balance_factor: u32,
}

impl Default for AlgoConfig {
    fn default() -> Self {
        Self {
            client_ip: ClientIp::default(),
            seed: None,
            key: None,
            balance_factor: super::chb::DEFAULT_BALANCE_FACTOR,
        }
    }
}

impl AlgoConfig {
    /// What tells clients apart: the key set, with a client IP found as `client_ip` says.
    pub(crate) fn client_key(&self) -> StickyKey {
        match &self.key {
            None | Some(StickyKey::ClientIp(_)) => StickyKey::ClientIp(self.client_ip.clone()),
            Some(key) => key.clone(),
        }
    }
}

/// How [`AlgoPick`] builds an algorithm's picker: every picker in the `algorithms!` list
/// implements it, in its own file.
pub(crate) trait Configure {
    /// The picker for these settings.
    fn configure(config: &AlgoConfig) -> Self;
}

/// The picker for an [`Algo`], dispatched with a `match`.
///
/// ```
/// use tower_lb::algo::AlgoPick;
/// use tower_lb::{Algo, ClientIp};
///
/// let picker = AlgoPick::new(Algo::SourceIpHash, ClientIp::peer());
/// assert_eq!(picker.algo(), Algo::SourceIpHash);
/// ```
#[derive(Debug)]
pub struct AlgoPick {
    algo: Algo,
    config: AlgoConfig,
    inner: Inner,
    cookie: Option<StickyCookie>,
}

/// The table of the picker inside an [`AlgoPick`], built by its [`Pick::build`], with the
/// sticky cookie's values if it sets one.
#[derive(Debug)]
pub struct AlgoTable {
    table: Table,
    cookies: Option<CookieTable>,
}

impl AlgoPick {
    /// The picker for `algo`.
    ///
    /// `client_ip` says how clients are identified: the IP hashed by [`Algo::SourceIpHash`] and
    /// the default client key of [`Algo::StickyRoundRobin`].
    pub fn new(algo: Algo, client_ip: ClientIp) -> Self {
        let config = AlgoConfig {
            client_ip,
            ..AlgoConfig::default()
        };
        let inner = Inner::new(algo, &config);
        Self {
            algo,
            config,
            inner,
            cookie: None,
        }
    }

    /// Sends a client to the backend its sticky cookie names, and sets the cookie on
    /// responses (see [`StickyCookie`]). Meant for the sticky algorithms
    /// ([`Algo::is_sticky`]); with another, the algorithm places a client's first request
    /// and the cookie keeps it there.
    #[must_use]
    pub fn sticky_cookie(mut self, cookie: StickyCookie) -> Self {
        self.cookie = Some(cookie);
        self
    }

    /// Reseeds the random choices (of `PTC`, `LT` and `Random`), for reproducible runs.
    #[must_use]
    pub fn seeded(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self.inner = Inner::new(self.algo, &self.config);
        self
    }

    /// What tells clients apart for `SIH`, `CHB` and `SRR` (the client IP by default; a
    /// [`StickyKey::ClientIp`] given here is found as this picker's [`ClientIp`] says).
    #[must_use]
    pub fn key(mut self, key: StickyKey) -> Self {
        self.config.key = Some(key);
        self.inner = Inner::new(self.algo, &self.config);
        self
    }

    /// `CHB`'s cap on a backend's requests in flight, in percent of the average (at least
    /// 100); [`DEFAULT_BALANCE_FACTOR`](super::chb::DEFAULT_BALANCE_FACTOR) by default.
    #[must_use]
    pub fn hash_balance_factor(mut self, percent: u32) -> Self {
        self.config.balance_factor = percent;
        self.inner = Inner::new(self.algo, &self.config);
        self
    }

    /// The algorithm.
    pub fn algo(&self) -> Algo {
        self.algo
    }
}

#[cold]
#[inline(never)]
fn foreign_table() -> ! {
    unreachable!("table built by another picker")
}

/// Defines [`Inner`] and [`Table`] (one variant per algorithm) and [`AlgoPick`]'s [`Pick`] impl:
/// each method matches on the variant and calls that picker's own method.
macro_rules! define_dispatch {
    ($(
        $(#[$attr:meta])*
        $variant:ident => $module:ident::$picker:ident,
        [$short:literal $(, $alt:literal)*], $long:literal, [$($alias:literal),*], $about:literal;
    )*) => {
        /// The picker of each algorithm.
        #[derive(Debug)]
        enum Inner {
            $($variant(super::$picker),)*
        }

        /// The table of each algorithm's picker; a picker's table type is the same for every
        /// key type, so `()` stands for any.
        #[derive(Debug)]
        enum Table {
            $($variant(<super::$picker as Pick<()>>::Table),)*
        }

        impl Inner {
            fn new(algo: Algo, config: &AlgoConfig) -> Self {
                match algo {
                    $(Algo::$variant => Self::$variant(Configure::configure(config)),)*
                }
            }
        }

        impl<K: Hash + Eq + Clone + Send + Sync + 'static> Pick<K> for AlgoPick {
            type Table = AlgoTable;

            fn build(&self, endpoints: &[Arc<Endpoint<K>>]) -> AlgoTable {
                AlgoTable {
                    table: match &self.inner {
                        $(Inner::$variant(p) => Table::$variant(Pick::<K>::build(p, endpoints)),)*
                    },
                    cookies: self.cookie.as_ref().map(|c| c.table(endpoints)),
                }
            }

            #[inline]
            fn pick<B>(
                &self,
                table: &AlgoTable,
                endpoints: &[Arc<Endpoint<K>>],
                req: &http::Request<B>,
                ready: &mut impl FnMut(usize) -> bool,
            ) -> Option<usize> {
                if let (Some(cookie), Some(cookies)) = (&self.cookie, &table.cookies) {
                    if let Some(slot) = cookie.named(cookies, req) {
                        if ready(slot) {
                            // The inner picker did not choose it: tell one that tracks load.
                            if Pick::<K>::observes_load(self) {
                                self.load_changed(table, endpoints, slot);
                            }
                            return Some(slot);
                        }
                    }
                }
                match (&self.inner, &table.table) {
                    $((Inner::$variant(p), Table::$variant(t)) => p.pick(t, endpoints, req, ready),)*
                    _ => foreign_table(),
                }
            }

            #[inline]
            fn observes_load(&self) -> bool {
                match &self.inner {
                    $(Inner::$variant(p) => Pick::<K>::observes_load(p),)*
                }
            }

            #[inline]
            fn load_changed(&self, table: &AlgoTable, endpoints: &[Arc<Endpoint<K>>], slot: usize) {
                match (&self.inner, &table.table) {
                    $((Inner::$variant(p), Table::$variant(t)) => p.load_changed(t, endpoints, slot),)*
                    _ => foreign_table(),
                }
            }

            #[inline]
            fn tracks_latency(&self) -> bool {
                match &self.inner {
                    $(Inner::$variant(p) => Pick::<K>::tracks_latency(p),)*
                }
            }

            #[inline]
            fn observe_latency(&self, stats: &Stats, rtt: Duration, at: Instant) {
                match &self.inner {
                    $(Inner::$variant(p) => Pick::<K>::observe_latency(p, stats, rtt, at),)*
                }
            }

            fn set_cookie<B>(
                &self,
                table: &AlgoTable,
                req: &http::Request<B>,
                slot: usize,
            ) -> Option<http::HeaderValue> {
                let (cookie, cookies) = (self.cookie.as_ref()?, table.cookies.as_ref()?);
                cookie.set_cookie(cookies, req, slot)
            }

            #[inline]
            fn observe_failure(&self, stats: &Stats, elapsed: Duration, at: Instant) {
                match &self.inner {
                    $(Inner::$variant(p) => Pick::<K>::observe_failure(p, stats, elapsed, at),)*
                }
            }

            fn algo(&self) -> Option<Algo> {
                Some(self.algo)
            }
        }
    };
}

algorithms!(define_dispatch);

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;

    use tower::discover::ServiceList;
    use tower::{Service, ServiceExt, service_fn};

    use super::*;
    use crate::algo::test_support::{endpoints, pick_n, pick_n_for};
    use crate::client_ip::PeerAddr;
    use crate::{LoadBalance, NoAvailableBackend};

    fn from(peer: &str, xff: Option<&str>) -> http::Request<()> {
        let mut req = http::Request::new(());
        req.extensions_mut()
            .insert(PeerAddr(peer.parse::<SocketAddr>().unwrap()));
        if let Some(xff) = xff {
            req.headers_mut()
                .insert("x-forwarded-for", xff.parse().unwrap());
        }
        req
    }

    #[test]
    fn every_algo_has_its_own_picker() {
        for algo in Algo::ALL {
            let picker = AlgoPick::new(algo, ClientIp::peer()).seeded(1);
            assert_eq!(picker.algo(), algo);
            assert_eq!(
                Pick::<usize>::observes_load(&picker),
                matches!(algo, Algo::LeastConn | Algo::BoundedLoadHash)
            );
            assert_eq!(
                Pick::<usize>::tracks_latency(&picker),
                algo == Algo::LeastTime
            );
            let eps = endpoints(&[5, 1, 1]);
            let picks = pick_n(&picker, &eps, 700, |_| true);
            assert_eq!(picks.len(), 700, "{algo}");
            let heavy = picks.iter().filter(|&&i| i == 0).count();
            match algo {
                // Weighted algorithms give 5 / 7 to the first backend.
                Algo::WeightedRoundRobin => assert_eq!(heavy, 500),
                Algo::Random => assert!((430..570).contains(&heavy), "{heavy}"),
                // The rest ignore weights without load: round robin, or a fresh rotation.
                Algo::RoundRobin | Algo::StickyRoundRobin | Algo::SourceIpHash => {
                    assert_eq!(heavy, 234, "{algo}")
                }
                _ => {}
            }
        }
    }

    #[test]
    fn weighted_round_robin_is_smooth_through_algo_pick() {
        let picker = AlgoPick::new(Algo::WeightedRoundRobin, ClientIp::peer());
        assert_eq!(
            pick_n(&picker, &endpoints(&[5, 1, 1]), 7, |_| true),
            [0, 0, 1, 0, 2, 0, 0]
        );
    }

    #[test]
    fn client_ip_reaches_source_ip_hash_and_sticky_round_robin() {
        let eps = endpoints(&[1; 8]);
        let trusting = || ClientIp::trusting(["10.0.0.0/8".parse().unwrap()]);
        for algo in [Algo::SourceIpHash, Algo::StickyRoundRobin] {
            // Behind a trusted proxy, each forwarded client is its own client.
            let picker = AlgoPick::new(algo, trusting());
            let table = picker.build(&eps);
            let mut placed = Vec::new();
            for c in 0..16 {
                let xff = format!("198.51.100.{c}");
                let req = from("10.1.1.1:9000", Some(&xff));
                let first = picker.pick(&table, &eps, &req, &mut |_| true).unwrap();
                for _ in 0..3 {
                    assert_eq!(picker.pick(&table, &eps, &req, &mut |_| true), Some(first));
                }
                placed.push(first);
            }
            placed.sort_unstable();
            placed.dedup();
            assert!(placed.len() > 2, "{algo}: {placed:?}");

            // By default the header is ignored: one peer is one client, whatever it claims.
            let picker = AlgoPick::new(algo, ClientIp::peer());
            let mut reqs = (0..16).map(|c| from("10.1.1.1:9000", Some(&format!("198.51.100.{c}"))));
            let first = pick_n_for(&picker, &eps, 1, &reqs.next().unwrap(), &mut |_| true)[0];
            let table = picker.build(&eps);
            for req in reqs {
                assert_eq!(
                    picker.pick(&table, &eps, &req, &mut |_| true),
                    Some(first),
                    "{algo}"
                );
            }
        }
    }

    #[test]
    fn same_seed_same_picks_and_seeding_keeps_the_client_ip() {
        // More than 8 backends: LT draws two choices (it compares fewer all together).
        let eps = endpoints(&[3, 1, 2, 1, 1, 1, 1, 1, 1, 1]);
        for algo in [Algo::PowerOfTwoChoices, Algo::LeastTime, Algo::Random] {
            let a = AlgoPick::new(algo, ClientIp::peer()).seeded(7);
            let b = AlgoPick::new(algo, ClientIp::peer()).seeded(7);
            let c = AlgoPick::new(algo, ClientIp::peer()).seeded(8);
            let picks = pick_n(&a, &eps, 200, |_| true);
            assert_eq!(picks, pick_n(&b, &eps, 200, |_| true), "{algo}");
            assert_ne!(picks, pick_n(&c, &eps, 200, |_| true), "{algo}");
        }
        // A seeded source IP hash still believes the trusted proxy.
        let trusting = ClientIp::trusting(["10.0.0.0/8".parse().unwrap()]);
        let seeded = AlgoPick::new(Algo::SourceIpHash, trusting).seeded(7);
        let table = seeded.build(&eps);
        let placed: std::collections::HashSet<_> = (0..32)
            .map(|c| {
                let req = from("10.1.1.1:9000", Some(&format!("198.51.100.{c}")));
                seeded.pick(&table, &eps, &req, &mut |_| true).unwrap()
            })
            .collect();
        assert!(placed.len() > 1, "{placed:?}");
    }

    #[tokio::test]
    async fn every_algo_balances_through_load_balance() {
        for algo in Algo::ALL {
            let backend = |n: usize| {
                service_fn(move |_: http::Request<()>| async move {
                    Ok::<_, Infallible>(http::Response::new(n))
                })
            };
            let mut lb = LoadBalance::new(
                ServiceList::new((0..3).map(backend).collect::<Vec<_>>()),
                algo,
            );
            let mut seen = [0; 3];
            for c in 0..60 {
                let req = from(&format!("192.0.2.{c}:1000"), None);
                let res = lb.ready().await.unwrap().call(req).await.unwrap();
                seen[*res.body().get_ref()] += 1;
            }
            // Least time may keep to the backends it has measured fast; the others spread.
            if algo != Algo::LeastTime {
                assert!(seen.iter().all(|&s| s > 0), "{algo}: {seen:?}");
            }

            let mut empty = LoadBalance::new(
                ServiceList::new(Vec::<
                    tower::util::BoxCloneSyncService<
                        http::Request<()>,
                        http::Response<usize>,
                        Infallible,
                    >,
                >::new()),
                algo,
            );
            let err = empty
                .ready()
                .await
                .unwrap()
                .call(from("192.0.2.1:1", None))
                .await
                .unwrap_err();
            assert!(err.is::<NoAvailableBackend>(), "{algo}");
        }
    }
}
