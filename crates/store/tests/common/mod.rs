//! What the store tests share: decisions recorded and runs moved through
//! the write path production uses (`record_batch`, `transition_many`).
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use std::time::Duration;
use switchyard_store::{
    Error, EventDecisions, EventOutcome, Lease, NewDecision, NewRun, PlannedDecision, PlannedRun,
    RunRecord, RunStatus, RunUpdate, Store, Transition,
};
use uuid::Uuid;

/// A fixed instant `s` seconds on.
pub fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

/// The engine lease, held for an hour by `engine-a`.
pub async fn lease(store: &Store) -> Lease {
    store
        .acquire_lease("engine-a", Duration::from_secs(3600))
        .await
        .unwrap()
        .expect("a free lease")
}

/// Record `decision` with `runs` (each recorded with the status it has) as
/// one event's decision, delivered as `event`.
pub async fn record(
    store: &Store,
    lease: &Lease,
    decision: NewDecision,
    runs: Vec<NewRun>,
) -> Result<EventOutcome, Error> {
    let now: DateTime<Utc> = decision.decided_at;
    let item = EventDecisions {
        delivery_key: format!("test|{}", decision.id),
        event_id: decision.event_id.clone(),
        received_at: now,
        decisions: vec![PlannedDecision {
            decision,
            suppression: None,
            runs: runs
                .into_iter()
                .map(|run| PlannedRun {
                    run,
                    idempotency_ttl: None,
                })
                .collect(),
        }],
        correlation: Vec::new(),
    };
    let mut admit = |_: &NewRun| true;
    let mut outcomes = store.record_batch(lease, now, &[item], &mut admit).await?;
    Ok(outcomes.pop().unwrap_or(EventOutcome::Redelivered))
}

/// Move one run to `to` as the holder of `lease`: the run as it is now, or
/// `Ok(Err(status))` when it was already terminal and nothing changed.
pub async fn transition(
    store: &Store,
    lease: &Lease,
    run_id: Uuid,
    to: RunStatus,
    update: RunUpdate,
) -> Result<Result<RunRecord, RunStatus>, Error> {
    let applied = store
        .transition_many(lease, &[Transition { run_id, to, update }])
        .await?;
    let now = store.get_run(run_id).await?;
    Ok(if applied.first() == Some(&true) {
        Ok(now)
    } else {
        Err(now.status)
    })
}
