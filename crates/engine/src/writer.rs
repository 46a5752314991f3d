//! The single writer: every decision and status change goes through one task
//! that commits them in batches (group commit) as the lease holder.
//!
//! A write is never dropped. When a batch fails:
//! - the database refused the data of one of its rows (a value it cannot
//!   store): the batch is split in halves until the row is found; its event
//!   is answered [`WriteError::Refused`] (intake dead-letters it) while the
//!   rest commit, and a refused status change is written again without its
//!   output and effects;
//! - the lease is expired but not lost (the database was away while it was
//!   due for renewal): the batch waits for the renewal;
//! - anything else (the database is unreachable, the disk is full): the
//!   batch is retried with backoff until it lands. Meanwhile nothing else is
//!   written, `decide` does not return — intake stops taking events and
//!   holds the ones in flight — and [`Health`] reports the failure for
//!   readiness.

use crate::decide::{DispatchMeta, Plan};
use crate::dispatch::Dispatcher;
use crate::ports::Ledger;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchyard_spec::metric_names as m;
use switchyard_store::{
    Error as StoreError, EventDecisions, EventOutcome, Lease, NewRun, RunUpdate, Transition,
};
use tokio::sync::{mpsc, oneshot, watch};

/// Dispatch facts of one event's runs planned `queued`, in their order.
pub(crate) type Metas = Vec<DispatchMeta>;

/// Why a write failed; the event is not acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the store failed: {0}")]
    Store(String),
    #[error("the engine lease is lost: {0}")]
    LeaseLost(String),
    #[error("the engine is shutting down")]
    Closed,
    /// The database refused this event's decision (a value it cannot store)
    /// while it took the rest of its batch: retrying cannot help.
    #[error("the ledger refused the decision: {0}")]
    Refused(String),
}

impl From<&StoreError> for WriteError {
    fn from(e: &StoreError) -> Self {
        match e {
            StoreError::LeaseLost { .. } => WriteError::LeaseLost(e.to_string()),
            other => WriteError::Store(other.to_string()),
        }
    }
}

pub(crate) enum Job {
    Decide {
        plan: Plan,
        reply: oneshot::Sender<Result<EventOutcome, WriteError>>,
    },
    Transition {
        change: Transition,
        reply: oneshot::Sender<Result<bool, WriteError>>,
    },
}

pub(crate) type Lock<T> = std::sync::Mutex<T>;

/// Whether ledger writes are failing now, for readiness.
#[derive(Debug, Default)]
pub(crate) struct Health {
    failing: Lock<Option<String>>,
}

impl Health {
    fn failing(&self, why: String) {
        let mut f = crate::sync::lock(&self.failing);
        if f.is_none() {
            tracing::error!(why = %why, "ledger writes fail; intake pauses and the writes are retried until they land");
            metrics::gauge!(m::LEDGER_FAILING).set(1.0);
        }
        *f = Some(why);
    }

    fn ok(&self) {
        let mut f = crate::sync::lock(&self.failing);
        if f.take().is_some() {
            tracing::info!("ledger writes succeed again; intake resumes");
            metrics::gauge!(m::LEDGER_FAILING).set(0.0);
        }
    }

    /// Why writes fail, while they do.
    pub(crate) fn reason(&self) -> Option<String> {
        crate::sync::lock(&self.failing).clone()
    }
}

/// Where every engine's writer runs: a single-threaded runtime on a thread of
/// its own, alive for the whole process.
///
/// The writer is the one serial stage of the decision path — every event
/// waits for its batch to commit — and it awaits the database several times
/// per batch. On the shared runtime each of those awaits queued behind
/// hundreds of intake tasks before the writer ran again, so the database sat
/// idle between statements and throughput was bound by scheduling, not by
/// work. On its own thread the writer resumes as soon as a statement is done.
/// The runtime outlives every engine so that database connections opened
/// from it (a pool may open one on demand) keep being served.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Handle> {
    static RUNTIME: Lock<Option<tokio::runtime::Handle>> = Lock::new(None);
    let mut held = crate::sync::lock(&RUNTIME);
    if let Some(handle) = held.as_ref() {
        return Ok(handle.clone());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("switchyard-writer".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    *held = Some(handle.clone());
    Ok(handle)
}

/// The writer's state.
pub(crate) struct Writer {
    pub ledger: Arc<dyn Ledger>,
    pub lease: Arc<Lock<Lease>>,
    pub dispatcher: Arc<Dispatcher>,
    /// Set by `abandon` and `shutdown`: refuse everything, stop retrying.
    pub closed: Arc<AtomicBool>,
    /// Set once the lease is taken by another instance.
    pub lost: watch::Receiver<bool>,
    /// Wakes the lease keeper to renew at once (a write found it expired).
    pub renew: Arc<tokio::sync::Notify>,
    pub health: Arc<Health>,
}

/// One batch of jobs, as parallel lists (the store takes slices).
#[derive(Default)]
struct Batch {
    changes: Vec<Transition>,
    change_replies: Vec<oneshot::Sender<Result<bool, WriteError>>>,
    items: Vec<EventDecisions>,
    metas: Vec<Metas>,
    plan_replies: Vec<oneshot::Sender<Result<EventOutcome, WriteError>>>,
    /// A status change written again without its output after a refusal:
    /// refused once more, it is given up.
    last_resort: bool,
}

impl Batch {
    fn push(&mut self, job: Job) {
        match job {
            Job::Decide { plan, reply } => {
                self.items.push(plan.decisions);
                self.metas.push(plan.dispatch);
                self.plan_replies.push(reply);
            }
            Job::Transition { change, reply } => {
                self.changes.push(change);
                self.change_replies.push(reply);
            }
        }
    }

    fn len(&self) -> usize {
        self.changes.len() + self.items.len()
    }

    /// The first half (changes and items each cut in half, so every run's
    /// changes and every event keep their order), and the rest.
    fn split(mut self) -> (Batch, Batch) {
        let c = self.changes.len().div_ceil(2);
        let i = if self.changes.len() == 1 && self.items.len() == 1 {
            0
        } else {
            self.items.len().div_ceil(2)
        };
        let rest = Batch {
            changes: self.changes.split_off(c),
            change_replies: self.change_replies.split_off(c),
            items: self.items.split_off(i),
            metas: self.metas.split_off(i),
            plan_replies: self.plan_replies.split_off(i),
            last_resort: false,
        };
        (self, rest)
    }

    fn fail(self, e: &WriteError) {
        for reply in self.change_replies {
            let _ = reply.send(Err(e.clone()));
        }
        for reply in self.plan_replies {
            let _ = reply.send(Err(e.clone()));
        }
    }
}

/// First wait before writing a failed batch again; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Run until every sender is gone (on [`runtime`]).
pub(crate) async fn run(writer: Writer, mut jobs: mpsc::Receiver<Job>, batch_max: usize) {
    let mut buf: Vec<Job> = Vec::with_capacity(batch_max);
    while jobs.recv_many(&mut buf, batch_max).await > 0 {
        let mut batch = Batch::default();
        for job in buf.drain(..) {
            batch.push(job);
        }
        if writer.closed.load(Ordering::SeqCst) {
            writer.ledger.write_idle();
            batch.fail(&WriteError::Closed);
            continue;
        }
        // Once per batch: a retry writes the same runs, with the same ids.
        stamp(&mut batch.items, crate::clock::now());
        let more = || !jobs.is_empty();
        writer.commit(batch, &more, false).await;
    }
    writer.ledger.write_idle();
}

impl Writer {
    /// Write `batch` until it lands, splitting out what the database refuses.
    /// `uncertain`: an earlier attempt failed in a way that may have
    /// committed it after all.
    async fn commit(&self, batch: Batch, more: &(dyn Fn() -> bool + Sync), uncertain: bool) {
        let mut batch = batch;
        let mut uncertain = uncertain;
        let mut wait = RETRY_FIRST;
        loop {
            let (failed, e) = match self.try_write(batch, more, uncertain).await {
                Ok(()) => {
                    self.health.ok();
                    return;
                }
                Err(failed) => failed,
            };
            batch = failed;
            if self.closed.load(Ordering::SeqCst) {
                self.ledger.write_idle();
                batch.fail(&WriteError::Closed);
                return;
            }
            if matches!(e, StoreError::LeaseLost { .. }) {
                metrics::counter!(m::LEDGER_WRITE_FAILURES, "kind" => "lease").increment(1);
                if *self.lost.borrow() {
                    batch.fail(&WriteError::from(&e));
                    return;
                }
                // Expired, not taken (the database was away when it was due):
                // renew now; the renewal also tells whether it was taken.
                self.health
                    .failing("the engine lease expired; waiting for its renewal".into());
                self.renew.notify_one();
                self.pause(Duration::from_millis(250)).await;
                continue;
            }
            if e.is_refused_data() {
                metrics::counter!(m::LEDGER_WRITE_FAILURES, "kind" => "refused").increment(1);
                self.health.ok();
                if batch.len() > 1 {
                    let (first, rest) = batch.split();
                    Box::pin(self.commit(first, more, uncertain)).await;
                    Box::pin(self.commit(rest, more, uncertain)).await;
                } else {
                    self.refused(batch, &e, more).await;
                }
                return;
            }
            metrics::counter!(m::LEDGER_WRITE_FAILURES, "kind" => "outage").increment(1);
            self.health.failing(e.to_string());
            // The connection may have dropped as the commit landed.
            uncertain = true;
            self.pause(wait).await;
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// Give back what a write keeps for the next batch, and wait.
    async fn pause(&self, d: Duration) {
        self.ledger.write_idle();
        tokio::time::sleep(d).await;
    }

    /// One event's decision, or one status change, that the database refused.
    async fn refused(&self, mut batch: Batch, e: &StoreError, more: &(dyn Fn() -> bool + Sync)) {
        if let Some(reply) = batch.plan_replies.pop() {
            let event = batch.items.first().map(|i| i.event_id.clone());
            tracing::error!(event = ?event, error = %e, "the ledger refused an event's decision; it is dead-lettered, the rest of its batch is recorded");
            let _ = reply.send(Err(WriteError::Refused(e.to_string())));
            return;
        }
        let Some(change) = batch.changes.pop() else {
            return;
        };
        let Some(reply) = batch.change_replies.pop() else {
            return;
        };
        if batch.last_resort {
            // Even the bare status change is refused: recovery at the next
            // start settles the run.
            tracing::error!(run = %change.run_id, to = change.to.as_str(), error = %e, "the ledger refused a run's status change; recovery will settle the run");
            let _ = reply.send(Err(WriteError::Store(e.to_string())));
            return;
        }
        // Keep the status and the times; drop what the database would not take.
        tracing::error!(run = %change.run_id, to = change.to.as_str(), error = %e, "the ledger refused a run's status change; it is recorded without its output, effects and reason");
        let u = change.update;
        let plain = Transition {
            run_id: change.run_id,
            to: change.to,
            update: RunUpdate {
                output: Some(format!("[the ledger refused this run's output: {e}]")),
                effects: None,
                reason: u.reason.as_ref().map(|_| "unrecordable_reason".to_owned()),
                ..u
            },
        };
        let mut again = Batch {
            last_resort: true,
            ..Batch::default()
        };
        again.push(Job::Transition {
            change: plain,
            reply,
        });
        Box::pin(self.commit(again, more, false)).await;
    }

    /// One attempt: on success every job is answered and queued runs go to
    /// their hosts; on failure the batch comes back with the error.
    async fn try_write(
        &self,
        batch: Batch,
        more: &(dyn Fn() -> bool + Sync),
        uncertain: bool,
    ) -> Result<(), (Batch, StoreError)> {
        let current = crate::sync::lock(&self.lease).clone();
        let now = crate::clock::now();
        let mut reserved: Vec<String> = Vec::new();
        let dispatcher = &self.dispatcher;
        let mut admit = |run: &NewRun| {
            let ok = dispatcher.reserve(&run.host);
            if ok {
                reserved.push(run.host.clone());
            }
            ok
        };
        let result = self
            .ledger
            .write_batch(
                &current,
                now,
                &batch.changes,
                &batch.items,
                &mut admit,
                more,
            )
            .await;
        let (applied, outcomes) = match result {
            Ok(written) => written,
            Err(e) => {
                self.dispatcher
                    .admit_committed(&reserved, Vec::new(), Vec::new(), &[]);
                tracing::warn!(error = %e, events = batch.items.len(), changes = batch.changes.len(), "a ledger write failed; nothing of it is acknowledged yet");
                return Err((batch, e));
            }
        };
        let Batch {
            change_replies,
            items,
            metas,
            plan_replies,
            ..
        } = batch;
        // After an attempt that may have committed, an event now found
        // decided before may be this batch's own: its runs, if the ledger
        // holds them `queued`, have not reached their hosts yet.
        let found: Vec<(EventDecisions, Metas)> = if uncertain {
            items
                .iter()
                .zip(&metas)
                .zip(&outcomes)
                .filter(|(_, o)| matches!(o, EventOutcome::Redelivered))
                .map(|((i, m), _)| (i.clone(), m.clone()))
                .collect()
        } else {
            Vec::new()
        };
        self.dispatcher
            .admit_committed(&reserved, items, metas, &outcomes);
        for (reply, ok) in change_replies.into_iter().zip(applied) {
            let _ = reply.send(Ok(ok));
        }
        for (reply, outcome) in plan_replies.into_iter().zip(outcomes) {
            let _ = reply.send(Ok(outcome));
        }
        if !found.is_empty() {
            self.admit_found(found).await;
        }
        Ok(())
    }

    /// Queue the runs a commit reported failed had recorded `queued`.
    async fn admit_found(&self, found: Vec<(EventDecisions, Metas)>) {
        let ids: Vec<uuid::Uuid> = found
            .iter()
            .flat_map(|(i, _)| &i.decisions)
            .flat_map(|d| &d.runs)
            .filter(|r| r.run.status == switchyard_store::RunStatus::Queued)
            .map(|r| r.run.id)
            .collect();
        match self.ledger.run_statuses(&ids).await {
            Ok(statuses) => {
                let queued = statuses
                    .into_iter()
                    .filter(|(_, s)| *s == switchyard_store::RunStatus::Queued)
                    .map(|(id, _)| id)
                    .collect();
                let (items, metas) = found.into_iter().unzip();
                self.dispatcher.admit_found(items, metas, &queued);
            }
            Err(e) => {
                tracing::error!(error = %e, runs = ids.len(), "cannot read back runs a commit reported failed may have recorded; recovery at the next start queues them")
            }
        }
    }
}

/// Give every run its place in the queue: `queued_at` is the commit time and
/// ids (UUIDv7, monotonic) follow commit order, so the ledger's
/// `(queued_at, id)` order is the order runs enter their host queues.
fn stamp(items: &mut [EventDecisions], now: chrono::DateTime<chrono::Utc>) {
    for item in items {
        for d in &mut item.decisions {
            for r in &mut d.runs {
                r.run.id = uuid::Uuid::now_v7();
                r.run.queued_at = now;
            }
        }
    }
}
