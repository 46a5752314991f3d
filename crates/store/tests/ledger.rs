//! The runs ledger on SQLite and a real PostgreSQL, written through the
//! production write path: guarded transitions, queries and cursor paging,
//! and a stale lease that cannot write.

mod common;
use common::{lease, record, t, transition};

use serde_json::json;
use std::time::Duration;
use switchyard_store::{Error, NewDecision, NewRun, RunFilter, RunStatus, RunUpdate, Store};
use uuid::Uuid;

fn decision(policy: Uuid, event: &str, at: i64) -> NewDecision {
    NewDecision {
        id: Uuid::now_v7(),
        policy_id: policy,
        policy_name: "ups-shutdown".into(),
        policy_version: 1,
        event_id: event.into(),
        event_kind: "ups.on_battery".into(),
        correlation_id: format!("corr-{event}"),
        decided_at: t(at),
        correlated_event_ids: Vec::new(),
    }
}

fn run(host: &str, vm: &str, status: RunStatus, at: i64) -> NewRun {
    NewRun {
        id: Uuid::now_v7(),
        host: host.into(),
        target_type: "vm".into(),
        target_id: vm.into(),
        driver: Some("proxmox".into()),
        capability: "vm.power".into(),
        verb: "shutdown".into(),
        params: json!({"timeout_s": 120}),
        idempotency_key: Some(format!("key-{host}-{vm}")),
        status,
        severity: None,
        reason: None,
        count: 1,
        queued_at: t(at),
        inverse_of: None,
    }
}

async fn transitions_are_guarded(store: Store) {
    let lease = lease(&store).await;
    let r = run("pve-01", "100", RunStatus::Queued, 0);
    let id = r.id;
    record(&store, &lease, decision(Uuid::now_v7(), "e", 0), vec![r])
        .await
        .unwrap();
    let running = transition(
        &store,
        &lease,
        id,
        RunStatus::Running,
        RunUpdate {
            started_at: Some(t(5)),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(running.status, RunStatus::Running);
    let done = transition(
        &store,
        &lease,
        id,
        RunStatus::Succeeded,
        RunUpdate {
            finished_at: Some(t(7)),
            effects: Some(
                json!([{"target": "100", "field": "status", "from": "running", "to": "stopped"}]),
            ),
            output: Some("x".repeat(100_000)),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        (done.status, done.duration_ms),
        (RunStatus::Succeeded, Some(2000))
    );
    assert!(
        done.output.as_ref().unwrap().len() < 66_000
            && done.output.unwrap().ends_with("[truncated]")
    );
    assert_eq!(
        transition(&store, &lease, id, RunStatus::Failed, RunUpdate::default())
            .await
            .unwrap()
            .map(|r| r.status),
        Err(RunStatus::Succeeded),
        "a terminal run does not change"
    );
}

async fn queries_filter_and_page(store: Store) {
    let lease = lease(&store).await;
    let (p1, p2) = (Uuid::now_v7(), Uuid::now_v7());
    for (i, (policy, host, status)) in [
        (p1, "pve-01", RunStatus::Succeeded),
        (p1, "pve-02", RunStatus::Failed),
        (p2, "pve-01", RunStatus::Suppressed),
        (p1, "pve-01", RunStatus::Queued),
        (p2, "pve-02", RunStatus::Succeeded),
    ]
    .into_iter()
    .enumerate()
    {
        let at = i64::try_from(i).unwrap() * 10;
        record(
            &store,
            &lease,
            decision(policy, &format!("e{i}"), at),
            vec![run(host, "100", status, at)],
        )
        .await
        .unwrap();
    }
    let all = |f: RunFilter| {
        let store = store.clone();
        async move { store.list_runs(&f, None, 100).await.unwrap().0 }
    };
    assert_eq!(all(RunFilter::default()).await.len(), 5);
    assert_eq!(
        all(RunFilter {
            policy_id: Some(p1),
            ..Default::default()
        })
        .await
        .len(),
        3
    );
    assert_eq!(
        all(RunFilter {
            host: Some("pve-02".into()),
            ..Default::default()
        })
        .await
        .len(),
        2
    );
    assert_eq!(
        all(RunFilter {
            status: Some(RunStatus::Failed),
            ..Default::default()
        })
        .await[0]
            .host,
        "pve-02"
    );
    assert_eq!(
        all(RunFilter {
            event_id: Some("e2".into()),
            ..Default::default()
        })
        .await[0]
            .status,
        RunStatus::Suppressed
    );
    assert_eq!(
        all(RunFilter {
            since: Some(t(20)),
            until: Some(t(40)),
            ..Default::default()
        })
        .await
        .len(),
        2
    );

    // Newest first, in pages of two, without gaps or repeats.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (page, next) = store
            .list_runs(&RunFilter::default(), cursor.as_deref(), 2)
            .await
            .unwrap();
        seen.extend(page.iter().map(|r| r.event_id.clone()));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ["e4", "e3", "e2", "e1", "e0"]);
    assert!(matches!(
        store
            .list_runs(&RunFilter::default(), Some("garbage"), 2)
            .await,
        Err(Error::Cursor(_))
    ));
}

async fn a_stale_lease_cannot_write(store: Store) {
    // Expiry is the database's to judge: the engines pass no clock.
    let ttl = Duration::from_millis(600);
    let a = store.acquire_lease("engine-a", ttl).await.unwrap().unwrap();
    assert_eq!(a.epoch, 1);
    assert!(
        store
            .acquire_lease("engine-b", ttl)
            .await
            .unwrap()
            .is_none(),
        "held and unexpired"
    );
    let renewed = store.acquire_lease("engine-a", ttl).await.unwrap().unwrap();
    assert_eq!(renewed.epoch, 1, "renewal keeps the epoch");
    assert!(
        renewed.expires_at >= a.expires_at,
        "renewal extends the lease"
    );
    let r = run("pve-01", "100", RunStatus::Queued, 8);
    let id = r.id;
    record(&store, &renewed, decision(Uuid::now_v7(), "e", 8), vec![r])
        .await
        .unwrap();
    // engine-a stalls past expiry; engine-b takes over with a new epoch.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let b = store
        .acquire_lease("engine-b", Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.epoch, 2);
    match transition(
        &store,
        &renewed,
        id,
        RunStatus::Running,
        RunUpdate::default(),
    )
    .await
    {
        Err(Error::LeaseLost { epoch: 1, .. }) => {}
        other => panic!("a stale lease wrote: {other:?}"),
    }
    assert!(matches!(
        record(
            &store,
            &renewed,
            decision(Uuid::now_v7(), "e2", 20),
            vec![run("pve-01", "101", RunStatus::Queued, 20)],
        )
        .await,
        Err(Error::LeaseLost { .. })
    ));
    assert_eq!(
        store
            .list_runs(&RunFilter::default(), None, 10)
            .await
            .unwrap()
            .0
            .len(),
        1,
        "the stale decision was not recorded"
    );
    let running = transition(&store, &b, id, RunStatus::Running, RunUpdate::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(running.status, RunStatus::Running);
}

switchyard_test_support::backend_suite!(
    open = switchyard_store::Store::open;

    transitions_are_guarded,
    queries_filter_and_page,
    a_stale_lease_cannot_write
);
