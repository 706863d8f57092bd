//! Least connections: the backend with the fewest requests in flight per unit of weight.
//!
//! A request is in flight from the moment it is sent until its response body ends, so long
//! downloads and streams count for as long as they last. Among backends equally loaded, the one
//! picked least recently wins, so an idle fleet is rotated through like round robin instead of
//! always starting at the first backend. Choose it when requests vary in length or backends in
//! speed; with many balancers sharing one fleet prefer [`PowerOfTwoChoices`](super::PowerOfTwoChoices),
//! which does not herd onto the same backend. nginx's `least_conn` (weighted the same way) and
//! HAProxy's `leastconn`.
//!
//! # How it stays O(log n) without a lock
//!
//! Scanning 10,000 backends per request is too slow, so the table keeps a tournament tree over
//! the backends ([Knuth, *TAOCP* vol. 3, §5.4.1], the structure of a segment tree): each inner
//! node holds, in an atomic, the index of the best backend below it, and the root holds the
//! answer. Each leaf caches its backend's key: requests in flight divided by weight (32-bit fixed
//! point), then the sequence number of its last pick. The balancer reports every change of
//! load ([`Pick::load_changed`]) and a pick bumps the chosen leaf's sequence number; both
//! recompute the nodes from that leaf up to the root, stopping early where the result did not
//! change. Updates from different threads may interleave and leave a node briefly stale; the
//! next update through it repairs it, and a pick never returns a backend that is not ready.
//!
//! A backend that refuses a request (not ready) while it is the best is set aside in the tree,
//! so that a backend that is down is not asked on every request; it is considered again when
//! its load changes, and every [`RETRY_EVERY`] picks. If the tree runs out of candidates the
//! pick falls back to asking every backend in order of load (O(n log n), only while backends
//! are refusing).
//!
//! [Knuth, *TAOCP* vol. 3, §5.4.1]: https://en.wikipedia.org/wiki/K-way_merge_algorithm#Tournament_Tree

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use super::Pick;
use crate::balance::Endpoint;

/// How many picks pass before backends set aside as not ready are considered again.
pub const RETRY_EVERY: u64 = 1024;

/// How many times a pick asks the tree's best before it falls back to a scan.
const TREE_TRIES: usize = 4;

/// The cached load of a backend set aside because it was not ready.
const SET_ASIDE: u64 = u64::MAX;

/// Least connections picker. See the [module docs](self).
#[derive(Debug, Default, Clone, Copy)]
pub struct LeastConn {
    _priv: (),
}

impl LeastConn {
    /// Creates the picker; its state lives in each set's table.
    pub const fn new() -> Self {
        Self { _priv: () }
    }
}

#[derive(Debug)]
struct Leaf {
    /// In flight / weight, 32-bit fixed point; [`SET_ASIDE`] while set aside.
    load: AtomicU64,
    /// When it was last picked; lower wins a tie.
    seq: AtomicU64,
}

/// The tournament tree over one set of backends. See the [module docs](self).
pub struct LeastConnTable {
    /// Leaves, padded to a power of two; leaf `i` is node `width + i`.
    width: usize,
    /// `nodes[k]` for `1 <= k < width`: the best leaf below inner node `k`.
    nodes: Box<[AtomicU32]>,
    leaves: Box<[Leaf]>,
    seq: AtomicU64,
    set_aside: Mutex<Vec<u32>>,
    any_set_aside: AtomicBool,
}

impl fmt::Debug for LeastConnTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeastConnTable")
            .field("backends", &self.leaves.len())
            .field("best", &self.root())
            .finish_non_exhaustive()
    }
}

/// In flight per unit of weight, 32-bit fixed point.
#[inline]
fn load_of<K>(endpoint: &Endpoint<K>) -> u64 {
    let in_flight = (endpoint.in_flight() as u64).min(u64::from(u32::MAX));
    (in_flight << 32) / u64::from(endpoint.weight())
}

impl LeastConnTable {
    fn new<K>(endpoints: &[Arc<Endpoint<K>>]) -> Self {
        let n = endpoints.len();
        let width = n.next_power_of_two().max(1);
        let table = Self {
            width,
            nodes: (0..width).map(|_| AtomicU32::new(0)).collect(),
            leaves: endpoints
                .iter()
                .enumerate()
                .map(|(i, e)| Leaf {
                    load: AtomicU64::new(load_of(e)),
                    seq: AtomicU64::new(i as u64),
                })
                .collect(),
            seq: AtomicU64::new(n as u64),
            set_aside: Mutex::new(Vec::new()),
            any_set_aside: AtomicBool::new(false),
        };
        for node in (1..width).rev() {
            let best = table.better(table.best_below(2 * node), table.best_below(2 * node + 1));
            table.nodes[node].store(best as u32, Relaxed);
        }
        table
    }

    /// The comparison key of leaf `i`: lower is better; padding leaves lose to every backend.
    #[inline]
    fn key(&self, i: usize) -> (u64, u64) {
        match self.leaves.get(i) {
            Some(leaf) => (leaf.load.load(Relaxed), leaf.seq.load(Relaxed)),
            None => (u64::MAX, u64::MAX),
        }
    }

    #[inline]
    fn best_below(&self, node: usize) -> usize {
        if node >= self.width {
            node - self.width
        } else {
            self.nodes[node].load(Relaxed) as usize
        }
    }

    #[inline]
    fn better(&self, a: usize, b: usize) -> usize {
        if self.key(b) < self.key(a) { b } else { a }
    }

    /// The best backend in the tree.
    #[inline]
    fn root(&self) -> usize {
        self.best_below(1)
    }

    /// Recomputes the nodes above leaf `i` after its key changed.
    #[inline]
    fn fix(&self, i: usize) {
        let mut node = (self.width + i) >> 1;
        while node > 0 {
            let best = self.better(self.best_below(2 * node), self.best_below(2 * node + 1));
            let old = self.nodes[node].load(Relaxed) as usize;
            if old != best {
                self.nodes[node].store(best as u32, Relaxed);
            } else if best != i {
                // Neither the winner nor its key changed here, so nothing above changes.
                return;
            }
            node >>= 1;
        }
    }

    /// Re-reads backend `i`'s load.
    #[inline]
    fn refresh<K>(&self, i: usize, endpoint: &Endpoint<K>) {
        self.leaves[i].load.store(load_of(endpoint), Relaxed);
        self.fix(i);
    }

    /// Backend `i` takes a request: it becomes the most recently picked.
    #[inline]
    fn picked<K>(&self, i: usize, endpoints: &[Arc<Endpoint<K>>]) {
        let seq = self.seq.fetch_add(1, Relaxed);
        self.leaves[i].seq.store(seq, Relaxed);
        self.refresh(i, &endpoints[i]);
        if seq % RETRY_EVERY == 0 && self.any_set_aside.load(Relaxed) {
            self.retry_set_aside(endpoints);
        }
    }

    /// Backend `i` refused a request: keep it out of the tree until its load changes.
    #[cold]
    fn set_aside(&self, i: usize) {
        if self.leaves[i].load.swap(SET_ASIDE, Relaxed) != SET_ASIDE {
            self.set_aside
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(i as u32);
            self.any_set_aside.store(true, Relaxed);
        }
        self.fix(i);
    }

    #[cold]
    fn retry_set_aside<K>(&self, endpoints: &[Arc<Endpoint<K>>]) {
        let Ok(mut list) = self.set_aside.try_lock() else {
            return;
        };
        self.any_set_aside.store(false, Relaxed);
        for i in list.drain(..) {
            let i = i as usize;
            if self.leaves[i].load.load(Relaxed) == SET_ASIDE {
                self.refresh(i, &endpoints[i]);
            }
        }
    }

    /// Asks every backend not yet asked, in order of load, then least recently picked.
    #[cold]
    fn scan<K>(
        &self,
        endpoints: &[Arc<Endpoint<K>>],
        asked: &[usize],
        ready: &mut impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let mut order: Vec<(u64, u64, usize)> = (0..endpoints.len())
            .filter(|i| !asked.contains(i))
            .map(|i| {
                let seq = self.leaves[i].seq.load(Relaxed);
                (load_of(&endpoints[i]), seq, i)
            })
            .collect();
        order.sort_unstable();
        for (_, _, i) in order {
            if ready(i) {
                self.picked(i, endpoints);
                return Some(i);
            }
            self.set_aside(i);
        }
        None
    }
}

impl<K: Send + Sync + 'static> Pick<K> for LeastConn {
    type Table = LeastConnTable;

    fn build(&self, endpoints: &[Arc<Endpoint<K>>]) -> LeastConnTable {
        LeastConnTable::new(endpoints)
    }

    #[inline]
    fn pick<B>(
        &self,
        table: &LeastConnTable,
        endpoints: &[Arc<Endpoint<K>>],
        _: &http::Request<B>,
        ready: &mut impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let n = endpoints.len();
        if n == 0 || table.leaves.len() != n {
            return None;
        }
        let mut asked = [usize::MAX; TREE_TRIES];
        for attempt in 0..TREE_TRIES {
            let best = table.root();
            if best >= n
                || table.leaves[best].load.load(Relaxed) == SET_ASIDE
                || asked[..attempt].contains(&best)
            {
                break;
            }
            if ready(best) {
                table.picked(best, endpoints);
                return Some(best);
            }
            asked[attempt] = best;
            table.set_aside(best);
        }
        table.scan(endpoints, &asked, ready)
    }

    fn observes_load(&self) -> bool {
        true
    }

    #[inline]
    fn load_changed(&self, table: &LeastConnTable, endpoints: &[Arc<Endpoint<K>>], slot: usize) {
        if let (Some(endpoint), true) = (endpoints.get(slot), table.leaves.len() == endpoints.len())
        {
            table.refresh(slot, endpoint);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http_body::{Body, Frame};
    use http_body_util::BodyExt;
    use tokio::sync::{mpsc, oneshot};
    use tower::discover::ServiceList;
    use tower::{Service, ServiceExt, service_fn};

    use super::*;
    use crate::algo::rng::Rng;
    use crate::algo::test_support::{endpoints, pick_n};
    use crate::{Algo, LoadBalance};

    fn set_load(eps: &[Arc<Endpoint<usize>>], i: usize, in_flight: usize) {
        while eps[i].in_flight() < in_flight {
            eps[i].stats().start();
        }
        while eps[i].in_flight() > in_flight {
            eps[i].stats().finish();
        }
    }

    fn pick_one(
        lc: &LeastConn,
        table: &LeastConnTable,
        eps: &[Arc<Endpoint<usize>>],
    ) -> Option<usize> {
        lc.pick(table, eps, &http::Request::new(()), &mut |_| true)
    }

    #[test]
    fn prefers_the_less_loaded() {
        let eps = endpoints(&[1, 1, 1]);
        let lc = LeastConn::new();
        let table = lc.build(&eps);
        for (i, load) in [(0, 3), (1, 1), (2, 2)] {
            set_load(&eps, i, load);
            lc.load_changed(&table, &eps, i);
        }
        assert_eq!(pick_one(&lc, &table, &eps), Some(1));
        // The balancer reports the new request on 1; now 1 and 2 tie at 2, and 2 is older.
        set_load(&eps, 1, 2);
        lc.load_changed(&table, &eps, 1);
        assert_eq!(pick_one(&lc, &table, &eps), Some(2));
        set_load(&eps, 0, 0);
        lc.load_changed(&table, &eps, 0);
        assert_eq!(pick_one(&lc, &table, &eps), Some(0));
    }

    #[test]
    fn load_is_divided_by_weight() {
        let eps = endpoints(&[4, 1]);
        set_load(&eps, 0, 4);
        set_load(&eps, 1, 1);
        // 4 / 4 ties 1 / 1: the tie rotates.
        assert_eq!(pick_n(&LeastConn::new(), &eps, 4, |_| true), [0, 1, 0, 1]);
        set_load(&eps, 0, 5);
        assert_eq!(pick_n(&LeastConn::new(), &eps, 3, |_| true), [1, 1, 1]);
        set_load(&eps, 0, 3);
        assert_eq!(pick_n(&LeastConn::new(), &eps, 3, |_| true), [0, 0, 0]);
    }

    #[test]
    fn ties_rotate() {
        let eps = endpoints(&[1, 1, 1]);
        assert_eq!(
            pick_n(&LeastConn::new(), &eps, 7, |_| true),
            [0, 1, 2, 0, 1, 2, 0]
        );
        let eps = endpoints(&[1; 5]);
        set_load(&eps, 2, 1);
        assert_eq!(
            pick_n(&LeastConn::new(), &eps, 8, |_| true),
            [0, 1, 3, 4, 0, 1, 3, 4]
        );
    }

    /// The exact minimum of (in flight / weight, last picked).
    fn brute_force(eps: &[Arc<Endpoint<usize>>], seqs: &[u64]) -> usize {
        (0..eps.len())
            .min_by(|&a, &b| {
                let (ea, eb) = (&eps[a], &eps[b]);
                let la = ea.in_flight() as u128 * u128::from(eb.weight());
                let lb = eb.in_flight() as u128 * u128::from(ea.weight());
                la.cmp(&lb).then(seqs[a].cmp(&seqs[b]))
            })
            .unwrap()
    }

    #[test]
    fn tree_agrees_with_brute_force_on_large_sets() {
        let rng = Rng::from_seed(77);
        for n in [10_000, 1_000, 17, 2, 1] {
            let weights: Vec<u32> = (0..n).map(|_| 1 + rng.below(4) as u32).collect();
            let eps = endpoints(&weights);
            let lc = LeastConn::new();
            let table = lc.build(&eps);
            for i in 0..n {
                set_load(&eps, i, rng.below(8));
                lc.load_changed(&table, &eps, i);
            }
            let mut seqs: Vec<u64> = (0..n as u64).collect();
            for next_seq in n as u64..n as u64 + 500 {
                let expected = brute_force(&eps, &seqs);
                let picked = pick_one(&lc, &table, &eps).unwrap();
                assert_eq!(picked, expected, "n = {n}");
                seqs[picked] = next_seq;
                // As the balancer does: the request starts on the picked backend, and some
                // other request finishes or starts elsewhere.
                eps[picked].stats().start();
                lc.load_changed(&table, &eps, picked);
                let other = rng.below(n);
                let load = eps[other].in_flight();
                set_load(
                    &eps,
                    other,
                    if rng.below(2) == 0 {
                        load + 1
                    } else {
                        load.saturating_sub(2)
                    },
                );
                lc.load_changed(&table, &eps, other);
            }
        }
    }

    #[test]
    fn unready_backends_are_skipped_and_not_asked_on_every_pick() {
        let eps = endpoints(&[1, 1, 1]);
        set_load(&eps, 1, 1);
        set_load(&eps, 2, 2);
        let mut asked_0 = 0;
        let picks = pick_n(&LeastConn::new(), &eps, 3000, |i| {
            asked_0 += usize::from(i == 0);
            i != 0
        });
        assert_eq!(picks, [1; 3000]);
        // Asked once, then again only every RETRY_EVERY picks.
        assert!((1..=4).contains(&asked_0), "{asked_0}");
    }

    #[test]
    fn set_aside_backend_returns_when_its_load_changes_or_after_a_while() {
        let eps = endpoints(&[1, 1]);
        set_load(&eps, 1, 5);
        let lc = LeastConn::new();
        let table = lc.build(&eps);
        let req = http::Request::new(());
        let mut down = |i: usize| i != 0;
        assert_eq!(lc.pick(&table, &eps, &req, &mut down), Some(1));
        // Back up: the tree still has it aside…
        assert_eq!(pick_one(&lc, &table, &eps), Some(1));
        // …until its load changes.
        lc.load_changed(&table, &eps, 0);
        assert_eq!(pick_one(&lc, &table, &eps), Some(0));

        assert_eq!(lc.pick(&table, &eps, &req, &mut down), Some(1));
        let picks: Vec<usize> = (0..RETRY_EVERY as usize + 1)
            .map(|_| pick_one(&lc, &table, &eps).unwrap())
            .collect();
        assert!(picks.contains(&0), "never retried");
    }

    #[test]
    fn none_when_nothing_is_ready() {
        let eps = endpoints(&[1, 2, 3]);
        let mut asked = Vec::new();
        let picks = pick_n(&LeastConn::new(), &eps, 1, |i| {
            asked.push(i);
            false
        });
        assert!(picks.is_empty());
        asked.sort_unstable();
        assert_eq!(asked, [0, 1, 2]);
        assert!(pick_n(&LeastConn::new(), &eps, 2, |_| false).is_empty());
        assert!(pick_n(&LeastConn::new(), &endpoints(&[]), 2, |_| true).is_empty());
    }

    /// A response body that ends when its sender fires or is dropped.
    struct Held(oneshot::Receiver<()>);

    impl Body for Held {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Pin::new(&mut self.0).poll(cx).map(|_| None)
        }
    }

    #[tokio::test]
    async fn balancer_routes_around_outstanding_responses_until_their_bodies_end() {
        let (held_tx, mut held) = mpsc::unbounded_channel();
        let backend = |n: usize| {
            let held_tx = held_tx.clone();
            service_fn(move |_: http::Request<()>| {
                let (tx, rx) = oneshot::channel::<()>();
                held_tx.send((n, tx)).unwrap();
                async move { Ok::<_, Infallible>(http::Response::new(Held(rx))) }
            })
        };
        let mut lb = LoadBalance::new(
            ServiceList::new(vec![backend(0), backend(1)]),
            Algo::LeastConn,
        );
        let probe = lb.clone();
        let in_flight =
            || -> Vec<usize> { probe.endpoints().iter().map(|e| e.in_flight()).collect() };
        let mut call = async || {
            let res = lb
                .ready()
                .await
                .unwrap()
                .call(http::Request::new(()))
                .await
                .unwrap();
            let (n, tx) = held.recv().await.unwrap();
            (n, tx, res.into_body())
        };

        // The first request's headers arrive; its body stays open.
        let (first, first_tx, first_body) = call().await;
        assert_eq!(first, 0);
        assert_eq!(in_flight(), [1, 0]);

        // Short requests all go to the other backend while the first body is open.
        for _ in 0..5 {
            let (n, tx, body) = call().await;
            assert_eq!(n, 1);
            tx.send(()).unwrap();
            body.collect().await.unwrap();
            assert_eq!(in_flight(), [1, 0]);
        }

        // The body ends: the count drops, and the idle backend picked least recently wins.
        first_tx.send(()).unwrap();
        first_body.collect().await.unwrap();
        assert_eq!(in_flight(), [0, 0]);
        let (n, _tx, _body) = call().await;
        assert_eq!(n, 0);
    }
}
