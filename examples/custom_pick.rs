//! A balancing algorithm of your own: lowest weight first.
//!
//! Every request goes to the ready backend with the lowest weight; ties go to the one earlier in
//! the set. Run it with `cargo run --example custom_pick`; `cargo test` runs its test.

use std::convert::Infallible;
use std::sync::Arc;

use tower::{Service, ServiceExt, service_fn};
use tower_lb::algo::Pick;
use tower_lb::{Balance, BoxError, Endpoint, Registry, TrackedBody};

/// Picks the ready backend with the lowest weight; ties by position in the set.
#[derive(Debug)]
struct LowestWeightFirst;

impl<K: Send + Sync + 'static> Pick<K> for LowestWeightFirst {
    /// Positions in the set, lightest first: sorted once per change of the set.
    type Table = Vec<usize>;

    fn build(&self, endpoints: &[Arc<Endpoint<K>>]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..endpoints.len()).collect();
        order.sort_by_key(|&i| (endpoints[i].weight(), i));
        order
    }

    fn pick<B>(
        &self,
        order: &Vec<usize>,
        _endpoints: &[Arc<Endpoint<K>>],
        _req: &http::Request<B>,
        ready: &mut impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        order.iter().copied().find(|&i| ready(i))
    }
}

async fn run() -> Vec<String> {
    // Each backend answers with its name.
    let registry = Registry::new(|name: &&'static str| {
        let name = *name;
        service_fn(move |_: http::Request<()>| async move {
            Ok::<_, Infallible>(http::Response::new(name))
        })
    });
    registry.register("large", 10);
    registry.register("small", 1);
    registry.register("spare", 1);
    let mut lb = Balance::with_picker(registry.discover(), LowestWeightFirst);
    let mut log = vec![format!(
        "large=10 small=1 spare=1: {}",
        three(&mut lb).await
    )];

    // small and spare tie at weight 1, and small is earlier in the set. When it leaves, spare
    // is the lightest.
    registry.deregister(&"small");
    while lb.len() != 2 {
        tokio::task::yield_now().await;
    }
    log.push(format!(
        "small deregistered:       {}",
        three(&mut lb).await
    ));
    log
}

/// Sends three requests; the names of the backends that answered.
async fn three<S>(lb: &mut S) -> String
where
    S: Service<
            http::Request<()>,
            Response = http::Response<TrackedBody<&'static str>>,
            Error = BoxError,
        >,
{
    let mut names = Vec::new();
    for _ in 0..3 {
        let lb = lb.ready().await.unwrap();
        let res = lb.call(http::Request::new(())).await.unwrap();
        names.push(*res.body().get_ref());
    }
    names.join(" ")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    for line in run().await {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn lightest_ready_backend_takes_every_request() {
        assert_eq!(
            super::run().await,
            [
                "large=10 small=1 spare=1: small small small",
                "small deregistered:       spare spare spare",
            ]
        );
    }
}
