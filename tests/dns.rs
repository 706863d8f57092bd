//! DNS discovery against a real DNS server: Debian's `dnsmasq` (package `dnsmasq-base`) on
//! loopback, serving records from a hosts file the tests rewrite, and real backends on
//! 127.0.0.2, 127.0.0.3 and 127.0.0.4 (loopback addresses on Linux).

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;
use tower_lb::discover::dns::{Dns, DnsTarget};
use tower_lb::server::Config;

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// A `dnsmasq` on 127.0.0.1 and a free port, answering from `hosts` (TTL 1 s), plus the given
/// extra arguments (`--srv-host=...`); stopped when dropped.
struct DnsServer {
    child: Option<Child>,
    addr: SocketAddr,
    hosts: PathBuf,
    extra: Vec<String>,
}

impl DnsServer {
    /// Starts it on a port free for both UDP and TCP (dnsmasq listens on both). The port is
    /// only known free when it is picked: a connection another test opens meanwhile may take
    /// it as its local TCP port, and dnsmasq then exits at once (`Address already in use`).
    /// It then starts again on another port.
    fn start(dir: &Path, hosts: &str, extra: &[String]) -> Self {
        assert!(
            Path::new(DNSMASQ).exists(),
            "{DNSMASQ} is missing: install Debian's dnsmasq-base (apt-get install dnsmasq-base)"
        );
        let hosts_file = dir.join("hosts");
        std::fs::write(&hosts_file, hosts).unwrap();
        let mut server = Self {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            hosts: hosts_file,
            extra: extra.to_vec(),
        };
        for _ in 0..20 {
            server.addr.set_port(free_udp_and_tcp_port());
            if server.spawn() {
                return server;
            }
        }
        panic!("dnsmasq exited at start on 20 ports in a row");
    }

    /// Starts dnsmasq on `addr`; false if it exited at once (its port was taken).
    fn spawn(&mut self) -> bool {
        let child = Command::new(DNSMASQ)
            .args([
                "--no-daemon".to_owned(),
                format!("--port={}", self.addr.port()),
                "--listen-address=127.0.0.1".to_owned(),
                "--bind-interfaces".to_owned(),
                "--no-resolv".to_owned(),
                "--no-hosts".to_owned(),
                format!("--addn-hosts={}", self.hosts.display()),
                "--local-ttl=1".to_owned(),
                "--pid-file=".to_owned(),
                "--user=root".to_owned(),
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq (Debian package dnsmasq-base)");
        self.child = Some(child);
        // dnsmasq binds its sockets, or exits, within milliseconds of starting.
        for _ in 0..30 {
            std::thread::sleep(Duration::from_millis(10));
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                eprintln!("dnsmasq on {} exited at start: {status}", self.addr);
                return false;
            }
        }
        true
    }

    /// Rewrites the hosts file and has dnsmasq read it again (SIGHUP).
    fn set_hosts(&self, hosts: &str) {
        std::fs::write(&self.hosts, hosts).unwrap();
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts it, on the same port, with other extra arguments.
    fn restart(&mut self, extra: &[String]) {
        self.stop();
        self.extra = extra.to_vec();
        assert!(
            self.spawn(),
            "dnsmasq could not start again on {}",
            self.addr
        );
    }

    /// Waits until it answers `name`.
    async fn ready(&self, target: &DnsTarget) {
        let dns = Dns::with_server(self.addr);
        eventually("dnsmasq answers", || {
            let dns = dns.clone();
            async move { dns.resolve(target).await.ok() }
        })
        .await;
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port on 127.0.0.1 that no UDP or TCP socket holds now: [`free_port`]'s, when it is free
/// for UDP too.
fn free_udp_and_tcp_port() -> u16 {
    loop {
        let port = free_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tower-lb-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Backends on 127.0.0.2, .3 and .4, all on one port.
async fn loopback_backends() -> Vec<backend_server::Handle> {
    for _ in 0..20 {
        let first = backend_on("127.0.0.2:0".parse().unwrap()).await;
        let port = first.addr().port();
        let rest: Vec<_> = [3, 4]
            .iter()
            .filter_map(|i| backend_server::bind(SocketAddr::from(([127, 0, 0, *i], port))).ok())
            .collect();
        if rest.len() == 2 {
            // The listeners just bound serve: no other test can take their port meanwhile.
            let mut all = vec![first];
            for listener in rest {
                all.push(backend_server::spawn_on(listener).expect("start a backend"));
            }
            return all;
        }
    }
    panic!("no port free on 127.0.0.2, .3 and .4");
}

/// The registered backends as `host:port` with their weights, sorted.
fn set(lb: &Lb) -> Vec<(String, u32)> {
    let mut set: Vec<_> = lb
        .registry
        .backends()
        .into_iter()
        .map(|(addr, w)| (format!("{}:{}", addr.host(), addr.port()), w))
        .collect();
    set.sort();
    set
}

async fn wait_for_set(lb: &Lb, what: &str, want: &[(String, u32)]) {
    eventually(what, || async { (set(lb) == want).then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_are_followed_drained_and_kept_when_dns_fails() {
    let dir = temp_dir("dns-a");
    let backends = loopback_backends().await;
    let [b2, b3, b4] = [name(&backends[0]), name(&backends[1]), name(&backends[2])];
    let port = backends[0].addr().port();
    let mut dns = DnsServer::start(&dir, "127.0.0.2 web.lb.test\n127.0.0.3 web.lb.test\n", &[]);
    let target = DnsTarget::host("web.lb.test", port);
    dns.ready(&target).await;

    let lb = start(
        Config::new()
            .dns(target)
            .dns_server(dns.addr)
            .dns_ttl(Duration::from_millis(200), Duration::from_secs(5)),
    )
    .await;
    wait_for_set(
        &lb,
        "both A records are backends",
        &[(b2.clone(), 1), (b3.clone(), 1)],
    )
    .await;
    let picks = lb.picks(4).await;
    assert!(picks.contains(&b2) && picks.contains(&b3), "{picks:?}");

    // A new record is served once the old answer's TTL (1 s) has passed.
    dns.set_hosts("127.0.0.2 web.lb.test\n127.0.0.3 web.lb.test\n127.0.0.4 web.lb.test\n");
    wait_for_set(
        &lb,
        "the new A record is a backend",
        &[(b2.clone(), 1), (b3.clone(), 1), (b4.clone(), 1)],
    )
    .await;
    eventually("the new backend takes requests", || async {
        lb.pick().await.ok().filter(|b| *b == b4)
    })
    .await;

    // A removed record is deregistered (drained, as `DELETE /register` does): no new requests.
    dns.set_hosts("127.0.0.3 web.lb.test\n127.0.0.4 web.lb.test\n");
    wait_for_set(
        &lb,
        "the removed record is gone",
        &[(b3.clone(), 1), (b4.clone(), 1)],
    )
    .await;
    let picks = lb.picks(6).await;
    assert!(!picks.contains(&b2), "{picks:?}");

    // The DNS server goes away: after several failed refreshes the set is the same.
    dns.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(set(&lb), [(b3.clone(), 1), (b4.clone(), 1)]);
    let picks = lb.picks(4).await;
    assert!(picks.iter().all(|p| *p == b3 || *p == b4), "{picks:?}");

    // And when it comes back, changes are followed again.
    // (Written before the start: a SIGHUP before dnsmasq's handler is in place would end it.)
    std::fs::write(&dns.hosts, "127.0.0.4 web.lb.test\n").unwrap();
    dns.restart(&[]);
    wait_for_set(
        &lb,
        "changes after the outage are followed",
        &[(b4.clone(), 1)],
    )
    .await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_weights_are_backend_weights() {
    let dir = temp_dir("dns-srv");
    let backends = loopback_backends().await;
    let [b2, b3] = [name(&backends[0]), name(&backends[1])];
    let port = backends[0].addr().port();
    let srv = |w2: u16, w3: u16| {
        vec![
            format!("--srv-host=_http._tcp.web.lb.test,web2.lb.test,{port},0,{w2}"),
            format!("--srv-host=_http._tcp.web.lb.test,web3.lb.test,{port},0,{w3}"),
            // A lower-priority (higher number) record is a fallback, not a backend.
            format!("--srv-host=_http._tcp.web.lb.test,web4.lb.test,{port},10,5"),
        ]
    };
    let hosts = "127.0.0.2 web2.lb.test\n127.0.0.3 web3.lb.test\n127.0.0.4 web4.lb.test\n";
    let mut dns = DnsServer::start(&dir, hosts, &srv(3, 1));
    let target = DnsTarget::srv("_http._tcp.web.lb.test");
    dns.ready(&target).await;

    let lb = start(
        Config::new()
            .algo(tower_lb::Algo::WeightedRoundRobin)
            .dns(target)
            .dns_server(dns.addr)
            .dns_ttl(Duration::from_millis(200), Duration::from_secs(5)),
    )
    .await;
    wait_for_set(
        &lb,
        "SRV records are backends",
        &[(b2.clone(), 3), (b3.clone(), 1)],
    )
    .await;
    let picks = lb.picks(8).await;
    assert_eq!(picks.iter().filter(|p| **p == b2).count(), 6, "{picks:?}");
    assert_eq!(picks.iter().filter(|p| **p == b3).count(), 2, "{picks:?}");

    // A weight changed in DNS is a weight change in the balancer.
    dns.restart(&srv(1, 4));
    wait_for_set(
        &lb,
        "SRV weights changed",
        &[(b2.clone(), 1), (b3.clone(), 4)],
    )
    .await;
    std::fs::remove_dir_all(&dir).unwrap();
}
