//! Ledger write and query rates on SQLite and a real PostgreSQL.
//!
//! `cargo bench -p switchyard-store --bench ledger` (`SWITCHYARD_BENCH_QUERY_RUNS` sets the query table size).

use chrono::{DateTime, Utc};
use serde_json::json;
use std::time::{Duration, Instant};
use switchyard_store::{
    EventDecisions, NewDecision, NewRun, PlannedDecision, PlannedRun, RunFilter, RunStatus, Store,
};
use uuid::Uuid;

fn run_for(host: &str, i: u64, tag: Uuid, at: DateTime<Utc>, mixed: bool) -> NewRun {
    let statuses = [
        RunStatus::Succeeded,
        RunStatus::Suppressed,
        RunStatus::Failed,
        RunStatus::Deduplicated,
    ];
    NewRun {
        id: Uuid::now_v7(),
        host: host.into(),
        target_type: "vm".into(),
        target_id: format!("{}", 100 + i % 100),
        driver: Some("proxmox".into()),
        capability: "vm.power".into(),
        verb: "shutdown".into(),
        params: json!({"timeout_s": 120}),
        idempotency_key: Some(format!("{tag}-{i:016x}")),
        status: if mixed {
            statuses[(i % 4) as usize]
        } else {
            RunStatus::Queued
        },
        severity: None,
        reason: None,
        count: 1,
        queued_at: at,
        inverse_of: None,
    }
}

/// Record `n` events' decisions, one run each with its idempotency key claimed,
/// `batch` events per transaction through the group-commit path; runs/s.
/// `mixed`: statuses cycle through succeeded, suppressed, failed, deduplicated
/// (filling a ledger to query) instead of every run being queued.
async fn write_rate(store: &Store, n: u64, batch: u64, mixed: bool) -> f64 {
    let lease = store
        .acquire_lease("bench", Duration::from_secs(36_000))
        .await
        .unwrap()
        .unwrap();
    let policy = Uuid::now_v7();
    let run_tag = Uuid::now_v7();
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let now = Utc::now();
        let items: Vec<EventDecisions> = (i..(i + batch).min(n))
            .map(|i| EventDecisions {
                delivery_key: format!("S|{run_tag}|{i}"),
                event_id: format!("e{i}"),
                received_at: now,
                decisions: vec![PlannedDecision {
                    decision: NewDecision {
                        id: Uuid::now_v7(),
                        policy_id: policy,
                        policy_name: "bench".into(),
                        policy_version: 1,
                        event_id: format!("e{i}"),
                        event_kind: "ups.on_battery".into(),
                        correlation_id: format!("c{i}"),
                        decided_at: now,
                        correlated_event_ids: Vec::new(),
                    },
                    suppression: None,
                    runs: vec![PlannedRun {
                        run: run_for(&format!("pve-{:02}", i % 20), i, run_tag, now, mixed),
                        idempotency_ttl: Some(Duration::from_secs(600)),
                    }],
                }],
                correlation: Vec::new(),
            })
            .collect();
        i += items.len() as u64;
        store
            .record_batch(&lease, Utc::now(), &items, &mut |_| true)
            .await
            .unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn query_latency(store: &Store) -> (f64, f64) {
    // Host pve-07 gets i ≡ 7 (mod 20), so i ≡ 3 (mod 4): its runs are all `deduplicated`.
    let f = RunFilter {
        host: Some("pve-07".into()),
        status: Some(RunStatus::Deduplicated),
        ..Default::default()
    };
    let mut times = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..40 {
        let t = Instant::now();
        let (page, next) = store.list_runs(&f, cursor.as_deref(), 50).await.unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(page.len(), 50);
        cursor = next;
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() * 9 / 10])
}

async fn bench(name: &str, url: &str, query_runs: u64) {
    let store = Store::open(url).await.unwrap();
    let one = write_rate(&store, 2_000, 1, false).await;
    let mut line = format!(
        "{name:<10} events queueing one run each: {one:>8.0} runs/s one event per transaction"
    );
    for batch in [100, 500] {
        let rate = write_rate(&store, 40_000, batch, false).await;
        line.push_str(&format!(", {rate:>8.0} runs/s {batch} per transaction"));
    }
    println!("{line}");
    if query_runs > 0 {
        let fill = Instant::now();
        let rate = write_rate(&store, query_runs, 1000, true).await;
        println!(
            "{name:<10} filled {query_runs} more runs in {:.0} s ({rate:.0} runs/s, 1,000 per transaction)",
            fill.elapsed().as_secs_f64()
        );
        let (p50, p90) = query_latency(&store).await;
        println!(
            "{name:<10} a filtered page (host + status, 50 runs, cursor) over {} runs: p50 {p50:.2} ms, p90 {p90:.2} ms",
            query_runs + 82_000
        );
    }
}

fn main() {
    let query_runs: u64 = std::env::var("SWITCHYARD_BENCH_QUERY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        bench(
            "sqlite",
            &format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("bench.db").display()
            ),
            query_runs,
        )
        .await;
        let pg = switchyard_test_support::Postgres::start();
        bench("postgresql", &pg.url(), 0).await;
    });
}
