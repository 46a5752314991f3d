//! Window claims and the inbox on SQLite and a real PostgreSQL: expiry,
//! independence of kinds, and writers racing for one key.

use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use switchyard_store::{Claim, ClaimKind, Store};

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

async fn claims_hold_until_they_expire(store: Store) {
    let ten = Duration::from_secs(10);
    assert_eq!(
        store
            .claim(ClaimKind::Suppression, "p1|ups1", "d1", t(0), ten)
            .await
            .unwrap(),
        Claim::Claimed { expires_at: t(10) }
    );
    assert_eq!(
        store
            .claim(ClaimKind::Suppression, "p1|ups1", "d2", t(5), ten)
            .await
            .unwrap(),
        Claim::Held {
            holder: "d1".into(),
            expires_at: t(10)
        }
    );
    // Another key, and the same key under another kind, are independent.
    assert!(matches!(
        store
            .claim(ClaimKind::Suppression, "p1|ups2", "d3", t(5), ten)
            .await
            .unwrap(),
        Claim::Claimed { .. }
    ));
    assert!(matches!(
        store
            .claim(ClaimKind::Idempotency, "p1|ups1", "r1", t(5), ten)
            .await
            .unwrap(),
        Claim::Claimed { .. }
    ));
    // At expiry the claim is free again.
    assert_eq!(
        store
            .claim(ClaimKind::Suppression, "p1|ups1", "d4", t(10), ten)
            .await
            .unwrap(),
        Claim::Claimed { expires_at: t(20) }
    );
    assert_eq!(
        store.prune_claims(t(16)).await.unwrap(),
        2,
        "the claims that expired at 15 are pruned"
    );
}

async fn the_inbox_recognizes_redeliveries(store: Store) {
    assert!(
        store
            .record_delivery("SWITCHYARD_EVENTS|2026-11-01T00:00:00Z|42", "evt-1", t(0))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_delivery("SWITCHYARD_EVENTS|2026-11-01T00:00:00Z|42", "evt-1", t(1))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_delivery("SWITCHYARD_EVENTS|2026-11-01T00:00:00Z|43", "evt-1", t(1))
            .await
            .unwrap()
    );
}

async fn the_inbox_forgets_old_deliveries(store: Store) {
    for i in 0..25_000 {
        store
            .record_delivery(&format!("S|{i}"), "e", t(i / 1000))
            .await
            .unwrap();
    }
    // Older than t(20): 20,000 rows, removed in two full slices and an empty one.
    assert_eq!(store.prune_inbox(t(20)).await.unwrap(), 20_000);
    assert_eq!(store.prune_inbox(t(20)).await.unwrap(), 0);
    // What it forgot is decided again; what it remembers is not.
    assert!(store.record_delivery("S|0", "e", t(30)).await.unwrap());
    assert!(!store.record_delivery("S|24999", "e", t(30)).await.unwrap());
}

async fn racing_writers_claim_once(store: Store) {
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .claim(
                    ClaimKind::Idempotency,
                    "same-key",
                    &format!("run-{i}"),
                    t(0),
                    Duration::from_secs(3600),
                )
                .await
                .unwrap()
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        if let Claim::Claimed { .. } = task.await.unwrap() {
            winners.push(());
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer claims the key");
}

switchyard_test_support::backend_suite!(
    open = switchyard_store::Store::open;

    claims_hold_until_they_expire,
    the_inbox_recognizes_redeliveries,
    the_inbox_forgets_old_deliveries,
    racing_writers_claim_once
);
