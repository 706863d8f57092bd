use std::hash::Hash;

use tower::Layer;
use tower::discover::Discover;

use super::service::{Balance, LoadBalance};
use crate::algo::{AlgoPick, StickyCookie, StickyKey};
use crate::client_ip::ClientIp;
use crate::weight::Weight;
use crate::{Algo, BoxError};

/// Builds a [`LoadBalance`] over a [`Discover`]. See the [module docs](super).
///
/// ```
/// use std::convert::Infallible;
/// use tower::{discover::ServiceList, service_fn, ServiceBuilder};
/// use tower_lb::{Algo, LoadBalanceLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let backends = ServiceList::new(vec![service_fn(|_: http::Request<String>| async {
///     Ok::<_, Infallible>(http::Response::new(String::from("hi")))
/// })]);
/// let lb = ServiceBuilder::new()
///     .layer(LoadBalanceLayer::new(Algo::LeastConn))
///     .service(backends);
/// # let _ = lb;
/// # }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct LoadBalanceLayer {
    algo: Algo,
    client_ip: ClientIp,
    seed: Option<u64>,
    key: Option<StickyKey>,
    hash_balance_factor: Option<u32>,
    sticky_cookie: Option<StickyCookie>,
}

impl LoadBalanceLayer {
    /// A layer balancing with `algo`, identifying clients by their TCP peer address.
    pub const fn new(algo: Algo) -> Self {
        Self {
            algo,
            client_ip: ClientIp::peer(),
            seed: None,
            key: None,
            hash_balance_factor: None,
            sticky_cookie: None,
        }
    }

    /// What tells clients apart for `SIH`, `CHB` and `SRR`: the client IP (the default), a
    /// header, a cookie or the path; see [`AlgoPick::key`].
    pub fn key(mut self, key: StickyKey) -> Self {
        self.key = Some(key);
        self
    }

    /// `CHB`'s balance factor, in percent; see [`AlgoPick::hash_balance_factor`].
    pub fn hash_balance_factor(mut self, percent: u32) -> Self {
        self.hash_balance_factor = Some(percent);
        self
    }

    /// Sets and follows a sticky cookie naming the backend; see [`AlgoPick::sticky_cookie`].
    pub fn sticky_cookie(mut self, cookie: StickyCookie) -> Self {
        self.sticky_cookie = Some(cookie);
        self
    }

    /// How to find a client's IP for [`Algo::SourceIpHash`] and [`Algo::StickyRoundRobin`].
    pub fn client_ip(mut self, client_ip: ClientIp) -> Self {
        self.client_ip = client_ip;
        self
    }

    /// Seeds the random choices of `PTC`, `LT` and `Random`, for reproducible runs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The algorithm.
    pub fn algo(&self) -> Algo {
        self.algo
    }

    fn picker(&self) -> AlgoPick {
        let mut picker = AlgoPick::new(self.algo, self.client_ip.clone());
        if let Some(key) = &self.key {
            picker = picker.key(key.clone());
        }
        if let Some(percent) = self.hash_balance_factor {
            picker = picker.hash_balance_factor(percent);
        }
        if let Some(cookie) = &self.sticky_cookie {
            picker = picker.sticky_cookie(cookie.clone());
        }
        match self.seed {
            Some(seed) => picker.seeded(seed),
            None => picker,
        }
    }
}

impl<D> Layer<D> for LoadBalanceLayer
where
    D: Discover + Send + 'static,
    D::Key: Hash + Eq + Clone + Weight + Send + Sync + 'static,
    D::Service: Clone + Send + Sync + 'static,
    D::Error: Into<BoxError>,
{
    type Service = LoadBalance<D>;

    fn layer(&self, discover: D) -> Self::Service {
        Balance::with_picker(discover, self.picker())
    }
}
