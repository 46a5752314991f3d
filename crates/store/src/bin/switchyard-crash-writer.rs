//! Test helper for the crash test: writes into the SQLite database given as
//! the first argument, as `serve` does, until it is killed — decisions
//! through the group-commit path on the writer's own connection, and between
//! them audit events through the pool — printing `d <id>` or `a <id>` once
//! each commit has returned.

use chrono::Utc;
use serde_json::json;
use std::io::Write;
use std::time::Duration;
use switchyard_store::{
    AuditEvent, EventDecisions, NewDecision, NewRun, PlannedDecision, PlannedRun, RunStatus, Store,
};
use uuid::Uuid;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .expect("usage: switchyard-crash-writer <database url>");
    let store = Store::open(&url).await.expect("open the store");
    let lease = store
        .acquire_lease("crash-writer", Duration::from_secs(3600))
        .await
        .expect("lease query")
        .expect("a free lease");
    let policy = Uuid::now_v7();
    let mut out = std::io::stdout().lock();
    for n in 0u64.. {
        let now = Utc::now();
        let decision = NewDecision {
            id: Uuid::now_v7(),
            policy_id: policy,
            policy_name: "crash".into(),
            policy_version: 1,
            event_id: Uuid::now_v7().to_string(),
            event_kind: "crash.test".into(),
            correlation_id: "crash".into(),
            decided_at: now,
            correlated_event_ids: Vec::new(),
        };
        let runs: Vec<NewRun> = (0..3)
            .map(|i| NewRun {
                id: Uuid::now_v7(),
                host: "h".into(),
                target_type: "vm".into(),
                target_id: i.to_string(),
                driver: None,
                capability: "c".into(),
                verb: "v".into(),
                params: json!({"i": i, "pad": "x".repeat(200)}),
                idempotency_key: None,
                status: RunStatus::Queued,
                severity: None,
                reason: None,
                count: 1,
                queued_at: now,
                inverse_of: None,
            })
            .collect();
        // One in eight (the test reads back the newest 1,000 audit events).
        if n % 8 == 0 {
            let event = AuditEvent {
                id: Uuid::now_v7(),
                at: now,
                subject: "crash".into(),
                action: "crash.test".into(),
                target: n.to_string(),
                correlation_id: "crash".into(),
                detail: json!({"pad": "x".repeat(200)}),
            };
            store.audit(&event).await.expect("audit");
            writeln!(out, "a {}", event.id).expect("stdout");
            out.flush().expect("stdout");
        }
        {
            let item = EventDecisions {
                delivery_key: format!("CRASH|{n}"),
                event_id: decision.event_id.clone(),
                received_at: now,
                decisions: vec![PlannedDecision {
                    decision: decision.clone(),
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
            store
                .record_batch(&lease, now, &[item], &mut |_| true)
                .await
                .expect("record");
        }
        // Only now is the decision durable: report it.
        writeln!(out, "d {}", decision.id).expect("stdout");
        out.flush().expect("stdout");
    }
}
