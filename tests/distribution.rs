//! Each algorithm's distribution through the standalone balancer, end to end: an in-process
//! `Server`, `backend_server` backends (known by their greetings), and clients on 127.0.0.0/8
//! told apart by their source address.
//!
//! Round robin's exact rotation is in `tests/standalone.rs`.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body::Frame;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use support::{Lb, backend, backends, eventually, greeter, name, pick_from, spec, specs, start};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tower_lb::admin::BackendSpec;
use tower_lb::server::Config;
use tower_lb::{Algo, ClientIp};

/// The `i`-th client address of a block: `127.{block}.{i / 250}.{i % 250 + 2}`.
fn client(block: u8, i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        block,
        (i / 250) as u8,
        (i % 250) as u8 + 2,
    ))
}

/// How many times each backend was picked.
fn tally<'a>(picks: impl IntoIterator<Item = &'a String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for pick in picks {
        *counts.entry(pick.clone()).or_insert(0) += 1;
    }
    counts
}

/// The backend of each client in `clients`, each asking once on a new connection.
async fn placements(lb: &Lb, clients: &[IpAddr]) -> HashMap<IpAddr, String> {
    let mut asks = JoinSet::new();
    for &ip in clients {
        let to = lb.addr;
        asks.spawn(async move { (ip, pick_from(to, ip, &[]).await) });
    }
    let mut placed = HashMap::new();
    while let Some(answer) = asks.join_next().await {
        let (ip, backend) = answer.expect("a client task does not panic");
        placed.insert(ip, backend);
    }
    placed
}

/// The `host:port` of each backend the balancer currently holds.
fn serving(lb: &Lb) -> Vec<String> {
    let mut names: Vec<_> = lb
        .balancer
        .endpoints()
        .iter()
        .map(|e| e.key().key().authority().to_string())
        .collect();
    names.sort();
    names
}

/// Waits until the balancer holds exactly `names`.
async fn wait_for_set(lb: &Lb, names: &[String]) {
    let mut names = names.to_vec();
    names.sort();
    eventually(&format!("the balancer holds {names:?}"), || {
        let now = serving(lb);
        let names = &names;
        async move { (now == *names).then_some(()) }
    })
    .await;
}

/// Waits until exactly `n` requests are in flight at the balancer.
async fn settle(lb: &Lb, n: usize) {
    eventually(&format!("{n} requests are in flight"), || {
        let total: usize = lb.in_flight().values().sum();
        async move { (total == n).then_some(()) }
    })
    .await;
}

// ---- Weighted round robin -------------------------------------------------------------------

/// nginx's smooth weighted round robin over `(name, weight)` in this order, for `n` requests:
/// every current weight grows by its weight, the largest (the first on a tie) is picked and
/// loses the total.
fn smooth_wrr(backends: &[(String, u32)], n: usize) -> Vec<String> {
    let total: i64 = backends.iter().map(|(_, w)| i64::from(*w)).sum();
    let mut current = vec![0i64; backends.len()];
    let mut picks = Vec::with_capacity(n);
    for _ in 0..n {
        for (c, (_, w)) in current.iter_mut().zip(backends) {
            *c += i64::from(*w);
        }
        let mut best = 0;
        for i in 1..current.len() {
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        picks.push(backends[best].0.clone());
    }
    picks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_3_2_1_gives_exact_shares_without_bursts() {
    let (a, b, c) = (backend().await, backend().await, backend().await);
    let config = Config::new().algo(Algo::WeightedRoundRobin).backends_from([
        spec(&a, 3),
        spec(&b, 2),
        spec(&c, 1),
    ]);
    let lb = start(config).await;

    let picks = lb.picks(12).await;
    let counts = tally(&picks);
    assert_eq!(counts[&name(&a)], 6, "{picks:?}");
    assert_eq!(counts[&name(&b)], 4, "{picks:?}");
    assert_eq!(counts[&name(&c)], 2, "{picks:?}");
    // Smooth: each period of 6 holds 3, 2 and 1, and no backend takes three in a row.
    for period in picks.chunks(6) {
        let counts = tally(period);
        assert_eq!(
            (counts[&name(&a)], counts[&name(&b)], counts[&name(&c)]),
            (3, 2, 1),
            "{picks:?}"
        );
    }
    for run in picks.windows(3) {
        assert!(
            !(run[0] == run[1] && run[1] == run[2]),
            "a burst of {}: {picks:?}",
            run[0]
        );
    }
    // And exactly nginx's sequence, in the balancer's order of its backends.
    let order: Vec<_> = lb
        .balancer
        .endpoints()
        .iter()
        .map(|e| {
            let name = e.key().key().authority().to_string();
            (name, e.weight())
        })
        .collect();
    assert_eq!(picks, smooth_wrr(&order, 12), "order {order:?}");
    lb.stop().await;
}

// ---- Sticky round robin ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_round_robin_keeps_each_client_ip_and_replaces_only_a_removed_backends_clients() {
    let backends = backends(3).await;
    let config = Config::new()
        .algo(Algo::StickyRoundRobin)
        .backends_from(specs(&backends));
    let lb = start(config).await;
    let clients: Vec<IpAddr> = (0..9).map(|i| client(0, i)).collect();

    // Ten rounds, one new connection per request: the source IP sticks, not the connection.
    let mut placed: HashMap<IpAddr, String> = HashMap::new();
    for round in 0..10 {
        for &ip in &clients {
            let got = pick_from(lb.addr, ip, &[]).await;
            let first = placed.entry(ip).or_insert_with(|| got.clone());
            assert_eq!(*first, got, "{ip} moved in round {round}");
        }
    }
    // The first requests were placed round robin: three clients on each backend.
    let per_backend = tally(placed.values());
    assert_eq!(per_backend.len(), 3, "{per_backend:?}");
    assert!(per_backend.values().all(|&n| n == 3), "{per_backend:?}");

    // Take away the first client's backend.
    let gone = placed[&clients[0]].clone();
    let gone_handle = backends.iter().find(|b| name(b) == gone).unwrap();
    assert!(lb.registry.deregister(spec(gone_handle, 1).address()));
    let mut rest: Vec<String> = backends.iter().map(name).filter(|n| *n != gone).collect();
    rest.sort();
    wait_for_set(&lb, &rest).await;

    let mut replaced: HashMap<IpAddr, String> = HashMap::new();
    for round in 0..10 {
        for &ip in &clients {
            let got = pick_from(lb.addr, ip, &[]).await;
            if placed[&ip] != gone {
                assert_eq!(
                    got, placed[&ip],
                    "{ip} moved off a backend still in the set"
                );
                continue;
            }
            assert_ne!(got, gone, "{ip} still sent to a removed backend");
            let first = replaced.entry(ip).or_insert_with(|| got.clone());
            assert_eq!(*first, got, "re-placed {ip} moved again in round {round}");
        }
    }
    assert_eq!(replaced.len(), 3, "{replaced:?}");
    // Re-placed round robin over the two left: both take some.
    let new_homes = tally(replaced.values());
    assert_eq!(
        new_homes.keys().cloned().collect::<Vec<_>>(),
        rest,
        "{new_homes:?}"
    );
    lb.stop().await;
}

// ---- Source IP hash --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ip_hash_keeps_a_client_on_one_backend_across_connections() {
    let backends = backends(3).await;
    let config = Config::new()
        .algo(Algo::SourceIpHash)
        .backends_from(specs(&backends));
    let lb = start(config).await;

    for i in 0..6 {
        let ip = client(0, 20 + i);
        let home = pick_from(lb.addr, ip, &[]).await;
        // A new connection for each request...
        for _ in 0..5 {
            assert_eq!(pick_from(lb.addr, ip, &[]).await, home, "{ip}");
        }
        // ... and many requests on one connection.
        let mut conn = support::connect(Some(ip), lb.addr).await;
        for _ in 0..10 {
            let res = support::exchange(&mut conn, support::get_request(lb.addr, "/", &[])).await;
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(greeter(res.body()), home, "{ip}");
        }
    }
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ip_hash_moves_only_the_clients_of_a_removed_or_added_backend() {
    let backends = backends(10).await;
    let config = Config::new()
        .algo(Algo::SourceIpHash)
        .backends_from(specs(&backends));
    let lb = start(config).await;
    let clients: Vec<IpAddr> = (0..200).map(|i| client(1, i)).collect();

    let before = placements(&lb, &clients).await;
    let per_backend = tally(before.values());
    assert!(
        per_backend.len() >= 8,
        "200 clients spread: {per_backend:?}"
    );

    // Remove the busiest backend: exactly its clients move, nobody else.
    let (removed, &removed_clients) = per_backend.iter().max_by_key(|(_, n)| **n).unwrap();
    let removed = removed.clone();
    let removed_handle = backends.iter().find(|b| name(b) == removed).unwrap();
    assert!(lb.registry.deregister(spec(removed_handle, 1).address()));
    let mut names: Vec<String> = backends
        .iter()
        .map(name)
        .filter(|n| *n != removed)
        .collect();
    wait_for_set(&lb, &names).await;

    let after_removal = placements(&lb, &clients).await;
    let mut moved = 0;
    for ip in &clients {
        if before[ip] == removed {
            assert_ne!(after_removal[ip], removed);
            moved += 1;
        } else {
            assert_eq!(
                after_removal[ip], before[ip],
                "{ip} moved, not a client of {removed}"
            );
        }
    }
    assert_eq!(moved, removed_clients);

    // Add a new backend: clients move only to it, about 1/10 of them.
    let added = backend().await;
    lb.registry.register(spec(&added, 1).address().clone(), 1);
    names.push(name(&added));
    wait_for_set(&lb, &names).await;

    let after_adding = placements(&lb, &clients).await;
    let mut taken = 0;
    for ip in &clients {
        if after_adding[ip] != after_removal[ip] {
            assert_eq!(
                after_adding[ip],
                name(&added),
                "{ip} moved between old backends"
            );
            taken += 1;
        }
    }
    // 200 / 10 = 20 expected; a ring of 40 points per backend keeps it well within this.
    assert!(
        (2..=60).contains(&taken),
        "the new backend took {taken} of 200 clients"
    );
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ip_hash_ignores_a_spoofed_forwarded_for() {
    let backends = backends(5).await;
    let config = Config::new()
        .algo(Algo::SourceIpHash)
        .backends_from(specs(&backends));
    let lb = start(config).await;
    let ip = client(2, 0);

    let home = pick_from(lb.addr, ip, &[]).await;
    for i in 0..40 {
        let xff = format!("10.0.{i}.{}", i * 3 + 1);
        let got = pick_from(lb.addr, ip, &[("x-forwarded-for", &xff)]).await;
        assert_eq!(got, home, "X-Forwarded-For: {xff} chose the backend");
    }
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ip_hash_follows_forwarded_for_from_trusted_proxies() {
    let backends = backends(5).await;
    let config = Config::new()
        .algo(Algo::SourceIpHash)
        .client_ip(ClientIp::trusting(["127.0.0.0/8".parse().unwrap()]))
        .backends_from(specs(&backends));
    let lb = start(config).await;
    let (proxy_a, proxy_b) = (client(2, 10), client(2, 11));

    let mut by_client = HashMap::new();
    for i in 0..40 {
        let xff = format!("10.0.{i}.{}", i * 3 + 1);
        let got = pick_from(lb.addr, proxy_a, &[("x-forwarded-for", &xff)]).await;
        by_client.insert(xff, got);
    }
    let spread = tally(by_client.values());
    assert!(
        spread.len() >= 3,
        "40 forwarded clients over 5 backends: {spread:?}"
    );
    // The header decides, not the proxy it came through; the proxy's own address is skipped
    // as trusted when it is in the chain.
    for (xff, home) in &by_client {
        let got = pick_from(lb.addr, proxy_b, &[("x-forwarded-for", xff)]).await;
        assert_eq!(got, *home, "{xff} via another proxy");
        let chain = format!("{xff}, {proxy_a}");
        let got = pick_from(lb.addr, proxy_b, &[("x-forwarded-for", &chain)]).await;
        assert_eq!(got, *home, "{chain}");
    }
    lb.stop().await;
}

// ---- Least connections and power of two choices ----------------------------------------------

/// A request body that stays open until its sender is dropped.
struct Held(mpsc::Receiver<Bytes>);

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// A long request: an upload whose body stays open (and the request in flight at the
/// balancer) until the returned sender is dropped. The task answers the response.
async fn long_request(lb: &Lb) -> (mpsc::Sender<Bytes>, JoinHandle<http::Response<Bytes>>) {
    let (tx, rx) = mpsc::channel(1);
    let mut conn = support::connect::<Held>(None, lb.addr).await;
    let req = Request::builder()
        .method(Method::POST)
        .uri("/upload")
        .header(http::header::HOST, lb.addr.to_string())
        .body(Held(rx))
        .unwrap();
    let task = tokio::spawn(async move { support::exchange(&mut conn, req).await });
    tx.send(Bytes::from_static(b"part")).await.unwrap();
    (tx, task)
}

/// The backends with requests in flight.
fn busy(lb: &Lb) -> Vec<String> {
    lb.in_flight()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, _)| name)
        .collect()
}

/// `n` short requests one after the other, each once the previous one has left the balancer
/// (so that only the long requests are in flight when each is picked).
async fn short_requests(lb: &Lb, n: usize, long: usize) -> Vec<String> {
    let mut picks = Vec::with_capacity(n);
    for _ in 0..n {
        picks.push(lb.pick().await.expect("a backend answers"));
        settle(lb, long).await;
    }
    picks
}

/// Ends the long requests; each was answered in full.
async fn finish(long: Vec<(mpsc::Sender<Bytes>, JoinHandle<http::Response<Bytes>>)>) {
    for (tx, task) in long {
        drop(tx);
        let res = task.await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.body(), "received 4 bytes\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_sends_nothing_to_backends_busy_with_long_requests() {
    let backends = backends(3).await;
    let config = Config::new()
        .algo(Algo::LeastConn)
        .backends_from(specs(&backends));
    let lb = start(config).await;

    // Two long requests take two different backends.
    let mut long = Vec::new();
    for n in 1..=2 {
        long.push(long_request(&lb).await);
        settle(&lb, n).await;
    }
    let occupied = busy(&lb);
    assert_eq!(occupied.len(), 2, "{:?}", lb.in_flight());

    // Every short request goes to the third.
    let picks = short_requests(&lb, 20, 2).await;
    let free: Vec<String> = backends
        .iter()
        .map(name)
        .filter(|n| !occupied.contains(n))
        .collect();
    assert_eq!(picks, vec![free[0].clone(); 20], "busy: {occupied:?}");

    // Once they end, load evens out again: the next three requests go one to each.
    finish(long).await;
    settle(&lb, 0).await;
    let mut next = short_requests(&lb, 3, 0).await;
    next.sort();
    let mut all: Vec<String> = backends.iter().map(name).collect();
    all.sort();
    assert_eq!(next, all);
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_of_two_choices_sends_nothing_to_a_busy_backend() {
    let backends = backends(3).await;
    let config = Config::new()
        .algo(Algo::PowerOfTwoChoices)
        .seed(11)
        .backends_from(specs(&backends));
    let lb = start(config).await;

    let long = vec![long_request(&lb).await];
    settle(&lb, 1).await;
    let occupied = busy(&lb);
    assert_eq!(occupied.len(), 1);

    // Any two distinct choices include an idle backend, which always wins.
    let picks = short_requests(&lb, 30, 1).await;
    let counts = tally(&picks);
    assert!(!counts.contains_key(&occupied[0]), "{counts:?}");
    assert_eq!(counts.len(), 2, "both idle backends take some: {counts:?}");
    finish(long).await;
    lb.stop().await;
}

// ---- Least time ------------------------------------------------------------------------------

/// A server that greets like `backend_server` (and answers `/health` at once), but only after
/// `delay`. Dropping the handle stops it.
async fn slow_backend(delay: Duration) -> (SocketAddr, AbortOnDrop) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hello = Bytes::from(format!("Hello from Rust server at {addr}\n"));
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let hello = hello.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let hello = hello.clone();
                async move {
                    if req.uri().path() != "/health" {
                        tokio::time::sleep(delay).await;
                    }
                    Ok::<_, Infallible>(http::Response::new(Full::new(hello)))
                }
            });
            connections.spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, AbortOnDrop(task))
}

/// Aborts the task when dropped, with everything it owns.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `n` requests from `concurrency` clients at once, each one after the other: the backend that
/// answered each.
async fn concurrent_picks(lb: &Lb, n: usize, concurrency: usize) -> Vec<String> {
    let mut clients = JoinSet::new();
    for _ in 0..concurrency {
        let client = lb.client.clone();
        let url = lb.url("/");
        let each = n / concurrency;
        clients.spawn(async move {
            let mut picks = Vec::with_capacity(each);
            for _ in 0..each {
                let reply = support::send(&client, Method::GET, &url, None, Bytes::new()).await;
                assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
                picks.push(greeter(reply.body.as_bytes()));
            }
            picks
        });
    }
    let mut picks = Vec::with_capacity(n);
    while let Some(some) = clients.join_next().await {
        picks.extend(some.expect("a client task does not panic"));
    }
    picks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_time_gives_a_slow_backend_a_small_share() {
    let fast = backends(2).await;
    let (slow, _slow) = slow_backend(Duration::from_millis(100)).await;
    let slow_spec = BackendSpec::new(&format!("http://{slow}"), 1).unwrap();
    let config = Config::new()
        .algo(Algo::LeastTime)
        .seed(5)
        .backends_from(specs(&fast))
        .backend(slow_spec);
    let lb = start(config).await;

    let picks = concurrent_picks(&lb, 300, 4).await;
    assert_eq!(picks.len(), 300);
    let counts = tally(&picks);
    let slow_share = counts.get(&slow.to_string()).copied().unwrap_or(0);
    // A fair share would be 100; the slow backend gets a small fraction of it, and less than
    // either fast one.
    assert!(slow_share < 30, "{counts:?}");
    for f in &fast {
        let share = counts.get(&name(f)).copied().unwrap_or(0);
        assert!(share > slow_share, "{counts:?}");
    }
    lb.stop().await;
}

// ---- Random ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_gives_every_backend_a_share() {
    let backends = backends(3).await;
    let config = Config::new()
        .algo(Algo::Random)
        .seed(3)
        .backends_from(specs(&backends));
    let lb = start(config).await;

    let picks = lb.picks(300).await;
    let counts = tally(&picks);
    assert_eq!(counts.len(), 3, "{counts:?}");
    // 100 each expected (standard deviation about 8).
    for (backend, n) in &counts {
        assert!((50..=150).contains(n), "{backend}: {counts:?}");
    }
    lb.stop().await;
}

/// Weights hold for random too: 4:1 gives the heavy one about four fifths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_follows_weights() {
    let (heavy, light) = (backend().await, backend().await);
    let config = Config::new()
        .algo(Algo::Random)
        .seed(9)
        .backends_from([spec(&heavy, 4), spec(&light, 1)]);
    let lb = start(config).await;

    let counts = tally(&lb.picks(300).await);
    // 240 expected (standard deviation about 7).
    let heavy_share = counts.get(&name(&heavy)).copied().unwrap_or(0);
    assert!((200..=280).contains(&heavy_share), "{counts:?}");
    lb.stop().await;
}
