//! Fault matrix row 5: `kill -9` of serve while it writes SQLite, again and
//! again. The database file stays sound (`PRAGMA integrity_check`), and
//! every event the stream acknowledged is decided once and carried out.
//! 10 kills here; 100 under `make faults`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use switchyard_system_tests::{Backend, Rig, RigOptions, effect_policy, full, nats};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_sqlite_writes_leaves_a_sound_file_and_nothing_missing() {
    let kills = if full() { 100 } else { 10 };
    let mut rig = Rig::new(
        RigOptions::new(Backend::Sqlite, 20)
            .engine("lease_ttl = \"3s\"")
            .ledger("max_per_policy = 1000000"),
    );
    rig.policy("writes", &effect_policy("writes", "w.ev", "apply", 1, ""));
    rig.start().await;
    let js = rig.publisher().await;
    // About 400 events/s for as long as the kills go on.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let producer = {
        let (js, stop, sent) = (js.clone(), Arc::clone(&stop), Arc::clone(&sent));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(25));
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                let batch: Vec<_> = (n..n + 10)
                    .map(|i| {
                        (
                            "switchyard.events.w.ev".to_owned(),
                            nats::event("w.ev", &format!("h-{:02}", i % 20), &format!("w-{i}"), i),
                        )
                    })
                    .collect();
                n += 10;
                let acked = js.publish_all(batch, 10).await;
                sent.fetch_add(acked, Ordering::SeqCst);
            }
        })
    };
    for k in 0..kills {
        // At a different point of the write path each time.
        tokio::time::sleep(Duration::from_millis(150 + (k * 337 % 1100) as u64)).await;
        rig.kill9();
        rig.start().await;
    }
    stop.store(true, Ordering::SeqCst);
    producer.await.unwrap();
    let sent = sent.load(Ordering::SeqCst);
    assert!(
        rig.settle(sent, Duration::from_secs(180)).await,
        "not everything was decided and carried out:\n{}",
        rig.log()
    );
    rig.stop().await;
    let ledger = rig.ledger().await;
    assert_eq!(ledger.integrity_check().await, "ok");
    assert_eq!(
        ledger.inbox().await,
        sent as i64,
        "each acknowledged event decided once"
    );
    assert_eq!(ledger.decided_events().await.len(), sent);
    let statuses = ledger.statuses().await;
    assert_eq!(statuses.values().sum::<i64>(), sent as i64, "{statuses:?}");
    assert!(
        statuses
            .keys()
            .all(|s| s == "succeeded" || s == "interrupted"),
        "{statuses:?}"
    );
    eprintln!("{kills} kills during writes: {sent} events, runs {statuses:?}, integrity ok");
}
