//! Fault matrix row 14: a burst of 100,000 events (a storm: every host's
//! events after the first suppressed by the policy's window) while an
//! operator queries the API. serve's memory stays bounded, every event is
//! decided, and the API keeps answering; its latency during the burst is
//! reported (timing is measured, never asserted, in tests).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchyard_system_tests::{Backend, Rig, RigOptions, effect_policy, http_get, nats};

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

const EVENTS: usize = 100_000;
/// "Bounded": what intake holds in flight and the writer batches, not the burst.
const RSS_LIMIT_MIB: u64 = 512;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_100k_events_keeps_memory_bounded_and_the_api_answering() {
    let mut rig = Rig::new(RigOptions::new(Backend::Sqlite, 50));
    rig.policy(
        "storm",
        &effect_policy(
            "storm",
            "b.ev",
            "apply",
            1,
            "windows: { suppression: 10m, group_by: [\"$.host\"] }\n",
        ),
    );
    rig.start().await;
    let pid = rig.serve_pid().unwrap();
    let idle = rss_kib(pid);
    let js = rig.publisher().await;
    let items: Vec<_> = (0..EVENTS)
        .map(|n| {
            (
                "switchyard.events.b.ev".to_owned(),
                nats::event("b.ev", &format!("h-{:02}", n % 50), &format!("b-{n}"), n),
            )
        })
        .collect();

    // An operator reading the ledger throughout, and memory sampled.
    let done = Arc::new(AtomicBool::new(false));
    let api = rig.api;
    let watcher = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let (mut latencies, mut failures, mut peak) = (Vec::new(), 0, 0);
            while !done.load(Ordering::SeqCst) {
                let began = Instant::now();
                match http_get(api, "/api/runs?limit=20") {
                    Some((200, _)) => latencies.push(began.elapsed()),
                    _ => failures += 1,
                }
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            (latencies, failures, peak)
        })
    };
    let began = Instant::now();
    assert_eq!(js.publish_all(items, 512).await, EVENTS);
    let published_in = began.elapsed();
    assert!(
        rig.settle(EVENTS, Duration::from_secs(600)).await,
        "the burst was not decided:\n{}",
        rig.log()
    );
    let decided_in = began.elapsed();
    done.store(true, Ordering::SeqCst);
    let (mut latencies, failures, peak) = watcher.join().unwrap();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    assert_eq!(
        failures, 0,
        "every API request during the burst was answered"
    );
    assert!(!latencies.is_empty());
    assert!(
        peak / 1024 < RSS_LIMIT_MIB,
        "serve's memory grew with the burst: {} MiB",
        peak / 1024
    );
    let statuses = rig.ledger().await.statuses().await;
    assert_eq!(statuses.get("succeeded").copied(), Some(50), "{statuses:?}");
    eprintln!(
        "{EVENTS} events published in {published_in:?}, decided in {decided_in:?}; \
         RSS {} MiB idle, {} MiB peak; GET /api/runs during the burst: {} requests, \
         p50 {:?}, p99 {:?}, max {:?}",
        idle / 1024,
        peak / 1024,
        latencies.len(),
        pct(0.5),
        pct(0.99),
        latencies.last().unwrap()
    );
    rig.stop().await;
}
