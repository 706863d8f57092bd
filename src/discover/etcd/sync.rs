//! The task that keeps a [`Registry`] equal to the backends under an etcd prefix.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use tokio::task::JoinHandle;

use super::error::{EtcdError, within};
use super::value;
use crate::addr::BackendAddr;
use crate::registry::Registry;

/// How long a load of the prefix may take before it counts as failed.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps a [`Registry`] equal to the backends under an etcd prefix, on a task of its own;
/// the task ends when this is dropped. See the [module docs](super).
///
/// It loads the prefix, reconciles the registry with it (registering new backends, updating
/// weights, deregistering the rest, which drains them), then watches the prefix from the
/// next revision and applies every change. When etcd fails (unreachable, stream closed) it
/// tries again after a backoff of [`BACKOFF_MIN`](Self::BACKOFF_MIN) doubling up to
/// [`BACKOFF_MAX`](Self::BACKOFF_MAX), keeping the registry as it was meanwhile; when the
/// revision it watches from has been compacted away, it loads the prefix again.
#[must_use = "the registry follows etcd only while the EtcdSync lives"]
pub struct EtcdSync {
    task: JoinHandle<()>,
    prefix: String,
}

impl EtcdSync {
    /// The first wait before trying etcd again.
    pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
    /// The longest wait before trying etcd again.
    pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

    /// Starts keeping `registry` equal to the backends under `prefix`. Must be called within a
    /// tokio runtime.
    ///
    /// The registry should have no other writer: backends registered in it by other means
    /// are deregistered at the next reconciliation.
    pub fn spawn<S>(
        client: Client,
        prefix: impl Into<String>,
        registry: Registry<BackendAddr, S>,
    ) -> Self
    where
        S: Send + 'static,
    {
        let prefix = prefix.into();
        let mirror = Mirror {
            client,
            prefix: prefix.clone(),
            registry,
            keys: HashMap::new(),
        };
        Self {
            task: tokio::spawn(mirror.run()),
            prefix,
        }
    }

    /// The prefix it follows.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Drop for EtcdSync {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for EtcdSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdSync")
            .field("prefix", &self.prefix)
            .field("running", &!self.task.is_finished())
            .finish()
    }
}

/// Why a watch ended.
enum WatchEnd {
    /// The revision to watch from is compacted away: load the prefix again.
    Compacted(i64),
    /// etcd failed: wait, then load again.
    Failed(EtcdError),
}

struct Mirror<S> {
    client: Client,
    prefix: String,
    registry: Registry<BackendAddr, S>,
    /// The backend each key under the prefix names; keys with a bad value are left out.
    keys: HashMap<Vec<u8>, (BackendAddr, u32)>,
}

impl<S> Mirror<S> {
    async fn run(mut self) {
        let mut backoff = Backoff::new(EtcdSync::BACKOFF_MIN, EtcdSync::BACKOFF_MAX);
        loop {
            let end = match self.load().await {
                Ok(revision) => {
                    backoff.reset();
                    self.watch(revision + 1).await
                }
                Err(error) => WatchEnd::Failed(error),
            };
            match end {
                WatchEnd::Compacted(compacted) => {
                    tracing::info!(prefix = %self.prefix, compacted, "etcd compacted the revision watched from; loading the prefix again");
                }
                WatchEnd::Failed(error) => {
                    let wait = backoff.next();
                    tracing::warn!(
                        prefix = %self.prefix,
                        %error,
                        retry_in = ?wait,
                        backends = self.registry.len(),
                        "etcd unavailable; keeping the last set of backends",
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Reads every key under the prefix and reconciles the registry with them; returns the
    /// revision read at.
    async fn load(&mut self) -> Result<i64, EtcdError> {
        let options = GetOptions::new().with_prefix();
        let response = within(
            LOAD_TIMEOUT,
            self.client.get(self.prefix.as_str(), Some(options)),
        )
        .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        self.keys.clear();
        for kv in response.kvs() {
            self.put(kv.key(), kv.value());
        }
        self.reconcile();
        tracing::debug!(prefix = %self.prefix, revision, backends = self.registry.len(), "etcd prefix loaded");
        Ok(revision)
    }

    /// Applies every change under the prefix from `revision` on, until the watch fails.
    async fn watch(&mut self, revision: i64) -> WatchEnd {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision);
        let mut stream = match self.client.watch(self.prefix.as_str(), Some(options)).await {
            Ok(stream) => stream,
            Err(error) => return WatchEnd::Failed(error.into()),
        };
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => {
                    return WatchEnd::Failed(
                        etcd_client::Error::WatchError("the watch stream ended".into()).into(),
                    );
                }
                Err(error) => return WatchEnd::Failed(error.into()),
            };
            if response.compact_revision() > 0 {
                return WatchEnd::Compacted(response.compact_revision());
            }
            if response.canceled() {
                return WatchEnd::Failed(
                    etcd_client::Error::WatchError(format!(
                        "etcd cancelled the watch: {}",
                        response.cancel_reason()
                    ))
                    .into(),
                );
            }
            if response.events().is_empty() {
                continue;
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                match event.event_type() {
                    EventType::Put => self.put(kv.key(), kv.value()),
                    EventType::Delete => {
                        self.keys.remove(kv.key());
                    }
                }
            }
            self.reconcile();
        }
    }

    /// Records the backend `key` names, or leaves the key out (and logs why) if its value
    /// is not a backend.
    fn put(&mut self, key: &[u8], value: &[u8]) {
        match value::parse(value) {
            Ok(backend) => {
                self.keys.insert(key.to_vec(), backend);
            }
            Err(reason) => {
                self.keys.remove(key);
                tracing::warn!(key = %String::from_utf8_lossy(key), %reason, "etcd key skipped: its value is not a backend");
            }
        }
    }

    /// Makes the registry hold exactly the backends of `keys`.
    fn reconcile(&self) {
        // Sorted, so that every instance registers a set in the same order.
        let mut wanted: HashMap<&BackendAddr, u32> = HashMap::new();
        for (address, weight) in self.keys.values() {
            // Two keys naming one backend: it takes the larger weight.
            let entry = wanted.entry(address).or_insert(*weight);
            *entry = (*entry).max(*weight);
        }
        let mut wanted: Vec<_> = wanted.into_iter().collect();
        wanted.sort_unstable_by_key(|(address, _)| address.to_string());
        reconcile(&self.registry, &wanted);
    }
}

/// Makes `registry` hold exactly `wanted`: deregisters (drains) the others, registers the new
/// ones and updates changed weights, in `wanted`'s order.
fn reconcile<S>(registry: &Registry<BackendAddr, S>, wanted: &[(&BackendAddr, u32)]) {
    let keep: std::collections::HashSet<&BackendAddr> = wanted.iter().map(|&(a, _)| a).collect();
    for (address, _) in registry.backends() {
        if !keep.contains(&address) && registry.deregister(&address) {
            tracing::info!(backend = %address, "backend removed from etcd: draining");
        }
    }
    for &(address, weight) in wanted {
        let outcome = registry.register(address.clone(), weight);
        if outcome != crate::Registration::Unchanged {
            tracing::info!(backend = %address, weight, ?outcome, "backend from etcd");
        }
    }
}

/// Exponential backoff between `min` and `max`.
#[derive(Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    fn next(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max_and_resets() {
        let mut backoff = Backoff::new(EtcdSync::BACKOFF_MIN, EtcdSync::BACKOFF_MAX);
        let waits: Vec<_> = (0..8).map(|_| backoff.next().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.next(), EtcdSync::BACKOFF_MIN);
    }

    #[test]
    fn reconcile_inserts_updates_and_removes() {
        let registry = Registry::new(|a: &BackendAddr| a.clone());
        let addr = |p: u16| -> BackendAddr { format!("http://127.0.0.1:{p}").parse().unwrap() };
        registry.register(addr(1), 1);
        registry.register(addr(2), 1);
        let (a1, a3) = (addr(1), addr(3));
        reconcile(&registry, &[(&a1, 4), (&a3, 2)]);
        assert_eq!(registry.backends(), vec![(addr(1), 4), (addr(3), 2)]);
    }

    fn addr(port: u16) -> BackendAddr {
        format!("http://127.0.0.1:{port}").parse().unwrap()
    }

    fn value(port: u16, weight: u32) -> String {
        value::encode(&addr(port), weight)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_compacted_watch_loads_again_and_reconciles_the_whole_set() {
        let etcd = super::super::test_etcd::TestEtcd::start().await;
        let mut client = etcd.client.clone();
        client.put("/p/a", value(1, 1), None).await.unwrap();
        client.put("/p/b", value(2, 1), None).await.unwrap();
        client.put("/other", value(9, 1), None).await.unwrap();
        let registry = Registry::new(|a: &BackendAddr| a.clone());
        let mut mirror = Mirror {
            client: client.clone(),
            prefix: "/p/".to_owned(),
            registry: registry.clone(),
            keys: HashMap::new(),
        };
        let revision = mirror.load().await.unwrap();
        assert_eq!(registry.backends(), vec![(addr(1), 1), (addr(2), 1)]);

        // While it is not watching: an insert, a removal and a weight change, then a
        // compaction past them.
        client.put("/p/c", value(3, 2), None).await.unwrap();
        client.delete("/p/a", None).await.unwrap();
        let last = client.put("/p/b", value(2, 3), None).await.unwrap();
        client
            .compact(last.header().unwrap().revision(), None)
            .await
            .unwrap();

        let end = mirror.watch(revision + 1).await;
        assert!(
            matches!(end, WatchEnd::Compacted(_)),
            "the watch was not compacted"
        );
        // Nothing applied yet: the last set stands.
        assert_eq!(registry.backends(), vec![(addr(1), 1), (addr(2), 1)]);

        let mut discover = registry.discover();
        mirror.load().await.unwrap();
        assert_eq!(registry.backends(), vec![(addr(2), 3), (addr(3), 2)]);
        let mut changes = Vec::new();
        while let Some(Some(Ok(change))) =
            futures_util::FutureExt::now_or_never(futures_util::StreamExt::next(&mut discover))
        {
            changes.push(match change {
                tower::discover::Change::Insert(k, _) => {
                    format!("insert {} {}", k.key(), crate::Weight::weight(&k))
                }
                tower::discover::Change::Remove(k) => format!("remove {}", k.key()),
            });
        }
        assert_eq!(
            changes,
            [
                // The replay of the set before the load.
                "insert http://127.0.0.1:1 1",
                "insert http://127.0.0.1:2 1",
                "remove http://127.0.0.1:1",
                "insert http://127.0.0.1:2 3",
                "insert http://127.0.0.1:3 2",
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_watch_applies_changes_and_skips_bad_values() {
        use futures_util::StreamExt;
        use tower::discover::Change;

        let etcd = super::super::test_etcd::TestEtcd::start().await;
        let mut client = etcd.client.clone();
        client.put("/lb/a", value(1, 1), None).await.unwrap();
        client.put("/lb/bad", "not json", None).await.unwrap();
        let mut discover = super::super::EtcdDiscover::new(client.clone(), "/lb/", Clone::clone);
        let mut next = async || match tokio::time::timeout(Duration::from_secs(5), discover.next())
            .await
            .expect("a change within 5 s")
        {
            Some(Ok(Change::Insert(k, _))) => {
                format!("insert {} {}", k.key(), crate::Weight::weight(&k))
            }
            Some(Ok(Change::Remove(k))) => format!("remove {}", k.key()),
            None => "end".to_owned(),
        };
        assert_eq!(next().await, "insert http://127.0.0.1:1 1");
        client.put("/lb/b", value(2, 4), None).await.unwrap();
        assert_eq!(next().await, "insert http://127.0.0.1:2 4");
        client.put("/lb/b", value(2, 5), None).await.unwrap();
        assert_eq!(next().await, "insert http://127.0.0.1:2 5");
        // A key whose value turns bad names no backend any more.
        client
            .put("/lb/a", r#"{"address": "ftp://x:1"}"#, None)
            .await
            .unwrap();
        assert_eq!(next().await, "remove http://127.0.0.1:1");
        client.delete("/lb/b", None).await.unwrap();
        assert_eq!(next().await, "remove http://127.0.0.1:2");
    }
}
