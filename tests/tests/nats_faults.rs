//! Fault matrix rows 2 and 6: nats-server killed while events are
//! published, and the engine's connection to NATS cut for twice the ack
//! wait. No acknowledged event is lost, none is acted on twice, and the
//! consumer resumes by itself.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use switchyard_system_tests::{Backend, Rig, RigOptions, effect_policy, nats, proxy::Proxy};

/// Publish `count` events, each retried until the stream acknowledges it
/// (the server may be down); returns the ids acknowledged.
async fn produce(js: nats::Js, prefix: &'static str, count: usize, hosts: usize) -> Vec<String> {
    let mut acked = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for n in 0..count {
        tick.tick().await;
        let id = format!("{prefix}-{n}");
        let host = format!("h-{:02}", n % hosts);
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            match js
                .publish_with_id(
                    "switchyard.events.n.ev",
                    nats::event("n.ev", &host, &id, n),
                    &id,
                )
                .await
            {
                Ok(_) => {
                    acked.push(id);
                    break;
                }
                Err(e) => {
                    assert!(Instant::now() < until, "{id} never acknowledged: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    acked
}

/// Every acknowledged id decided, each effect at most once, all completed.
async fn check(rig: &Rig, acked: &[String]) {
    assert!(
        rig.settle(acked.len(), Duration::from_secs(120)).await,
        "not every acknowledged event was decided:\n{}",
        rig.log()
    );
    let decided: BTreeSet<String> = rig
        .ledger()
        .await
        .decided_events()
        .await
        .into_iter()
        .collect();
    let lost: Vec<_> = acked.iter().filter(|id| !decided.contains(*id)).collect();
    assert!(lost.is_empty(), "acknowledged events lost: {lost:?}");
    let effects = rig.effects();
    assert!(
        effects.duplicate_tags().is_empty(),
        "acted on twice: {:?}",
        effects.duplicate_tags()
    );
    assert_eq!(effects.completed(), acked.len());
}

/// Row 2: `kill -9` of nats-server five times while a producer publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_killed_while_publishing_loses_no_acknowledged_event() {
    let mut rig = Rig::new(RigOptions::new(Backend::Sqlite, 4).ledger("max_per_policy = 100000"));
    rig.policy(
        "nats",
        &effect_policy("nats", "n.ev", "apply", 1, "windows: { idempotency: 1h }\n"),
    );
    rig.start().await;
    let js = rig.publisher().await;
    let producer = tokio::spawn(produce(js, "k", 1500, 4));
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        rig.nats.restart();
    }
    let acked = producer.await.unwrap();
    check(&rig, &acked).await;
    eprintln!(
        "nats-server killed 5 times: {} events acknowledged, all decided, each carried out once",
        acked.len()
    );
    rig.stop().await;
}

/// Row 6: the engine's connection to NATS cut (a proxy drops it and refuses
/// new ones) for twice the ack wait, while events flow. Messages pulled but
/// not acknowledged are redelivered; the inbox recognizes the ones already
/// decided; the consumer resumes when the connection comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_nats_connection_causes_no_duplicate_effect() {
    let mut rig = Rig::new(
        RigOptions::new(Backend::Sqlite, 4)
            .nats("ack_wait = \"3s\"")
            .ledger("max_per_policy = 100000")
            .through_proxy(),
    );
    rig.policy("nats", &effect_policy("nats", "n.ev", "apply", 1, ""));
    rig.start().await;
    let js = rig.publisher().await;
    let producer = tokio::spawn(produce(js, "c", 1000, 4));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let proxy: &Proxy = rig.proxy.as_ref().unwrap();
    proxy.cut(Duration::from_secs(6));
    let acked = producer.await.unwrap();
    check(&rig, &acked).await;
    // Messages were pulled again after the cut, and recognized.
    let received = switchyard_system_tests::metric(rig.api, "switchyard_intake_received_total");
    assert!(
        received > acked.len() as f64,
        "the cut caused redeliveries ({received} received for {} events)",
        acked.len()
    );
    eprintln!(
        "NATS connection cut for 6 s (ack wait 3 s): {} events, {received} deliveries, each decided and carried out once",
        acked.len()
    );
    rig.stop().await;
}
