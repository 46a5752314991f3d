//! The configured hosts with the drivers that reach them (DESIGN §8): the
//! installed drivers' registry, the adapter supervisor, discovery into the
//! stored inventory, and the snapshot selectors resolve against. `serve`
//! builds one and shares it between the engine, the inventory refresher and
//! the API (hosts, capabilities, inventory refresh, selector preview, dry-run).

use crate::decide::InventorySnapshot;
use crate::routing::{HostEntry, Routing};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use switchyard_plugin::protocol::DiscoverMode;
use switchyard_plugin::registry::{Driver, Registry};
use switchyard_plugin::supervisor::{HostSpec, Supervisor};
use switchyard_spec::selector::{InventoryHost, InventoryItem};
use switchyard_store::{DiscoveredItem, InventoryQuery, Store};

/// A configured host and the drivers that reach it, in preference order.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetHost {
    pub spec: HostSpec,
    pub drivers: Vec<String>,
}

/// What one driver's discovery of one host did.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovery {
    pub host: String,
    pub driver: String,
    pub mode: DiscoverMode,
    /// Items stored and whether the refresh was complete, or why it failed
    /// (the host's earlier items then stay, marked stale as they age).
    pub result: Result<(usize, bool), String>,
}

/// Hosts, drivers and the inventory they discover.
#[derive(Debug, Clone)]
pub struct Fleet {
    registry: Arc<Registry>,
    supervisor: Supervisor,
    hosts: BTreeMap<String, FleetHost>,
    routing: Routing,
    /// Items older than this are stale.
    pub stale_after: Duration,
}

impl Fleet {
    pub fn new(
        registry: Arc<Registry>,
        supervisor: Supervisor,
        hosts: Vec<FleetHost>,
        stale_after: Duration,
    ) -> Fleet {
        let routing = Routing::new(
            registry.drivers().map(Driver::manifest),
            hosts.iter().map(|h| HostEntry {
                id: h.spec.id.clone(),
                drivers: h.drivers.clone(),
                labels: h.spec.labels.clone(),
            }),
        );
        Fleet {
            registry,
            supervisor,
            hosts: hosts.into_iter().map(|h| (h.spec.id.clone(), h)).collect(),
            routing,
            stale_after,
        }
    }

    /// Key secret params in idempotency keys with `secret`
    /// ([`Routing::with_idempotency_secret`]).
    pub fn with_idempotency_secret(mut self, secret: &[u8]) -> Fleet {
        self.routing = self.routing.with_idempotency_secret(secret);
        self
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// The engine's driver port over this fleet's supervisor and hosts.
    pub fn drivers_port(&self) -> crate::ports::SupervisedDrivers {
        crate::ports::SupervisedDrivers {
            supervisor: self.supervisor.clone(),
            hosts: self
                .hosts
                .values()
                .map(|h| (h.spec.id.clone(), h.spec.clone()))
                .collect(),
        }
    }

    /// Which driver serves which action on which host.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// The configured hosts, by id.
    pub fn hosts(&self) -> impl Iterator<Item = &FleetHost> {
        self.hosts.values()
    }

    pub fn host(&self, id: &str) -> Option<&FleetHost> {
        self.hosts.get(id)
    }

    /// The drivers (installed ones only) that reach `host`, in preference order.
    pub fn drivers_of<'a>(&'a self, host: &'a FleetHost) -> impl Iterator<Item = &'a Driver> {
        host.drivers.iter().filter_map(|d| self.registry.get(d))
    }

    /// Run `mode` discovery of `host` through each of its drivers that
    /// supports it and store the items. Fast refreshes are bounded by the
    /// driver's `dry_run_refresh_sla_s`, full ones by its `timeout_s`.
    pub async fn discover(
        &self,
        store: &Store,
        host: &FleetHost,
        mode: DiscoverMode,
    ) -> Vec<Discovery> {
        let mut out = Vec::new();
        for driver in self.drivers_of(host) {
            let m = driver.manifest();
            let (supported, limit_s) = match mode {
                DiscoverMode::Fast => (m.discovery.fast, m.defaults.dry_run_refresh_sla_s),
                DiscoverMode::Full => (m.discovery.full, m.defaults.timeout_s),
            };
            if !supported {
                continue;
            }
            let timeout = Duration::from_secs(limit_s.max(1));
            let called = self
                .supervisor
                .discover(&m.name, &host.spec, mode, timeout)
                .await;
            let result = match called.result {
                Err(e) => Err(e.to_string()),
                Ok(r) => {
                    let items: Vec<DiscoveredItem> = r
                        .items
                        .into_iter()
                        .map(|i| DiscoveredItem {
                            item_type: i.item_type,
                            id: i.id,
                            name: i.name,
                            labels: i.labels,
                            state: i.state,
                        })
                        .collect();
                    store
                        .record_discovery(&host.spec.id, &items, r.complete, chrono::Utc::now())
                        .await
                        .map(|n| (n, r.complete))
                        .map_err(|e| format!("storing the items failed: {e}"))
                }
            };
            match &result {
                Ok((n, complete)) => {
                    tracing::info!(host = %host.spec.id, driver = %m.name, ?mode, items = n, complete, "discovered");
                }
                Err(e) => {
                    tracing::warn!(host = %host.spec.id, driver = %m.name, ?mode, error = %e, "discovery failed; earlier items stay and turn stale");
                }
            }
            out.push(Discovery {
                host: host.spec.id.clone(),
                driver: m.name.clone(),
                mode,
                result,
            });
        }
        out
    }

    /// [`Fleet::discover`] for every host, one after another.
    pub async fn discover_all(&self, store: &Store, mode: DiscoverMode) -> Vec<Discovery> {
        let mut out = Vec::new();
        for host in self.hosts.values() {
            out.extend(self.discover(store, host, mode).await);
        }
        out
    }

    /// Hosts from configuration, items from the stored inventory.
    pub async fn snapshot(
        &self,
        store: &Store,
    ) -> Result<InventorySnapshot, switchyard_store::Error> {
        let items = store
            .inventory(
                &InventoryQuery::default(),
                chrono::Utc::now(),
                self.stale_after,
            )
            .await?
            .into_iter()
            .map(|r| InventoryItem {
                host: r.host,
                item_type: r.item_type,
                id: r.id,
                name: r.name,
                labels: r.labels,
            })
            .collect();
        Ok(InventorySnapshot {
            hosts: self
                .hosts
                .values()
                .map(|h| InventoryHost {
                    id: h.spec.id.clone(),
                    labels: h.spec.labels.clone(),
                })
                .collect(),
            items,
        })
    }
}
