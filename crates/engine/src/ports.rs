//! The engine's two ports: the ledger it persists through and the drivers it
//! calls. The engine sees only these traits; `Store` and the plugin
//! `Supervisor` implement them here, tests may bring their own.

use futures::future::BoxFuture;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use switchyard_plugin::protocol::{Effect, Target};
use switchyard_plugin::supervisor::{HostSpec, Supervisor};
use switchyard_store::{
    CorrelationRow, Error as StoreError, EventDecisions, Lease, NewRun, RunFilter, RunRecord,
    RunStatus, Store, Transition, Written,
};

/// Where decisions and status changes become durable.
pub trait Ledger: Send + Sync + 'static {
    /// Take or renew the lease for `ttl`; expiry is the database's to judge.
    fn acquire_lease<'a>(
        &'a self,
        holder: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Lease>, StoreError>>;

    /// Give the lease up at a graceful stop (a standby takes over at once).
    fn release_lease<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Status changes, then decisions, in one transaction. `more` answers,
    /// after the commit, whether another batch is already waiting (the store
    /// may then keep what the next one needs; see [`Store::write_batch`]).
    fn write_batch<'a>(
        &'a self,
        lease: &'a Lease,
        now: chrono::DateTime<chrono::Utc>,
        changes: &'a [Transition],
        items: &'a [EventDecisions],
        admit: &'a mut (dyn FnMut(&NewRun) -> bool + Send),
        more: &'a (dyn Fn() -> bool + Sync),
    ) -> BoxFuture<'a, Result<Written, StoreError>>;

    /// The writer has nothing more to write: give back anything
    /// [`Ledger::write_batch`] kept for a next batch.
    fn write_idle(&self);

    /// Every run still `queued` or `running`, oldest first.
    fn open_runs(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>>;

    /// The status of each of these runs that exists.
    fn run_statuses<'a>(
        &'a self,
        ids: &'a [uuid::Uuid],
    ) -> BoxFuture<'a, Result<HashMap<uuid::Uuid, RunStatus>, StoreError>>;

    /// Unexpired `ALL`-group correlation state.
    fn correlation_state(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> BoxFuture<'_, Result<Vec<CorrelationRow>, StoreError>>;
}

impl Ledger for Store {
    fn acquire_lease<'a>(
        &'a self,
        holder: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Lease>, StoreError>> {
        Box::pin(Store::acquire_lease(self, holder, ttl))
    }

    fn correlation_state(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> BoxFuture<'_, Result<Vec<CorrelationRow>, StoreError>> {
        Box::pin(Store::correlation_state(self, now))
    }

    fn release_lease<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(Store::release_lease(self, lease))
    }

    fn write_batch<'a>(
        &'a self,
        lease: &'a Lease,
        now: chrono::DateTime<chrono::Utc>,
        changes: &'a [Transition],
        items: &'a [EventDecisions],
        admit: &'a mut (dyn FnMut(&NewRun) -> bool + Send),
        more: &'a (dyn Fn() -> bool + Sync),
    ) -> BoxFuture<'a, Result<Written, StoreError>> {
        Box::pin(async move {
            Store::write_batch(self, lease, now, changes, items, &mut *admit, more).await
        })
    }

    fn write_idle(&self) {
        self.release_write_gate();
    }

    fn run_statuses<'a>(
        &'a self,
        ids: &'a [uuid::Uuid],
    ) -> BoxFuture<'a, Result<HashMap<uuid::Uuid, RunStatus>, StoreError>> {
        Box::pin(Store::run_statuses(self, ids))
    }

    fn open_runs(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
        Box::pin(async move {
            let mut all = Vec::new();
            for status in [RunStatus::Queued, RunStatus::Running] {
                let filter = RunFilter {
                    status: Some(status),
                    ..Default::default()
                };
                let mut cursor: Option<String> = None;
                loop {
                    let (page, next) = self.list_runs(&filter, cursor.as_deref(), 1000).await?;
                    all.extend(page);
                    match next {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
            }
            all.sort_by_key(|r| (r.queued_at, r.id));
            Ok(all)
        })
    }
}

/// One adapter call.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub driver: String,
    pub host: String,
    pub run_id: String,
    pub target: Target,
    pub capability: String,
    pub verb: String,
    pub params: Value,
    pub idempotency_key: String,
    pub timeout: Duration,
    /// Secret values in `params`: removed from everything the driver sends
    /// back for this call (output, errors, stderr), as its config secrets are.
    pub secrets: Vec<String>,
}

/// A finished adapter call.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecReport {
    /// `Ok(ok, effects, output, reason)` when the adapter answered.
    pub result: Result<Executed, DriverFailure>,
    /// The adapter's stderr lines for this call (secrets redacted).
    pub stderr: Vec<String>,
}

/// The adapter's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    pub ok: bool,
    pub effects: Vec<Effect>,
    pub output: Option<String>,
    pub reason: Option<String>,
}

/// A call that did not produce an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverFailure {
    /// Retryable for idempotent verbs.
    pub transient: bool,
    /// A timeout (the run becomes `timed_out`).
    pub timed_out: bool,
    /// The ledger reason (`timeout`, `adapter_crashed`, `transient`, ...).
    pub reason: String,
    pub message: String,
}

/// How the engine reaches drivers.
pub trait Drivers: Send + Sync + 'static {
    fn execute(&self, req: ExecRequest) -> BoxFuture<'_, ExecReport>;

    /// Is `driver` able to reach `host`? Asked by a half-open circuit breaker.
    fn health<'a>(&'a self, driver: &'a str, host: &'a str) -> BoxFuture<'a, bool> {
        let _ = (driver, host);
        Box::pin(async { true })
    }

    /// Make sure nothing an earlier engine started is still carrying out an
    /// action: asked once the lease is held, before recovery.
    fn stop_leftovers(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

impl std::fmt::Debug for dyn Drivers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Drivers")
    }
}

/// The plugin supervisor with the configured hosts.
#[derive(Debug, Clone)]
pub struct SupervisedDrivers {
    pub supervisor: Supervisor,
    pub hosts: HashMap<String, HostSpec>,
}

impl Drivers for SupervisedDrivers {
    fn stop_leftovers(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {
            let supervisor = self.supervisor.clone();
            let reaped = tokio::task::spawn_blocking(move || {
                supervisor.reap_orphans(Duration::from_secs(5))
            })
            .await
            .unwrap_or_default();
            if !reaped.is_empty() {
                tracing::warn!(
                    adapters = reaped.len(),
                    "killed adapters an earlier engine left running"
                );
            }
        })
    }

    fn health<'a>(&'a self, driver: &'a str, host: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let Some(spec) = self.hosts.get(host) else {
                return false;
            };
            let out = self
                .supervisor
                .health(driver, spec, Duration::from_secs(10))
                .await;
            match out.result {
                Ok(h) => h.ok,
                Err(e) => {
                    tracing::warn!(host, driver, error = %e, "health probe failed");
                    false
                }
            }
        })
    }

    fn execute(&self, req: ExecRequest) -> BoxFuture<'_, ExecReport> {
        Box::pin(async move {
            let Some(host) = self.hosts.get(&req.host) else {
                return ExecReport {
                    result: Err(DriverFailure {
                        transient: false,
                        timed_out: false,
                        reason: "unknown_host".into(),
                        message: format!("host `{}` is not configured", req.host),
                    }),
                    stderr: Vec::new(),
                };
            };
            let out = self
                .supervisor
                .execute(
                    &req.driver,
                    host,
                    &req.run_id,
                    req.target,
                    &req.capability,
                    &req.verb,
                    req.params,
                    &req.idempotency_key,
                    req.timeout,
                    &req.secrets,
                )
                .await;
            ExecReport {
                result: match out.result {
                    Ok(r) => Ok(Executed {
                        ok: r.ok,
                        effects: r.effects,
                        output: r.output,
                        reason: r.reason,
                    }),
                    Err(e) => Err(DriverFailure {
                        transient: e.is_transient(),
                        timed_out: matches!(
                            e,
                            switchyard_plugin::supervisor::CallError::Timeout { .. }
                        ),
                        reason: e.reason().to_owned(),
                        message: e.to_string(),
                    }),
                },
                stderr: out.stderr,
            }
        })
    }
}
