//! Fault matrix rows 3 and 12: duplicates inside and beyond the stream's
//! duplicate window, and a ledger pruned to its cap before the same events
//! come again. No extra effect either way.

use std::time::Duration;
use switchyard_system_tests::{Backend, Rig, RigOptions, effect_policy, nats};

const N: usize = 20;

async fn send(js: &nats::Js, kind: &str, prefix: &str) -> usize {
    let mut dropped = 0;
    for n in 0..N {
        let id = format!("{prefix}-{n}");
        let host = format!("h-{:02}", n % 4);
        let dup = js
            .publish_with_id(
                &format!("switchyard.events.{kind}"),
                nats::event(kind, &host, &id, n),
                &id,
            )
            .await
            .expect("published");
        dropped += usize::from(dup);
    }
    dropped
}

/// Row 3. Inside the duplicate window the stream drops a repeated event id
/// (switchyard sends the event id as `Nats-Msg-Id`); beyond it the event is
/// decided again and the policy's idempotency window makes the repeat a
/// `deduplicated` record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_event_ids_cause_no_extra_effect() {
    let mut rig = Rig::new(
        RigOptions::new(Backend::Sqlite, 4)
            .nats("duplicate_window = \"2s\"")
            .ledger("max_per_policy = 1000"),
    );
    rig.policy(
        "dup",
        &effect_policy("dup", "d.ev", "apply", 0, "windows: { idempotency: 1h }\n"),
    );
    rig.start().await;
    let js = rig.publisher().await;
    assert_eq!(send(&js, "d.ev", "d").await, 0);
    // Again at once: inside the window, the stream drops every one.
    assert_eq!(send(&js, "d.ev", "d").await, N, "dropped by the stream");
    assert!(
        rig.settle(N, Duration::from_secs(30)).await,
        "{}",
        rig.log()
    );
    // Again past the window: delivered, decided, deduplicated.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        send(&js, "d.ev", "d").await,
        0,
        "past the window the stream takes them"
    );
    assert!(
        rig.settle(2 * N, Duration::from_secs(30)).await,
        "{}",
        rig.log()
    );
    let statuses = rig.ledger().await.statuses().await;
    assert_eq!(
        statuses.get("succeeded").copied(),
        Some(N as i64),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.get("deduplicated").copied(),
        Some(N as i64),
        "{statuses:?}"
    );
    let effects = rig.effects();
    assert_eq!(effects.completed(), N, "no extra effect");
    assert!(
        effects.duplicate_tags().is_empty(),
        "{:?}",
        effects.duplicate_tags()
    );
    rig.stop().await;
}

/// Row 12. With a cap of 10 decisions per class, 20 events fill the ledger
/// to twice its cap and the pruner cuts it back; the same 20 events again
/// are all deduplicated: the idempotency keys still in force were not
/// pruned with the runs that claimed them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruned_ledger_keeps_the_windows_in_force() {
    let mut rig = Rig::new(
        RigOptions::new(Backend::Sqlite, 4)
            .nats("duplicate_window = \"1s\"")
            .ledger("max_per_policy = 10")
            .ledger("prune_interval = \"1s\""),
    );
    rig.policy(
        "capped",
        &effect_policy(
            "capped",
            "p.ev",
            "apply",
            0,
            "windows: { idempotency: 1h }\n",
        ),
    );
    rig.start().await;
    let js = rig.publisher().await;
    send(&js, "p.ev", "p").await;
    assert!(
        rig.settle(N, Duration::from_secs(30)).await,
        "{}",
        rig.log()
    );
    let ledger = rig.ledger().await;
    // The pruner cuts the succeeded class back to its cap.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while ledger
        .statuses()
        .await
        .get("succeeded")
        .copied()
        .unwrap_or(0)
        > 10
    {
        assert!(
            std::time::Instant::now() < until,
            "the ledger was not pruned to its cap"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    send(&js, "p.ev", "p").await;
    assert!(
        rig.settle(2 * N, Duration::from_secs(30)).await,
        "{}",
        rig.log()
    );
    let effects = rig.effects();
    assert_eq!(effects.completed(), N, "the replay caused no effect");
    // The cap holds for the replay's records too, once pruned.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let statuses = ledger.statuses().await;
    assert!(
        statuses.values().all(|n| *n <= 10),
        "every class within its cap: {statuses:?}"
    );
    assert_eq!(
        statuses.get("deduplicated").copied(),
        Some(10),
        "{statuses:?}"
    );
    rig.stop().await;
}
