//! The single writer: every decision and status change goes through one task
//! that commits them in batches (group commit) as the lease holder.

use crate::decide::{DispatchMeta, Plan};
use crate::dispatch::Dispatcher;
use crate::ports::Ledger;
use std::sync::Arc;
use switchyard_store::{
    Error as StoreError, EventDecisions, EventOutcome, Lease, NewRun, Transition,
};

/// Dispatch facts of one event's runs planned `queued`, in their order.
pub(crate) type Metas = Vec<DispatchMeta>;
use tokio::sync::{mpsc, oneshot};

/// Why a write failed; the event is not acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the store failed: {0}")]
    Store(String),
    #[error("the engine lease is lost: {0}")]
    LeaseLost(String),
    #[error("the engine is shutting down")]
    Closed,
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
pub(crate) fn runtime() -> &'static tokio::runtime::Handle {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the ledger writer's runtime starts");
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("switchyard-writer".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .expect("the ledger writer's thread starts");
        handle
    })
}

/// Run until every sender is gone (on [`runtime`]).
pub(crate) async fn run(
    mut jobs: mpsc::Receiver<Job>,
    closed: Arc<std::sync::atomic::AtomicBool>,
    ledger: Arc<dyn Ledger>,
    lease: Arc<Lock<Lease>>,
    dispatcher: Arc<Dispatcher>,
    batch_max: usize,
) {
    let mut buf: Vec<Job> = Vec::with_capacity(batch_max);
    while jobs.recv_many(&mut buf, batch_max).await > 0 {
        if closed.load(std::sync::atomic::Ordering::SeqCst) {
            ledger.write_idle();
            for job in buf.drain(..) {
                match job {
                    Job::Decide { reply, .. } => {
                        let _ = reply.send(Err(WriteError::Closed));
                    }
                    Job::Transition { reply, .. } => {
                        let _ = reply.send(Err(WriteError::Closed));
                    }
                }
            }
            continue;
        }
        let mut items = Vec::new();
        let mut metas = Vec::new();
        let mut plan_replies = Vec::new();
        let mut changes = Vec::new();
        let mut change_replies = Vec::new();
        for job in buf.drain(..) {
            match job {
                Job::Decide { plan, reply } => {
                    items.push(plan.decisions);
                    metas.push(plan.dispatch);
                    plan_replies.push(reply);
                }
                Job::Transition { change, reply } => {
                    changes.push(change);
                    change_replies.push(reply);
                }
            }
        }
        let current = lease.lock().expect("lease lock").clone();
        let now = chrono::Utc::now();
        stamp(&mut items, now);
        let mut reserved: Vec<String> = Vec::new();
        let mut admit = |run: &NewRun| {
            let ok = dispatcher.reserve(&run.host);
            if ok {
                reserved.push(run.host.clone());
            }
            ok
        };
        let more = || !jobs.is_empty();
        let result = ledger
            .write_batch(&current, now, &changes, &items, &mut admit, &more)
            .await;
        match result {
            Ok((applied, outcomes)) => {
                dispatcher.admit_committed(&reserved, items, metas, &outcomes);
                for (reply, ok) in change_replies.into_iter().zip(applied) {
                    let _ = reply.send(Ok(ok));
                }
                for (reply, outcome) in plan_replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                dispatcher.admit_committed(&reserved, Vec::new(), Vec::new(), &[]);
                tracing::error!(error = %e, events = items.len(), changes = changes.len(), "the ledger write failed; the events are not acknowledged");
                for reply in change_replies {
                    let _ = reply.send(Err(WriteError::from(&e)));
                }
                for reply in plan_replies {
                    let _ = reply.send(Err(WriteError::from(&e)));
                }
            }
        }
    }
    ledger.write_idle();
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
