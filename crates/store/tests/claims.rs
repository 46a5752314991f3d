//! Window claims and the inbox on SQLite and a real PostgreSQL, through the
//! write path production uses: expiry, independence of kinds, forgetting old
//! deliveries, and writers racing for one key.

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use switchyard_store::{
    EventDecisions, EventOutcome, Lease, NewDecision, NewRun, PlannedDecision, PlannedRun,
    RunStatus, Store, Window,
};
use uuid::Uuid;

mod common;
use common::{lease, t};

/// One event's decision at `at`: under the suppression window `window`,
/// with one run claiming the idempotency key `idem`, both for 10 s.
fn item(delivery: &str, at: i64, window: Option<&str>, idem: Option<&str>) -> EventDecisions {
    let decision = NewDecision {
        id: Uuid::now_v7(),
        policy_id: Uuid::from_u128(1),
        policy_name: "p1".into(),
        policy_version: 1,
        event_id: delivery.into(),
        event_kind: "ups.on_battery".into(),
        correlation_id: delivery.into(),
        decided_at: t(at),
        correlated_event_ids: Vec::new(),
    };
    let run = NewRun {
        id: Uuid::now_v7(),
        host: "ups1".into(),
        target_type: "host".into(),
        target_id: "ups1".into(),
        driver: Some("exec".into()),
        capability: "command.run".into(),
        verb: "run".into(),
        params: json!({}),
        idempotency_key: idem.map(str::to_owned),
        status: RunStatus::Queued,
        severity: None,
        reason: None,
        count: 1,
        queued_at: t(at),
        inverse_of: None,
    };
    EventDecisions {
        delivery_key: delivery.into(),
        event_id: delivery.into(),
        received_at: t(at),
        decisions: vec![PlannedDecision {
            decision,
            suppression: window.map(|k| Window {
                key: k.into(),
                ttl: Duration::from_secs(10),
            }),
            runs: vec![PlannedRun {
                run,
                idempotency_ttl: idem.map(|_| Duration::from_secs(10)),
            }],
        }],
        correlation: Vec::new(),
    }
}

/// How the one run of an item was settled: its status, or `suppressed`.
async fn settle(store: &Store, lease: &Lease, at: i64, item: EventDecisions) -> RunStatus {
    let mut admit = |_: &NewRun| true;
    match store
        .record_batch(lease, t(at), &[item], &mut admit)
        .await
        .unwrap()
        .pop()
    {
        Some(EventOutcome::Recorded(ds)) if ds[0].suppressed.is_some() => RunStatus::Suppressed,
        Some(EventOutcome::Recorded(ds)) => ds[0].runs[0].status,
        other => panic!("not recorded: {other:?}"),
    }
}

async fn claims_hold_until_they_expire(store: Store) {
    let lease = lease(&store).await;
    let window = Some("p1|ups1");
    assert_eq!(
        settle(&store, &lease, 0, item("d1", 0, window, None)).await,
        RunStatus::Queued
    );
    assert_eq!(
        settle(&store, &lease, 5, item("d2", 5, window, None)).await,
        RunStatus::Suppressed
    );
    // Another key, and the same key under another kind, are independent.
    assert_eq!(
        settle(&store, &lease, 5, item("d3", 5, Some("p1|ups2"), None)).await,
        RunStatus::Queued
    );
    assert_eq!(
        settle(&store, &lease, 5, item("d4", 5, None, Some("p1|ups1"))).await,
        RunStatus::Queued
    );
    assert_eq!(
        settle(&store, &lease, 6, item("d5", 6, None, Some("p1|ups1"))).await,
        RunStatus::Deduplicated
    );
    // At expiry the claim is free again.
    assert_eq!(
        settle(&store, &lease, 10, item("d6", 10, window, None)).await,
        RunStatus::Queued
    );
    assert_eq!(
        store.prune_claims(t(16)).await.unwrap(),
        3,
        "expired by 16: the windows of d3 and d4, and the suppressed record d2 was counted on"
    );
}

async fn the_inbox_forgets_old_deliveries(store: Store) {
    let lease = lease(&store).await;
    let mut admit = |_: &NewRun| true;
    for chunk in (0..25_000).collect::<Vec<i64>>().chunks(1_000) {
        let items: Vec<EventDecisions> = chunk
            .iter()
            .map(|i| EventDecisions {
                delivery_key: format!("S|{i}"),
                event_id: "e".into(),
                received_at: t(i / 1000),
                decisions: Vec::new(),
                correlation: Vec::new(),
            })
            .collect();
        let at = t(chunk[0] / 1000);
        store
            .record_batch(&lease, at, &items, &mut admit)
            .await
            .unwrap();
    }
    // Older than t(20): 20,000 rows, removed in two full slices and an empty one.
    assert_eq!(store.prune_inbox(t(20)).await.unwrap(), 20_000);
    assert_eq!(store.prune_inbox(t(20)).await.unwrap(), 0);
    // What it forgot is decided again; what it remembers is not.
    let again = |key: &str| EventDecisions {
        delivery_key: key.into(),
        event_id: "e".into(),
        received_at: t(30),
        decisions: Vec::new(),
        correlation: Vec::new(),
    };
    let outcomes = store
        .record_batch(&lease, t(30), &[again("S|0"), again("S|24999")], &mut admit)
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            EventOutcome::Recorded(Vec::new()),
            EventOutcome::Redelivered
        ]
    );
}

async fn racing_writers_claim_once(store: Store) {
    let store = Arc::new(store);
    let lease = Arc::new(lease(&store).await);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (store, lease) = (Arc::clone(&store), Arc::clone(&lease));
        tasks.push(tokio::spawn(async move {
            settle(
                &store,
                &lease,
                0,
                item(&format!("race-{i}"), 0, None, Some("same-key")),
            )
            .await
        }));
    }
    let mut queued = 0;
    for task in tasks {
        if task.await.unwrap() == RunStatus::Queued {
            queued += 1;
        }
    }
    assert_eq!(queued, 1, "exactly one writer claims the key");
}

switchyard_test_support::backend_suite!(
    open = switchyard_store::Store::open;

    claims_hold_until_they_expire,
    the_inbox_forgets_old_deliveries,
    racing_writers_claim_once
);
