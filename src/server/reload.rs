//! Live reconfiguration: [`Reload`] applies a new [`Config`] to a running [`Server`](super::Server),
//! and the discovery sources (DNS, a backends file) that feed its registry.

use std::fmt;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::task::AbortHandle;
use tower::{Layer, ServiceBuilder};

use super::config::Config;
use super::conn::ClientTimeouts;
use super::service::{Balancer, Client, Routes};
use crate::admin::Admin;
#[cfg(feature = "dns")]
use crate::discover::dns::Dns;
use crate::discover::file::BackendsFile;
use crate::discover::{Reconcile, Update};
use crate::health::{Health, HealthCheckLayer, HttpProbe};
use crate::queue::Queue;
use crate::{BackendAddr, LoadBalanceLayer, Registry, RetryLayer};

type Backends = Registry<BackendAddr, super::Backend>;

/// What every build of the [`routes`] shares, whatever the configuration.
#[derive(Clone, Default)]
pub(crate) struct Shared {
    /// Where proxied requests are logged, with [`Config::access_log`].
    pub(crate) access_log: Option<super::access_log::AccessLog>,
    /// What the status page's `GET /status.json` reads.
    pub(crate) status: Option<crate::admin::status::StatusSource>,
    /// Where `POST` and `DELETE /register` write, with [`Config::etcd`].
    #[cfg(feature = "etcd")]
    pub(crate) etcd: Option<crate::discover::EtcdRegistrations>,
    /// What `GET /metrics` renders.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<Arc<prometheus_client::registry::Registry>>,
}

/// The balancer, health checks, queue, retries and admin API for `config`, over `registry`.
pub(crate) fn routes(
    config: &Config,
    registry: &Backends,
    client: &Client,
    shared: &Shared,
) -> Routes {
    // Checks go through the client that forwards requests: one connection path for both.
    let probe = match &config.health_grpc {
        Some(service) => HttpProbe::grpc(client.clone(), service),
        None => HttpProbe::with_client(client.clone(), config.health_path.clone()),
    };
    let mut health = HealthCheckLayer::new(probe.clone())
        .interval(config.health_interval)
        .timeout(config.health_timeout)
        .slow_start(config.slow_start);
    if let Some(outliers) = config.outlier_detection {
        health = health.outlier_detection(outliers);
    }
    let monitor = health.monitor();
    let mut balance = LoadBalanceLayer::new(config.algo)
        .client_ip(config.client_ip.clone())
        .hash_balance_factor(config.hash_balance_factor);
    if let Some(key) = &config.hash_key {
        balance = balance.key(key.clone());
    }
    if let Some(cookie) = &config.sticky_cookie {
        balance = balance.sticky_cookie(cookie.clone());
    }
    if let Some(seed) = config.seed {
        balance = balance.seed(seed);
    }
    let balancer: Balancer = ServiceBuilder::new()
        .layer(balance)
        .service(health.layer(registry.discover()));
    // `/metrics` and `/status` show the response-time histograms.
    balancer.record_response_times(true);

    let admin = Admin::new(registry.clone(), probe)
        .timeout(config.health_timeout)
        .wait_until(super::serving(balancer.clone(), monitor.clone()))
        .token(config.admin_token.clone())
        .allow_backends(config.allowed_backends.iter().copied())
        .balancer(balancer.clone())
        .monitor(monitor.clone());
    #[cfg(feature = "etcd")]
    let admin = match &shared.etcd {
        Some(registrations) => admin.etcd(registrations.clone()),
        None => admin,
    };
    #[cfg(feature = "metrics")]
    let admin = match &shared.metrics {
        Some(metrics) => admin.metrics(Arc::clone(metrics)),
        None => admin,
    };
    let admin = match &shared.status {
        Some(status) => admin.status(status.clone()),
        None => admin,
    };
    Routes {
        proxy: RetryLayer::new()
            .max_retries(config.retries)
            .retry_non_idempotent(config.retry_non_idempotent)
            .retry_on(config.retry_on)
            .buffer(config.retry_buffer)
            .layer(Queue::new(balancer.clone(), config.queue_timeout)),
        balancer,
        monitor,
        admin,
        access_log: shared.access_log.clone(),
    }
}

/// Starts the discovery sources of `config` (DNS names, a backends file), each applying its
/// full sets to `registry` through its own [`Reconcile`].
pub(crate) fn start_discovery(config: &Config, registry: &Backends) -> Tasks {
    let mut tasks = Vec::new();
    #[cfg(feature = "dns")]
    if !config.dns.is_empty() {
        let dns = match config.dns_server {
            Some(server) => Ok(Dns::with_server(server)),
            None => Dns::system(),
        };
        match dns {
            Ok(dns) => {
                let dns = dns.min_ttl(config.dns_min_ttl).max_ttl(config.dns_max_ttl);
                for target in &config.dns {
                    let (dns, target, registry) = (dns.clone(), target.clone(), registry.clone());
                    let mut set = Reconcile::new();
                    tasks.push(
                        tokio::spawn(async move {
                            dns.watch(target, |backends| {
                                apply(&mut set, backends, &registry);
                                true
                            })
                            .await;
                        })
                        .abort_handle(),
                    );
                }
            }
            Err(error) => tracing::error!(%error, "DNS discovery is off"),
        }
    }
    if let Some(path) = &config.backends_file {
        let file = BackendsFile::new(path.clone());
        let registry = registry.clone();
        let mut set = Reconcile::new();
        tasks.push(
            tokio::spawn(async move {
                file.watch(|backends| {
                    apply(&mut set, backends, &registry);
                    true
                })
                .await;
            })
            .abort_handle(),
        );
    }
    Tasks(tasks)
}

/// Reconciles `backends` with the last set of one source and applies the changes.
fn apply(set: &mut Reconcile<BackendAddr>, backends: Vec<(BackendAddr, u32)>, registry: &Backends) {
    for update in set.update(backends) {
        match &update {
            Update::Insert { key, weight } => {
                tracing::info!(backend = %key, weight, "backend added");
            }
            Update::Reweight {
                key,
                weight,
                previous,
            } => {
                tracing::info!(backend = %key, weight, previous, "backend weight changed");
            }
            Update::Remove { key, .. } => {
                tracing::info!(backend = %key, "backend removed; draining")
            }
        }
        update.apply_to(registry);
    }
}

/// Background tasks aborted when dropped.
pub(crate) struct Tasks(Vec<AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Applies a new [`Config`] to a running server: obtained from
/// [`Server::reload_handle`](super::Server::reload_handle) before [`run`](super::Server::run),
/// and cloned freely.
///
/// | what | how it changes |
/// |---|---|
/// | [`backends`](Config::backend) and their weights | reconciled with those of the last config: added, reweighted, drained; counters and health kept |
/// | [`algo`](Config::algo), [`client_ip`](Config::client_ip), [`hash_key`](Config::hash_key), [`hash_balance_factor`](Config::hash_balance_factor), [`sticky_cookie`](Config::sticky_cookie), health settings ([`health_interval`](Config::health_interval), [`health_path`](Config::health_path), [`health_timeout`](Config::health_timeout), [`health_grpc`](Config::health_grpc), [`outlier_detection`](Config::outlier_detection), [`slow_start`](Config::slow_start)), [`queue_timeout`](Config::queue_timeout), [`retries`](Config::retries), [`retry_non_idempotent`](Config::retry_non_idempotent), [`retry_on`](Config::retry_on), [`retry_buffer`](Config::retry_buffer), [`admin_token`](Config::admin_token), [`allowed_backends`](Config::allow_backend) | the balancer and what wraps it are rebuilt over the same registry and swapped in: each new request takes the new one, requests in flight finish on the old one; backends that were unhealthy stay so until their next check; the balancer's counters start again |
/// | the [`proxy_client`](Config::proxy_client)'s [connect timeout](crate::proxy::ProxyClientBuilder::connect_timeout), [backend (response) timeout](crate::proxy::ProxyClientBuilder::response_timeout) and [per-backend cap](crate::proxy::ProxyClientBuilder::max_conns_per_backend) | set on the running client (one atomic store each; every request reads them once, without a lock): requests that start after the reload take the new ones, a request in flight keeps the timeout it started with, pooled backend connections stay. A lowered cap lets a backend take new requests only once enough of those in flight have ended; requests sent while there was no cap do not count under one set later |
/// | [`client_header_timeout`](Config::client_header_timeout), [`idle_timeout`](Config::idle_timeout), [`client_timeout`](Config::client_timeout) | for the client connections accepted after the reload (each reads them once, when accepted); open connections keep theirs |
/// | [`addr`](Config::bind), [`workers`](Config::workers), [`admin_bind`](Config::admin_bind), [`max_connections`](Config::max_connections), [`max_header_size`](Config::max_header_size) (both built into the listeners' connection machinery), the [`proxy_client`](Config::proxy_client)'s other settings (pool idle timeout and size, backend TLS, HTTP/2 streams: the pool is built with them), [`shutdown_timeout`](Config::shutdown_timeout), [`seed`](Config::seed), the DNS and backends-file settings | not applied: [`Reloaded::restart_needed`] names them and the server logs them |
#[derive(Clone)]
pub struct Reload {
    inner: Arc<Inner>,
}

struct Inner {
    routes: Arc<ArcSwap<Routes>>,
    registry: Backends,
    client: Client,
    /// The timeouts of new client connections.
    timeouts: ClientTimeouts,
    shared: Shared,
    state: Mutex<State>,
}

struct State {
    /// The configuration applied last.
    running: Config,
    /// The backends of `running`.
    backends: Reconcile<BackendAddr>,
}

/// What a [`Reload::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reloaded {
    /// How the configured backends changed.
    pub backends: Vec<Update<BackendAddr>>,
    /// Whether the balancer was rebuilt for new live settings.
    pub rebuilt: bool,
    /// Whether timeouts or the per-backend cap changed: the forwarding client's connect or
    /// backend timeout or cap (for the requests that start from now on), or the client
    /// connections' header, idle or client timeout (for the connections accepted from now on).
    pub timeouts: bool,
    /// The settings that changed but take a restart, by their field name in [`Config`].
    pub restart_needed: Vec<&'static str>,
}

impl Reload {
    pub(crate) fn new(
        routes: Arc<ArcSwap<Routes>>,
        registry: Backends,
        client: Client,
        timeouts: ClientTimeouts,
        config: Config,
        shared: Shared,
    ) -> Self {
        let mut backends = Reconcile::new();
        backends.update(
            config
                .backends
                .iter()
                .map(|b| (b.address().clone(), b.weight())),
        );
        Self {
            inner: Arc::new(Inner {
                routes,
                registry,
                client,
                timeouts,
                shared,
                state: Mutex::new(State {
                    running: config,
                    backends,
                }),
            }),
        }
    }

    /// Applies `config`; see the table above. Logs what changed and what needs a restart.
    pub fn apply(&self, config: Config) -> Reloaded {
        let mut state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut reloaded = Reloaded {
            restart_needed: restart_needed(&state.running, &config),
            ..Reloaded::default()
        };
        // Backends first, so a rebuilt balancer starts with them.
        reloaded.backends = state.backends.update(
            config
                .backends
                .iter()
                .map(|b| (b.address().clone(), b.weight())),
        );
        for update in &reloaded.backends {
            update.clone().apply_to(&self.inner.registry);
        }
        if live_settings(&state.running) != live_settings(&config)
            || state.running.admin_token != config.admin_token
        {
            let routes = routes(
                &config,
                &self.inner.registry,
                &self.inner.client,
                &self.inner.shared,
            );
            // Backends the old checks found down stay down until the new checks say otherwise.
            for (key, health) in self.inner.routes.load().monitor.backends() {
                if health.status != Health::Healthy {
                    routes.monitor.set_health(key.key(), health.status);
                }
            }
            self.inner.routes.store(Arc::new(routes));
            reloaded.rebuilt = true;
        }
        // The timeouts and the cap: one store each, read by the next request or connection.
        if state
            .running
            .proxy_client
            .live_differs(&config.proxy_client)
        {
            config.proxy_client.apply_live_to(&self.inner.client);
            reloaded.timeouts = true;
        }
        let client_timeouts =
            |c: &Config| (c.client_header_timeout, c.idle_timeout, c.client_timeout);
        if client_timeouts(&state.running) != client_timeouts(&config) {
            self.inner.timeouts.set(
                config.client_header_timeout,
                config.idle_timeout,
                config.client_timeout,
            );
            reloaded.timeouts = true;
        }
        for setting in &reloaded.restart_needed {
            tracing::warn!(setting, "changed in the configuration, but takes a restart");
        }
        tracing::info!(
            backends_changed = reloaded.backends.len(),
            rebuilt = reloaded.rebuilt,
            timeouts = reloaded.timeouts,
            algo = %config.algo,
            "configuration reloaded"
        );
        // What takes a restart stays as it runs, so it is reported again on the next reload.
        let mut running = config;
        let old = &state.running;
        running.addr = old.addr;
        running.workers = old.workers;
        running.admin_addr = old.admin_addr;
        running.max_connections = old.max_connections;
        running.max_header_size = old.max_header_size;
        // The client's pool settings stay; its timeouts and cap are the new ones.
        running.proxy_client = old.proxy_client.clone().with_live_of(&running.proxy_client);
        running.shutdown_timeout = old.shutdown_timeout;
        running.seed = old.seed;
        #[cfg(feature = "dns")]
        {
            running.dns = old.dns.clone();
            running.dns_server = old.dns_server;
            running.dns_min_ttl = old.dns_min_ttl;
            running.dns_max_ttl = old.dns_max_ttl;
        }
        running.backends_file = old.backends_file.clone();
        state.running = running;
        reloaded
    }
}

/// The settings a rebuild applies, compared by their debug form (the admin token, whose debug
/// form is redacted, is compared apart).
fn live_settings(c: &Config) -> String {
    // Two tuples: `Debug` stops at twelve fields.
    format!(
        "{:?} {:?}",
        (
            c.algo,
            &c.client_ip,
            c.hash_balance_factor,
            &c.hash_key,
            &c.sticky_cookie,
            c.health_interval,
            &c.health_path,
            c.health_timeout,
            &c.health_grpc,
            c.outlier_detection,
            c.slow_start,
        ),
        (
            c.queue_timeout,
            c.retries,
            c.retry_non_idempotent,
            c.retry_on,
            c.retry_buffer,
            &c.allowed_backends,
        )
    )
}

/// The settings that differ between `old` and `new` and take a restart.
fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("addr", old.addr != new.addr);
    check("workers", old.workers != new.workers);
    check("admin_addr", old.admin_addr != new.admin_addr);
    check(
        "max_connections",
        old.max_connections != new.max_connections,
    );
    check(
        "max_header_size",
        old.max_header_size != new.max_header_size,
    );
    // Its timeouts and cap change live; the rest (the pool's settings, backend TLS, HTTP/2
    // streams) takes a new client.
    check(
        "proxy_client",
        format!(
            "{:?}",
            old.proxy_client.clone().with_live_of(&new.proxy_client)
        ) != format!("{:?}", new.proxy_client),
    );
    check(
        "shutdown_timeout",
        old.shutdown_timeout != new.shutdown_timeout,
    );
    check("seed", old.seed != new.seed);
    #[cfg(feature = "dns")]
    {
        check("dns", old.dns != new.dns);
        check("dns_server", old.dns_server != new.dns_server);
        check(
            "dns_ttl",
            old.dns_min_ttl != new.dns_min_ttl || old.dns_max_ttl != new.dns_max_ttl,
        );
    }
    check("backends_file", old.backends_file != new.backends_file);
    changed
}

impl fmt::Debug for Reload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reload").finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;
    use crate::proxy::ProxyClientBuilder;
    use crate::tls::BackendTls;

    #[test]
    fn another_backend_ca_file_needs_a_restart() {
        let dir = std::env::temp_dir().join(format!("tower-lb-reload-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![format!("{name}.test")])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let path = dir.join(format!("{name}.pem"));
            std::fs::write(&path, cert.pem()).unwrap();
            path
        };
        let (a, b) = (ca("a"), ca("b"));
        let with_ca = |path: &std::path::Path| {
            let tls = BackendTls::builder().ca_file(path).build().unwrap();
            Config::new().proxy_client(ProxyClientBuilder::new().backend_tls(tls))
        };
        assert!(restart_needed(&with_ca(&a), &with_ca(&a)).is_empty());
        assert_eq!(restart_needed(&with_ca(&a), &with_ca(&b)), ["proxy_client"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
