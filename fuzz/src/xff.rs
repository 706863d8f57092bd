//! Invariants of `ClientIp::resolve`: the `xff` target.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};
use tower_lb::{ClientIp, IpNet};

/// The `xff` target: `ClientIp::resolve` over arbitrary `X-Forwarded-For` headers, peers and
/// trusted networks.
///
/// The input is text, one item a line (so seeds are readable):
///
/// ```text
/// 10.0.0.9                      <- the TCP peer (an IP address; other inputs are skipped)
/// 10.0.0.0/8 192.168.1.1        <- trusted networks or addresses, space-separated
/// 6.6.6.6, 1.2.3.4              <- each further line: one X-Forwarded-For header value
/// 10.1.1.1
/// ```
///
/// Invariants: never panics; the peer itself when it is not trusted (or nothing is); and
/// otherwise the documented rule: walking the header's entries from the right, skip trusted
/// proxies, answer the first other address, and stop at the first malformed entry (nothing
/// left of it can be believed), answering the peer.
pub fn xff(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n');
    let Some(peer) = lines
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .and_then(|l| l.trim().parse::<IpAddr>().ok())
    else {
        return;
    };
    let trusted: Vec<IpNet> = lines
        .next()
        .map(|l| {
            String::from_utf8_lossy(l)
                .split_whitespace()
                .filter_map(|n| {
                    n.parse::<IpNet>()
                        .ok()
                        .or_else(|| n.parse::<IpAddr>().ok().map(IpNet::from))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    for line in lines {
        // Only what could arrive on the wire: hyper hands over valid header values.
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append("x-forwarded-for", value);
        }
    }
    headers.append("x-other", HeaderValue::from_static("9.9.9.9"));

    // Trusting nobody, the header is ignored.
    assert_eq!(ClientIp::peer().resolve(peer, &headers), peer);
    assert_eq!(ClientIp::trusting([]).resolve(peer, &headers), peer);

    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&ip));
    let got = ClientIp::trusting(trusted.iter().copied()).resolve(peer, &headers);
    if !is_trusted(peer) {
        assert_eq!(got, peer, "an untrusted peer's header was believed");
        return;
    }
    let expected = expected(peer, &headers, is_trusted);
    assert!(
        expected.contains(&got),
        "resolved {got}, expected one of {expected:?}"
    );
}

/// The answers the rule in the `client_ip` docs allows, worked out independently of the
/// implementation: the entries of all header lines in order, each value split on `,`, walked
/// from the right; trusted proxies are skipped, the first other address is the client, and a
/// malformed entry (not an IP address, or not text) stops the walk at the peer.
///
/// An address sharing its line with bytes that are not text may also be refused (the peer
/// answered instead): an implementation may treat such a line as malformed as a whole.
fn expected(peer: IpAddr, headers: &HeaderMap, is_trusted: impl Fn(IpAddr) -> bool) -> Vec<IpAddr> {
    // (entry, whether its line is text)
    let mut entries: Vec<(Option<IpAddr>, bool)> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let text = value.to_str().is_ok();
        entries.extend(value.as_bytes().split(|&b| b == b',').map(|entry| {
            let ip = std::str::from_utf8(entry)
                .ok()
                .and_then(|e| e.trim().parse().ok());
            (ip, text)
        }));
    }
    for (entry, text) in entries.into_iter().rev() {
        match entry {
            Some(ip) if is_trusted(ip) => continue,
            Some(ip) if text => return vec![ip],
            Some(ip) => return vec![ip, peer],
            None => return vec![peer],
        }
    }
    vec![peer]
}
