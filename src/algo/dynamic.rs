//! [`AlgoPick`]: the picker chosen at run time from an [`Algo`].

use std::sync::Arc;
use std::time::Duration;

use super::{
    Algo, LeastConn, LeastTime, Pick, PowerOfTwoChoices, Random, RoundRobin, WeightedRoundRobin,
};
use crate::balance::{Endpoint, Stats};
use crate::client_ip::ClientIp;

/// The picker for an [`Algo`], dispatched with a `match`.
#[derive(Debug)]
pub struct AlgoPick {
    algo: Algo,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    RoundRobin(RoundRobin),
    WeightedRoundRobin(WeightedRoundRobin),
    LeastConn(LeastConn),
    PowerOfTwoChoices(PowerOfTwoChoices),
    LeastTime(LeastTime),
    Random(Random),
}

/// The table of the picker inside an [`AlgoPick`].
#[derive(Debug)]
pub enum AlgoTable {
    /// No table.
    None,
    /// [`WeightedRoundRobin`]'s table.
    WeightedRoundRobin(super::weighted_round_robin::WeightedRoundRobinTable),
    /// [`LeastConn`]'s table.
    LeastConn(super::least_conn::LeastConnTable),
    /// [`Random`]'s table.
    Random(super::random::RandomTable),
}

impl AlgoPick {
    /// The picker for `algo`; `client_ip` says how clients are identified where that matters.
    pub fn new(algo: Algo, client_ip: ClientIp) -> Self {
        let _ = client_ip;
        let inner = match algo {
            Algo::WeightedRoundRobin => Inner::WeightedRoundRobin(WeightedRoundRobin::new()),
            Algo::RoundRobin | Algo::StickyRoundRobin | Algo::SourceIpHash => {
                Inner::RoundRobin(RoundRobin::new())
            }
            Algo::LeastConn => Inner::LeastConn(LeastConn::new()),
            Algo::PowerOfTwoChoices => Inner::PowerOfTwoChoices(PowerOfTwoChoices::new()),
            Algo::LeastTime => Inner::LeastTime(LeastTime::new()),
            Algo::Random => Inner::Random(Random::new()),
        };
        Self { algo, inner }
    }

    /// Reseeds the random choices, for reproducible runs.
    #[must_use]
    pub fn seeded(mut self, seed: u64) -> Self {
        match &mut self.inner {
            Inner::PowerOfTwoChoices(p) => *p = PowerOfTwoChoices::from_seed(seed),
            Inner::LeastTime(p) => *p = LeastTime::from_rng_seed(seed),
            Inner::Random(p) => *p = Random::from_seed(seed),
            Inner::RoundRobin(_) | Inner::WeightedRoundRobin(_) | Inner::LeastConn(_) => {}
        }
        self
    }

    /// The algorithm.
    pub fn algo(&self) -> Algo {
        self.algo
    }
}

impl<K: std::hash::Hash + Eq + Clone + Send + Sync + 'static> Pick<K> for AlgoPick {
    type Table = AlgoTable;

    fn build(&self, endpoints: &[Arc<Endpoint<K>>]) -> AlgoTable {
        match &self.inner {
            Inner::WeightedRoundRobin(p) => {
                AlgoTable::WeightedRoundRobin(Pick::<K>::build(p, endpoints))
            }
            Inner::LeastConn(p) => AlgoTable::LeastConn(Pick::<K>::build(p, endpoints)),
            Inner::Random(p) => AlgoTable::Random(Pick::<K>::build(p, endpoints)),
            _ => AlgoTable::None,
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
            (Inner::PowerOfTwoChoices(p), _) => p.pick(&(), endpoints, req, ready),
            (Inner::LeastTime(p), _) => p.pick(&(), endpoints, req, ready),
            (Inner::Random(p), AlgoTable::Random(t)) => p.pick(t, endpoints, req, ready),
            (Inner::WeightedRoundRobin(p), AlgoTable::WeightedRoundRobin(t)) => {
                p.pick(t, endpoints, req, ready)
            }
            (Inner::LeastConn(p), AlgoTable::LeastConn(t)) => p.pick(t, endpoints, req, ready),
            (Inner::Random(_) | Inner::WeightedRoundRobin(_) | Inner::LeastConn(_), _) => {
                unreachable!("table built by another picker")
            }
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
