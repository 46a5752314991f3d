//! Inventory, audit events and dry-run transcripts on SQLite and PostgreSQL.

use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_spec::policy::{self, Format};
use switchyard_store::{AuditEvent, DiscoveredItem, InventoryQuery, NewPolicy, PolicyRef, Store};
use uuid::Uuid;

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

fn vm(id: &str, name: &str, env: &str) -> DiscoveredItem {
    DiscoveredItem {
        item_type: "vm".into(),
        id: id.into(),
        name: Some(name.into()),
        labels: BTreeMap::from([("env".to_owned(), env.to_owned())]),
        state: Some(json!({"status": "running"})),
    }
}

async fn discovery_refreshes_and_marks_staleness(store: Store) {
    let ten_min = Duration::from_secs(600);
    store
        .record_discovery(
            "pve-01",
            &[vm("100", "db-1", "prod"), vm("101", "web-1", "lab")],
            true,
            t(0),
        )
        .await
        .unwrap();
    store
        .record_discovery("pve-02", &[vm("100", "db-2", "prod")], true, t(0))
        .await
        .unwrap();
    let all = store
        .inventory(&InventoryQuery::default(), t(60), ten_min)
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|i| !i.stale));
    let q = |q: InventoryQuery| {
        let store = store.clone();
        async move {
            store
                .inventory(&q, t(60), ten_min)
                .await
                .unwrap()
                .into_iter()
                .map(|i| format!("{}/{}", i.host, i.id))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        q(InventoryQuery {
            name_contains: Some("db-".into()),
            ..Default::default()
        })
        .await,
        ["pve-01/100", "pve-02/100"]
    );
    assert_eq!(
        q(InventoryQuery {
            label: Some(("env".into(), "lab".into())),
            ..Default::default()
        })
        .await,
        ["pve-01/101"]
    );
    assert_eq!(
        q(InventoryQuery {
            host: Some("pve-02".into()),
            id: Some("100".into()),
            ..Default::default()
        })
        .await,
        ["pve-02/100"]
    );

    // A complete refresh replaces the host's items; 101 is gone.
    store
        .record_discovery("pve-01", &[vm("100", "db-1", "prod")], true, t(100))
        .await
        .unwrap();
    assert_eq!(
        q(InventoryQuery {
            host: Some("pve-01".into()),
            ..Default::default()
        })
        .await,
        ["pve-01/100"]
    );
    // A partial refresh removes nothing and marks what it returned stale.
    store
        .record_discovery("pve-02", &[vm("200", "new", "lab")], false, t(100))
        .await
        .unwrap();
    let pve02 = store
        .inventory(
            &InventoryQuery {
                host: Some("pve-02".into()),
                ..Default::default()
            },
            t(120),
            ten_min,
        )
        .await
        .unwrap();
    assert_eq!(
        pve02
            .iter()
            .map(|i| (i.id.as_str(), i.stale))
            .collect::<Vec<_>>(),
        [("100", false), ("200", true)]
    );
    // Past stale_after everything from the first refresh is stale.
    let later = store
        .inventory(
            &InventoryQuery {
                host: Some("pve-02".into()),
                id: Some("100".into()),
                ..Default::default()
            },
            t(700),
            ten_min,
        )
        .await
        .unwrap();
    assert!(later[0].stale);
}

async fn audit_and_transcripts(store: Store) {
    for i in 0..3 {
        store
            .audit(&AuditEvent {
                id: Uuid::now_v7(),
                at: t(i),
                subject: "admin".into(),
                action: "policy.enable".into(),
                target: format!("policy/p{i}"),
                correlation_id: format!("c{i}"),
                detail: json!({"force": i == 2}),
            })
            .await
            .unwrap();
    }
    let events = store.audit_events(10).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(),
        ["policy/p2", "policy/p1", "policy/p0"]
    );
    assert_eq!(events[0].detail["force"], true);

    let src = "version: 1\nname: p\ntrigger_group: {triggers: [{kind: a}]}\ntargets: [{selector: h1}]\nactions: [{capability: c, verb: v}]\n";
    let c = policy::compile_text(src, Format::Yaml).remove(0);
    store
        .create_policy(NewPolicy {
            ir: c.ir.unwrap(),
            spec_hash: c.spec_hash.unwrap(),
            source: src.into(),
            format: "yaml".into(),
            managed_by: "api".into(),
            author: "admin".into(),
            comment: String::new(),
        })
        .await
        .unwrap();
    let r = PolicyRef::Name("p".into());
    let id = store
        .save_transcript(
            &r,
            json!({"targets": [{"host": "h1", "ok": true}]}),
            json!({"errors": 0}),
            t(5),
        )
        .await
        .unwrap();
    assert_eq!(
        store.transcript(id).await.unwrap()["targets"][0]["host"],
        "h1"
    );
    let p = store.get_policy(&r).await.unwrap();
    let last = p.last_dry_run.unwrap();
    assert_eq!(
        (last["transcript_id"].as_str(), &last["summary"]["errors"]),
        (Some(id.to_string().as_str()), &json!(0))
    );
}

switchyard_test_support::backend_suite!(
    open = switchyard_store::Store::open;

    discovery_refreshes_and_marks_staleness,
    audit_and_transcripts
);
