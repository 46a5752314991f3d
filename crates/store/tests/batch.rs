//! The group-commit path on SQLite and a real PostgreSQL: inbox, windows and
//! queue admission settled in batch order, exactly as one transaction per
//! event would settle them.

use serde_json::json;
use std::time::Duration;
use switchyard_store::{
    Error, EventDecisions, EventOutcome, NewDecision, NewRun, PlannedDecision, PlannedRun,
    RunFilter, RunStatus, RunUpdate, Store, Transition, Window,
};
use uuid::Uuid;

mod common;
use common::{lease, t};

const POLICY: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001);

fn planned(
    event: &str,
    at: i64,
    window: Option<&str>,
    hosts: &[&str],
    idem: Option<&str>,
) -> PlannedDecision {
    PlannedDecision {
        decision: NewDecision {
            id: Uuid::now_v7(),
            policy_id: POLICY,
            policy_name: "ups-shutdown".into(),
            policy_version: 1,
            event_id: event.into(),
            event_kind: "ups.on_battery".into(),
            correlation_id: format!("corr-{event}"),
            decided_at: t(at),
            correlated_event_ids: Vec::new(),
        },
        suppression: window.map(|k| Window {
            key: k.into(),
            ttl: Duration::from_secs(600),
        }),
        runs: hosts
            .iter()
            .map(|h| PlannedRun {
                run: NewRun {
                    id: Uuid::now_v7(),
                    host: (*h).into(),
                    target_type: "vm".into(),
                    target_id: "100".into(),
                    driver: Some("proxmox".into()),
                    capability: "vm.power".into(),
                    verb: "shutdown".into(),
                    params: json!({"timeout_s": 120}),
                    idempotency_key: idem.map(|k| format!("{k}-{h}")),
                    status: RunStatus::Queued,
                    severity: None,
                    reason: None,
                    count: 1,
                    queued_at: t(at),
                    inverse_of: None,
                },
                idempotency_ttl: idem.map(|_| Duration::from_secs(600)),
            })
            .collect(),
    }
}

fn item(delivery: &str, at: i64, decisions: Vec<PlannedDecision>) -> EventDecisions {
    EventDecisions {
        delivery_key: delivery.into(),
        event_id: decisions
            .first()
            .map(|d| d.decision.event_id.clone())
            .unwrap_or_default(),
        received_at: t(at),
        decisions,
        correlation: Vec::new(),
    }
}

fn statuses(o: &EventOutcome) -> Vec<RunStatus> {
    match o {
        EventOutcome::Redelivered => vec![],
        EventOutcome::Recorded(ds) => ds
            .iter()
            .flat_map(|d| d.runs.iter().map(|r| r.status))
            .collect(),
    }
}

async fn all_runs(store: &Store) -> Vec<switchyard_store::RunRecord> {
    store
        .list_runs(&RunFilter::default(), None, 1000)
        .await
        .unwrap()
        .0
}

async fn the_inbox_settles_redeliveries(store: Store) {
    let lease = lease(&store).await;
    let batch = vec![
        item("S|1", 0, vec![planned("e1", 0, None, &["pve-01"], None)]),
        item("S|1", 0, vec![planned("e1", 0, None, &["pve-01"], None)]),
        item("S|2", 0, vec![planned("e2", 0, None, &["pve-02"], None)]),
    ];
    let out = store
        .record_batch(&lease, t(0), &batch, &mut |_| true)
        .await
        .unwrap();
    assert_eq!(statuses(&out[0]), [RunStatus::Queued]);
    assert_eq!(
        out[1],
        EventOutcome::Redelivered,
        "same delivery twice in one batch"
    );
    assert_eq!(statuses(&out[2]), [RunStatus::Queued]);
    // A later batch carrying a decided delivery records nothing.
    let again = vec![item(
        "S|2",
        1,
        vec![planned("e2", 1, None, &["pve-02"], None)],
    )];
    let out = store
        .record_batch(&lease, t(1), &again, &mut |_| true)
        .await
        .unwrap();
    assert_eq!(out, [EventOutcome::Redelivered]);
    assert_eq!(all_runs(&store).await.len(), 2);
    // The same event id under another delivery (published again): decided again.
    let republished = vec![item(
        "S|3",
        2,
        vec![planned("e2", 2, None, &["pve-02"], None)],
    )];
    let out = store
        .record_batch(&lease, t(2), &republished, &mut |_| true)
        .await
        .unwrap();
    assert_eq!(statuses(&out[0]), [RunStatus::Queued]);
}

async fn suppressions_aggregate_per_window(store: Store) {
    let lease = lease(&store).await;
    let batch: Vec<EventDecisions> = (0..4)
        .map(|i| {
            item(
                &format!("S|{i}"),
                i,
                vec![planned(
                    &format!("e{i}"),
                    i,
                    Some("p|ups-1"),
                    &["pve-01"],
                    None,
                )],
            )
        })
        .collect();
    let out = store
        .record_batch(&lease, t(5), &batch, &mut |_| true)
        .await
        .unwrap();
    assert_eq!(
        statuses(&out[0]),
        [RunStatus::Queued],
        "the first event fires"
    );
    let records: Vec<Uuid> = out[1..]
        .iter()
        .map(|o| match o {
            EventOutcome::Recorded(ds) => ds[0].suppressed.as_ref().expect("suppressed").record,
            EventOutcome::Redelivered => panic!("not a redelivery"),
        })
        .collect();
    assert!(
        records.iter().all(|r| *r == records[0]),
        "one record per window"
    );
    let record = store.get_run(records[0]).await.unwrap();
    assert_eq!(record.status, RunStatus::Suppressed);
    assert_eq!(record.count, 3);
    // The next batch inside the window counts on the same record.
    let later = vec![item(
        "S|9",
        60,
        vec![planned("e9", 60, Some("p|ups-1"), &["pve-01"], None)],
    )];
    store
        .record_batch(&lease, t(60), &later, &mut |_| true)
        .await
        .unwrap();
    assert_eq!(store.get_run(records[0]).await.unwrap().count, 4);
    assert_eq!(
        all_runs(&store).await.len(),
        2,
        "one queued run, one aggregated record"
    );
    // After the window the policy fires again.
    let after = vec![item(
        "S|10",
        700,
        vec![planned("e10", 700, Some("p|ups-1"), &["pve-01"], None)],
    )];
    let out = store
        .record_batch(&lease, t(700), &after, &mut |_| true)
        .await
        .unwrap();
    assert_eq!(statuses(&out[0]), [RunStatus::Queued]);
}

async fn idempotency_keys_deduplicate_across_batches(store: Store) {
    let lease = lease(&store).await;
    let batch = vec![
        item(
            "S|1",
            0,
            vec![planned("e1", 0, None, &["pve-01", "pve-02"], Some("k"))],
        ),
        item(
            "S|2",
            1,
            vec![planned("e2", 1, None, &["pve-02", "pve-03"], Some("k"))],
        ),
    ];
    let out = store
        .record_batch(&lease, t(1), &batch, &mut |_| true)
        .await
        .unwrap();
    assert_eq!(statuses(&out[0]), [RunStatus::Queued, RunStatus::Queued]);
    assert_eq!(
        statuses(&out[1]),
        [RunStatus::Deduplicated, RunStatus::Queued],
        "pve-02 is already queued by e1"
    );
    let next = vec![item(
        "S|3",
        2,
        vec![planned("e3", 2, None, &["pve-03"], Some("k"))],
    )];
    let out = store
        .record_batch(&lease, t(2), &next, &mut |_| true)
        .await
        .unwrap();
    assert_eq!(statuses(&out[0]), [RunStatus::Deduplicated]);
}

async fn a_full_queue_fails_the_run(store: Store) {
    let lease = lease(&store).await;
    let batch = vec![item(
        "S|1",
        0,
        vec![planned(
            "e1",
            0,
            None,
            &["pve-01", "pve-02", "pve-01"],
            None,
        )],
    )];
    let mut room = std::collections::HashMap::from([("pve-01", 1), ("pve-02", 1)]);
    let out = store
        .record_batch(&lease, t(0), &batch, &mut |run| {
            let left = room.get_mut(run.host.as_str()).unwrap();
            if *left == 0 {
                return false;
            }
            *left -= 1;
            true
        })
        .await
        .unwrap();
    assert_eq!(
        statuses(&out[0]),
        [RunStatus::Queued, RunStatus::Queued, RunStatus::Failed]
    );
    let EventOutcome::Recorded(ds) = &out[0] else {
        panic!("recorded")
    };
    assert_eq!(ds[0].runs[2].reason.as_deref(), Some("queue_full"));
}

async fn a_lost_lease_records_nothing(store: Store) {
    let old = store
        .acquire_lease("engine-a", Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    // engine-a stalls past expiry (by the database's clock); engine-b takes over.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let new = store
        .acquire_lease("engine-b", Duration::from_secs(3600))
        .await
        .unwrap()
        .expect("the expired lease is taken over");
    let batch = vec![item(
        "S|1",
        0,
        vec![planned("e1", 0, Some("w"), &["pve-01"], Some("k"))],
    )];
    let err = store
        .record_batch(&old, t(4001), &batch, &mut |_| true)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err}");
    assert!(all_runs(&store).await.is_empty());
    // Nothing half-done: the inbox row and the windows were rolled back too.
    let again = store
        .record_batch(&new, t(4001), &batch, &mut |_| true)
        .await
        .unwrap();
    assert_eq!(statuses(&again[0]), vec![RunStatus::Queued], "{again:?}");
}

/// A takeover cannot slip in while a write is in progress: the write holds
/// the lease row (PostgreSQL: `FOR SHARE`; SQLite: the write lock) until it
/// commits, so the new holder's recovery, which reads right after its
/// takeover, sees everything the old holder wrote.
async fn a_takeover_waits_for_the_write_in_progress(store: Store) {
    let a = store
        .acquire_lease("engine-a", Duration::from_millis(500))
        .await
        .unwrap()
        .unwrap();
    let batch = vec![item(
        "S|1",
        0,
        vec![planned("e1", 0, None, &["pve-01"], None)],
    )];
    let b_store = store.clone();
    let rt = tokio::runtime::Handle::current();
    let mut takeover = None;
    let mut admit = |_: &NewRun| {
        // Mid-transaction: the lease expires, and engine-b takes over and
        // reads what is open, as its recovery would.
        std::thread::sleep(Duration::from_millis(600));
        let b_store = b_store.clone();
        takeover = Some(rt.spawn(async move {
            let b = b_store
                .acquire_lease("engine-b", Duration::from_secs(3600))
                .await
                .unwrap()
                .expect("the expired lease is taken over");
            let open = b_store
                .list_runs(&RunFilter::default(), None, 100)
                .await
                .unwrap()
                .0;
            (b, open)
        }));
        // Time enough for a takeover that does not wait to commit and read.
        std::thread::sleep(Duration::from_millis(500));
        true
    };
    store
        .record_batch(&a, t(0), &batch, &mut admit)
        .await
        .expect("the lease was valid when the write began");
    let (b, open) = takeover.unwrap().await.unwrap();
    assert_eq!(b.epoch, a.epoch + 1);
    assert_eq!(
        open.len(),
        1,
        "the new holder saw the old holder's last write"
    );
}

async fn transitions_apply_in_one_transaction(store: Store) {
    let lease = lease(&store).await;
    let batch = vec![item(
        "S|1",
        0,
        vec![planned("e1", 0, None, &["a", "b"], None)],
    )];
    let out = store
        .record_batch(&lease, t(0), &batch, &mut |_| true)
        .await
        .unwrap();
    let EventOutcome::Recorded(ds) = &out[0] else {
        panic!("recorded")
    };
    let (a, b) = (ds[0].runs[0].id, ds[0].runs[1].id);
    let running = |id| Transition {
        run_id: id,
        to: RunStatus::Running,
        update: RunUpdate {
            started_at: Some(t(1)),
            ..Default::default()
        },
    };
    let done = |id| Transition {
        run_id: id,
        to: RunStatus::Succeeded,
        update: RunUpdate {
            finished_at: Some(t(3)),
            output: Some("ok".into()),
            effects: Some(json!({"changed": true})),
            ..Default::default()
        },
    };
    let applied = store
        .transition_many(&lease, &[running(a), running(b), done(a)])
        .await
        .unwrap();
    assert_eq!(applied, [true, true, true]);
    // A finished run does not change again.
    let applied = store
        .transition_many(&lease, &[running(a), done(b)])
        .await
        .unwrap();
    assert_eq!(applied, [false, true]);
    let a = store.get_run(a).await.unwrap();
    assert_eq!(a.status, RunStatus::Succeeded);
    assert_eq!(a.duration_ms, Some(2000));
    assert_eq!(a.output.as_deref(), Some("ok"));
    assert_eq!(a.effects, Some(json!({"changed": true})));
}

/// Params come back as the JSON they were recorded with, whatever the
/// backend keeps them as (text on SQLite, `jsonb` on PostgreSQL).
async fn params_read_back_as_recorded(store: Store) {
    let lease = lease(&store).await;
    let params = json!({
        "argv": ["echo", "ünïcode \"quoted\" \\ \n", 7, 2.5, -1, true, null],
        "nested": {"b": [], "a": {}, "z": {"deep": [1, [2, {"x": "y"}]]}},
        "timeout_s": 120,
    });
    let mut decision = planned("e1", 0, None, &["pve-01"], None);
    decision.runs[0].run.params = params.clone();
    let id = decision.runs[0].run.id;
    store
        .record_batch(&lease, t(0), &[item("S|1", 0, vec![decision])], &mut |_| {
            true
        })
        .await
        .unwrap();
    assert_eq!(store.get_run(id).await.unwrap().params, params);
}

switchyard_test_support::backend_suite!(
    open = switchyard_store::Store::open;

    params_read_back_as_recorded,
    the_inbox_settles_redeliveries,
    suppressions_aggregate_per_window,
    idempotency_keys_deduplicate_across_batches,
    a_full_queue_fails_the_run,
    a_lost_lease_records_nothing,
    a_takeover_waits_for_the_write_in_progress,
    transitions_apply_in_one_transaction
);
