//! [`AlgoPick`]: the picker chosen at run time from an [`Algo`].

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use super::least_conn::LeastConnTable;
use super::random::RandomTable;
use super::source_ip_hash::SourceIpHashTable;
use super::weighted_round_robin::WeightedRoundRobinTable;
use super::{
    Algo, LeastConn, LeastTime, Pick, PowerOfTwoChoices, Random, RoundRobin, SourceIpHash,
    StickyKey, StickyRoundRobin, WeightedRoundRobin,
};
use crate::balance::{Endpoint, Stats};
use crate::client_ip::ClientIp;

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
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    RoundRobin(RoundRobin),
    WeightedRoundRobin(WeightedRoundRobin),
    StickyRoundRobin(StickyRoundRobin),
    LeastConn(LeastConn),
    PowerOfTwoChoices(PowerOfTwoChoices),
    SourceIpHash(SourceIpHash),
    LeastTime(LeastTime),
    Random(Random),
}

/// The table of the picker inside an [`AlgoPick`].
#[derive(Debug)]
pub enum AlgoTable {
    /// The picker keeps no table: round robin, sticky round robin, power of two choices and
    /// least time.
    None,
    /// [`WeightedRoundRobin`]'s table.
    WeightedRoundRobin(WeightedRoundRobinTable),
    /// [`LeastConn`]'s table.
    LeastConn(LeastConnTable),
    /// [`SourceIpHash`]'s table.
    SourceIpHash(SourceIpHashTable),
    /// [`Random`]'s table.
    Random(RandomTable),
}

impl AlgoPick {
    /// The picker for `algo`.
    ///
    /// `client_ip` says how clients are identified: the IP hashed by [`Algo::SourceIpHash`] and
    /// the default client key of [`Algo::StickyRoundRobin`].
    pub fn new(algo: Algo, client_ip: ClientIp) -> Self {
        let inner = match algo {
            Algo::RoundRobin => Inner::RoundRobin(RoundRobin::new()),
            Algo::WeightedRoundRobin => Inner::WeightedRoundRobin(WeightedRoundRobin::new()),
            Algo::StickyRoundRobin => {
                Inner::StickyRoundRobin(StickyRoundRobin::new().key(StickyKey::ClientIp(client_ip)))
            }
            Algo::LeastConn => Inner::LeastConn(LeastConn::new()),
            Algo::PowerOfTwoChoices => Inner::PowerOfTwoChoices(PowerOfTwoChoices::new()),
            Algo::SourceIpHash => Inner::SourceIpHash(SourceIpHash::new().client_ip(client_ip)),
            Algo::LeastTime => Inner::LeastTime(LeastTime::new()),
            Algo::Random => Inner::Random(Random::new()),
        };
        Self { algo, inner }
    }

    /// Reseeds the random choices (of `PTC`, `LT` and `Random`), for reproducible runs.
    #[must_use]
    pub fn seeded(mut self, seed: u64) -> Self {
        match &mut self.inner {
            Inner::PowerOfTwoChoices(p) => *p = PowerOfTwoChoices::from_seed(seed),
            Inner::LeastTime(p) => *p = LeastTime::from_rng_seed(seed),
            Inner::Random(p) => *p = Random::from_seed(seed),
            Inner::RoundRobin(_)
            | Inner::WeightedRoundRobin(_)
            | Inner::StickyRoundRobin(_)
            | Inner::LeastConn(_)
            | Inner::SourceIpHash(_) => {}
        }
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

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Pick<K> for AlgoPick {
    type Table = AlgoTable;

    fn build(&self, endpoints: &[Arc<Endpoint<K>>]) -> AlgoTable {
        match &self.inner {
            Inner::RoundRobin(_)
            | Inner::StickyRoundRobin(_)
            | Inner::PowerOfTwoChoices(_)
            | Inner::LeastTime(_) => AlgoTable::None,
            Inner::WeightedRoundRobin(p) => AlgoTable::WeightedRoundRobin(p.build(endpoints)),
            Inner::LeastConn(p) => AlgoTable::LeastConn(p.build(endpoints)),
            Inner::SourceIpHash(p) => AlgoTable::SourceIpHash(p.build(endpoints)),
            Inner::Random(p) => AlgoTable::Random(Pick::<K>::build(p, endpoints)),
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
        match (&self.inner, table) {
            (Inner::RoundRobin(p), _) => p.pick(&(), endpoints, req, ready),
            (Inner::StickyRoundRobin(p), _) => p.pick(&(), endpoints, req, ready),
            (Inner::PowerOfTwoChoices(p), _) => p.pick(&(), endpoints, req, ready),
            (Inner::LeastTime(p), _) => p.pick(&(), endpoints, req, ready),
            (Inner::WeightedRoundRobin(p), AlgoTable::WeightedRoundRobin(t)) => {
                p.pick(t, endpoints, req, ready)
            }
            (Inner::LeastConn(p), AlgoTable::LeastConn(t)) => p.pick(t, endpoints, req, ready),
            (Inner::SourceIpHash(p), AlgoTable::SourceIpHash(t)) => {
                p.pick(t, endpoints, req, ready)
            }
            (Inner::Random(p), AlgoTable::Random(t)) => p.pick(t, endpoints, req, ready),
            (
                Inner::WeightedRoundRobin(_)
                | Inner::LeastConn(_)
                | Inner::SourceIpHash(_)
                | Inner::Random(_),
                _,
            ) => foreign_table(),
        }
    }

    fn observes_load(&self) -> bool {
        matches!(self.inner, Inner::LeastConn(_))
    }

    #[inline]
    fn load_changed(&self, table: &AlgoTable, endpoints: &[Arc<Endpoint<K>>], slot: usize) {
        if let (Inner::LeastConn(p), AlgoTable::LeastConn(t)) = (&self.inner, table) {
            p.load_changed(t, endpoints, slot);
        }
    }

    fn tracks_latency(&self) -> bool {
        matches!(self.inner, Inner::LeastTime(_))
    }

    fn observe_latency(&self, stats: &Stats, rtt: Duration) {
        if let Inner::LeastTime(p) = &self.inner {
            p.observe(stats, rtt);
        }
    }
}

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
                algo == Algo::LeastConn
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
