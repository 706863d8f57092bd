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
//! node holds, in atomics, the best backend below it and that backend's key, and the root holds
//! the answer. A backend's key is its requests in flight divided by its weight (32-bit fixed
//! point), then the sequence number of its last pick. A pick re-reads the chosen leaf's load
//! (already counting the request, which the backend reserved by saying it is ready) and bumps
//! its sequence number; the balancer reports every request that finishes
//! ([`Pick::load_changed`]). Both recompute the nodes from that leaf up to the root, a finish
//! stopping early where the result did not change: two walks per request. Updates from
//! different threads may interleave and leave a node briefly stale; the next update through it
//! repairs it, and a pick never returns a backend that is not ready.
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

use super::{AlgoConfig, Configure, Pick};
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

/// One node of the tree: the best backend below it, with that backend's key.
///
/// A leaf is the node of its own backend. Caching the winner's key in every node lets an
/// update compare with the sibling's node alone, without a lookup per level.
#[derive(Debug)]
struct Node {
    /// In flight per unit of weight, 32-bit fixed point; [`SET_ASIDE`] while set aside, and
    /// `u64::MAX` in the padding leaves.
    load: AtomicU64,
    /// The sequence number of the backend's last pick: lower wins a tie.
    seq: AtomicU64,
    /// The backend.
    index: AtomicU32,
}

/// A node's contents, read one field at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    load: u64,
    seq: u64,
    index: u32,
}

impl Entry {
    #[inline]
    fn key(self) -> (u64, u64) {
        (self.load, self.seq)
    }

    /// `other` if its key is lower, else `self`, chosen by masks rather than a branch: which
    /// side wins follows no pattern the branch predictor could learn.
    #[inline]
    fn min_branchless(self, other: Entry) -> Entry {
        let lower = (other.load < self.load) | ((other.load == self.load) & (other.seq < self.seq));
        let mask = u64::from(lower).wrapping_neg();
        let pick = |a: u64, b: u64| (b & mask) | (a & !mask);
        Entry {
            load: pick(self.load, other.load),
            seq: pick(self.seq, other.seq),
            index: pick(u64::from(self.index), u64::from(other.index)) as u32,
        }
    }
}

/// The tournament tree over one set of backends. See the [module docs](self).
pub struct LeastConnTable {
    /// Leaves, padded to a power of two: backend `i` is node `width + i`; node `k < width` holds
    /// the best of nodes `2k` and `2k + 1`, so node 1 holds the best of all.
    width: usize,
    nodes: Box<[Node]>,
    len: usize,
    /// All weights are equal, so in-flight counts compare as they are.
    uniform: bool,
    seq: AtomicU64,
    set_aside: Mutex<Vec<u32>>,
    any_set_aside: AtomicBool,
}

impl fmt::Debug for LeastConnTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeastConnTable")
            .field("backends", &self.len)
            .field("best", &self.read(1))
            .finish_non_exhaustive()
    }
}

impl LeastConnTable {
    fn new<K>(endpoints: &[Arc<Endpoint<K>>]) -> Self {
        let len = endpoints.len();
        let width = len.next_power_of_two().max(1);
        let uniform = endpoints.windows(2).all(|w| w[0].weight() == w[1].weight());
        let node = |load, seq, index: usize| Node {
            load: AtomicU64::new(load),
            seq: AtomicU64::new(seq),
            index: AtomicU32::new(index as u32),
        };
        let mut table = Self {
            width,
            nodes: Box::new([]),
            len,
            uniform,
            seq: AtomicU64::new(len as u64),
            set_aside: Mutex::new(Vec::new()),
            any_set_aside: AtomicBool::new(false),
        };
        let inner = (0..width).map(|_| node(u64::MAX, u64::MAX, usize::MAX));
        let leaves = (0..width).map(|i| match endpoints.get(i) {
            Some(e) => node(table.load_of(e), i as u64, i),
            None => node(u64::MAX, u64::MAX, i),
        });
        table.nodes = inner.chain(leaves).collect();
        for k in (1..width).rev() {
            let best = table.read(2 * k).min_branchless(table.read(2 * k + 1));
            table.write(k, best, table.read(k));
        }
        table
    }

    /// In flight per unit of weight, 32-bit fixed point.
    #[inline]
    fn load_of<K>(&self, endpoint: &Endpoint<K>) -> u64 {
        let in_flight = (endpoint.in_flight() as u64).min(u64::from(u32::MAX)) << 32;
        if self.uniform {
            in_flight
        } else {
            in_flight / u64::from(endpoint.weight())
        }
    }

    #[inline]
    fn read(&self, k: usize) -> Entry {
        let node = &self.nodes[k];
        Entry {
            load: node.load.load(Relaxed),
            seq: node.seq.load(Relaxed),
            index: node.index.load(Relaxed),
        }
    }

    #[inline]
    fn write(&self, k: usize, new: Entry, old: Entry) {
        let node = &self.nodes[k];
        if new.load != old.load {
            node.load.store(new.load, Relaxed);
        }
        if new.seq != old.seq {
            node.seq.store(new.seq, Relaxed);
        }
        if new.index != old.index {
            node.index.store(new.index, Relaxed);
        }
    }

    #[inline]
    fn leaf(&self, i: usize) -> &Node {
        &self.nodes[self.width + i]
    }

    /// Recomputes the nodes above backend `i`'s leaf after its key changed.
    #[inline]
    fn fix(&self, i: usize) {
        let mut k = self.width + i;
        let mut best = self.read(k);
        while k > 1 {
            let sibling = self.read(k ^ 1);
            if sibling.key() < best.key() {
                best = sibling;
            }
            k >>= 1;
            let old = self.read(k);
            if old != best {
                self.write(k, best, old);
            } else if best.index as usize != i {
                // Neither the winner nor its key changed here, so nothing above changes.
                return;
            }
        }
    }

    /// Recomputes every node above backend `i`'s leaf, up to the root, without reading them.
    ///
    /// For a pick: the picked backend was the best at every level of its path, so every node
    /// there changes, and reading each to stop where nothing changed would find nothing to
    /// stop at. (Should another thread have changed the tree meanwhile, each node written is
    /// still the best of its two children.)
    #[inline]
    fn fix_path(&self, i: usize) {
        let mut k = self.width + i;
        let mut best = self.read(k);
        while k > 1 {
            best = best.min_branchless(self.read(k ^ 1));
            k >>= 1;
            let node = &self.nodes[k];
            node.load.store(best.load, Relaxed);
            node.seq.store(best.seq, Relaxed);
            node.index.store(best.index, Relaxed);
        }
    }

    /// Re-reads backend `i`'s load.
    #[inline]
    fn refresh<K>(&self, i: usize, endpoint: &Endpoint<K>) {
        self.leaf(i).load.store(self.load_of(endpoint), Relaxed);
        self.fix(i);
    }

    /// Backend `i` takes a request: it becomes the most recently picked.
    #[inline]
    fn picked<K>(&self, i: usize, endpoints: &[Arc<Endpoint<K>>]) {
        // Not a read-modify-write: the sequence only breaks ties, and two picks racing to the
        // same number tie no worse than before; a locked add would cost more than the rest of
        // the update.
        let seq = self.seq.load(Relaxed);
        self.seq.store(seq + 1, Relaxed);
        let leaf = self.leaf(i);
        leaf.seq.store(seq, Relaxed);
        leaf.load.store(self.load_of(&endpoints[i]), Relaxed);
        self.fix_path(i);
        if seq % RETRY_EVERY == 0 && self.any_set_aside.load(Relaxed) {
            self.retry_set_aside(endpoints);
        }
    }

    /// Backend `i` refused a request: keep it out of the tree until its load changes.
    #[cold]
    fn set_aside(&self, i: usize) {
        if self.leaf(i).load.swap(SET_ASIDE, Relaxed) != SET_ASIDE {
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
            if self.leaf(i).load.load(Relaxed) == SET_ASIDE {
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
                let seq = self.leaf(i).seq.load(Relaxed);
                (self.load_of(&endpoints[i]), seq, i)
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

impl Configure for LeastConn {
    fn configure(_: &AlgoConfig) -> Self {
        Self::new()
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
        if n == 0 || table.len != n {
            return None;
        }
        let mut asked = [usize::MAX; TREE_TRIES];
        for attempt in 0..TREE_TRIES {
            let root = table.read(1);
            let best = root.index as usize;
            if best >= n || root.load == SET_ASIDE || asked[..attempt].contains(&best) {
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
        if let (Some(endpoint), true) = (endpoints.get(slot), table.len == endpoints.len()) {
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
        // Mixed weights, and equal ones (compared without division).
        for (n, max_weight) in [
            (10_000, 4),
            (10_000, 1),
            (1_000, 4),
            (17, 4),
            (17, 1),
            (2, 1),
            (1, 1),
        ] {
            let weights: Vec<u32> = (0..n)
                .map(|_| 3 * (1 + rng.below(max_weight) as u32))
                .collect();
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
