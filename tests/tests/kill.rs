//! `kill -9` of serve while actions run (fault matrix rows 1, 7 and 11).
//!
//! Adapters die with the engine, and recovery does not carry out a run
//! again while an earlier attempt of it may still be going: one action at a
//! time per host holds across crashes. Every decided event reaches an
//! outcome; runs that were running at the crash are retried (idempotent
//! verbs) or `interrupted` (the others).

use std::time::{Duration, Instant};
use switchyard_system_tests::{
    Backend, Rig, RigOptions, adapters_of, effect_policy, micros_now, nats,
};

/// Wait until the recording driver has begun `n` effects.
async fn started(rig: &Rig, n: usize, limit: Duration) {
    let until = Instant::now() + limit;
    while rig.effects().started() < n {
        assert!(
            Instant::now() < until,
            "only {} of {n} effects began:\n{}",
            rig.effects().started(),
            rig.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The crash the fault matrix found: 8-second actions on 4 hosts, a
/// 3-second lease, serve killed while all four run and started again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_action_never_runs_two_actions_on_one_host() {
    let mut rig = Rig::new(RigOptions::new(Backend::Sqlite, 4).engine("lease_ttl = \"3s\""));
    rig.policy(
        "slow-apply",
        &effect_policy("slow-apply", "k.apply", "apply", 8000, ""),
    );
    rig.policy(
        "slow-once",
        &effect_policy("slow-once", "k.once", "once", 8000, ""),
    );
    rig.start().await;
    let js = rig.publisher().await;
    for (i, h) in rig.hosts.clone().iter().enumerate() {
        // Two hosts run an idempotent verb, two a verb that must not run twice.
        let kind = if i < 2 { "k.apply" } else { "k.once" };
        js.publish(
            &format!("switchyard.events.{kind}"),
            nats::event(kind, h, &format!("e-{i}"), i),
        )
        .await
        .unwrap();
    }
    started(&rig, 4, Duration::from_secs(30)).await;
    let serve = rig.serve_pid().expect("serve runs");
    assert!(!adapters_of(serve).is_empty(), "the recorder adapter runs");
    rig.kill9();
    let cut = micros_now();
    // The adapter notices its engine is gone and stops, its effects with it.
    let until = Instant::now() + Duration::from_secs(5);
    while !adapters_of(serve).is_empty() {
        assert!(
            Instant::now() < until,
            "adapters outlived their engine: {:?}",
            adapters_of(serve)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rig.start().await;
    assert!(
        rig.settle(4, Duration::from_secs(60)).await,
        "runs did not settle:\n{}",
        rig.log()
    );
    let effects = rig.effects();
    assert!(
        effects.overlaps().is_empty(),
        "two actions at once on a host: {:?}\n{}",
        effects.overlaps(),
        rig.log()
    );
    let (per_host, _) = effects.peaks(&[cut]);
    assert_eq!(per_host, 1, "at most one action per host at any instant");
    let runs = rig.ledger().await.runs().await;
    for r in &runs {
        match r.verb.as_str() {
            "apply" => assert_eq!(r.status, "succeeded", "retried after the crash: {r:?}"),
            _ => assert_eq!(
                (r.status.as_str(), r.reason.as_deref()),
                ("interrupted", Some("engine_restarted")),
                "never run twice: {r:?}"
            ),
        }
    }
    // The interrupted verbs began once, the retried ones twice and finished once.
    assert_eq!(effects.started(), 6, "{:?}", effects.lines);
    assert_eq!(effects.completed(), 2, "{:?}", effects.lines);
    rig.stop().await;
}

/// An adapter that ignores the end of its stdin and its engine's death goes
/// on acting after `kill -9`. The next serve kills it before recovery, and
/// waits for the crashed attempt's deadline before retrying the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_that_outlives_its_engine_is_stopped_before_recovery() {
    let mut rig = Rig::new(
        RigOptions::new(Backend::Sqlite, 0)
            .host("s-00", "stubborn")
            .host("s-01", "stubborn")
            .engine("lease_ttl = \"3s\"")
            .engine("max_attempts = 2"),
    );
    // The effect takes 12 s; the action's timeout is 3 s: the stubborn
    // adapter would still be acting when the retry comes.
    rig.policy(
        "stubborn",
        "version: 1\nname: stubborn\nenabled: true\n\
         trigger_group:\n  triggers:\n    - kind: k.stubborn\n\
         targets:\n  - selector: \"{{ $.host }}\"\n\
         actions:\n  - capability: effect\n    verb: apply\n    driver: stubborn\n    timeout: 3s\n\
         \x20   params: { ms: 12000, tag: \"{{ $.data.n }}\" }\n",
    );
    rig.start().await;
    let js = rig.publisher().await;
    for (i, h) in ["s-00", "s-01"].iter().enumerate() {
        js.publish(
            "switchyard.events.k.stubborn",
            nats::event("k.stubborn", h, &format!("e-{i}"), i),
        )
        .await
        .unwrap();
    }
    started(&rig, 2, Duration::from_secs(30)).await;
    let serve = rig.serve_pid().expect("serve runs");
    rig.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !adapters_of(serve).is_empty(),
        "the stubborn adapter goes on without its engine"
    );
    rig.start().await;
    assert!(
        adapters_of(serve).is_empty(),
        "the new serve stopped the orphan before it was ready: {:?}",
        adapters_of(serve)
    );
    assert!(
        rig.settle(2, Duration::from_secs(60)).await,
        "runs did not settle:\n{}",
        rig.log()
    );
    let effects = rig.effects();
    assert!(
        effects.overlaps().is_empty(),
        "two actions at once on a host: {:?}",
        effects.overlaps()
    );
    assert!(
        rig.log()
            .contains("an adapter outlived the switchyard that started it"),
        "{}",
        rig.log()
    );
    rig.stop().await;
}

/// Row 1: `kill -9` of serve, again and again, while events for 50 hosts
/// pour in. No acknowledged event is without its decision, every run ends,
/// runs that were running at a crash are retried (idempotent) or
/// interrupted (not), nothing runs twice on a host at once, and a verb that
/// is not idempotent never starts twice. 2,000 events and 4 kills here;
/// 10,000 and 10 under `make faults`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_crashes_under_load_lose_nothing_and_never_overlap() {
    let (events, kills) = if switchyard_system_tests::full() {
        (10_000, 10)
    } else {
        (2_000, 4)
    };
    let mut rig = Rig::new(
        RigOptions::new(Backend::Sqlite, 50)
            .engine("lease_ttl = \"3s\"")
            // Keep every decision, to count them.
            .ledger("max_per_policy = 1000000"),
    );
    // Mostly quick effects; every 25th takes 1.5 s so that crashes land mid-action.
    rig.policy("quick", &effect_policy("quick", "l.quick", "apply", 5, ""));
    rig.policy("slow", &effect_policy("slow", "l.slow", "apply", 1500, ""));
    rig.policy("once", &effect_policy("once", "l.once", "once", 1500, ""));
    rig.start().await;
    let js = rig.publisher().await;
    let items: Vec<(String, Vec<u8>)> = (0..events)
        .map(|n| {
            let kind = match n % 50 {
                7 => "l.slow",
                31 => "l.once",
                _ => "l.quick",
            };
            let host = format!("h-{:02}", (n * 7) % 50);
            (
                format!("switchyard.events.{kind}"),
                nats::event(kind, &host, &format!("l-{n}"), n),
            )
        })
        .collect();
    let producer = {
        let js = js.clone();
        tokio::spawn(async move { js.publish_all(items, 128).await })
    };
    let mut cuts = Vec::new();
    for k in 0..kills {
        tokio::time::sleep(Duration::from_millis(1200 + 300 * (k % 3) as u64)).await;
        rig.kill9();
        cuts.push(micros_now());
        rig.start().await;
    }
    let published = producer.await.unwrap();
    assert_eq!(
        published, events,
        "every event was acknowledged by the stream"
    );
    assert!(
        rig.settle(events, Duration::from_secs(240)).await,
        "not every event was decided and its run ended:\n{}",
        rig.log()
    );
    let ledger = rig.ledger().await;
    let decided = ledger.decided_events().await;
    assert_eq!(
        decided.len(),
        events,
        "a decision for every event, none missing"
    );
    assert_eq!(ledger.inbox().await, events as i64, "each decided once");
    let runs = ledger.runs().await;
    assert_eq!(runs.len(), events);
    let mut by_status = std::collections::BTreeMap::<String, usize>::new();
    for r in &runs {
        *by_status.entry(r.status.clone()).or_default() += 1;
        match r.verb.as_str() {
            "apply" => assert!(
                r.status == "succeeded" || r.status == "interrupted",
                "{r:?}"
            ),
            _ => assert!(
                r.status == "succeeded"
                    || (r.status == "interrupted"
                        && r.reason.as_deref() == Some("engine_restarted")),
                "{r:?}"
            ),
        }
    }
    let effects = rig.effects();
    assert!(
        effects.overlaps().is_empty(),
        "two actions at once on a host: {:?}",
        effects.overlaps()
    );
    let (per_host, all) = effects.peaks(&cuts);
    assert_eq!(per_host, 1, "at most one action per host at any instant");
    // A verb that is not idempotent never starts twice.
    let mut once_starts = std::collections::HashMap::<&str, usize>::new();
    for e in effects
        .lines
        .iter()
        .filter(|e| e.ev == "start" && e.verb == "once")
    {
        *once_starts.entry(e.tag.as_str()).or_default() += 1;
    }
    assert!(
        once_starts.values().all(|n| *n == 1),
        "a non-idempotent action ran twice: {once_starts:?}"
    );
    let repeats = effects.duplicate_tags().len();
    eprintln!(
        "{events} events, {kills} kills: runs {by_status:?}; peak {all} actions at once, 1 per host; \
         {repeats} idempotent effects completed twice (a crash between the effect and its record)"
    );
    rig.stop().await;
}
