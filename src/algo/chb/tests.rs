use std::convert::Infallible;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use http::HeaderName;
use tower::discover::ServiceList;
use tower::{Service, ServiceExt, service_fn};

use super::*;
use crate::algo::SourceIpHash;
use crate::algo::rng::Rng;
use crate::algo::test_support::keyed;
use crate::{Algo, LoadBalance};

const KEY: HeaderName = HeaderName::from_static("x-key");

fn keyed_request(key: usize) -> http::Request<()> {
    let mut req = http::Request::new(());
    req.headers_mut()
        .insert(KEY, key.to_string().parse().unwrap());
    req
}

fn chb() -> BoundedLoadHash {
    BoundedLoadHash::new().key(KEY)
}

/// Requests in flight over `eps`, counted from the endpoints themselves.
fn in_flight(eps: &[Arc<Endpoint<usize>>]) -> usize {
    eps.iter().map(|e| e.in_flight()).sum()
}

/// Starts a request on `eps[slot]` and reports it, as the balancer does.
fn start(picker: &BoundedLoadHash, table: &BoundedLoadHashTable, eps: &[Arc<Endpoint<usize>>], slot: usize) {
    eps[slot].stats().start();
    picker.load_changed(table, eps, slot);
}

#[test]
fn cap_is_the_ceiling_of_factor_times_average() {
    let c = BoundedLoadHash::new();
    // (total + 1) · 1.25 / n, rounded up.
    assert_eq!(c.cap(0, 1, 3), 1);
    assert_eq!(c.cap(11, 1, 4), 4);
    assert_eq!(c.cap(99, 1, 4), 32);
    // Weighted: a backend of weight 3 out of 4 may hold three quarters.
    assert_eq!(c.cap(99, 3, 4), 94);
    assert_eq!(BoundedLoadHash::new().balance_factor(50).factor(), MIN_BALANCE_FACTOR);
    assert_eq!(BoundedLoadHash::new().balance_factor(100).cap(7, 1, 4), 2);
}

#[test]
fn no_backend_is_over_the_cap_across_random_inserts_removes_and_loads() {
    for seed in 0..8 {
        let rng = Rng::from_seed(seed);
        let picker = chb().balance_factor([100, 125, 150, 200][seed as usize % 4]);
        // Backends with keys 0..40, weights 1 to 3; start with ten.
        let mut set: Vec<Arc<Endpoint<usize>>> = (0..10)
            .map(|k| Arc::new(Endpoint::new(k, 1 + (k % 3) as u32)))
            .collect();
        let mut next_key = 10;
        let rebuild = |set: &[Arc<Endpoint<usize>>]| {
            for (slot, e) in set.iter().enumerate() {
                e.stats().set_slot(slot);
            }
            picker.build(set)
        };
        let mut table = rebuild(&set);
        let mut running: Vec<Arc<Endpoint<usize>>> = Vec::new();
        let mut picks = 0;
        for _ in 0..20_000 {
            match rng.below(100) {
                0..3 if set.len() < 40 => {
                    let e = Arc::new(Endpoint::new(next_key, 1 + (next_key % 3) as u32));
                    next_key += 1;
                    set.insert(rng.below(set.len() + 1), e);
                    table = rebuild(&set);
                }
                3..6 if set.len() > 1 => {
                    let gone = set.remove(rng.below(set.len()));
                    gone.stats().mark_removed();
                    table = rebuild(&set);
                }
                6..55 => {
                    // Skewed keys: a few are hot.
                    let key = rng.below(rng.below(500) + 1);
                    let total = in_flight(&set);
                    assert_eq!(table.in_flight(), total, "the table's total follows the load");
                    let slot = picker
                        .pick(&table, &set, &keyed_request(key), &mut |_| true)
                        .unwrap();
                    let e = &set[slot];
                    let w: u64 = set.iter().map(|e| u64::from(e.weight())).sum();
                    assert!(
                        e.in_flight() < picker.cap(total, e.weight(), w),
                        "seed {seed}: backend {} holds {} of {total} at its pick (weight {} of {w})",
                        e.key(),
                        e.in_flight(),
                        e.weight()
                    );
                    start(&picker, &table, &set, slot);
                    running.push(Arc::clone(e));
                    picks += 1;
                }
                _ if !running.is_empty() => {
                    let done = running.swap_remove(rng.below(running.len()));
                    done.stats().finish();
                    if !done.stats().is_removed() {
                        picker.load_changed(&table, &set, done.stats().slot());
                    }
                }
                _ => {}
            }
        }
        assert!(picks > 5_000);
    }
}

#[test]
fn keys_stay_on_their_hashed_backend_while_it_is_under_the_cap() {
    let eps = keyed(&(0..8).map(|k| (100 + k, 1)).collect::<Vec<_>>());
    let picker = chb();
    let table = picker.build(&eps);
    let sih = SourceIpHash::new().key(KEY);
    let sih_table = sih.build(&eps);
    let home: Vec<usize> = (0..2_000)
        .map(|k| {
            sih.pick(&sih_table, &eps, &keyed_request(k), &mut |_| true)
                .unwrap()
        })
        .collect();
    // Without load every key is on its consistent-hashing backend, every time.
    for round in 0..3 {
        for (k, &h) in home.iter().enumerate() {
            let slot = picker
                .pick(&table, &eps, &keyed_request(k), &mut |_| true)
                .unwrap();
            assert_eq!(slot, h, "key {k}, round {round}");
        }
    }
    // With an even load of 10 each (cap ⌈1.25 · 81 / 8⌉ = 13), keys still stay.
    for slot in 0..8 {
        for _ in 0..10 {
            start(&picker, &table, &eps, slot);
        }
    }
    for (k, &h) in home.iter().enumerate() {
        assert_eq!(picker.pick(&table, &eps, &keyed_request(k), &mut |_| true), Some(h));
    }
}

#[test]
fn a_hot_key_spills_along_the_ring_and_comes_back() {
    let eps = keyed(&(0..4).map(|k| (k, 1)).collect::<Vec<_>>());
    let picker = chb();
    let table = picker.build(&eps);
    let req = keyed_request(42);
    let home = picker.pick(&table, &eps, &req, &mut |_| true).unwrap();
    let mut used = std::collections::HashSet::new();
    for _ in 0..100 {
        let slot = picker.pick(&table, &eps, &req, &mut |_| true).unwrap();
        used.insert(slot);
        start(&picker, &table, &eps, slot);
    }
    assert_eq!(used.len(), 4, "the hot key spread over every backend");
    assert!(eps.iter().all(|e| e.in_flight() <= 32), "{eps:?}");
    // The load ends: the key is back home.
    for slot in 0..4 {
        while eps[slot].in_flight() > 0 {
            eps[slot].stats().finish();
            picker.load_changed(&table, &eps, slot);
        }
    }
    assert_eq!(table.in_flight(), 0);
    assert_eq!(picker.pick(&table, &eps, &req, &mut |_| true), Some(home));
}

#[test]
fn over_the_cap_only_when_everything_under_it_refuses() {
    let eps = keyed(&[(1, 1), (2, 1), (3, 1)]);
    let picker = chb();
    let table = picker.build(&eps);
    for _ in 0..6 {
        start(&picker, &table, &eps, 0);
    }
    // Cap ⌈1.25 · 7 / 3⌉ = 3: backend 0 is over it, so a request goes elsewhere...
    let mut asked = Vec::new();
    let slot = picker.pick(&table, &eps, &keyed_request(1), &mut |i| {
        asked.push(i);
        true
    });
    assert_ne!(slot, Some(0));
    assert!(!asked.contains(&0));
    // ...unless the others refuse; then backend 0 rather than no backend, each asked once.
    asked.clear();
    let slot = picker.pick(&table, &eps, &keyed_request(1), &mut |i| {
        asked.push(i);
        i == 0
    });
    assert_eq!(slot, Some(0));
    asked.sort_unstable();
    assert_eq!(asked, [0, 1, 2]);
    assert_eq!(picker.pick(&table, &eps, &keyed_request(1), &mut |_| false), None);
    let empty = keyed(&[]);
    let table = picker.build(&empty);
    assert_eq!(picker.pick(&table, &empty, &keyed_request(1), &mut |_| true), None);
}

#[test]
fn requests_without_a_key_spread_under_the_caps() {
    let eps = keyed(&[(1, 1), (2, 1), (3, 1), (4, 1)]);
    let picker = chb();
    let table = picker.build(&eps);
    for _ in 0..400 {
        let slot = picker
            .pick(&table, &eps, &http::Request::new(()), &mut |_| true)
            .unwrap();
        start(&picker, &table, &eps, slot);
    }
    assert!(eps.iter().all(|e| e.in_flight() <= 125), "{eps:?}");
}

#[tokio::test(start_paused = true)]
async fn balancer_keeps_every_backend_under_the_cap() {
    let running: Arc<[AtomicUsize; 4]> = Arc::default();
    let most: Arc<[AtomicUsize; 4]> = Arc::default();
    let backend = |n: usize| {
        let (running, most) = (Arc::clone(&running), Arc::clone(&most));
        service_fn(move |_: http::Request<()>| {
            let (running, most) = (Arc::clone(&running), Arc::clone(&most));
            async move {
                let now = running[n].fetch_add(1, Relaxed) + 1;
                most[n].fetch_max(now, Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
                running[n].fetch_sub(1, Relaxed);
                Ok::<_, Infallible>(http::Response::new(n))
            }
        })
    };
    let lb = LoadBalance::with_picker(
        ServiceList::new((0..4).map(backend).collect::<Vec<_>>()),
        crate::algo::AlgoPick::new(Algo::BoundedLoadHash, crate::ClientIp::peer()).key(StickyKey::Header(KEY)),
    );
    // 100 requests for one key, all in flight at once.
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let mut lb = lb.clone();
            tokio::spawn(async move {
                let res = lb.ready().await.unwrap().call(keyed_request(7)).await.unwrap();
                *res.body().get_ref()
            })
        })
        .collect();
    let mut per_backend = [0; 4];
    for call in calls {
        per_backend[call.await.unwrap()] += 1;
    }
    // ⌈1.25 · 100 / 4⌉ = 32.
    for n in 0..4 {
        let most = most[n].load(Relaxed);
        assert!((1..=32).contains(&most), "backend {n} held {most}: {per_backend:?}");
    }
    // Once idle, the key has one backend again.
    let mut lb = lb.clone();
    let home = *lb.ready().await.unwrap().call(keyed_request(7)).await.unwrap().body().get_ref();
    for _ in 0..5 {
        let res = lb.ready().await.unwrap().call(keyed_request(7)).await.unwrap();
        assert_eq!(*res.body().get_ref(), home);
    }
}
