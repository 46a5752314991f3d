//! switchyard's execution engine (DESIGN §5).
//!
//! An event comes in through [`Engine::decide`]; the policies whose triggers
//! and conditions match it become decisions as data ([`decide::plan`]); the
//! single writer commits them in batches together with the inbox row and the
//! window claims ([`writer`]), and only then does `decide` return, so the
//! caller may acknowledge the message. Committed `queued` runs go to their
//! host's queue ([`dispatch`]), one at a time per host, under the global cap.
//!
//! The engine knows nothing about NATS, HTTP or SQL: it persists through the
//! [`Ledger`] port and calls drivers through the [`Drivers`] port.

pub mod clock;
pub mod config;
pub mod correlate;
pub mod decide;
pub mod dispatch;
pub mod dryrun;
pub mod fleet;
pub mod gates;
pub mod policies;
pub mod ports;
pub mod routing;
pub mod schedule;
mod sync;
mod writer;

pub use config::EngineConfig;
pub use decide::{Incoming, InventorySnapshot};
pub use dispatch::{QueuedRun, RunNotice};
pub use fleet::{Discovery, Fleet, FleetHost};
pub use policies::{ActivePolicy, PolicySet};
pub use ports::{Drivers, Ledger, SupervisedDrivers};
pub use routing::{HostEntry, Routing};
pub use writer::WriteError;

use crate::decide::DispatchMeta;
use crate::dispatch::Dispatcher;
use crate::writer::{Job, Lock};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use switchyard_plugin::protocol::Target;
use switchyard_store::{EventOutcome, Lease, RunRecord, RunStatus, RunUpdate, Transition};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// What `decide` did with an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Decided {
    /// No enabled policy matched: nothing recorded.
    NoMatch,
    /// The delivery was decided before; nothing new recorded.
    Redelivered,
    /// Decisions recorded: how many runs were queued.
    Recorded { decisions: usize, queued: usize },
}

/// Count matched policies and decisions by outcome.
fn count_decisions(names: &[String], outcomes: &[switchyard_store::DecisionOutcome]) {
    use switchyard_spec::metric_names as m;
    for name in names {
        metrics::counter!(m::POLICY_MATCHES, "policy" => name.clone()).increment(1);
    }
    for d in outcomes {
        let outcome = if d.suppressed.is_some() {
            "suppressed"
        } else if d.runs.iter().any(|r| r.status == RunStatus::Queued) {
            "queued"
        } else {
            d.runs.first().map_or("skipped", |r| r.status.as_str())
        };
        metrics::counter!(m::DECISIONS, "outcome" => outcome).increment(1);
    }
}

/// The event kind recorded on an undo's decision.
pub const UNDO_EVENT_KIND: &str = "switchyard.undo";

/// What [`Engine::undo`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undone {
    /// The inverse run, queued now.
    Queued(uuid::Uuid),
    /// The run was undone before; nothing new queued.
    Already,
}

/// Why a run could not be undone.
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error("the run has no driver (it never reached one)")]
    NoDriver,
    #[error("the inverse verb cannot run there: {0}")]
    Route(&'static str),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// What recovery found at start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    pub requeued: usize,
    pub retried: usize,
    pub interrupted: usize,
}

/// The running engine: a cheap, cloneable handle.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: EngineConfig,
    policies: RwLock<Arc<PolicySet>>,
    correlations: correlate::Correlations,
    inventory: RwLock<Arc<InventorySnapshot>>,
    routing: Arc<Routing>,
    dispatcher: Arc<Dispatcher>,
    writer: mpsc::Sender<Job>,
    notices: broadcast::Sender<RunNotice>,
    lease_lost: watch::Receiver<bool>,
    lease_task: tokio::task::JoinHandle<()>,
    ledger: Arc<dyn Ledger>,
    lease: Arc<Lock<Lease>>,
    /// Set by `abandon` and `shutdown`: the writer refuses everything.
    closed: Arc<std::sync::atomic::AtomicBool>,
    /// Whether ledger writes fail now.
    health: Arc<writer::Health>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("holder", &self.inner.config.holder)
            .field("policies", &self.policies().len())
            .finish()
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the store failed: {0}")]
    Store(#[from] switchyard_store::Error),
    #[error("the ledger writer's thread cannot start: {0}")]
    Writer(#[from] std::io::Error),
}

impl Engine {
    /// Take the lease (standing by while another engine holds it), recover the
    /// runs an earlier engine left, and start the writer. Returns once this
    /// instance is the active engine and recovery has queued what it found.
    pub async fn start(
        config: EngineConfig,
        ledger: Arc<dyn Ledger>,
        drivers: Arc<dyn Drivers>,
        routing: Routing,
        policies: PolicySet,
        inventory: InventorySnapshot,
    ) -> Result<(Engine, Recovery), StartError> {
        let lease = acquire(&*ledger, &config).await?;
        tracing::info!(holder = %lease.holder, epoch = lease.epoch, "engine lease held");
        let lease = Arc::new(Lock::new(lease));
        let (notices, _) = broadcast::channel(4096);
        let (jobs_tx, jobs_rx) = mpsc::channel(config.batch_max.max(1) * 4);
        let dispatcher = Arc::new(Dispatcher::new(
            config.clone(),
            Arc::clone(&drivers),
            &routing,
            jobs_tx.clone(),
            notices.clone(),
        ));
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (lost_tx, lost_rx) = watch::channel(false);
        let health = Arc::new(writer::Health::default());
        let renew = Arc::new(tokio::sync::Notify::new());
        writer::runtime()?.spawn(writer::run(
            writer::Writer {
                ledger: Arc::clone(&ledger),
                lease: Arc::clone(&lease),
                dispatcher: Arc::clone(&dispatcher),
                closed: Arc::clone(&closed),
                lost: lost_rx.clone(),
                renew: Arc::clone(&renew),
                health: Arc::clone(&health),
            },
            jobs_rx,
            config.batch_max.max(1),
        ));
        let lease_task = tokio::spawn(keep_lease(
            Arc::clone(&ledger),
            Arc::clone(&lease),
            config.clone(),
            lost_tx,
            renew,
        ));
        let routing = Arc::new(routing);
        let correlations =
            correlate::Correlations::load(ledger.correlation_state(clock::now()).await?);
        drivers.stop_leftovers().await;
        let recovery = recover(&*ledger, &dispatcher, &jobs_tx, &routing, &config).await?;
        Ok((
            Engine {
                inner: Arc::new(Inner {
                    config,
                    policies: RwLock::new(Arc::new(policies)),
                    correlations,
                    inventory: RwLock::new(Arc::new(inventory)),
                    routing,
                    dispatcher,
                    writer: jobs_tx,
                    notices,
                    lease_lost: lost_rx,
                    lease_task,
                    ledger: Arc::clone(&ledger),
                    lease: Arc::clone(&lease),
                    closed,
                    health,
                }),
            },
            recovery,
        ))
    }

    /// Decide one event and make the decision durable. `Ok` means the caller
    /// may acknowledge the message.
    pub async fn decide(&self, incoming: Incoming) -> Result<Decided, WriteError> {
        let began = std::time::Instant::now();
        let decided = self.decide_now(incoming).await;
        if let Ok(Decided::Recorded { .. }) = &decided {
            metrics::histogram!(switchyard_spec::metric_names::DECISION_LATENCY)
                .record(began.elapsed().as_secs_f64());
        }
        decided
    }

    async fn decide_now(&self, incoming: Incoming) -> Result<Decided, WriteError> {
        let policies = Arc::clone(&crate::sync::read(&self.inner.policies));
        let inventory = Arc::clone(&crate::sync::read(&self.inner.inventory));
        let Some(plan) = decide::plan(
            incoming,
            &policies,
            &self.inner.correlations,
            &self.inner.routing,
            &inventory,
            self.inner.config.max_event_age,
        ) else {
            return Ok(Decided::NoMatch);
        };
        self.submit(plan).await
    }

    async fn write(&self, plan: decide::Plan) -> Result<EventOutcome, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .writer
            .send(Job::Decide { plan, reply })
            .await
            .map_err(|_| WriteError::Closed)?;
        rx.await.map_err(|_| WriteError::Closed)?
    }

    async fn submit(&self, plan: decide::Plan) -> Result<Decided, WriteError> {
        let names: Vec<String> = plan
            .decisions
            .decisions
            .iter()
            .map(|d| d.decision.policy_name.clone())
            .collect();
        match self.write(plan).await? {
            EventOutcome::Redelivered => Ok(Decided::Redelivered),
            EventOutcome::Recorded(ds) => Ok({
                count_decisions(&names, &ds);
                Decided::Recorded {
                    decisions: ds.len(),
                    queued: ds
                        .iter()
                        .flat_map(|d| &d.runs)
                        .filter(|r| r.status == RunStatus::Queued)
                        .count(),
                }
            }),
        }
    }

    /// Queue the inverse of a finished run: `verb` (the inverse the driver
    /// declares) with `params` on the same host and target, through the same
    /// driver, with `inverse_of` set. The delivery key `undo|<run id>` makes
    /// undo at most once per run: a second call records nothing and returns
    /// [`Undone::Already`].
    pub async fn undo(
        &self,
        run: &RunRecord,
        verb: &str,
        params: serde_json::Value,
    ) -> Result<Undone, UndoError> {
        let driver = run.driver.clone().ok_or(UndoError::NoDriver)?;
        let (_, info) = self
            .inner
            .routing
            .route(
                &run.host,
                &run.target_type,
                &run.capability,
                verb,
                Some(&driver),
            )
            .map_err(|e| UndoError::Route(e.reason()))?;
        let now = clock::now();
        let target = switchyard_spec::selector::TargetRef {
            host: run.host.clone(),
            target_type: run.target_type.clone(),
            id: run.target_id.clone(),
            ranged: false,
        };
        let id = uuid::Uuid::now_v7();
        // The inverse's secret params are kept as the decided ones are: masked.
        let (params, secret_params, secret_values) =
            decide::split_secrets(info.params.as_deref(), params);
        let key = decide::idempotency_key(
            run.policy_id,
            &run.capability,
            verb,
            &target,
            &self.inner.routing.key_params(&params, &secret_values),
        );
        let event_id = format!("undo-{}", run.id);
        let plan = decide::Plan {
            decisions: switchyard_store::EventDecisions {
                delivery_key: format!("undo|{}", run.id),
                event_id: event_id.clone(),
                received_at: now,
                decisions: vec![switchyard_store::PlannedDecision {
                    decision: switchyard_store::NewDecision {
                        id: uuid::Uuid::now_v7(),
                        policy_id: run.policy_id,
                        policy_name: run.policy_name.clone(),
                        policy_version: run.policy_version,
                        event_id,
                        event_kind: UNDO_EVENT_KIND.into(),
                        correlation_id: run.correlation_id.clone(),
                        decided_at: now,
                        correlated_event_ids: vec![run.event_id.clone()],
                    },
                    suppression: None,
                    runs: vec![switchyard_store::PlannedRun {
                        run: switchyard_store::NewRun {
                            id,
                            host: run.host.clone(),
                            target_type: run.target_type.clone(),
                            target_id: run.target_id.clone(),
                            driver: Some(driver),
                            capability: run.capability.clone(),
                            verb: verb.to_owned(),
                            params,
                            idempotency_key: Some(key),
                            status: RunStatus::Queued,
                            severity: None,
                            reason: None,
                            count: 1,
                            queued_at: now,
                            inverse_of: Some(run.id),
                        },
                        idempotency_ttl: None,
                    }],
                }],
                correlation: Vec::new(),
            },
            dispatch: vec![DispatchMeta {
                timeout: info.timeout,
                idempotent: info.idempotent,
                per_target: info.per_target,
                stop_on_error: false,
                secret_params,
                secret_values,
            }],
        };
        match self.write(plan).await? {
            EventOutcome::Redelivered => Ok(Undone::Already),
            EventOutcome::Recorded(ds) => ds
                .iter()
                .flat_map(|d| &d.runs)
                .next()
                .map(|r| Undone::Queued(r.id))
                .ok_or(UndoError::Write(WriteError::Closed)),
        }
    }

    /// Fire one schedule tick of a policy (see [`schedule`]). `NoMatch` when
    /// the policy is gone or its conditions do not hold.
    pub async fn fire(&self, tick: &schedule::Tick) -> Result<Decided, WriteError> {
        let policies = self.policies();
        let Some(policy) = policies.get(tick.policy) else {
            return Ok(Decided::NoMatch);
        };
        let fired_at = tick.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut data = serde_json::Map::new();
        data.insert("policy".into(), policy.name.clone().into());
        data.insert("fired_at".into(), fired_at.into());
        let incoming = Incoming {
            delivery_key: format!("schedule|{}", tick.id),
            event_id: tick.id.to_string(),
            event: switchyard_spec::event::Event {
                id: Some(tick.id.to_string()),
                kind: "schedule".into(),
                source: Some("switchyard.scheduler".into()),
                host: None,
                time: Some(tick.at),
                severity: None,
                data,
                extensions: Default::default(),
            },
            received_at: chrono::Utc::now(),
        };
        let inventory = Arc::clone(&crate::sync::read(&self.inner.inventory));
        let Some(plan) = decide::plan_tick(
            incoming,
            policy,
            &self.inner.routing,
            &inventory,
            self.inner.config.max_event_age,
        ) else {
            return Ok(Decided::NoMatch);
        };
        self.submit(plan).await
    }

    /// Fire schedule ticks until the engine shuts down: ticks missed within
    /// `catch_up` before now are fired first. Call after `start` (recovery
    /// done); serve starts it together with intake.
    pub fn start_scheduler(&self, catch_up: Duration) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut from =
                chrono::Utc::now() - chrono::Duration::from_std(catch_up).unwrap_or_default();
            loop {
                let policies = engine.policies();
                let schedules = schedule::schedules(policies.iter());
                let now = chrono::Utc::now();
                let mut due: Vec<schedule::Tick> = schedules
                    .iter()
                    .flat_map(|s| s.ticks_between(from, now))
                    .collect();
                due.sort_by_key(|t| t.at);
                for tick in due {
                    match engine.fire(&tick).await {
                        Ok(d) => {
                            tracing::info!(policy = %tick.policy, at = %tick.at, outcome = ?d, "schedule fired")
                        }
                        Err(WriteError::Closed) => return,
                        Err(e) => {
                            tracing::error!(policy = %tick.policy, at = %tick.at, error = %e, "a schedule tick could not be recorded")
                        }
                    }
                }
                from = now;
                let wait = schedules
                    .iter()
                    .filter_map(|s| s.next_after(now))
                    .map(|t| (t.at - chrono::Utc::now()).to_std().unwrap_or_default())
                    .min()
                    .unwrap_or(Duration::from_secs(30))
                    .min(Duration::from_secs(30));
                tokio::time::sleep(wait + Duration::from_millis(5)).await;
            }
        })
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Replace the enabled policies (a new version is active for the next event).
    pub fn set_policies(&self, policies: PolicySet) {
        *crate::sync::write(&self.inner.policies) = Arc::new(policies);
    }

    /// The enabled policies now.
    pub fn policies(&self) -> Arc<PolicySet> {
        Arc::clone(&crate::sync::read(&self.inner.policies))
    }

    /// Replace the inventory snapshot selectors resolve against.
    pub fn set_inventory(&self, inventory: InventorySnapshot) {
        *crate::sync::write(&self.inner.inventory) = Arc::new(inventory);
    }

    /// Run status changes as they are recorded.
    pub fn subscribe(&self) -> broadcast::Receiver<RunNotice> {
        self.inner.notices.subscribe()
    }

    /// Resolves when the lease is lost to another engine: stop taking events.
    pub fn lease_lost(&self) -> watch::Receiver<bool> {
        self.inner.lease_lost.clone()
    }

    /// Why ledger writes fail, while they do: the writer retries them, no
    /// event is decided meanwhile, and the engine is not ready.
    pub fn ledger_failing(&self) -> Option<String> {
        self.inner.health.reason()
    }

    /// Cancel a queued run; `false` when it is not waiting in a queue.
    pub async fn cancel(&self, run_id: uuid::Uuid) -> bool {
        self.inner.dispatcher.cancel(run_id).await
    }

    /// The circuit breakers that have seen calls.
    pub fn breakers(&self) -> Vec<gates::BreakerView> {
        self.inner.dispatcher.breakers()
    }

    /// Runs waiting and running per host.
    pub fn queue_depths(&self) -> Vec<(String, usize, usize)> {
        self.inner.dispatcher.queue_depths()
    }

    /// Stop at once, as if the process died: no more writes, no lease
    /// renewal, nothing settled. Whatever is queued or running is left for
    /// the next engine's recovery.
    pub fn abandon(&self) {
        self.inner.lease_task.abort();
        self.inner.dispatcher.stop_starting();
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stop starting runs and wait up to `grace` for running ones; returns how
    /// many were still running (they are settled by recovery at next start).
    pub async fn shutdown(&self, grace: Duration) -> usize {
        let left = self.inner.dispatcher.drain(grace).await;
        self.inner.lease_task.abort();
        // A write still retrying (the database is away) gives up: what it
        // held is left for the next start's recovery.
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if left == 0 {
            // Nothing is running: hand the lease over now rather than after its TTL.
            let lease = crate::sync::lock(&self.inner.lease).clone();
            match self.inner.ledger.release_lease(&lease).await {
                Ok(()) => tracing::info!(epoch = lease.epoch, "engine lease released"),
                Err(e) => {
                    tracing::warn!(error = %e, "releasing the engine lease failed; it expires on its own")
                }
            }
        }
        left
    }
}

async fn acquire(ledger: &dyn Ledger, config: &EngineConfig) -> Result<Lease, StartError> {
    let mut announced = false;
    loop {
        if let Some(lease) = ledger
            .acquire_lease(&config.holder, config.lease_ttl)
            .await?
        {
            return Ok(lease);
        }
        if !announced {
            tracing::warn!("another engine holds the lease; standing by");
            announced = true;
        }
        tokio::time::sleep(config.lease_ttl / 3).await;
    }
}

async fn keep_lease(
    ledger: Arc<dyn Ledger>,
    lease: Arc<Lock<Lease>>,
    config: EngineConfig,
    lost: watch::Sender<bool>,
    renew_now: Arc<tokio::sync::Notify>,
) {
    let every = config.lease_ttl / 3;
    // After a failed renewal, try again soon: writes wait on an expired lease.
    let retry = every.min(Duration::from_secs(1));
    let mut wait = every;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = renew_now.notified() => {}
        }
        match ledger.acquire_lease(&config.holder, config.lease_ttl).await {
            Ok(Some(renewed)) => {
                wait = every;
                let mut held = crate::sync::lock(&lease);
                if renewed.epoch != held.epoch {
                    tracing::error!(
                        was = held.epoch,
                        now = renewed.epoch,
                        "the lease epoch changed while held"
                    );
                    let _ = lost.send(true);
                    return;
                }
                *held = renewed;
            }
            Ok(None) => {
                tracing::error!(
                    "the engine lease was taken by another instance; this engine stops writing"
                );
                let _ = lost.send(true);
                return;
            }
            Err(e) => {
                wait = retry;
                tracing::warn!(error = %e, "renewing the engine lease failed; retrying")
            }
        }
    }
}

/// How long after a crashed attempt's deadline recovery waits before
/// carrying the run out again: the SDK stops a request at its deadline, the
/// margin covers its clock and its exit.
pub const RECOVERY_MARGIN: Duration = Duration::from_secs(5);

/// DESIGN §5 recovery: queued runs first in `queued_at` order; running runs
/// of idempotent verbs retried with `attempt + 1` (bounded), each once the
/// deadline of the attempt the crash left has passed (it holds its host
/// until then); other running runs `interrupted` — never silently re-run.
async fn recover(
    ledger: &dyn Ledger,
    dispatcher: &Arc<Dispatcher>,
    writer: &mpsc::Sender<Job>,
    routing: &Routing,
    config: &EngineConfig,
) -> Result<Recovery, StartError> {
    let open = ledger.open_runs().await?;
    let mut report = Recovery::default();
    let mut requeue = Vec::new();
    let mut retry = Vec::new();
    let mut changes = Vec::new();
    for r in open {
        let verb = r
            .driver
            .as_deref()
            .and_then(|d| routing.verb(d, &r.capability, &r.verb))
            .cloned();
        // Params with secret members were stored masked; the values lived
        // only in the engine that decided them.
        let masked = verb
            .as_ref()
            .and_then(|v| v.params.as_ref())
            .is_some_and(|rules| rules.has_secrets(&r.params));
        if masked && matches!(r.status, RunStatus::Queued | RunStatus::Running) {
            changes.push(settle(&r, RunStatus::Interrupted, "secret_params_not_kept"));
            report.interrupted += 1;
            continue;
        }
        match r.status {
            RunStatus::Queued => match &verb {
                Some(v) => {
                    requeue.push(queued_from(&r, v, r.attempt.max(1) as u32));
                    report.requeued += 1;
                }
                None => changes.push(settle(&r, RunStatus::Failed, "no_driver")),
            },
            RunStatus::Running => match &verb {
                Some(v) if v.idempotent && (r.attempt.max(1) as u32) < config.max_attempts => {
                    let next = r.attempt.max(1) + 1;
                    changes.push(Transition {
                        run_id: r.id,
                        to: RunStatus::Queued,
                        update: RunUpdate {
                            attempt: Some(next),
                            reason: Some("recovered".into()),
                            ..Default::default()
                        },
                    });
                    // Not before the crashed attempt's deadline (when the
                    // SDK stops it, if its adapter outlived the engine).
                    let deadline = r
                        .deadline_at
                        .unwrap_or_else(|| clock::after(clock::now(), v.timeout));
                    let mut q = queued_from(&r, v, next as u32);
                    q.not_before = Some(clock::after(deadline, RECOVERY_MARGIN));
                    retry.push(q);
                    report.retried += 1;
                }
                _ => {
                    changes.push(settle(&r, RunStatus::Interrupted, "engine_restarted"));
                    report.interrupted += 1;
                }
            },
            _ => {}
        }
    }
    for change in changes {
        let (reply, rx) = oneshot::channel();
        if writer
            .send(Job::Transition { change, reply })
            .await
            .is_err()
        {
            break;
        }
        if let Ok(Err(e)) = rx.await {
            tracing::error!(error = %e, "recovery could not record a run");
        }
    }
    // Queued first (older), then the retried ones, each in queued_at order.
    requeue.extend(retry);
    dispatcher.requeue(requeue);
    if report != Recovery::default() {
        tracing::info!(
            requeued = report.requeued,
            retried = report.retried,
            interrupted = report.interrupted,
            "recovered runs of an earlier engine"
        );
    }
    Ok(report)
}

fn settle(r: &RunRecord, to: RunStatus, reason: &str) -> Transition {
    Transition {
        run_id: r.id,
        to,
        update: RunUpdate {
            finished_at: Some(clock::now()),
            severity: Some("error".into()),
            reason: Some(reason.into()),
            ..Default::default()
        },
    }
}

fn queued_from(r: &RunRecord, v: &routing::VerbInfo, attempt: u32) -> QueuedRun {
    QueuedRun {
        id: r.id,
        decision_id: r.decision_id,
        policy_id: r.policy_id,
        policy_name: r.policy_name.clone(),
        host: r.host.clone(),
        target: Target {
            target_type: r.target_type.clone(),
            id: r.target_id.clone(),
        },
        driver: r.driver.clone().unwrap_or_default(),
        capability: r.capability.clone(),
        verb: r.verb.clone(),
        params: r.params.clone(),
        idempotency_key: r.idempotency_key.clone().unwrap_or_default(),
        queued_at: r.queued_at,
        attempt,
        not_before: None,
        meta: DispatchMeta {
            timeout: v.timeout,
            idempotent: v.idempotent,
            per_target: v.per_target,
            stop_on_error: true,
            secret_params: None,
            secret_values: Vec::new(),
        },
    }
}
