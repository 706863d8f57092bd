use std::convert::Infallible;

use tower::discover::ServiceList;
use tower::{Service, ServiceExt, service_fn};

use super::*;
use crate::Algo;

#[tokio::test]
async fn service_list_round_robin() {
    let backend = |n: usize| {
        service_fn(move |_: http::Request<()>| async move {
            Ok::<_, Infallible>(http::Response::new(n))
        })
    };
    let mut lb = LoadBalance::new(
        ServiceList::new(vec![backend(0), backend(1)]),
        Algo::RoundRobin,
    );
    let mut got = Vec::new();
    for _ in 0..4 {
        let res = lb
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await
            .unwrap();
        got.push(*res.body().get_ref());
    }
    assert_eq!(got, [0, 1, 0, 1]);
}
