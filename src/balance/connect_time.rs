//! [`ConnectTime`]: how long a response waited for its backend connection.

use std::time::Duration;

/// A response extension: the time the backend's service spent opening a new connection before
/// it could send the request (TCP, TLS, the HTTP handshake).
///
/// A balancer leaves it out of the response time it gives a latency-aware picker
/// ([`LeastTime`](crate::algo::LeastTime)): a pool pays it once per connection, so the first
/// request on each new connection would otherwise look several times slower than the backend
/// is, and one such sample could keep a fast backend out of the traffic until its estimate
/// decays. The response-time histograms still count it: they show what clients waited.
/// `proxy::HttpBackend` (feature `proxy`) adds it to every response that opened a
/// connection; a backend that fails to connect is still counted as a failure.
///
/// ```
/// use std::time::Duration;
/// use tower_lb::balance::ConnectTime;
///
/// let mut res = http::Response::new(());
/// res.extensions_mut().insert(ConnectTime(Duration::from_millis(3)));
/// assert_eq!(res.extensions().get::<ConnectTime>(), Some(&ConnectTime(Duration::from_millis(3))));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectTime(pub Duration);
