//! Sticky cookies (insert mode) and bounded-load hashing through the standalone balancer, end
//! to end: two in-process `Server`s over the same `backend_server` backends registered in
//! different orders, and a client that keeps the cookie it is given (a cookie jar by hand) and
//! changes its source address between requests.

mod support;

use std::net::{IpAddr, Ipv4Addr};

use http::StatusCode;
use http::header::SET_COOKIE;
use support::{backends, connect, exchange, get_request, greeter, spec, start};
use tower_lb::Algo;
use tower_lb::algo::{StickyCookie, StickyKey};
use tower_lb::server::Config;

fn client(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 31, 0, i + 2))
}

/// `GET /` from `from` to `to` with these headers: the backend's greeting and the response's
/// `Set-Cookie`, if any.
async fn ask(
    to: std::net::SocketAddr,
    from: IpAddr,
    headers: &[(&str, &str)],
) -> (String, Option<String>) {
    let mut sender = connect(Some(from), to).await;
    let res = exchange(&mut sender, get_request(to, "/", headers)).await;
    assert_eq!(res.status(), StatusCode::OK, "{res:?}");
    let set = res
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned());
    (greeter(res.body()), set)
}

#[tokio::test]
async fn a_cookie_from_one_balancer_keeps_the_client_on_its_backend_through_another() {
    let fleet = backends(4).await;
    let cookie = StickyCookie::new("srv").unwrap().secret("fleet secret");
    let config = |order: &[usize]| {
        let mut config = Config::new()
            .algo(Algo::SourceIpHash)
            .sticky_cookie(Some(cookie.clone()));
        for &i in order {
            config = config.backend(spec(&fleet[i], 1));
        }
        config
    };
    let a = start(config(&[0, 1, 2, 3])).await;
    let b = start(config(&[3, 1, 0, 2])).await;

    let mut homes = std::collections::BTreeSet::new();
    for c in 0..12 {
        // The first answer sets the cookie...
        let (home, set) = ask(a.addr, client(c), &[]).await;
        let set = set.expect("the first response sets the cookie");
        assert!(
            set.starts_with("srv=") && set.ends_with("; Path=/; HttpOnly"),
            "{set}"
        );
        let jar = set.split(';').next().unwrap().to_owned();
        homes.insert(home.clone());
        // ...and wherever the client comes from next, through either balancer, it is home.
        for (n, lb) in [&a, &b, &a, &b].into_iter().enumerate() {
            let from = client(100 + c * 4 + n as u8);
            let cookies = format!("theme=dark; {jar}");
            let (to, set) = ask(lb.addr, from, &[("cookie", &cookies)]).await;
            assert_eq!(to, home, "client {c} from {from}");
            assert_eq!(set, None, "a request naming its backend gets no new cookie");
        }
    }
    assert!(homes.len() > 1, "clients spread: {homes:?}");

    // A forged value names no backend: the algorithm picks, and the answer sets a real one.
    let (to, set) = ask(b.addr, client(200), &[("cookie", "srv=0123456789abcdef")]).await;
    let set = set.expect("a forged cookie is replaced");
    let (again, none) = ask(
        a.addr,
        client(201),
        &[("cookie", set.split(';').next().unwrap())],
    )
    .await;
    assert_eq!((again, none), (to, None));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn bounded_load_hashing_keeps_a_header_key_on_one_backend_on_every_balancer() {
    let fleet = backends(3).await;
    let config = |order: &[usize]| {
        let mut config = Config::new()
            .algo(Algo::BoundedLoadHash)
            .hash_key("header:x-tenant".parse::<StickyKey>().unwrap());
        for &i in order {
            config = config.backend(spec(&fleet[i], 1));
        }
        config
    };
    let a = start(config(&[0, 1, 2])).await;
    let b = start(config(&[2, 0, 1])).await;
    let mut homes = std::collections::BTreeSet::new();
    for tenant in 0..10 {
        let tenant = format!("tenant-{tenant}");
        // One request at a time: every backend is under its cap, so the key stays home.
        let (home, _) = ask(a.addr, client(1), &[("x-tenant", &tenant)]).await;
        for (n, lb) in [&b, &a, &b].into_iter().enumerate() {
            let (to, _) = ask(lb.addr, client(2 + n as u8), &[("x-tenant", &tenant)]).await;
            assert_eq!(to, home, "{tenant}");
        }
        homes.insert(home);
    }
    assert!(homes.len() > 1, "tenants spread: {homes:?}");
    a.stop().await;
    b.stop().await;
}
