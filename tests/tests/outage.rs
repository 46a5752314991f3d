//! Fault matrix row 4: PostgreSQL stopped under load.
//!
//! Nothing acknowledged goes unrecorded: events keep arriving at 50/s while
//! the database is away; serve reports not ready meanwhile, holds what it
//! has, and once the database is back it records every event and carries
//! out every run by itself, each effect once. The outage lasts 20 s here
//! (past the 10 s lease, so the lease expires and is renewed too) and 60 s
//! under `make faults` (SWITCHYARD_FAULTS_FULL=1).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_system_tests::{Backend, Rig, RigOptions, effect_policy, full, nats};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_under_load_loses_nothing_and_heals_alone() {
    let outage = if full() { 60 } else { 20 };
    let mut rig = Rig::new(RigOptions::new(Backend::Postgres, 4).engine("lease_ttl = \"10s\""));
    rig.policy("outage", &effect_policy("outage", "o.ev", "apply", 20, ""));
    rig.start().await;
    let js = rig.publisher().await;

    // 50 events/s for the whole test, each acknowledged by the stream.
    let published: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let (js, published, stop) = (js.clone(), Arc::clone(&published), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                tick.tick().await;
                let id = format!("o-{n}");
                let host = format!("h-{:02}", n % 4);
                if js
                    .publish("switchyard.events.o.ev", nats::event("o.ev", &host, &id, n))
                    .await
                    .is_ok()
                {
                    published.lock().unwrap().push(id);
                }
                n += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pg = rig.pg.as_ref().expect("postgres");
    pg.stop();
    let down = Instant::now();
    // Readiness turns false while writes fail.
    let mut unready_after = None;
    while down.elapsed() < Duration::from_secs(outage) {
        if unready_after.is_none() && !rig.ready() {
            unready_after = Some(down.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let unready_after = unready_after
        .unwrap_or_else(|| panic!("serve stayed ready with the database down:\n{}", rig.log()));
    pg.start_again();
    // It recovers by itself.
    let back = Instant::now();
    while !rig.ready() {
        assert!(
            back.elapsed() < Duration::from_secs(60),
            "serve did not become ready again:\n{}",
            rig.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready_again_after = back.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    producer.await.unwrap();
    let mut published = published.lock().unwrap().clone();
    assert!(
        rig.settle(published.len(), Duration::from_secs(120)).await,
        "not every event was decided and carried out:\n{}",
        rig.log()
    );
    let ledger = rig.ledger().await;
    let mut decided = ledger.decided_events().await;
    decided.sort();
    published.sort();
    let missing: Vec<_> = published
        .iter()
        .filter(|id| decided.binary_search(id).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged events never recorded: {missing:?}"
    );
    let statuses = ledger.statuses().await;
    assert_eq!(
        statuses.get("succeeded").copied(),
        Some(published.len() as i64),
        "{statuses:?}"
    );
    let effects = rig.effects();
    assert!(effects.overlaps().is_empty(), "{:?}", effects.overlaps());
    assert!(
        effects.duplicate_tags().is_empty(),
        "effects carried out twice: {:?}",
        effects.duplicate_tags()
    );
    eprintln!(
        "outage {outage} s: {} events published, all decided and carried out once; \
         not ready {unready_after:?} after the stop, ready again {ready_again_after:?} after the start",
        published.len()
    );
    rig.stop().await;
}
