use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use http::header::{COOKIE, SET_COOKIE};
use tower::discover::ServiceList;
use tower::{Service, ServiceExt, service_fn};

use super::*;
use crate::algo::rng::Rng;
use crate::algo::{AlgoPick, Pick};
use crate::client_ip::PeerAddr;
use crate::{Algo, BackendAddr, ClientIp, LoadBalance};

#[test]
#[allow(deprecated)]
fn siphash_is_siphash_2_4() {
    use std::hash::{Hasher, SipHasher};
    for (k0, k1, m) in [
        (0u64, 0u64, 0u64),
        (
            0x0706_0504_0302_0100,
            0x0f0e_0d0c_0b0a_0908,
            0x0706_0504_0302_0100,
        ),
        (u64::MAX, 7, 0xdead_beef_cafe_f00d),
    ] {
        let mut reference = SipHasher::new_with_keys(k0, k1);
        reference.write(&m.to_le_bytes());
        assert_eq!(siphash24((k0, k1), m), reference.finish());
    }
    // The reference vector for 8 bytes 00..07 under the key 00..0f.
    assert_eq!(
        siphash24(
            (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908),
            0x0706_0504_0302_0100
        ),
        0x93f5_f579_9a93_2462
    );
}

fn addrs() -> Vec<BackendAddr> {
    (1..=6)
        .map(|i| format!("http://10.2.0.{i}:80{i}0").parse().unwrap())
        .collect()
}

fn endpoints(order: &[BackendAddr]) -> Vec<Arc<Endpoint<BackendAddr>>> {
    order
        .iter()
        .enumerate()
        .map(|(slot, a)| {
            let e = Arc::new(Endpoint::new(a.clone(), 1));
            e.stats().set_slot(slot);
            e
        })
        .collect()
}

fn request(ip: u32, cookie: Option<&str>) -> http::Request<()> {
    let mut req = http::Request::new(());
    req.extensions_mut().insert(PeerAddr(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::from(0xc633_6400 + ip)),
        40_000,
    )));
    if let Some(cookie) = cookie {
        req.headers_mut().insert(COOKIE, cookie.parse().unwrap());
    }
    req
}

/// One balancer instance: its picker, backends in its own order, and its table.
struct Instance {
    picker: AlgoPick,
    eps: Vec<Arc<Endpoint<BackendAddr>>>,
    table: crate::algo::AlgoTable,
}

impl Instance {
    fn new(algo: Algo, order: &[BackendAddr], cookie: &StickyCookie) -> Self {
        let picker = AlgoPick::new(algo, ClientIp::peer()).sticky_cookie(cookie.clone());
        let eps = endpoints(order);
        let table = picker.build(&eps);
        Self { picker, eps, table }
    }

    /// The backend a request goes to, and the cookie its response sets.
    fn serve(
        &self,
        req: &http::Request<()>,
        ready: impl Fn(&BackendAddr) -> bool,
    ) -> (BackendAddr, Option<String>) {
        let slot = self
            .picker
            .pick(&self.table, &self.eps, req, &mut |i| {
                ready(self.eps[i].key())
            })
            .unwrap();
        let set = Pick::<BackendAddr>::set_cookie(&self.picker, &self.table, req, slot);
        (
            self.eps[slot].key().clone(),
            set.map(|v| v.to_str().unwrap().to_owned()),
        )
    }
}

/// `NAME=VALUE` from a `Set-Cookie` value.
fn pair(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap()
}

#[test]
fn a_cookie_from_one_instance_sticks_on_another_with_backends_in_another_order() {
    let cookie = StickyCookie::new("srv").unwrap().secret("fleet secret");
    let rng = Rng::from_seed(3);
    for algo in [
        Algo::StickyRoundRobin,
        Algo::SourceIpHash,
        Algo::BoundedLoadHash,
    ] {
        let mut order = addrs();
        let a = Instance::new(algo, &order, &cookie);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let b = Instance::new(algo, &order, &cookie);
        for client in 0..30 {
            // First request on A: the algorithm picks and the response names the backend.
            let (backend, set) = a.serve(&request(client, None), |_| true);
            let set = set.expect("a response without the cookie sets it");
            assert!(set.ends_with("; Path=/; HttpOnly"), "{set}");
            assert_eq!(pair(&set), format!("srv={}", cookie.value_of(&backend)));
            // The client moves to another address and reaches B: same backend, no new cookie.
            let again = request(client + 1_000, Some(&format!("theme=dark; {}", pair(&set))));
            assert_eq!(b.serve(&again, |_| true), (backend.clone(), None), "{algo}");
            assert_eq!(a.serve(&again, |_| true), (backend, None), "{algo}");
        }
    }
}

#[test]
fn unknown_or_forged_values_fall_back_to_the_algorithm() {
    let cookie = StickyCookie::new("srv").unwrap();
    let one = Instance::new(Algo::SourceIpHash, &addrs(), &cookie);
    let (home, _) = one.serve(&request(5, None), |_| true);
    let removed: BackendAddr = "http://10.2.0.99:8990".parse().unwrap();
    for value in [
        "zzzzzzzzzzzzzzzz".to_owned(),
        "0123".to_owned(),
        "0000000000000000".to_owned(),
        cookie.value_of(&removed),
        // A value keyed with another secret names nothing here.
        StickyCookie::new("srv")
            .unwrap()
            .secret("other")
            .value_of(&addrs()[0]),
    ] {
        let (to, set) = one.serve(&request(5, Some(&format!("srv={value}"))), |_| true);
        assert_eq!(to, home, "{value}");
        assert_eq!(
            set.as_deref().map(pair),
            Some(&*format!("srv={}", cookie.value_of(&home)))
        );
    }
}

#[test]
fn a_named_backend_that_is_not_ready_is_replaced_and_the_cookie_rewritten() {
    let cookie = StickyCookie::new("srv").unwrap();
    let one = Instance::new(Algo::StickyRoundRobin, &addrs(), &cookie);
    let named = addrs()[2].clone();
    let req = request(1, Some(&format!("srv={}", cookie.value_of(&named))));
    assert_eq!(one.serve(&req, |_| true), (named.clone(), None));
    let (other, set) = one.serve(&req, |a| *a != named);
    assert_ne!(other, named);
    assert_eq!(
        set.as_deref().map(pair),
        Some(&*format!("srv={}", cookie.value_of(&other)))
    );
}

#[test]
fn values_are_opaque_and_keyed() {
    let addr: BackendAddr = "http://10.2.0.1:8010".parse().unwrap();
    let plain = StickyCookie::new("srv").unwrap();
    let keyed = plain.clone().secret("s");
    let value = plain.value_of(&addr);
    assert_eq!(value.len(), 16);
    assert!(value.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!value.contains("10.2"));
    assert_ne!(value, keyed.value_of(&addr));
    assert_eq!(
        keyed.value_of(&addr),
        StickyCookie::new("x").unwrap().secret("s").value_of(&addr)
    );
    assert!(!format!("{keyed:?}").contains(&format!("{:x}", keyed.key.0)));
    for bad in ["", "a b", "a;b", "a=b", "é"] {
        assert!(StickyCookie::new(bad).is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn the_balancer_sets_the_cookie_and_follows_it() {
    let backend = |n: usize| {
        service_fn(move |_: http::Request<()>| async move {
            Ok::<_, Infallible>(http::Response::new(n))
        })
    };
    let cookie = StickyCookie::new("srv").unwrap();
    let mut lb = LoadBalance::with_picker(
        ServiceList::new((0..4).map(backend).collect::<Vec<_>>()),
        AlgoPick::new(Algo::StickyRoundRobin, ClientIp::peer()).sticky_cookie(cookie.clone()),
    );
    let res = lb
        .ready()
        .await
        .unwrap()
        .call(request(1, None))
        .await
        .unwrap();
    let first = *res.body().get_ref();
    let set = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert_eq!(pair(&set), format!("srv={}", cookie.value_of(&first)));
    // Other peers carrying the cookie all land on that backend, without a new cookie.
    for client in 2..20 {
        let res = lb
            .ready()
            .await
            .unwrap()
            .call(request(client, Some(pair(&set))))
            .await
            .unwrap();
        assert_eq!(*res.body().get_ref(), first);
        assert!(res.headers().get(SET_COOKIE).is_none());
    }
}
