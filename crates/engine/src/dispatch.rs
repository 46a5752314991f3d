//! Dispatch (DESIGN §5 step 9–11): per-host FIFO single-flight across all
//! policies, bounded queues, the global cap held only during the adapter
//! call, timeouts, bounded retries of idempotent verbs, `max_queue_time`,
//! `on_error: stop`, and operator cancel.

use crate::config::EngineConfig;
use crate::decide::DispatchMeta;
use crate::gates::{BreakerView, Breakers, Limits, Verdict};
use crate::ports::{Drivers, ExecRequest};
use crate::routing::Routing;
use crate::writer::{Job, Lock, Metas, WriteError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use switchyard_plugin::protocol::Target;
use switchyard_store::{EventDecisions, EventOutcome, RunStatus, RunUpdate, Transition};
use tokio::sync::{Notify, Semaphore, broadcast, mpsc, oneshot};
use uuid::Uuid;

/// A run waiting for, or holding, its host slot.
#[derive(Debug, Clone)]
pub struct QueuedRun {
    pub id: Uuid,
    pub decision_id: Uuid,
    pub policy_id: Uuid,
    pub policy_name: String,
    pub host: String,
    pub target: Target,
    pub driver: String,
    pub capability: String,
    pub verb: String,
    pub params: Value,
    pub idempotency_key: String,
    pub queued_at: DateTime<Utc>,
    /// The attempt this run starts with (1, or more after recovery).
    pub attempt: u32,
    pub meta: DispatchMeta,
    /// Not carried out before this (recovery: the deadline of an attempt a
    /// crashed engine left running); the run holds its host meanwhile.
    pub not_before: Option<DateTime<Utc>>,
}

impl QueuedRun {
    fn lane(&self) -> Option<String> {
        self.meta
            .per_target
            .then(|| format!("{}\u{0}{}", self.target.target_type, self.target.id))
    }

    fn chain(&self) -> (Uuid, String, String, String) {
        (
            self.decision_id,
            self.host.clone(),
            self.target.target_type.clone(),
            self.target.id.clone(),
        )
    }
}

/// A run just committed `queued`, as its host's queue holds it.
fn queued_run(
    decision: &switchyard_store::NewDecision,
    r: switchyard_store::NewRun,
    mut meta: DispatchMeta,
) -> QueuedRun {
    let params = meta.secret_params.take().unwrap_or(r.params);
    QueuedRun {
        id: r.id,
        decision_id: decision.id,
        policy_id: decision.policy_id,
        policy_name: decision.policy_name.clone(),
        host: r.host,
        target: Target {
            target_type: r.target_type,
            id: r.target_id,
        },
        driver: r.driver.unwrap_or_default(),
        capability: r.capability,
        verb: r.verb,
        params,
        idempotency_key: r.idempotency_key.unwrap_or_default(),
        queued_at: r.queued_at,
        attempt: 1,
        meta,
        not_before: None,
    }
}

/// A run status change, as the API streams it and NATS carries it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunNotice {
    pub run_id: Uuid,
    pub decision_id: Uuid,
    pub policy_id: Uuid,
    pub policy_name: String,
    pub host: String,
    pub target_type: String,
    pub target_id: String,
    pub capability: String,
    pub verb: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub attempt: u32,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct HostState {
    waiting: VecDeque<QueuedRun>,
    /// Lanes running now: `None` holds the whole host.
    running: Vec<Option<String>>,
    /// Slots promised to runs in a decision transaction not yet committed.
    reserved: usize,
}

/// Queues, slots and the global cap.
#[derive(Debug)]
pub struct Dispatcher {
    config: EngineConfig,
    hosts: Lock<HashMap<String, HostState>>,
    global: Arc<Semaphore>,
    drivers: Arc<dyn Drivers>,
    writer: mpsc::Sender<Job>,
    notices: broadcast::Sender<RunNotice>,
    /// (decision, host, target type, target id) whose earlier action failed under `on_error: stop`.
    stopped: Lock<HashSet<(Uuid, String, String, String)>>,
    /// No new runs start once set.
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
    breakers: Breakers,
    limits: Limits,
    /// The engine's runtime: runs are carried out there, never on the
    /// writer's thread, whose commits call [`Dispatcher::admit_committed`].
    runtime: tokio::runtime::Handle,
}

impl Dispatcher {
    pub(crate) fn new(
        config: EngineConfig,
        drivers: Arc<dyn Drivers>,
        routing: &Routing,
        writer: mpsc::Sender<Job>,
        notices: broadcast::Sender<RunNotice>,
    ) -> Dispatcher {
        Dispatcher {
            global: Arc::new(Semaphore::new(config.global_concurrency.max(1))),
            breakers: Breakers::new(config.breaker_failures, config.breaker_open_for),
            limits: Limits::new(routing),
            config,
            hosts: Lock::default(),
            drivers,
            writer,
            notices,
            stopped: Lock::default(),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Room for one more run on `host`? Promises the slot until the batch settles.
    pub(crate) fn reserve(&self, host: &str) -> bool {
        let mut hosts = crate::sync::lock(&self.hosts);
        let h = hosts.entry(host.to_owned()).or_default();
        if h.waiting.len() + h.reserved >= self.config.host_queue_depth {
            return false;
        }
        h.reserved += 1;
        true
    }

    /// A batch settled: release its reservations and queue its committed runs
    /// in commit order. Takes the batch, whose runs move into their queues.
    pub(crate) fn admit_committed(
        self: &Arc<Self>,
        reserved: &[String],
        items: Vec<EventDecisions>,
        metas: Vec<Metas>,
        outcomes: &[EventOutcome],
    ) {
        let mut runs = Vec::new();
        for ((item, metas), outcome) in items.into_iter().zip(metas).zip(outcomes) {
            let EventOutcome::Recorded(decisions) = outcome else {
                continue;
            };
            // One meta per run planned `queued`, whatever settling made of it
            // (a suppressed decision settles no runs at all).
            let mut metas = metas.into_iter();
            for (planned, settled) in item.decisions.into_iter().zip(decisions) {
                let decision = planned.decision;
                let mut settled = settled.runs.iter();
                for pr in planned.runs {
                    let sr = settled.next();
                    if pr.run.status != RunStatus::Queued {
                        continue;
                    }
                    let Some(meta) = metas.next() else {
                        debug_assert!(false, "a queued run without dispatch facts");
                        continue;
                    };
                    if sr.is_none_or(|sr| sr.status != RunStatus::Queued) {
                        continue;
                    }
                    runs.push(queued_run(&decision, pr.run, meta));
                }
            }
        }
        self.enqueue(reserved, runs);
    }

    /// Queue the runs of events whose decisions turned out to be committed
    /// already — by an earlier attempt of the same batch whose commit was
    /// reported failed (the connection dropped as it committed). `queued` says
    /// which of the planned runs the ledger holds as `queued`.
    pub(crate) fn admit_found(
        self: &Arc<Self>,
        items: Vec<EventDecisions>,
        metas: Vec<Metas>,
        queued: &HashSet<Uuid>,
    ) {
        let mut runs = Vec::new();
        for (item, metas) in items.into_iter().zip(metas) {
            let mut metas = metas.into_iter();
            for planned in item.decisions {
                let decision = planned.decision;
                for pr in planned.runs {
                    if pr.run.status != RunStatus::Queued {
                        continue;
                    }
                    let Some(meta) = metas.next() else { break };
                    if queued.contains(&pr.run.id) {
                        runs.push(queued_run(&decision, pr.run, meta));
                    }
                }
            }
        }
        if !runs.is_empty() {
            tracing::warn!(
                runs = runs.len(),
                "a commit reported failed had landed; its queued runs go to their hosts now"
            );
        }
        self.enqueue(&[], runs);
    }

    /// Queue runs found at recovery (already `queued` in the ledger).
    pub(crate) fn requeue(self: &Arc<Self>, runs: Vec<QueuedRun>) {
        self.enqueue(&[], runs);
    }

    /// Release `reserved` slots and queue `runs`, in order, under one lock (so a
    /// queue's depth is never undercounted), then start what may start.
    fn enqueue(self: &Arc<Self>, reserved: &[String], runs: Vec<QueuedRun>) {
        let mut touched = HashSet::new();
        {
            let mut hosts = crate::sync::lock(&self.hosts);
            for host in reserved {
                if let Some(h) = hosts.get_mut(host) {
                    h.reserved = h.reserved.saturating_sub(1);
                }
            }
            for q in runs {
                touched.insert(q.host.clone());
                hosts
                    .entry(q.host.clone())
                    .or_default()
                    .waiting
                    .push_back(q);
            }
        }
        for host in touched {
            self.pump(&host);
        }
    }

    /// Start what may start on `host`: the head of the queue when the host is
    /// free, and further heads only while they run on other targets of a
    /// `serialize: target` capability. Never skips the head (FIFO).
    fn pump(self: &Arc<Self>, host: &str) {
        if self.draining.load(Ordering::SeqCst) {
            return;
        }
        let mut start = Vec::new();
        {
            let mut hosts = crate::sync::lock(&self.hosts);
            let Some(h) = hosts.get_mut(host) else { return };
            while let Some(head) = h.waiting.front() {
                let lane = head.lane();
                let free = match &lane {
                    None => h.running.is_empty(),
                    Some(l) => h.running.iter().all(|r| r.as_ref().is_some_and(|x| x != l)),
                };
                if !free {
                    break;
                }
                let Some(run) = h.waiting.pop_front() else {
                    break;
                };
                h.running.push(lane);
                start.push(run);
            }
        }
        for run in start {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let me = Arc::clone(self);
            self.runtime.spawn(async move {
                let host = run.host.clone();
                let lane = run.lane();
                me.carry_out(run).await;
                {
                    let mut hosts = crate::sync::lock(&me.hosts);
                    if let Some(h) = hosts.get_mut(&host)
                        && let Some(i) = h.running.iter().position(|r| *r == lane)
                    {
                        h.running.swap_remove(i);
                    }
                }
                if me.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                    me.idle.notify_waiters();
                }
                me.pump(&host);
            });
        }
    }

    async fn write(&self, change: Transition) -> Result<bool, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Job::Transition { change, reply })
            .await
            .map_err(|_| WriteError::Closed)?;
        rx.await.map_err(|_| WriteError::Closed)?
    }

    /// Record a status change and announce it.
    async fn set(&self, run: &QueuedRun, to: RunStatus, update: RunUpdate) -> bool {
        let reason = update.reason.clone();
        let attempt = update.attempt.map_or(run.attempt, |a| a as u32);
        match self
            .write(Transition {
                run_id: run.id,
                to,
                update,
            })
            .await
        {
            Ok(true) => {
                if to.is_terminal() {
                    metrics::counter!(
                        switchyard_spec::metric_names::RUNS_FINISHED,
                        "status" => to.as_str(),
                        "driver" => run.driver.clone()
                    )
                    .increment(1);
                }
                let _ = self.notices.send(RunNotice {
                    run_id: run.id,
                    decision_id: run.decision_id,
                    policy_id: run.policy_id,
                    policy_name: run.policy_name.clone(),
                    host: run.host.clone(),
                    target_type: run.target.target_type.clone(),
                    target_id: run.target.id.clone(),
                    capability: run.capability.clone(),
                    verb: run.verb.clone(),
                    status: to.as_str(),
                    reason,
                    attempt,
                    at: crate::clock::now(),
                });
                true
            }
            Ok(false) => {
                tracing::info!(run = %run.id, to = to.as_str(), "run already finished (cancelled?); status kept");
                false
            }
            Err(e) => {
                tracing::error!(run = %run.id, to = to.as_str(), error = %e, "run status not recorded; recovery will settle it");
                false
            }
        }
    }

    async fn finish(&self, run: &QueuedRun, end: End) {
        let End {
            to,
            reason,
            output,
            effects,
            attempt,
            started,
        } = end;
        let failed = matches!(
            to,
            RunStatus::Failed | RunStatus::TimedOut | RunStatus::Interrupted | RunStatus::Cancelled
        );
        if let Some(started) = started {
            metrics::histogram!(switchyard_spec::metric_names::RUN_DURATION, "driver" => run.driver.clone())
                .record((crate::clock::now() - started).to_std().unwrap_or_default().as_secs_f64());
        }
        if failed && run.meta.stop_on_error {
            crate::sync::lock(&self.stopped).insert(run.chain());
        }
        self.set(
            run,
            to,
            RunUpdate {
                started_at: started,
                finished_at: Some(crate::clock::now()),
                severity: failed.then(|| "error".to_owned()),
                reason,
                effects,
                output,
                attempt: Some(attempt as i32),
                deadline_at: None,
            },
        )
        .await;
    }

    /// Carry out one run while holding its host slot.
    async fn carry_out(&self, run: QueuedRun) {
        if crate::sync::lock(&self.stopped).contains(&run.chain()) {
            self.set(
                &run,
                RunStatus::Skipped,
                RunUpdate {
                    finished_at: Some(crate::clock::now()),
                    reason: Some("earlier_action_failed".into()),
                    ..Default::default()
                },
            )
            .await;
            return;
        }
        if !self.pass_gates(&run).await {
            self.finish(
                &run,
                End::early(RunStatus::Cancelled, "expired", run.attempt),
            )
            .await;
            return;
        }
        if let Some(not_before) = run.not_before {
            // An earlier attempt of this run may still be going (its engine
            // crashed): the host stays held until that attempt's deadline.
            let wait = (not_before - crate::clock::now())
                .to_std()
                .unwrap_or_default();
            if !wait.is_zero() {
                tracing::info!(run = %run.id, host = %run.host, wait_ms = wait.as_millis() as u64, "waiting for the previous attempt's deadline before retrying");
                tokio::time::sleep(wait).await;
            }
            if self.draining.load(Ordering::SeqCst) {
                return;
            }
        }
        let mut started = None;
        let mut attempt = run.attempt;
        let mut retried_after: Option<String> = None;
        let max_attempts = self.config.max_attempts.max(1);
        let mut backoff = self.config.retry_backoff;
        loop {
            let report = {
                // Never closed: `acquire` fails only on a closed semaphore.
                let _permit = self.global.acquire().await.ok();
                // `running` means calling the adapter. Each attempt records
                // when it must be over, and is not made unless recorded.
                let now = crate::clock::now();
                let deadline = crate::clock::after(now, run.meta.timeout);
                if !self
                    .set(
                        &run,
                        RunStatus::Running,
                        RunUpdate {
                            started_at: started.is_none().then_some(now),
                            attempt: Some(attempt as i32),
                            reason: retried_after.take(),
                            deadline_at: Some(deadline),
                            ..Default::default()
                        },
                    )
                    .await
                {
                    return;
                }
                started.get_or_insert(now);
                self.drivers
                    .execute(ExecRequest {
                        driver: run.driver.clone(),
                        host: run.host.clone(),
                        run_id: run.id.to_string(),
                        target: run.target.clone(),
                        capability: run.capability.clone(),
                        verb: run.verb.clone(),
                        params: run.params.clone(),
                        idempotency_key: run.idempotency_key.clone(),
                        // What is left of the recorded deadline.
                        timeout: (deadline - crate::clock::now())
                            .to_std()
                            .unwrap_or_default(),
                        secrets: run.meta.secret_values.clone(),
                    })
                    .await
            };
            let transient = matches!(&report.result, Err(f) if f.transient);
            self.breakers
                .record(&run.host, &run.driver, transient, crate::clock::now());
            let stderr = (!report.stderr.is_empty()).then(|| report.stderr.join("\n"));
            match report.result {
                Ok(done) => {
                    let output = join_output(done.output, stderr);
                    let effects = (!done.effects.is_empty())
                        .then(|| serde_json::to_value(&done.effects).unwrap_or(Value::Null));
                    let (to, reason) = if done.ok {
                        (RunStatus::Succeeded, done.reason)
                    } else {
                        (
                            RunStatus::Failed,
                            Some(
                                done.reason
                                    .unwrap_or_else(|| "driver_reported_failure".into()),
                            ),
                        )
                    };
                    self.finish(
                        &run,
                        End {
                            to,
                            reason,
                            output,
                            effects,
                            attempt,
                            started,
                        },
                    )
                    .await;
                    return;
                }
                Err(f) => {
                    if f.transient
                        && run.meta.idempotent
                        && attempt < max_attempts
                        && !self.draining.load(Ordering::SeqCst)
                    {
                        tracing::warn!(run = %run.id, attempt, reason = %f.reason, "transient failure; retrying after {backoff:?}");
                        tokio::time::sleep(backoff).await;
                        backoff = backoff.saturating_mul(2);
                        attempt += 1;
                        retried_after = Some(format!("retry after {}", f.reason));
                        continue;
                    }
                    let to = if f.timed_out {
                        RunStatus::TimedOut
                    } else {
                        RunStatus::Failed
                    };
                    let output = join_output(Some(f.message), stderr);
                    self.finish(
                        &run,
                        End {
                            to,
                            reason: Some(f.reason),
                            output,
                            effects: None,
                            attempt,
                            started,
                        },
                    )
                    .await;
                    return;
                }
            }
        }
    }

    /// The circuit breaker, then the rate limits. `false`: the run waited past
    /// `max_queue_time` (its queue time counts from `queued_at`).
    async fn pass_gates(&self, run: &QueuedRun) -> bool {
        let deadline = crate::clock::after(run.queued_at, self.config.max_queue_time);
        loop {
            let now = crate::clock::now();
            if now > deadline {
                return false;
            }
            match self.breakers.check(&run.host, &run.driver, now) {
                Verdict::Pass => break,
                Verdict::Probe => {
                    let healthy = self.drivers.health(&run.driver, &run.host).await;
                    self.breakers
                        .probed(&run.host, &run.driver, healthy, crate::clock::now());
                }
                Verdict::Wait(d) => {
                    let left = (deadline - now).to_std().unwrap_or_default();
                    tokio::time::sleep(d.min(left) + std::time::Duration::from_millis(1)).await;
                }
            }
        }
        let left = (deadline - crate::clock::now())
            .to_std()
            .unwrap_or_default();
        tokio::time::timeout(left, self.limits.until_ready(&run.driver, &run.host))
            .await
            .is_ok()
    }

    /// The circuit breakers that have seen calls.
    pub fn breakers(&self) -> Vec<BreakerView> {
        self.breakers.view()
    }

    /// Cancel a queued run. `false` when it is not waiting in a queue.
    pub(crate) async fn cancel(&self, run_id: Uuid) -> bool {
        let found = {
            let mut hosts = crate::sync::lock(&self.hosts);
            hosts.values_mut().find_map(|h| {
                let i = h.waiting.iter().position(|r| r.id == run_id)?;
                h.waiting.remove(i)
            })
        };
        match found {
            Some(run) => {
                self.finish(
                    &run,
                    End::early(RunStatus::Cancelled, "operator", run.attempt),
                )
                .await;
                true
            }
            None => false,
        }
    }

    /// Start no more runs.
    pub(crate) fn stop_starting(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Stop starting runs; wait up to `grace` for running ones to finish.
    /// Queued runs stay `queued` in the ledger for the next start.
    pub(crate) async fn drain(&self, grace: std::time::Duration) -> usize {
        self.draining.store(true, Ordering::SeqCst);
        let wait = async {
            loop {
                let idle = self.idle.notified();
                if self.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(grace, wait).await;
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Runs waiting and running per host.
    pub fn queue_depths(&self) -> Vec<(String, usize, usize)> {
        let hosts = crate::sync::lock(&self.hosts);
        let mut v: Vec<_> = hosts
            .iter()
            .map(|(k, h)| (k.clone(), h.waiting.len(), h.running.len()))
            .collect();
        v.sort();
        v
    }
}

/// How a run ended.
struct End {
    to: RunStatus,
    reason: Option<String>,
    output: Option<String>,
    effects: Option<Value>,
    attempt: u32,
    started: Option<DateTime<Utc>>,
}

impl End {
    /// Ended before reaching the adapter.
    fn early(to: RunStatus, reason: &str, attempt: u32) -> End {
        End {
            to,
            reason: Some(reason.to_owned()),
            output: None,
            effects: None,
            attempt,
            started: None,
        }
    }
}

fn join_output(out: Option<String>, stderr: Option<String>) -> Option<String> {
    match (out, stderr) {
        (Some(o), Some(e)) => Some(format!("{o}\n--- adapter log ---\n{e}")),
        (Some(o), None) => Some(o),
        (None, Some(e)) => Some(format!("--- adapter log ---\n{e}")),
        (None, None) => None,
    }
}
