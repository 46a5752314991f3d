//! Fault matrix row 10: the system clock jumps ten minutes forward, then
//! back, while serve runs (libfaketime moves serve's wall clock; its
//! monotonic clock keeps running). Windows hold: a 5-minute window still
//! suppresses and deduplicates after both jumps, and a 3-second window
//! still ends after 3 seconds — no mass expiry, no freeze.

use std::time::Duration;
use switchyard_system_tests::{Backend, Rig, RigOptions, effect_policy, nats};

/// Debian's libfaketime (package `faketime`), the thread-safe build.
fn faketime() -> String {
    format!(
        "/usr/lib/{}-linux-gnu/faketime/libfaketimeMT.so.1",
        std::env::consts::ARCH
    )
}

fn offset(rig: &Rig, spec: &str) {
    std::fs::write(rig.path("faketime.rc"), format!("{spec}\n")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_hold_when_the_wall_clock_jumps() {
    assert!(
        std::path::Path::new(&faketime()).is_file(),
        "libfaketime is not installed: apt-get install -y faketime (.ci/run does)"
    );
    let mut rig = Rig::new(
        RigOptions::new(Backend::Sqlite, 2)
            .env("LD_PRELOAD", &faketime())
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env("FAKETIME_CACHE_DURATION", "1")
            .ledger("max_per_policy = 1000"),
    );
    let rc = rig.path("faketime.rc");
    rig.set_env("FAKETIME_TIMESTAMP_FILE", &rc.display().to_string());
    offset(&rig, "+0");
    rig.policy(
        "long",
        &effect_policy(
            "long",
            "t.long",
            "apply",
            0,
            "windows: { suppression: 5m, idempotency: 5m, group_by: [\"$.host\"] }\n",
        ),
    );
    rig.policy(
        "short",
        &effect_policy(
            "short",
            "t.short",
            "apply",
            0,
            "windows: { suppression: 3s, group_by: [\"$.host\"] }\n",
        ),
    );
    rig.start().await;
    let js = rig.publisher().await;
    let mut n = 0;
    let mut fire = |kind: &'static str, host: &'static str| {
        n += 1;
        let js = js.clone();
        let id = format!("{kind}-{n}");
        async move {
            js.publish(
                &format!("switchyard.events.{kind}"),
                nats::event(kind, host, &id, n),
            )
            .await
            .unwrap();
        }
    };
    fire("t.long", "h-00").await;
    fire("t.short", "h-01").await;
    assert!(
        rig.settle(2, Duration::from_secs(30)).await,
        "{}",
        rig.log()
    );

    // Ten minutes forward.
    offset(&rig, "+10m");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    fire("t.long", "h-00").await; // still inside the 5-minute window
    fire("t.short", "h-01").await; // its 3-second window has ended
    assert!(
        rig.settle(4, Duration::from_secs(30)).await,
        "{}",
        rig.log()
    );

    // Back to where it was: ten minutes back.
    offset(&rig, "+0");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    fire("t.long", "h-00").await; // still inside the 5-minute window
    fire("t.short", "h-01").await; // its window, begun before the jump, has ended
    assert!(
        rig.settle(6, Duration::from_secs(30)).await,
        "{}",
        rig.log()
    );

    let by_tag = rig.effects().lines.iter().filter(|e| e.ev == "end").fold(
        std::collections::BTreeMap::<String, usize>::new(),
        |mut m, e| {
            *m.entry(e.host.clone()).or_default() += 1;
            m
        },
    );
    assert_eq!(
        by_tag.get("h-00").copied(),
        Some(1),
        "the 5-minute window held through both jumps: {by_tag:?}"
    );
    assert_eq!(
        by_tag.get("h-01").copied(),
        Some(3),
        "the 3-second window ended on time after both jumps: {by_tag:?}"
    );
    rig.stop().await;
}
