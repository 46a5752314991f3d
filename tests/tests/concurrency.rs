//! Fault matrix rows 7 and 11: the per-host and global limits hold across a
//! restart, and an action longer than the ack wait is not acted on twice.

use std::time::Duration;
use switchyard_system_tests::{Backend, Rig, RigOptions, effect_policy, micros_now, nats};

/// Row 11: 500 events over 10 hosts with a global cap of 8, serve restarted
/// in the middle of the burst: never two actions on a host, never more than
/// 8 in all, before, across and after the restart; every event carried out
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_and_global_limits_hold_across_a_restart() {
    let mut rig = Rig::new(
        RigOptions::new(Backend::Sqlite, 10)
            .engine("global_concurrency = 8")
            .engine("shutdown_grace = \"30s\"")
            .ledger("max_per_policy = 100000"),
    );
    rig.policy("burst", &effect_policy("burst", "c.burst", "apply", 40, ""));
    rig.start().await;
    let js = rig.publisher().await;
    let items: Vec<_> = (0..500)
        .map(|n| {
            (
                "switchyard.events.c.burst".to_owned(),
                nats::event("c.burst", &format!("h-{:02}", n % 10), &format!("c-{n}"), n),
            )
        })
        .collect();
    assert_eq!(js.publish_all(items, 128).await, 500);
    // Mid-burst: some effects done, most still queued.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while rig.effects().completed() < 80 {
        assert!(std::time::Instant::now() < until, "{}", rig.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rig.stop().await.success(), "a clean stop:\n{}", rig.log());
    let cut = micros_now();
    let done_before = rig.effects().completed();
    rig.start().await;
    assert!(
        rig.settle(500, Duration::from_secs(120)).await,
        "{}",
        rig.log()
    );
    let effects = rig.effects();
    let (per_host, all) = effects.peaks(&[cut]);
    assert!(effects.overlaps().is_empty(), "{:?}", effects.overlaps());
    assert_eq!(per_host, 1, "one action per host at any instant");
    assert!(all <= 8, "{all} actions at once with a cap of 8");
    assert_eq!(effects.completed(), 500, "every event carried out");
    assert!(
        effects.duplicate_tags().is_empty(),
        "{:?}",
        effects.duplicate_tags()
    );
    let statuses = rig.ledger().await.statuses().await;
    assert_eq!(
        statuses.get("succeeded").copied(),
        Some(500),
        "{statuses:?}"
    );
    eprintln!(
        "500 events, 10 hosts, cap 8: {done_before} done before the restart; peak {all} at once, {per_host} per host"
    );
    rig.stop().await;
}

/// Row 7: actions of 5 s with an ack wait of 2 s. The event is acknowledged
/// once its decision is durable, long before the action ends, so nothing is
/// redelivered and nothing acted on twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_longer_than_the_ack_wait_is_not_acted_on_twice() {
    let mut rig = Rig::new(RigOptions::new(Backend::Sqlite, 3).nats("ack_wait = \"2s\""));
    rig.policy("long", &effect_policy("long", "c.long", "apply", 5000, ""));
    rig.start().await;
    let js = rig.publisher().await;
    let items: Vec<_> = (0..6)
        .map(|n| {
            (
                "switchyard.events.c.long".to_owned(),
                nats::event("c.long", &format!("h-{:02}", n % 3), &format!("a-{n}"), n),
            )
        })
        .collect();
    assert_eq!(js.publish_all(items, 16).await, 6);
    assert!(
        rig.settle(6, Duration::from_secs(60)).await,
        "{}",
        rig.log()
    );
    let effects = rig.effects();
    assert_eq!(
        effects.started(),
        6,
        "each action began once: {:?}",
        effects.lines
    );
    assert_eq!(effects.completed(), 6);
    assert!(effects.overlaps().is_empty(), "{:?}", effects.overlaps());
    let ledger = rig.ledger().await;
    assert_eq!(ledger.inbox().await, 6, "each event decided once");
    let pending = js
        .js
        .get_stream("SWITCHYARD_EVENTS")
        .await
        .unwrap()
        .consumer_info("switchyard-engine")
        .await
        .unwrap()
        .clone();
    assert_eq!(pending.num_ack_pending, 0, "{pending:?}");
    assert_eq!(pending.num_redelivered, 0, "{pending:?}");
    rig.stop().await;
}
