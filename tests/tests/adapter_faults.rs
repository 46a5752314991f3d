//! Fault matrix row 9: the adapter panics, exits or prints garbage on one
//! event. Retries are bounded, that event's run fails with a reason that
//! names what happened, and runs on other hosts succeed, each effect
//! completed once.

use std::time::Duration;
use switchyard_system_tests::{Backend, Rig, RigOptions, nats};

fn policy(name: &str, misbehave: Option<&str>) -> String {
    let extra = misbehave
        .map(|m| format!(", misbehave: {m}"))
        .unwrap_or_default();
    format!(
        "version: 1\nname: {name}\nenabled: true\n\
         trigger_group:\n  triggers:\n    - kind: m.{name}\n\
         targets:\n  - selector: \"{{{{ $.host }}}}\"\n\
         actions:\n  - capability: effect\n    verb: apply\n    driver: recorder\n    timeout: 10s\n\
         \x20   params: {{ ms: 300, tag: \"{{{{ $.data.n }}}}\"{extra} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_adapter_costs_only_its_own_run() {
    let mut rig = Rig::new(RigOptions::new(Backend::Sqlite, 6).engine("retry_backoff = \"200ms\""));
    rig.policy("panics", &policy("panics", Some("panic")));
    rig.policy("exits", &policy("exits", Some("exit")));
    rig.policy("garbage", &policy("garbage", Some("garbage")));
    rig.policy("fine", &policy("fine", None));
    rig.start().await;
    let js = rig.publisher().await;
    // Each bad event alone among good ones on h-03..h-05, so that each bad
    // run's reason is its own and not a neighbour's crash.
    let mut n = 0;
    let mut published = 0;
    for (kind, host) in [("panics", "h-00"), ("exits", "h-01"), ("garbage", "h-02")] {
        let mut items = Vec::new();
        for h in ["h-03", "h-04", "h-05"] {
            items.push((
                "switchyard.events.m.fine".to_owned(),
                nats::event("m.fine", h, &format!("g-{n}"), n),
            ));
            n += 1;
        }
        items.insert(
            1,
            (
                format!("switchyard.events.m.{kind}"),
                nats::event(&format!("m.{kind}"), host, &format!("bad-{kind}"), 1000),
            ),
        );
        published += items.len();
        assert_eq!(js.publish_all(items.clone(), 64).await, items.len());
        assert!(
            rig.settle(published, Duration::from_secs(60)).await,
            "runs did not settle after `{kind}`:\n{}",
            rig.log()
        );
    }
    let runs = rig.ledger().await.runs().await;
    let bad = |host: &str| runs.iter().find(|r| r.host == host).unwrap().clone();
    // A panic is an error reply: not transient, not retried.
    let panicked = bad("h-00");
    assert_eq!(
        (
            panicked.status.as_str(),
            panicked.reason.as_deref(),
            panicked.attempt
        ),
        ("failed", Some("driver_error"), 1),
        "{panicked:?}"
    );
    // A crash and garbage on stdout are transient: retried up to max_attempts (3).
    let exited = bad("h-01");
    assert_eq!(
        (
            exited.status.as_str(),
            exited.reason.as_deref(),
            exited.attempt
        ),
        ("failed", Some("adapter_crashed"), 3),
        "{exited:?}"
    );
    let garbled = bad("h-02");
    assert_eq!(
        (
            garbled.status.as_str(),
            garbled.reason.as_deref(),
            garbled.attempt
        ),
        ("failed", Some("protocol_error"), 3),
        "{garbled:?}"
    );
    let others: Vec<_> = runs
        .iter()
        .filter(|r| !["h-00", "h-01", "h-02"].contains(&r.host.as_str()))
        .collect();
    assert_eq!(others.len(), 9);
    assert!(
        others.iter().all(|r| r.status == "succeeded"),
        "other hosts' runs: {others:?}"
    );
    let effects = rig.effects();
    assert!(effects.overlaps().is_empty(), "{:?}", effects.overlaps());
    assert!(
        effects.duplicate_tags().is_empty(),
        "an effect completed twice: {:?}",
        effects.duplicate_tags()
    );
    assert_eq!(effects.completed(), 9);
    rig.stop().await;
}
