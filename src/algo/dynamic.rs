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
