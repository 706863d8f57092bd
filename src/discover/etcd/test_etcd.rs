//! A real etcd for the unit tests: Debian's `/usr/bin/etcd` (package `etcd-server`) on
//! loopback ports, its data in a fresh folder under the system's temporary folder.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use etcd_client::Client;

pub(super) struct TestEtcd {
    child: Child,
    dir: PathBuf,
    pub(super) client: Client,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

impl TestEtcd {
    pub(super) async fn start() -> Self {
        const ETCD: &str = "/usr/bin/etcd";
        assert!(
            std::path::Path::new(ETCD).exists(),
            "{ETCD} is missing: install Debian's etcd-server (apt-get install etcd-server)"
        );
        let (client_port, peer_port) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!(
            "tower-lb-etcd-{}-{client_port}",
            std::process::id()
        ));
        let (client, peer) = (
            format!("http://127.0.0.1:{client_port}"),
            format!("http://127.0.0.1:{peer_port}"),
        );
        let child = Command::new(ETCD)
            .arg("--name=unit")
            .arg(format!("--data-dir={}", dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=unit={peer}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        let mut client = Client::connect([client], None).await.expect("etcd client");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while client.status().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "etcd did not start within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { child, dir, client }
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
