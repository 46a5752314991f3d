//! The end-to-end benchmark: a real nats-server, intake, the engine with 1,000
//! policies and an SQLite ledger — events/s and decision latency, next to the
//! raw JetStream consume rate measured in the same run.
//!
//! `cargo bench -p switchyard-cli --bench engine_e2e`
//! (`SWITCHYARD_BENCH_EVENTS` sets events per throughput round, default 20,000).
//!
//! Runs are carried out by an in-process driver port that answers at once, so
//! the figures are the engine's own cost: decisions, the ledger writes of every
//! status change, queues and dispatch — not an adapter's.

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;
use futures::future::BoxFuture;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_engine::ports::{ExecReport, ExecRequest, Executed};
use switchyard_engine::{
    ActivePolicy, Drivers, Engine, EngineConfig, HostEntry, Incoming, InventorySnapshot, PolicySet,
    Routing,
};
use switchyard_intake::{Delivery, EventHandler, HandlerError, Intake, IntakeOptions};
use switchyard_plugin::Manifest;
use switchyard_store::Store;
use switchyard_test_support::NatsServer;
use uuid::Uuid;

const HOSTS: usize = 100;

/// The allocator the `switchyard` binary uses, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug)]
struct Instant0;

impl Drivers for Instant0 {
    fn execute(&self, _req: ExecRequest) -> BoxFuture<'_, ExecReport> {
        Box::pin(async {
            ExecReport {
                result: Ok(Executed {
                    ok: true,
                    effects: vec![],
                    output: None,
                    reason: None,
                }),
                stderr: vec![],
            }
        })
    }
}

struct Handler {
    engine: Engine,
    done: Arc<AtomicU64>,
    latencies: Arc<Mutex<Vec<f64>>>,
}

impl EventHandler for Handler {
    async fn handle(&self, d: Delivery) -> Result<(), HandlerError> {
        let started = Instant::now();
        let incoming = Incoming {
            delivery_key: format!("{}|{}", d.id.stream, d.id.stream_seq),
            event_id: d.event_id,
            event: d.event,
            received_at: d.received_at,
        };
        self.engine
            .decide(incoming)
            .await
            .map_err(|e| HandlerError::Unavailable(e.to_string()))?;
        self.latencies
            .lock()
            .unwrap()
            .push(started.elapsed().as_secs_f64() * 1000.0);
        self.done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// `n` policies on kinds `bench.k<i>` whose condition never holds, plus one
/// on `bench.queue` that queues one run on the event's host.
fn policies(n: usize) -> Vec<ActivePolicy> {
    let mut out: Vec<ActivePolicy> = (0..n)
        .map(|i| {
            compile(json!({
                "version": 1, "name": format!("p{i}"), "enabled": true,
                "trigger_group": {"triggers": [{"kind": format!("bench.k{i}")}]},
                "conditions": [{"path": "$.data.level", "op": "gt", "value": 1000}],
                "targets": [{"selector": "{{ $.host }}", "dynamic_resolution": true}],
                "actions": [{"capability": "command.run", "verb": "run", "driver": "exec", "params": {"argv": ["true"]}}],
            }))
        })
        .collect();
    out.push(compile(json!({
        "version": 1, "name": "queue-one", "enabled": true,
        "trigger_group": {"triggers": [{"kind": "bench.queue"}]},
        "targets": [{"selector": "{{ $.host }}", "dynamic_resolution": true}],
        "actions": [{"capability": "command.run", "verb": "run", "driver": "exec", "params": {"argv": ["echo", "{{ $.data.n }}"]}}],
    })));
    out
}

fn compile(doc: serde_json::Value) -> ActivePolicy {
    let c = switchyard_spec::policy::validate_value(&doc, None);
    let ir = c.ir.expect("compiles");
    ActivePolicy::new(Uuid::now_v7(), &ir.name.clone(), 1, ir).unwrap()
}

fn routing() -> Routing {
    let m = Manifest::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../drivers/exec"),
    )
    .unwrap()
    .manifest;
    Routing::new(
        [&m],
        (0..HOSTS).map(|h| HostEntry {
            id: format!("h{h}"),
            drivers: vec!["exec".into()],
            labels: Default::default(),
        }),
    )
}

async fn engine(dir: &std::path::Path, policy_count: usize) -> (Engine, Store) {
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.join(format!("{}.db", Uuid::now_v7())).display()
    );
    let store = Store::open(&url).await.unwrap();
    let routing = routing();
    let inventory = InventorySnapshot {
        hosts: routing.inventory_hosts(),
        items: vec![],
    };
    let (engine, _) = Engine::start(
        EngineConfig {
            holder: format!("bench-{}", Uuid::now_v7()),
            batch_max: std::env::var("SWITCHYARD_BENCH_BATCH")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(EngineConfig::default().batch_max),
            ..EngineConfig::default()
        },
        Arc::new(store.clone()),
        Arc::new(Instant0),
        routing,
        PolicySet::new(policies(policy_count)),
        inventory,
    )
    .await
    .unwrap();
    (engine, store)
}

fn event_json(kind: &str, i: u64) -> String {
    format!(
        r#"{{"id":"{kind}-{i}-{}","kind":"{kind}","source":"bench","host":"h{}","severity":"warning","data":{{"level":3,"n":{i}}}}}"#,
        Uuid::now_v7(),
        i % HOSTS as u64
    )
}

async fn publish(js: &jetstream::Context, kind: &str, n: u64) {
    let mut pending = Vec::with_capacity(1000);
    for i in 0..n {
        pending.push(
            js.publish(
                format!("switchyard.events.{kind}"),
                event_json(kind, i).into(),
            )
            .await
            .expect("publish"),
        );
        if pending.len() == 1000 {
            for ack in pending.drain(..) {
                ack.await.expect("publish ack");
            }
        }
    }
    for ack in pending {
        ack.await.expect("publish ack");
    }
}

/// Raw JetStream: pull and ack `n` messages, nothing else.
async fn raw_rate(js: &jetstream::Context, stream: &str, n: u64) -> f64 {
    let stream = js.get_stream(stream).await.unwrap();
    let consumer: PullConsumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some(format!("raw-{}", Uuid::now_v7().simple())),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let started = Instant::now();
    let mut msgs = consumer
        .stream()
        .max_messages_per_batch(64)
        .messages()
        .await
        .unwrap();
    for _ in 0..n {
        let m = msgs.next().await.unwrap().unwrap();
        m.ack().await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Fresh stream and consumer names per round so rounds never share state.
fn opts(tag: &str) -> IntakeOptions {
    IntakeOptions {
        stream: format!("BENCH_{tag}"),
        subjects: vec![format!("bench{tag}.events.>")],
        consumer: format!("engine-{tag}"),
        dlq_stream: format!("BENCH_DLQ_{tag}"),
        dlq_subject_prefix: format!("bench{tag}.dlq"),
        max_in_flight: std::env::var("SWITCHYARD_BENCH_IN_FLIGHT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(IntakeOptions::default().max_in_flight),
        max_ack_pending: std::env::var("SWITCHYARD_BENCH_IN_FLIGHT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(IntakeOptions::default().max_ack_pending),
        ..IntakeOptions::default()
    }
}

struct Round {
    events_per_s: f64,
    raw_per_s: f64,
    p50: f64,
    p99: f64,
    /// CPU time per event while intake and the engine ran: this process, nats-server.
    cpu_us: (f64, f64),
    /// This process's CPU time per event by thread, as [`THREADS`] names them.
    threads_us: [f64; 3],
}

/// Where this process's CPU goes: the runtime's workers (intake, planning,
/// dispatch), the ledger writer's thread (with SQLite's work for the
/// writer's own connection), the pool's SQLite threads (here mostly the WAL
/// checkpointer's). Kernel thread names, 15 bytes at most.
const THREADS: [(&str, &str); 3] = [
    ("tokio-rt-worker", "runtime workers"),
    ("switchyard-writ", "ledger writer"),
    ("sqlx-sqlite-wor", "SQLite"),
];

/// CPU seconds used so far by this process's threads, summed per [`THREADS`] entry.
fn threads_cpu() -> [f64; 3] {
    let mut sums = [0.0; 3];
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return sums;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if let Some(i) = THREADS
            .iter()
            .position(|(name, _)| comm.trim_end() == *name)
        {
            sums[i] += cpu_seconds(&format!("self/task/{}", task.file_name().to_string_lossy()));
        }
    }
    sums
}

/// User + system CPU seconds a process (`pid`) or thread (`self/task/<tid>`)
/// has used so far, from `/proc/<pid>/stat` (the rates move with the
/// machine's load; CPU per event moves much less).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 12th and 13th, in clock ticks of 1/100 s (Linux's USER_HZ).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of (this process, nats-server).
fn cpu_now(nats_pid: u32) -> (f64, f64) {
    (cpu_seconds("self"), cpu_seconds(&nats_pid.to_string()))
}

/// Pre-publish `n` events of `kind`, measure raw consume on one consumer and
/// intake + engine on another, over the same messages.
async fn throughput(
    url: &str,
    nats_pid: u32,
    dir: &std::path::Path,
    kind: &str,
    n: u64,
    policy_count: usize,
) -> Round {
    let tag = Uuid::now_v7().simple().to_string()[20..].to_uppercase();
    let o = opts(&tag);
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    switchyard_intake::provision::provision(&js, &o)
        .await
        .unwrap();
    let mut pending = Vec::with_capacity(1000);
    for i in 0..n {
        pending.push(
            js.publish(
                format!("bench{tag}.events.{kind}"),
                event_json(kind, i).into(),
            )
            .await
            .unwrap(),
        );
        if pending.len() == 1000 {
            for a in pending.drain(..) {
                a.await.unwrap();
            }
        }
    }
    for a in pending {
        a.await.unwrap();
    }
    let raw = raw_rate(&js, &o.stream, n).await;
    let (engine, _store) = engine(dir, policy_count).await;
    let done = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(n as usize)));
    let intake = Intake::start(url, o).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let cpu_before = cpu_now(nats_pid);
    let threads_before = threads_cpu();
    let started = Instant::now();
    let runner = {
        let intake = intake.clone();
        let handler = Arc::new(Handler {
            engine: engine.clone(),
            done: Arc::clone(&done),
            latencies: Arc::clone(&latencies),
        });
        tokio::spawn(async move {
            intake
                .run(handler, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        })
    };
    while done.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let cpu_after = cpu_now(nats_pid);
    let threads_after = threads_cpu();
    let per_event = |a: f64, b: f64| (b - a) * 1e6 / n as f64;
    let cpu_us = (
        per_event(cpu_before.0, cpu_after.0),
        per_event(cpu_before.1, cpu_after.1),
    );
    let threads_us = std::array::from_fn(|i| per_event(threads_before[i], threads_after[i]));
    let _ = tx.send(());
    runner.await.unwrap();
    engine.shutdown(Duration::from_secs(30)).await;
    let (p50, p99) = percentiles(&latencies.lock().unwrap());
    Round {
        events_per_s: rate,
        raw_per_s: raw,
        p50,
        p99,
        cpu_us,
        threads_us,
    }
}

/// Events paced at `rate`/s for `secs` seconds while intake runs: decision latency.
async fn paced(url: &str, dir: &std::path::Path, rate: u64, secs: u64) -> (f64, f64, f64) {
    let tag = Uuid::now_v7().simple().to_string()[20..].to_uppercase();
    let o = opts(&tag);
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    switchyard_intake::provision::provision(&js, &o)
        .await
        .unwrap();
    let (engine, _store) = engine(dir, 1000).await;
    let done = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let intake = Intake::start(url, o).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let runner = {
        let intake = intake.clone();
        let handler = Arc::new(Handler {
            engine: engine.clone(),
            done: Arc::clone(&done),
            latencies: Arc::clone(&latencies),
        });
        tokio::spawn(async move {
            intake
                .run(handler, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        })
    };
    let total = rate * secs;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = rate / 100;
    let mut sent = 0;
    while sent < total {
        tick.tick().await;
        for _ in 0..per_tick {
            js.publish(
                format!("bench{tag}.events.bench.queue"),
                event_json("bench.queue", sent).into(),
            )
            .await
            .unwrap();
            sent += 1;
        }
    }
    while done.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    let _ = tx.send(());
    runner.await.unwrap();
    engine.shutdown(Duration::from_secs(30)).await;
    let (p50, p99) = percentiles(&latencies.lock().unwrap());
    (achieved, p50, p99)
}

/// Events straight into `Engine::decide` (no NATS): shortlist and evaluation
/// cost as the number of policies grows. Each event's kind matches exactly one
/// policy (one of the first 100), whose condition does not hold.
async fn shortlist_rate(dir: &std::path::Path, policy_count: usize, n: u64) -> f64 {
    let (engine, _store) = engine(dir, policy_count).await;
    let events: Vec<Incoming> = (0..n)
        .map(|i| {
            // The same 100 policies are hit with 100 or 100,000 installed, so
            // the figure compares the index, not how much policy data is touched.
            let kind = format!("bench.k{}", i % 100);
            let ev =
                switchyard_spec::event::parse(event_json(&kind, i).as_bytes(), Default::default())
                    .unwrap();
            Incoming {
                delivery_key: format!("d{i}"),
                event_id: ev.id.clone().unwrap_or_default(),
                event: ev,
                received_at: chrono::Utc::now(),
            }
        })
        .collect();
    let started = Instant::now();
    for e in events {
        engine.decide(e).await.unwrap();
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    engine.shutdown(Duration::from_secs(5)).await;
    rate
}

fn percentiles(v: &[f64]) -> (f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // As the `switchyard` binary does (crates/cli/src/main.rs).
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    let n: u64 = std::env::var("SWITCHYARD_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let nats = NatsServer::start();
        let url = nats.url();
        let nats_pid = nats.pid().expect("nats-server runs");
        let dir = tempfile::tempdir().unwrap();
        // A stream for the raw-consume warm-up only.
        let js = jetstream::new(async_nats::connect(&url).await.unwrap());
        switchyard_intake::provision::provision(&js, &IntakeOptions::default()).await.unwrap();
        publish(&js, "bench.warmup", 2_000).await;
        let _ = raw_rate(&js, "SWITCHYARD_EVENTS", 2_000).await;

        println!("end-to-end: nats-server on loopback, intake + engine with 1,000 policies, SQLite ledger, {HOSTS} hosts, {n} events per round");
        println!("{:<34} {:>10} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9}", "scenario (3 rounds, median)", "events/s", "raw/s", "ratio", "p50 ms", "p99 ms", "cpu µs/ev", "nats µs/ev");
        // `SWITCHYARD_BENCH_ONLY=queue`, `none` or `paced` runs that one scenario and nothing else, for profiling.
        let only = std::env::var("SWITCHYARD_BENCH_ONLY").ok();
        for (label, kind) in [
            ("events that match no policy", "bench.none"),
            ("events that each queue one run", "bench.queue"),
        ] {
            if only.as_deref().is_some_and(|o| !kind.ends_with(o)) {
                continue;
            }
            let mut rounds = Vec::new();
            for _ in 0..3 {
                rounds.push(throughput(&url, nats_pid, dir.path(), kind, n, 1000).await);
            }
            let ratio = median(rounds.iter().map(|r| r.events_per_s / r.raw_per_s).collect());
            let ev = median(rounds.iter().map(|r| r.events_per_s).collect());
            let raw = median(rounds.iter().map(|r| r.raw_per_s).collect());
            let p50 = median(rounds.iter().map(|r| r.p50).collect());
            let p99 = median(rounds.iter().map(|r| r.p99).collect());
            let cpu_self = median(rounds.iter().map(|r| r.cpu_us.0).collect());
            let cpu_nats = median(rounds.iter().map(|r| r.cpu_us.1).collect());
            println!("{label:<34} {ev:>10.0} {raw:>10.0} {:>6.0}% {p50:>9.2} {p99:>9.2} {cpu_self:>9.1} {cpu_nats:>9.1}", 100.0 * ratio);
            let split: Vec<String> = THREADS
                .iter()
                .enumerate()
                .map(|(i, (_, label))| format!("{label} {:.1}", median(rounds.iter().map(|r| r.threads_us[i]).collect())))
                .collect();
            println!("  cpu µs/ev by thread: {}", split.join(", "));
        }
        if only.as_deref().is_some_and(|o| o != "paced") {
            return;
        }
        let (achieved, p50, p99) = paced(&url, dir.path(), 1_000, 10).await;
        println!("{:<34} {achieved:>10.0} {:>10} {:>7} {p50:>9.2} {p99:>9.2}", "paced at 1,000 events/s, each queues one run", "-", "-");

        if only.is_some() {
            return;
        }
        // Sizes alternate, and the ratio is taken per pair, so a slow phase
        // of the machine falls on both sides of a ratio rather than on one.
        // Decisions without a write run at hundreds of thousands a second:
        // ten times the events per round, so a round lasts long enough (a
        // few tenths of a second) that one scheduling hiccup does not decide it.
        let mut pairs = Vec::new();
        for _ in 0..5 {
            let small = shortlist_rate(dir.path(), 100, 10 * n).await;
            let large = shortlist_rate(dir.path(), 100_000, 10 * n).await;
            pairs.push((small, large));
        }
        let small = median(pairs.iter().map(|p| p.0).collect());
        let large = median(pairs.iter().map(|p| p.1).collect());
        let ratio = median(pairs.iter().map(|p| p.1 / p.0).collect());
        println!("shortlist + evaluation straight into Engine::decide: {small:.0} events/s with 100 policies, {large:.0} with 100,000 (ratio {ratio:.2})");
    });
}
