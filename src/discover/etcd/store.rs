//! [`EtcdRegistrations`]: registrations written to etcd, optionally under a lease.

use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use etcd_client::{Client, GetOptions, PutOptions};
use tokio::task::JoinHandle;

use super::error::{EtcdError, within};
use super::sync::EtcdSync;
use super::value;
use crate::addr::BackendAddr;

/// Writes registrations as keys under an etcd prefix, where every balancer following the
/// prefix ([`EtcdSync`], [`EtcdDiscover`](super::EtcdDiscover)) sees them.
/// See the [module docs](super#registrations-and-leases).
///
/// A backend's key is the prefix followed by its normalised address
/// (`/lb/backends/http://10.0.0.7:8080`). Clones share the client and the lease.
#[derive(Clone)]
#[must_use]
pub struct EtcdRegistrations {
    client: Client,
    prefix: String,
    timeout: Duration,
    lease: Option<Arc<Lease>>,
}

impl EtcdRegistrations {
    /// How long a write may take before it counts as failed, by default.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// Writes under `prefix` with `client`, without a lease: keys stay until deleted.
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
            timeout: Self::DEFAULT_TIMEOUT,
            lease: None,
        }
    }

    /// How long a write may take (default [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT)).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Attaches the keys it writes to a lease of `ttl` (whole seconds, at least 1) that this
    /// handle keeps alive: when the process dies, etcd deletes them `ttl` later.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease = Some(Arc::new(Lease {
            ttl: i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX),
            state: Mutex::new(LeaseState::default()),
        }));
        self
    }

    /// The key of `address`.
    pub fn key(&self, address: &BackendAddr) -> String {
        format!("{}{address}", self.prefix)
    }

    /// Writes `address` with `weight`; returns once etcd has acknowledged it.
    pub async fn register(&self, address: &BackendAddr, weight: u32) -> Result<(), EtcdError> {
        let mut options = PutOptions::new();
        if let Some(lease) = &self.lease {
            options = options.with_lease(self.lease_id(lease).await?);
        }
        let mut client = self.client.clone();
        within(
            self.timeout,
            client.put(
                self.key(address),
                value::encode(address, weight),
                Some(options),
            ),
        )
        .await?;
        Ok(())
    }

    /// Deletes every key under the prefix that names `address` (whatever its key); returns
    /// whether there was one, once etcd has acknowledged the deletes.
    pub async fn deregister(&self, address: &BackendAddr) -> Result<bool, EtcdError> {
        let mut client = self.client.clone();
        let listed = within(
            self.timeout,
            client.get(self.prefix.as_str(), Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let mut found = false;
        for kv in listed.kvs() {
            if value::parse(kv.value()).is_ok_and(|(a, _)| &a == address) {
                within(self.timeout, client.delete(kv.key(), None)).await?;
                found = true;
            }
        }
        Ok(found)
    }

    /// The live lease to attach keys to, granted (and kept alive) at the first need.
    async fn lease_id(&self, lease: &Arc<Lease>) -> Result<i64, EtcdError> {
        if let Some(id) = lease.current() {
            return Ok(id);
        }
        let mut client = self.client.clone();
        let granted = within(self.timeout, client.lease_grant(lease.ttl, None)).await?;
        let id = granted.id();
        let mut state = lease.lock();
        if let Some(id) = state.id {
            // Another registration granted one meanwhile: use it (this one expires unused).
            return Ok(id);
        }
        state.id = Some(id);
        state.keeper = Some(tokio::spawn(keep_alive(
            self.client.clone(),
            id,
            lease.ttl,
            Arc::downgrade(lease),
        )));
        tracing::info!(
            lease = id,
            ttl_secs = lease.ttl,
            "etcd lease granted for registrations"
        );
        Ok(id)
    }
}

impl fmt::Debug for EtcdRegistrations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdRegistrations")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("lease_ttl_secs", &self.lease.as_ref().map(|l| l.ttl))
            .field("lease", &self.lease.as_ref().and_then(|l| l.current()))
            .finish()
    }
}

struct Lease {
    ttl: i64,
    state: Mutex<LeaseState>,
}

#[derive(Default)]
struct LeaseState {
    id: Option<i64>,
    keeper: Option<JoinHandle<()>>,
}

impl Lease {
    fn lock(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn current(&self) -> Option<i64> {
        self.lock().id
    }

    /// Forgets lease `id` (it expired): the next registration grants a new one.
    fn expired(&self, id: i64) {
        let mut state = self.lock();
        if state.id == Some(id) {
            state.id = None;
            state.keeper = None;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(keeper) = self.lock().keeper.take() {
            keeper.abort();
        }
    }
}

/// Renews lease `id` every third of its TTL until etcd says it is gone, reconnecting with
/// backoff when the stream fails. Ends when the last handle is dropped.
async fn keep_alive(mut client: Client, id: i64, ttl: i64, lease: Weak<Lease>) {
    let period = Duration::from_secs(u64::try_from(ttl).unwrap_or(1)) / 3;
    let mut wait = EtcdSync::BACKOFF_MIN;
    loop {
        let mut renewed = false;
        let result: Result<bool, etcd_client::Error> = async {
            let (mut keeper, mut responses) = client.lease_keep_alive(id).await?;
            loop {
                keeper.keep_alive().await?;
                match responses.message().await? {
                    Some(response) if response.ttl() > 0 => {
                        renewed = true;
                        tokio::time::sleep(period).await;
                    }
                    // etcd no longer knows the lease: it expired.
                    Some(_) => return Ok(false),
                    None => {
                        return Err(etcd_client::Error::LeaseKeepAliveError(
                            "the keep-alive stream ended".into(),
                        ));
                    }
                }
            }
        }
        .await;
        match result {
            Ok(_) => {
                tracing::warn!(
                    lease = id,
                    "etcd lease expired: the backends registered through it were deleted"
                );
                if let Some(lease) = lease.upgrade() {
                    lease.expired(id);
                }
                return;
            }
            Err(error) => {
                if renewed {
                    wait = EtcdSync::BACKOFF_MIN;
                }
                tracing::warn!(lease = id, %error, retry_in = ?wait, "cannot keep the etcd lease alive");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(EtcdSync::BACKOFF_MAX);
            }
        }
    }
}
