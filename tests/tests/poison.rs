//! Fault matrix row 8: malformed, deep, oversize, non-UTF-8 and NUL-bearing
//! events mixed into valid traffic, on SQLite and on PostgreSQL.
//!
//! Each bad event is dead-lettered on its first delivery with its reason;
//! every valid event is decided and carried out; no ledger write fails on
//! the way (a failed write would hold every event of its batch).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use switchyard_system_tests::{Backend, Rig, RigOptions, effect_policy, nats};

const VALID: usize = 200;

async fn poison(backend: Backend) {
    let mut rig = Rig::new(RigOptions::new(backend, 4));
    rig.policy("poison", &effect_policy("poison", "p.ev", "apply", 0, ""));
    rig.start().await;
    let js = rig.publisher().await;
    let subject = "switchyard.events.p.ev".to_owned();

    // A clean run first, to compare with: the same number of valid events alone.
    let clean: Vec<_> = (0..VALID)
        .map(|i| {
            let host = format!("h-{:02}", i % 4);
            (
                subject.clone(),
                nats::event("p.ev", &host, &format!("clean-{i}"), i),
            )
        })
        .collect();
    let began = Instant::now();
    assert_eq!(js.publish_all(clean, 256).await, VALID);
    assert!(
        rig.settle(VALID, Duration::from_secs(60)).await,
        "{}",
        rig.log()
    );
    let clean_took = began.elapsed();

    let mut bad: Vec<(&str, Vec<u8>)> = Vec::new();
    for i in 0..5 {
        // Valid JSON and valid UTF-8; PostgreSQL cannot store U+0000 in text or jsonb.
        bad.push((
            "nul_character",
            format!(r#"{{"kind":"p.ev","host":"h-00","id":"nul-{i}","data":{{"n":"a\u0000b"}}}}"#)
                .into_bytes(),
        ));
        bad.push(("invalid_json", br#"{"kind": "p.ev", "host": "#.to_vec()));
    }
    for _ in 0..3 {
        let deep = format!(
            r#"{{"kind":"p.ev","host":"h-01","data":{{"x":{}1{}}}}}"#,
            "[".repeat(70),
            "]".repeat(70)
        );
        bad.push(("too_deep", deep.into_bytes()));
        bad.push((
            "invalid_utf8",
            b"{\"kind\":\"p.ev\",\"host\":\"h-02\",\"data\":{\"n\":\"\xff\xfe\"}}".to_vec(),
        ));
    }
    let mut items = Vec::new();
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    let mut bad = bad.into_iter();
    for i in 0..VALID {
        let host = format!("h-{:02}", i % 4);
        items.push((
            subject.clone(),
            nats::event("p.ev", &host, &format!("v-{i}"), i),
        ));
        // A bad one after every twelfth valid one.
        if i % 12 == 5
            && let Some((reason, payload)) = bad.next()
        {
            *expected.entry(reason).or_default() += 1;
            items.push((subject.clone(), payload));
        }
    }
    for (reason, payload) in bad {
        *expected.entry(reason).or_default() += 1;
        items.push((subject.clone(), payload));
    }
    let total = items.len();
    let began = Instant::now();
    assert_eq!(
        js.publish_all(items, 256).await,
        total,
        "every event published"
    );

    // Larger than the stream takes: the producer is told, nothing is lost unseen.
    let oversize = vec![b' '; 1024 * 1024 + 1];
    assert!(
        js.publish(&subject, oversize).await.is_err(),
        "an oversize event is refused at publish"
    );

    assert!(
        rig.settle(2 * VALID, Duration::from_secs(90)).await,
        "valid events were not all decided and carried out:\n{}",
        rig.log()
    );
    let took = began.elapsed();
    let ledger = rig.ledger().await;
    let mut decided = ledger.decided_events().await;
    decided.sort();
    let mut want: Vec<String> = (0..VALID)
        .flat_map(|i| [format!("v-{i}"), format!("clean-{i}")])
        .collect();
    want.sort();
    assert_eq!(decided, want, "every valid event decided, and nothing else");
    let statuses = ledger.statuses().await;
    assert_eq!(
        statuses.get("succeeded").copied(),
        Some(2 * VALID as i64),
        "{statuses:?}"
    );

    // Dead letters: each bad event exactly once, with its reason.
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for d in js.dead_letters().await {
        *got.entry(d.reason).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = expected
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(got, expected, "dead letters by reason");

    // No write failed on the way (one would hold every event of its batch),
    // and nothing was handed back for redelivery.
    let failures =
        switchyard_system_tests::metric(rig.api, "switchyard_ledger_write_failures_total");
    let naked = switchyard_system_tests::metric(rig.api, "switchyard_intake_naked_total");
    assert_eq!((failures, naked), (0.0, 0.0), "{}", rig.log());
    eprintln!(
        "{backend:?}: {VALID} valid events among {} bad ones decided and carried out in {took:?}; \
         alone, {VALID} valid events took {clean_took:?}",
        got.values().sum::<usize>()
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_are_dead_lettered_once_on_sqlite() {
    poison(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_are_dead_lettered_once_on_postgres() {
    poison(Backend::Postgres).await;
}
