//! The ledger cap on SQLite and PostgreSQL: a storm of suppressions never
//! evicts failures, open decisions are never pruned, max_age bounds the rest.

use serde_json::json;
use std::time::Duration;
use switchyard_store::{NewDecision, NewRun, RunFilter, RunStatus, Store};
use uuid::Uuid;

mod common;
use common::t;

async fn record(
    store: &Store,
    lease: &switchyard_store::Lease,
    policy: Uuid,
    at: i64,
    statuses: &[RunStatus],
) -> Vec<Uuid> {
    let runs: Vec<NewRun> = statuses
        .iter()
        .enumerate()
        .map(|(i, s)| NewRun {
            id: Uuid::now_v7(),
            host: "pve-01".into(),
            target_type: "vm".into(),
            target_id: format!("{}", 100 + i),
            driver: None,
            capability: "vm.power".into(),
            verb: "shutdown".into(),
            params: json!({}),
            idempotency_key: None,
            status: *s,
            severity: None,
            reason: None,
            count: 1,
            queued_at: t(at),
            inverse_of: None,
        })
        .collect();
    let ids = runs.iter().map(|r| r.id).collect();
    let d = NewDecision {
        id: Uuid::now_v7(),
        policy_id: policy,
        policy_name: "p".into(),
        policy_version: 1,
        event_id: format!("e{at}"),
        event_kind: "k".into(),
        correlation_id: "c".into(),
        decided_at: t(at),
        correlated_event_ids: Vec::new(),
    };
    common::record(store, lease, d, runs).await.unwrap();
    ids
}

async fn count(store: &Store, status: RunStatus) -> usize {
    store
        .list_runs(
            &RunFilter {
                status: Some(status),
                ..Default::default()
            },
            None,
            1000,
        )
        .await
        .unwrap()
        .0
        .len()
}

async fn a_suppression_storm_keeps_the_failures(store: Store) {
    use RunStatus::*;
    let lease = store
        .acquire_lease("e", Duration::from_secs(1_000_000))
        .await
        .unwrap()
        .unwrap();
    let policy = Uuid::now_v7();
    record(&store, &lease, policy, 1, &[Failed]).await;
    record(&store, &lease, policy, 2, &[TimedOut, Skipped]).await;
    // One firing over many VMs stays whole.
    record(
        &store,
        &lease,
        policy,
        3,
        &[Succeeded, Succeeded, Failed, Skipped, Skipped],
    )
    .await;
    for i in 0..5 {
        record(&store, &lease, policy, 10 + i, &[Succeeded]).await;
    }
    for i in 0..200 {
        record(&store, &lease, policy, 100 + i, &[Suppressed]).await;
    }
    // An old decision with a run still queued is never pruned.
    let open = record(&store, &lease, policy, 0, &[Queued]).await;
    // Another policy's ledger is capped on its own.
    record(&store, &lease, Uuid::now_v7(), 50, &[Suppressed]).await;

    let report = store
        .prune_ledger(t(400), 30, Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(
        (report.decisions, report.runs),
        (170, 170),
        "only the oldest suppressions go"
    );
    assert_eq!(count(&store, Failed).await, 2);
    assert_eq!(count(&store, TimedOut).await, 1);
    assert_eq!(count(&store, Succeeded).await, 7);
    assert_eq!(
        count(&store, Skipped).await,
        3,
        "the failed firing keeps all its runs"
    );
    assert_eq!(count(&store, Suppressed).await, 31);
    assert_eq!(count(&store, Queued).await, 1);
    let kept: Vec<String> = store
        .list_runs(
            &RunFilter {
                status: Some(Suppressed),
                policy_id: Some(policy),
                ..Default::default()
            },
            None,
            1000,
        )
        .await
        .unwrap()
        .0
        .into_iter()
        .map(|r| r.event_id)
        .collect();
    assert_eq!(
        kept.first().map(String::as_str),
        Some("e299"),
        "the newest suppressions stay"
    );

    // max_age: a day later, only the open decision is left.
    let report = store
        .prune_ledger(t(400 + 86_400 * 2), 30, Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(report.decisions, 2 + 1 + 5 + 30 + 1);
    let left = store
        .list_runs(&RunFilter::default(), None, 1000)
        .await
        .unwrap()
        .0;
    assert_eq!(left.iter().map(|r| r.id).collect::<Vec<_>>(), open);
}

async fn suppressions_aggregate_into_one_record(store: Store) {
    let lease = store
        .acquire_lease("e", Duration::from_secs(1_000))
        .await
        .unwrap()
        .unwrap();
    let ids = record(&store, &lease, Uuid::now_v7(), 1, &[RunStatus::Suppressed]).await;
    for expected in 2..=5 {
        assert_eq!(store.bump_count(ids[0]).await.unwrap(), expected);
    }
    assert_eq!(store.get_run(ids[0]).await.unwrap().count, 5);
    let other = record(&store, &lease, Uuid::now_v7(), 2, &[RunStatus::Queued]).await;
    assert!(
        store.bump_count(other[0]).await.is_err(),
        "only suppressed records aggregate"
    );
}

/// A pass reads only what can have changed since the last one: policies
/// with new decisions, and policies whose decisions were still open. A
/// policy over its cap only once its open decisions finished, with nothing
/// new since, is capped on the next pass.
async fn decisions_that_finish_later_are_capped_on_the_next_pass(store: Store) {
    use RunStatus::*;
    let lease = store
        .acquire_lease("e", Duration::from_secs(1_000_000))
        .await
        .unwrap()
        .unwrap();
    let (busy, other) = (Uuid::now_v7(), Uuid::now_v7());
    let mut open = Vec::new();
    for i in 0..35 {
        open.extend(record(&store, &lease, busy, i, &[Queued]).await);
    }
    record(&store, &lease, other, 1, &[Succeeded]).await;
    let first = store
        .prune_ledger(t(1000), 30, Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(first.decisions, 0, "open decisions are never pruned");
    for id in open {
        common::transition(
            &store,
            &lease,
            id,
            Succeeded,
            switchyard_store::RunUpdate::default(),
        )
        .await
        .unwrap()
        .unwrap();
    }
    let second = store
        .prune_ledger(t(1001), 30, Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(second.decisions, 5, "capped once they finished");
    assert_eq!(count(&store, Succeeded).await, 31);
    // Nothing new, nothing open: a pass prunes nothing.
    let third = store
        .prune_ledger(t(1002), 30, Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(third.decisions, 0);
}

switchyard_test_support::backend_suite!(
    open = switchyard_store::Store::open;

    decisions_that_finish_later_are_capped_on_the_next_pass,
    a_suppression_storm_keeps_the_failures,
    suppressions_aggregate_into_one_record
);
