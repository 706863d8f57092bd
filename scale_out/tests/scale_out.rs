//! Three `lb` processes sharing their backends through a real etcd, on loopback.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use scale_out::{Etcd, Lb, within};

const PREFIX: &str = "/scale-out/backends/";

/// How soon the other instances must serve a registration (the issue's bound).
const PROPAGATION: Duration = Duration::from_secs(1);

async fn backend() -> backend_server::Handle {
    backend_server::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .expect("start a backend")
}

fn name(backend: &backend_server::Handle) -> String {
    backend.addr().to_string()
}

async fn three(etcd: &Etcd, extra: &[&str]) -> [Lb; 3] {
    let url = etcd.url();
    let (a, b, c) = tokio::join!(
        Lb::spawn(&url, PREFIX, extra),
        Lb::spawn(&url, PREFIX, extra),
        Lb::spawn(&url, PREFIX, extra)
    );
    [a, b, c]
}

/// Within `limit`, `lb` answers `GET /` from `backend` (round robin over a set that has it).
async fn serves_within(lb: &Lb, backend: &str, limit: Duration) -> bool {
    within(limit, || async {
        (lb.pick().await.ok()? == backend).then_some(())
    })
    .await
    .is_some()
}

/// Within `limit`, `lb` answers ten requests in a row, none from `gone`.
async fn drained_within(lb: &Lb, gone: &str, limit: Duration) -> bool {
    within(limit, || async {
        for _ in 0..10 {
            if lb.pick().await.ok()? == gone {
                return None;
            }
        }
        Some(())
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_on_one_instance_is_served_by_all_and_deregistration_drains_everywhere() {
    let etcd = Etcd::start().await;
    let [a, b, c] = three(&etcd, &[]).await;
    let (first, second) = (backend().await, backend().await);

    let (status, body) = a.register(&first.url(), 1).await;
    assert_eq!(status, 200, "{body}");
    for (lb, which) in [(&b, "B"), (&c, "C")] {
        assert!(
            serves_within(lb, &name(&first), PROPAGATION).await,
            "{which} does not serve the backend registered on A within {PROPAGATION:?}"
        );
    }
    assert_eq!(a.pick().await, Ok(name(&first)));

    let (status, body) = b.register(&second.url(), 1).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = c.deregister(&first.url()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""state":"#), "{body}");
    for (lb, which) in [(&a, "A"), (&b, "B"), (&c, "C")] {
        assert!(
            drained_within(lb, &name(&first), PROPAGATION).await,
            "{which} still sends requests to the backend deregistered on C"
        );
        assert_eq!(lb.pick().await, Ok(name(&second)), "{which}");
        let (_, listed) = lb.get("/backends").await.unwrap();
        assert!(!listed.contains(&first.url()), "{which} lists it: {listed}");
    }

    // A second DELETE finds nothing in etcd, whichever instance it goes to.
    let (status, body) = a.deregister(&first.url()).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sih_sends_a_client_to_the_same_backend_through_every_instance() {
    let etcd = Etcd::start().await;
    let url = etcd.url();
    let sih = ["--algo", "SIH"];
    let mut backends = [backend().await, backend().await, backend().await];
    backends.sort_by_key(|b| b.url());
    let [x, y, z] = [&backends[0], &backends[1], &backends[2]].map(|b| b.url());

    // Each instance gets the set in another order: A sees z, x, y registered one by one;
    // B starts after z and x (it loads them, sorted), then sees y; C loads all three.
    let a = Lb::spawn(&url, PREFIX, &sih).await;
    assert_eq!(a.register(&z, 1).await.0, 200);
    assert_eq!(a.register(&x, 1).await.0, 200);
    let b = Lb::spawn(&url, PREFIX, &sih).await;
    assert_eq!(b.register(&y, 1).await.0, 200);
    let c = Lb::spawn(&url, PREFIX, &sih).await;
    for (lb, which) in [(&a, "A"), (&b, "B"), (&c, "C")] {
        let listed = scale_out::eventually("every instance has the three backends", || async {
            let (_, listed) = lb.get("/backends").await.ok()?;
            [&x, &y, &z]
                .iter()
                .all(|u| listed.contains(u.as_str()))
                .then_some(listed)
        })
        .await;
        assert!(listed.contains("healthy"), "{which}: {listed}");
    }

    let mut used = std::collections::HashSet::new();
    for last in 10..50 {
        let client = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
        let on_a = a.pick_from(client).await.expect("A serves");
        used.insert(on_a.clone());
        for (lb, which) in [(&b, "B"), (&c, "C")] {
            for _ in 0..3 {
                assert_eq!(
                    lb.pick_from(client).await,
                    Ok(on_a.clone()),
                    "client {client}: A sends it to {on_a}, {which} elsewhere"
                );
            }
        }
    }
    assert!(used.len() > 1, "40 clients all hashed to {used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_keeps_the_last_set_and_changes_after_it_come_through() {
    let mut etcd = Etcd::start().await;
    let [a, b, c] = three(&etcd, &[]).await;
    let (kept, added) = (backend().await, backend().await);
    assert_eq!(a.register(&kept.url(), 1).await.0, 200);
    for lb in [&b, &c] {
        assert!(serves_within(lb, &name(&kept), PROPAGATION).await);
    }

    etcd.kill().await;
    // Past a few reconnection attempts, every instance still serves its last set.
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < until {
        for (lb, which) in [(&a, "A"), (&b, "B"), (&c, "C")] {
            assert_eq!(
                lb.pick().await,
                Ok(name(&kept)),
                "{which} during the outage"
            );
        }
    }
    // A registration cannot be stored meanwhile: a 503 naming etcd, and nothing changes.
    let (status, body) = b.register(&added.url(), 1).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(r#""status":"error""#) && body.contains("etcd"),
        "{body}"
    );
    let (status, body) = c.deregister(&kept.url()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(a.pick().await, Ok(name(&kept)));

    etcd.restart().await;
    // Changes made once etcd is back reach every instance (after its reconnection backoff).
    let (status, body) = c.register(&added.url(), 1).await;
    assert_eq!(status, 200, "{body}\n{}", etcd.log());
    let (status, body) = b.deregister(&kept.url()).await;
    assert_eq!(status, 200, "{body}");
    for (lb, which) in [(&a, "A"), (&b, "B"), (&c, "C")] {
        scale_out::eventually(
            &format!("{which} serves only the backend added after the outage"),
            || async {
                for _ in 0..5 {
                    if lb.pick().await.ok()? != name(&added) {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_registrations_expire_when_their_instance_dies() {
    let etcd = Etcd::start().await;
    let url = etcd.url();
    let a = Lb::spawn(&url, PREFIX, &["--etcd-lease-ttl", "1"]).await;
    let b = Lb::spawn(&url, PREFIX, &[]).await;
    let (leased, permanent) = (backend().await, backend().await);
    assert_eq!(a.register(&leased.url(), 1).await.0, 200);
    assert_eq!(b.register(&permanent.url(), 1).await.0, 200);
    assert!(serves_within(&b, &name(&leased), PROPAGATION).await);

    // While A lives its lease is kept alive, past several TTLs.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        serves_within(&b, &name(&leased), PROPAGATION).await,
        "A's lease lapsed while A lived"
    );

    a.kill().await;
    // The lease expires a TTL (and etcd's expiry check) after A died; B drains the backend.
    scale_out::eventually("B drains the backend of the dead instance", || async {
        let (_, listed) = b.get("/backends").await.ok()?;
        (!listed.contains(&leased.url())).then_some(())
    })
    .await;
    assert!(drained_within(&b, &name(&leased), PROPAGATION).await);
    assert_eq!(b.pick().await, Ok(name(&permanent)));
}
