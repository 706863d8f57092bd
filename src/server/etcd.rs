//! The server's etcd link, with [`Config::etcd`](super::Config::etcd): its registry follows
//! the prefix, and its admin API writes there.

use std::io;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use super::Backend;
use super::config::EtcdConfig;
use crate::discover::{EtcdRegistrations, EtcdSync};
use crate::{BackendAddr, Registry};

/// How long connecting to an etcd endpoint may take, and how often an idle connection is
/// pinged (and how long the answer may take) so that a dead etcd is noticed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts following `etcd.prefix` into `registry`, and the handle registrations go through
/// (writes time out after `timeout`). etcd need not be up: the client connects lazily and the
/// registry fills once etcd answers.
pub(super) async fn connect(
    etcd: &EtcdConfig,
    registry: &Registry<BackendAddr, Backend>,
    timeout: Duration,
) -> io::Result<(EtcdSync, EtcdRegistrations)> {
    let options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_keep_alive(CONNECT_TIMEOUT, CONNECT_TIMEOUT)
        .with_keep_alive_while_idle(true);
    let client = Client::connect(&etcd.endpoints, Some(options))
        .await
        .map_err(|e| io::Error::other(format!("cannot use etcd at {:?}: {e}", etcd.endpoints)))?;
    tracing::info!(endpoints = ?etcd.endpoints, prefix = %etcd.prefix, lease_ttl = ?etcd.lease_ttl, "backends from etcd");
    let sync = EtcdSync::spawn(client.clone(), etcd.prefix.clone(), registry.clone());
    let mut registrations = EtcdRegistrations::new(client, etcd.prefix.clone()).timeout(timeout);
    if let Some(ttl) = etcd.lease_ttl {
        registrations = registrations.lease_ttl(ttl);
    }
    Ok((sync, registrations))
}
