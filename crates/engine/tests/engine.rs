//! The engine against a real SQLite ledger, with a driver port that records
//! what it was asked to do and when: single-flight per host, the global cap,
//! FIFO, windows, retries, `on_error`, queue bounds, cancel, standby and recovery.
//!
//! Durations are a few milliseconds of real time; every assertion is about
//! order and counts, never about how long something took. (Paused tokio time
//! cannot drive these: the SQLite pool's own timeouts run on tokio time and
//! fire while a query waits on sqlx's worker thread.)

use futures::future::BoxFuture;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_engine::ports::{DriverFailure, ExecReport, ExecRequest, Executed};
use switchyard_engine::{
    ActivePolicy, Decided, Drivers, Engine, EngineConfig, HostEntry, Incoming, InventorySnapshot,
    PolicySet, Routing,
};
use switchyard_plugin::Manifest;
use switchyard_spec::event::Event;
use switchyard_store::{RunFilter, RunRecord, RunStatus, Store};
use uuid::Uuid;

const MANIFEST: &str = r#"
schema_version: 1
name: fake
version: 0.0.1
adapter: { command: [fake] }
capabilities:
  - name: thing
    target_type: host
    verbs:
      - { name: poke, idempotent: true }
      - { name: zap }
  - name: port
    target_type: port
    serialize: target
    verbs:
      - { name: flip, idempotent: true }
  - name: vault
    target_type: host
    verbs:
      - name: seal
        inverse: unseal
        params_schema: &key
          type: object
          properties: { key: { type: string, writeOnly: true, maxLength: 12 }, note: { type: string } }
      - { name: unseal, params_schema: *key }
defaults: { timeout_s: 30 }
"#;

/// What the fake driver saw.
#[derive(Debug, Default)]
struct Log {
    running_per_host: HashMap<String, usize>,
    max_per_host: HashMap<String, usize>,
    running: usize,
    max_running: usize,
    /// (host, run id) in start order.
    starts: Vec<(String, String)>,
    /// When each run id's calls began.
    started_at: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    /// Calls per run id.
    calls: HashMap<String, u32>,
    /// Health probes, in order with the starts: ("health", host).
    events: Vec<(&'static str, String)>,
    /// (verb, timeout) of every call, in order.
    timeouts: Vec<(String, Duration)>,
    /// (verb, params, secrets to redact) of every call, in order.
    sent: Vec<(String, Value, Vec<String>)>,
}

/// A driver port that sleeps `params.ms` and fails as `params.fail` says
/// (`transient` for the first `params.failures` calls, or `permanent`).
#[derive(Debug, Default, Clone)]
struct Recorder {
    log: Arc<Mutex<Log>>,
}

impl Drivers for Recorder {
    fn health<'a>(&'a self, _driver: &'a str, host: &'a str) -> BoxFuture<'a, bool> {
        self.log
            .lock()
            .unwrap()
            .events
            .push(("health", host.to_owned()));
        Box::pin(async { true })
    }

    fn execute(&self, req: ExecRequest) -> BoxFuture<'_, ExecReport> {
        Box::pin(async move {
            let calls = {
                let mut l = self.log.lock().unwrap();
                let n = l.running_per_host.entry(req.host.clone()).or_default();
                *n += 1;
                let n = *n;
                let m = l.max_per_host.entry(req.host.clone()).or_default();
                *m = (*m).max(n);
                l.running += 1;
                l.max_running = l.max_running.max(l.running);
                l.starts.push((req.host.clone(), req.run_id.clone()));
                l.started_at.push((req.run_id.clone(), chrono::Utc::now()));
                l.events.push(("execute", req.host.clone()));
                l.timeouts.push((req.verb.clone(), req.timeout));
                l.sent
                    .push((req.verb.clone(), req.params.clone(), req.secrets.clone()));
                let c = l.calls.entry(req.run_id.clone()).or_default();
                *c += 1;
                *c
            };
            let ms = req.params.get("ms").and_then(Value::as_u64).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            {
                let mut l = self.log.lock().unwrap();
                *l.running_per_host.get_mut(&req.host).unwrap() -= 1;
                l.running -= 1;
            }
            let failures = req
                .params
                .get("failures")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            let result = match req.params.get("fail").and_then(Value::as_str) {
                Some("transient") if u64::from(calls) <= failures => Err(DriverFailure {
                    transient: true,
                    timed_out: false,
                    reason: "transient".into(),
                    message: format!("try again (call {calls})"),
                }),
                Some("permanent") => Ok(Executed {
                    ok: false,
                    effects: vec![],
                    output: Some("refused".into()),
                    reason: Some("precondition_failed".into()),
                }),
                // An effect PostgreSQL cannot store (U+0000 in jsonb).
                Some("nul_effect") => Ok(Executed {
                    ok: true,
                    effects: vec![switchyard_plugin::protocol::Effect {
                        target: req.target.id.clone(),
                        field: "state\u{0}".into(),
                        from: Value::Null,
                        to: json!("on"),
                    }],
                    output: Some("done".into()),
                    reason: None,
                }),
                _ => Ok(Executed {
                    ok: true,
                    effects: vec![],
                    output: Some(format!("done on {}", req.host)),
                    reason: None,
                }),
            };
            ExecReport {
                result,
                stderr: vec![],
            }
        })
    }
}

fn routing(hosts: &[&str]) -> Routing {
    let m = Manifest::parse(MANIFEST).unwrap();
    Routing::new(
        [&m],
        hosts.iter().map(|h| HostEntry {
            id: (*h).into(),
            drivers: vec!["fake".into()],
            labels: Default::default(),
        }),
    )
}

fn policy(doc: Value) -> ActivePolicy {
    let c = switchyard_spec::policy::validate_value(&doc, None);
    let ir =
        c.ir.unwrap_or_else(|| panic!("policy compiles: {:?}", c.findings));
    ActivePolicy::new(Uuid::now_v7(), &ir.name.clone(), 1, ir).unwrap()
}

/// A policy on `kind` acting on the host named by `$.host`.
fn on_event_host(name: &str, kind: &str, actions: Value, windows: Value) -> ActivePolicy {
    policy(json!({
        "version": 1, "name": name, "enabled": true,
        "trigger_group": {"triggers": [{"kind": kind}]},
        "targets": [{"selector": "{{ $.host }}", "dynamic_resolution": true}],
        "actions": actions,
        "windows": windows,
    }))
}

fn event(kind: &str, host: &str, data: Value) -> Incoming {
    let id = Uuid::now_v7().to_string();
    Incoming {
        delivery_key: format!("S|1|{id}"),
        event_id: id.clone(),
        event: Event {
            id: Some(id),
            kind: kind.into(),
            source: None,
            host: Some(host.into()),
            time: None,
            severity: None,
            data: data.as_object().cloned().unwrap_or_default(),
            extensions: Default::default(),
        },
        received_at: chrono::Utc::now(),
    }
}

struct Setup {
    store: Store,
    engine: Engine,
    recorder: Recorder,
    _dir: tempfile::TempDir,
}

async fn setup(config: EngineConfig, hosts: &[&str], policies: Vec<ActivePolicy>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("e.db").display());
    setup_at(&url, dir, config, hosts, policies).await
}

async fn setup_at(
    url: &str,
    dir: tempfile::TempDir,
    config: EngineConfig,
    hosts: &[&str],
    policies: Vec<ActivePolicy>,
) -> Setup {
    let store = Store::open(url).await.unwrap();
    let recorder = Recorder::default();
    let routing = routing(hosts);
    let inventory = InventorySnapshot {
        hosts: routing.inventory_hosts(),
        items: vec![],
    };
    let (engine, _) = Engine::start(
        config,
        Arc::new(store.clone()),
        Arc::new(recorder.clone()),
        routing,
        PolicySet::new(policies),
        inventory,
    )
    .await
    .unwrap();
    Setup {
        store,
        engine,
        recorder,
        _dir: dir,
    }
}

async fn all_runs(store: &Store) -> Vec<RunRecord> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (page, next) = store
            .list_runs(&RunFilter::default(), cursor.as_deref(), 1000)
            .await
            .unwrap();
        out.extend(page);
        match next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// Wait until no run is queued or running (bounded, so a bug fails instead of hanging).
async fn settle(store: &Store) -> Vec<RunRecord> {
    for _ in 0..600 {
        let runs = all_runs(store).await;
        if runs.iter().all(|r| r.status.is_terminal()) {
            return runs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "runs did not settle: {:?}",
        all_runs(store)
            .await
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>()
    );
}

fn config(cap: usize) -> EngineConfig {
    EngineConfig {
        global_concurrency: cap,
        retry_backoff: Duration::from_millis(5),
        holder: format!("test-{}", Uuid::now_v7()),
        ..EngineConfig::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random events over random hosts with random driver durations: never two
    /// runs at once on one host, never more than the cap, FIFO per host, and
    /// every run recorded `succeeded`.
    #[test]
    fn single_flight_cap_and_fifo_hold(
        cap in 1usize..4,
        events in proptest::collection::vec((0usize..4, 0u64..6), 1..40),
    ) {
        rt().block_on(async {
            let hosts = ["h0", "h1", "h2", "h3"];
            let p = on_event_host(
                "poke-host",
                "thing.happened",
                json!([{"capability": "thing", "verb": "poke", "params": {"ms": "{{ $.data.ms }}"}}]),
                json!({}),
            );
            let s = setup(config(cap), &hosts, vec![p]).await;
            // Decide concurrently, as intake does.
            let mut tasks = Vec::new();
            for (h, ms) in &events {
                let e = s.engine.clone();
                let ev = event("thing.happened", hosts[*h], json!({"ms": ms}));
                tasks.push(tokio::spawn(async move { e.decide(ev).await }));
            }
            for t in tasks {
                let d = t.await.unwrap().unwrap();
                assert!(matches!(d, Decided::Recorded { decisions: 1, queued: 1 }), "{d:?}");
            }
            let runs = settle(&s.store).await;
            assert_eq!(runs.len(), events.len());
            assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded));
            let log = s.recorder.log.lock().unwrap();
            assert!(log.max_per_host.values().all(|m| *m == 1), "{:?}", log.max_per_host);
            assert!(log.max_running <= cap, "{} > {cap}", log.max_running);
            // FIFO: per host, starts follow the ledger's queue order.
            for h in hosts {
                let mut queued: Vec<&RunRecord> = runs.iter().filter(|r| r.host == h).collect();
                queued.sort_by_key(|r| (r.queued_at, r.id));
                let queued: Vec<String> = queued.iter().map(|r| r.id.to_string()).collect();
                let started: Vec<String> = log.starts.iter().filter(|(host, _)| host == h).map(|(_, id)| id.clone()).collect();
                assert_eq!(started, queued, "host {h}");
            }
        });
    }
}

#[test]
fn windows_suppress_and_deduplicate_as_specified() {
    rt().block_on(async {
        let suppressing = on_event_host(
            "suppress-per-ups",
            "ups.on_battery",
            json!([{"capability": "thing", "verb": "poke", "params": {}}]),
            json!({"suppression": "10m", "group_by": ["$.data.ups"]}),
        );
        let idempotent = on_event_host(
            "poke-once",
            "disk.full",
            json!([{"capability": "thing", "verb": "poke", "params": {"mount": "{{ $.data.mount }}"}}]),
            json!({"idempotency": "1h"}),
        );
        let s = setup(config(4), &["h0", "h1"], vec![suppressing, idempotent]).await;
        for ups in ["ups1", "ups1", "ups2", "ups1"] {
            s.engine
                .decide(event("ups.on_battery", "h0", json!({"ups": ups})))
                .await
                .unwrap();
        }
        for mount in ["/var", "/var", "/srv"] {
            s.engine
                .decide(event("disk.full", "h1", json!({"mount": mount})))
                .await
                .unwrap();
        }
        let runs = settle(&s.store).await;
        let of = |name: &str, st: RunStatus| {
            runs.iter()
                .filter(|r| r.policy_name == name && r.status == st)
                .collect::<Vec<_>>()
        };
        assert_eq!(of("suppress-per-ups", RunStatus::Succeeded).len(), 2, "one per UPS");
        let suppressed = of("suppress-per-ups", RunStatus::Suppressed);
        assert_eq!(suppressed.len(), 1, "one aggregated record");
        assert_eq!(suppressed[0].count, 2);
        assert_eq!(of("poke-once", RunStatus::Succeeded).len(), 2, "/var once, /srv once");
        let dedup = of("poke-once", RunStatus::Deduplicated);
        assert_eq!(dedup.len(), 1);
        assert_eq!(dedup[0].params, json!({"mount": "/var"}));
    });
}

/// Dispatch facts travel with their runs: when an event's first decision is
/// suppressed (and so settles no runs), the next decision's run still gets
/// its own action's timeout.
#[test]
fn a_suppressed_decision_leaves_the_next_ones_dispatch_facts_in_place() {
    rt().block_on(async {
        let doc = |name: &str, priority: i64, verb: &str, timeout: &str, windows: Value| {
            policy(json!({
                "version": 1, "name": name, "enabled": true, "priority": priority,
                "trigger_group": {"triggers": [{"kind": "thing.happened"}]},
                "targets": [{"selector": "{{ $.host }}", "dynamic_resolution": true}],
                "actions": [{"capability": "thing", "verb": verb, "params": {}, "timeout": timeout}],
                "windows": windows,
            }))
        };
        let first = doc("suppressing", 10, "poke", "7s", json!({"suppression": "10m"}));
        let second = doc("plain", 20, "zap", "3s", json!({}));
        let s = setup(config(4), &["h0"], vec![second, first]).await;
        for _ in 0..2 {
            s.engine
                .decide(event("thing.happened", "h0", json!({})))
                .await
                .unwrap();
        }
        let runs = settle(&s.store).await;
        assert_eq!(
            runs.iter()
                .filter(|r| r.status == RunStatus::Succeeded)
                .count(),
            3,
            "{runs:?}"
        );
        let log = s.recorder.log.lock().unwrap();
        // Each call gets what is left of its action's timeout, counted from
        // the moment its attempt was recorded `running`.
        let mut timeouts: Vec<(String, u64)> = log
            .timeouts
            .iter()
            .map(|(verb, t)| (verb.clone(), t.as_secs_f64().ceil() as u64))
            .collect();
        timeouts.sort();
        assert_eq!(
            timeouts,
            [
                ("poke".to_owned(), 7),
                ("zap".to_owned(), 3),
                ("zap".to_owned(), 3),
            ]
        );
    });
}

#[test]
fn redelivered_events_are_decided_once() {
    rt().block_on(async {
        let p = on_event_host(
            "poke",
            "thing.happened",
            json!([{"capability": "thing", "verb": "poke", "params": {}}]),
            json!({}),
        );
        let s = setup(config(4), &["h0"], vec![p]).await;
        let ev = event("thing.happened", "h0", json!({}));
        assert!(matches!(
            s.engine.decide(ev.clone()).await.unwrap(),
            Decided::Recorded { .. }
        ));
        assert_eq!(s.engine.decide(ev).await.unwrap(), Decided::Redelivered);
        assert_eq!(
            s.engine
                .decide(event("nothing.matches", "h0", json!({})))
                .await
                .unwrap(),
            Decided::NoMatch
        );
        assert_eq!(settle(&s.store).await.len(), 1);
    });
}

#[test]
fn transient_failures_retry_only_idempotent_verbs() {
    rt().block_on(async {
        let p = on_event_host(
            "flaky",
            "thing.happened",
            json!([
                {"capability": "thing", "verb": "poke", "params": {"fail": "transient", "failures": 2}, "on_error": "continue"},
                {"capability": "thing", "verb": "zap", "params": {"fail": "transient", "failures": 1}, "on_error": "continue"},
                {"capability": "thing", "verb": "poke", "params": {"fail": "transient", "failures": 99, "n": 3}, "on_error": "continue"}
            ]),
            json!({}),
        );
        let s = setup(config(4), &["h0"], vec![p]).await;
        s.engine
            .decide(event("thing.happened", "h0", json!({})))
            .await
            .unwrap();
        let mut runs = settle(&s.store).await;
        runs.sort_by_key(|r| r.id);
        let summary: Vec<(&str, RunStatus, i32)> = runs
            .iter()
            .map(|r| (r.verb.as_str(), r.status, r.attempt))
            .collect();
        assert_eq!(
            summary,
            [
                ("poke", RunStatus::Succeeded, 3),
                ("zap", RunStatus::Failed, 1),
                ("poke", RunStatus::Failed, 3)
            ],
            "max_attempts is 3"
        );
        assert_eq!(runs[1].reason.as_deref(), Some("transient"));
    });
}

#[test]
fn on_error_stop_skips_the_targets_later_actions() {
    rt().block_on(async {
        let p = policy(json!({
            "version": 1, "name": "stop-chain", "enabled": true,
            "trigger_group": {"triggers": [{"kind": "thing.happened"}]},
            "targets": [{"selector": "h0,h1"}],
            "actions": [
                {"capability": "thing", "verb": "zap", "params": {"fail": "{{ $.data.fail }}"}},
                {"capability": "thing", "verb": "poke", "params": {}}
            ],
        }));
        let s = setup(config(4), &["h0", "h1"], vec![p]).await;
        // Only h0's first action fails: the event's `fail` applies to both hosts,
        // so send one event per outcome and look at the chain per decision.
        s.engine
            .decide(event("thing.happened", "h0", json!({"fail": "permanent"})))
            .await
            .unwrap();
        let runs = settle(&s.store).await;
        for h in ["h0", "h1"] {
            let mut chain: Vec<&RunRecord> = runs.iter().filter(|r| r.host == h).collect();
            chain.sort_by_key(|r| r.id);
            assert_eq!(chain[0].status, RunStatus::Failed);
            assert_eq!(chain[1].status, RunStatus::Skipped);
            assert_eq!(chain[1].reason.as_deref(), Some("earlier_action_failed"));
        }
    });
}

#[test]
fn a_hanging_driver_on_one_host_does_not_delay_others() {
    rt().block_on(async {
        let p = on_event_host(
            "poke",
            "thing.happened",
            json!([{"capability": "thing", "verb": "poke", "params": {"ms": "{{ $.data.ms }}"}}]),
            json!({}),
        );
        let s = setup(config(4), &["slow", "fast"], vec![p]).await;
        s.engine
            .decide(event("thing.happened", "slow", json!({"ms": 3000})))
            .await
            .unwrap();
        for _ in 0..5 {
            s.engine
                .decide(event("thing.happened", "fast", json!({"ms": 1})))
                .await
                .unwrap();
        }
        // Every fast run finishes while the slow one is still running.
        let mut done = false;
        for _ in 0..200 {
            let runs = all_runs(&s.store).await;
            let fast_done = runs
                .iter()
                .filter(|r| r.host == "fast" && r.status == RunStatus::Succeeded)
                .count();
            let slow = runs.iter().find(|r| r.host == "slow").unwrap();
            if fast_done == 5 {
                assert_eq!(
                    slow.status,
                    RunStatus::Running,
                    "the slow run is still going"
                );
                done = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(done, "the fast host's runs finished");
        settle(&s.store).await;
    });
}

#[test]
fn serialize_target_lets_different_targets_overlap_but_not_the_same() {
    rt().block_on(async {
        let p = policy(json!({
            "version": 1, "name": "flip-ports", "enabled": true,
            "trigger_group": {"triggers": [{"kind": "link.flap"}]},
            "targets": [{"selector": "sw1/port:{{ $.data.port }}", "dynamic_resolution": true}],
            "actions": [{"capability": "port", "verb": "flip", "params": {"ms": 30}}],
        }));
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("e.db").display());
        let store = Store::open(&url).await.unwrap();
        let recorder = Recorder::default();
        let routing = routing(&["sw1"]);
        let items = ["1", "2", "3"]
            .iter()
            .map(|id| switchyard_spec::selector::InventoryItem {
                host: "sw1".into(),
                item_type: "port".into(),
                id: (*id).into(),
                name: None,
                labels: Default::default(),
            })
            .collect();
        let inventory = InventorySnapshot {
            hosts: routing.inventory_hosts(),
            items,
        };
        let (engine, _) = Engine::start(
            config(8),
            Arc::new(store.clone()),
            Arc::new(recorder.clone()),
            routing,
            PolicySet::new(vec![p]),
            inventory,
        )
        .await
        .unwrap();
        for port in ["1", "2", "3", "1"] {
            engine
                .decide(event("link.flap", "sw1", json!({"port": port})))
                .await
                .unwrap();
        }
        let runs = settle(&store).await;
        assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded));
        let log = recorder.log.lock().unwrap();
        assert!(log.max_per_host["sw1"] >= 2, "different ports overlapped");
        // The two runs on port 1 never overlapped.
        let mut port1: Vec<&RunRecord> = runs.iter().filter(|r| r.target_id == "1").collect();
        port1.sort_by_key(|r| r.started_at);
        assert!(port1[0].finished_at.unwrap() <= port1[1].started_at.unwrap());
    });
}

#[test]
fn a_full_host_queue_fails_new_runs_and_cancel_removes_queued_ones() {
    rt().block_on(async {
        let p = on_event_host(
            "poke",
            "thing.happened",
            json!([{"capability": "thing", "verb": "poke", "params": {"ms": 300}}]),
            json!({}),
        );
        let cfg = EngineConfig {
            host_queue_depth: 2,
            ..config(4)
        };
        let s = setup(cfg, &["h0"], vec![p]).await;
        let mut outcomes = Vec::new();
        for _ in 0..5 {
            outcomes.push(
                s.engine
                    .decide(event("thing.happened", "h0", json!({})))
                    .await
                    .unwrap(),
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // One running, two waiting, two refused.
        let runs = all_runs(&s.store).await;
        let full: Vec<&RunRecord> = runs
            .iter()
            .filter(|r| r.reason.as_deref() == Some("queue_full"))
            .collect();
        assert_eq!(full.len(), 2, "{outcomes:?}");
        assert!(full.iter().all(|r| r.status == RunStatus::Failed));
        let waiting: Vec<&RunRecord> = runs
            .iter()
            .filter(|r| r.status == RunStatus::Queued)
            .collect();
        assert_eq!(waiting.len(), 2);
        assert!(s.engine.cancel(waiting[0].id).await);
        assert!(!s.engine.cancel(waiting[0].id).await, "already cancelled");
        let runs = settle(&s.store).await;
        let cancelled = runs.iter().find(|r| r.id == waiting[0].id).unwrap();
        assert_eq!(cancelled.status, RunStatus::Cancelled);
        assert_eq!(cancelled.reason.as_deref(), Some("operator"));
        assert_eq!(
            runs.iter()
                .filter(|r| r.status == RunStatus::Succeeded)
                .count(),
            2
        );
    });
}

#[test]
fn a_second_engine_stands_by_then_recovers_what_the_first_left() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("e.db").display());
        let store = Store::open(&url).await.unwrap();
        let zap = on_event_host(
            "zap",
            "thing.zap",
            json!([{"capability": "thing", "verb": "zap", "params": {"ms": 2500}}]),
            json!({}),
        );
        let poke = on_event_host(
            "poke",
            "thing.poke",
            json!([{"capability": "thing", "verb": "poke", "params": {"ms": 2500}, "timeout": "1s"}]),
            json!({}),
        );
        let cfg = |holder: &str| EngineConfig {
            holder: holder.into(),
            lease_ttl: Duration::from_secs(3),
            ..config(4)
        };
        let first = Recorder::default();
        let (a, _) = Engine::start(
            cfg("engine-a"),
            Arc::new(store.clone()),
            Arc::new(first.clone()),
            routing(&["h0", "h1"]),
            PolicySet::new(vec![zap, poke]),
            InventorySnapshot::default(),
        )
        .await
        .unwrap();
        // h0: a non-idempotent run in flight and one queued behind it; h1: an idempotent one in flight.
        a.decide(event("thing.zap", "h0", json!({}))).await.unwrap();
        a.decide(event("thing.poke", "h0", json!({})))
            .await
            .unwrap();
        a.decide(event("thing.poke", "h1", json!({})))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Engine A stops renewing its lease and writing, as if its process died.
        let b_store = store.clone();
        let standby = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let second = Recorder::default();
            let (b, recovery) = Engine::start(
                EngineConfig {
                    holder: "engine-b".into(),
                    lease_ttl: Duration::from_secs(3),
                    ..config(4)
                },
                Arc::new(b_store),
                Arc::new(second.clone()),
                routing(&["h0", "h1"]),
                PolicySet::default(),
                InventorySnapshot::default(),
            )
            .await
            .unwrap();
            (b, recovery, second, started.elapsed())
        });
        a.abandon();
        // The idempotent run A left running, and when its attempt had to end.
        let left = all_runs(&store)
            .await
            .into_iter()
            .find(|r| r.host == "h1")
            .unwrap();
        assert_eq!(left.status, RunStatus::Running);
        let deadline = left.deadline_at.expect("a running attempt records its deadline");
        let (_b, recovery, second, waited) = standby.await.unwrap();
        assert!(
            waited >= Duration::from_millis(1500),
            "B stood by until A's lease expired ({waited:?})"
        );
        assert_eq!(
            (recovery.requeued, recovery.retried, recovery.interrupted),
            (1, 1, 1)
        );
        let runs = settle(&store).await;
        let by_verb_host = |verb: &str, host: &str| {
            runs.iter()
                .find(|r| r.verb == verb && r.host == host)
                .unwrap()
                .clone()
        };
        let zap = by_verb_host("zap", "h0");
        assert_eq!(zap.status, RunStatus::Interrupted, "never silently re-run");
        assert_eq!(zap.reason.as_deref(), Some("engine_restarted"));
        let retried = by_verb_host("poke", "h1");
        assert_eq!(retried.status, RunStatus::Succeeded);
        assert_eq!(retried.attempt, 2);
        assert_eq!(by_verb_host("poke", "h0").status, RunStatus::Succeeded);
        // Engine B carried out the queued and the retried run; the zap never ran again.
        let log = second.log.lock().unwrap();
        assert_eq!(log.starts.len(), 2);
        assert!(log.starts.iter().all(|(_, id)| *id != zap.id.to_string()));
        // The retry waited for the crashed attempt's deadline (A's adapter
        // call could have gone on until then), and a margin.
        let (_, retry_began) = log
            .started_at
            .iter()
            .find(|(id, _)| *id == retried.id.to_string())
            .unwrap();
        assert!(
            *retry_began >= switchyard_engine::clock::after(deadline, switchyard_engine::RECOVERY_MARGIN),
            "retried at {retry_began}, the crashed attempt's deadline was {deadline}"
        );
    });
}

#[test]
fn transient_failures_open_the_circuit_and_a_health_probe_closes_it() {
    rt().block_on(async {
        let p = on_event_host(
            "zap",
            "thing.happened",
            json!([{"capability": "thing", "verb": "zap", "params": {"fail": "{{ $.data.fail }}"}}]),
            json!({}),
        );
        let cfg = EngineConfig {
            breaker_failures: 2,
            breaker_open_for: Duration::from_millis(200),
            ..config(4)
        };
        let s = setup(cfg, &["h0", "h1"], vec![p]).await;
        for fail in ["transient", "transient"] {
            s.engine
                .decide(event("thing.happened", "h0", json!({"fail": fail})))
                .await
                .unwrap();
        }
        // Wait until both failures are recorded: the circuit is open now.
        for _ in 0..100 {
            if all_runs(&s.store).await.iter().filter(|r| r.status == RunStatus::Failed).count() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let open = s.engine.breakers();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].state, switchyard_engine::gates::BreakerState::Open);
        // Another host's circuit is its own.
        s.engine
            .decide(event("thing.happened", "h1", json!({"fail": "none"})))
            .await
            .unwrap();
        s.engine
            .decide(event("thing.happened", "h0", json!({"fail": "none"})))
            .await
            .unwrap();
        let runs = settle(&s.store).await;
        assert_eq!(runs.iter().filter(|r| r.status == RunStatus::Succeeded).count(), 2);
        let log = s.recorder.log.lock().unwrap();
        let h0: Vec<&str> = log
            .events
            .iter()
            .filter(|(_, h)| h == "h0")
            .map(|(e, _)| *e)
            .collect();
        assert_eq!(h0, ["execute", "execute", "health", "execute"], "probe before the next call");
        assert!(log.events.iter().all(|(e, h)| *e != "health" || h == "h0"));
        drop(log);
        assert_eq!(
            s.engine.breakers().iter().find(|b| b.host == "h0").unwrap().state,
            switchyard_engine::gates::BreakerState::Closed
        );
    });
}

#[test]
fn schedule_ticks_fire_once_each_across_restarts() {
    rt().block_on(async {
        let p = policy(json!({
            "version": 1, "name": "every-minute", "enabled": true,
            "trigger_group": {"triggers": [{"schedule": "* * * * *"}]},
            "targets": [{"selector": "h0"}],
            "actions": [{"capability": "thing", "verb": "poke", "params": {"at": "{{ $.data.fired_at }}", "who": "{{ $.data.policy }}"}}],
        }));
        let s = setup(config(4), &["h0"], vec![p]).await;
        // Missed while down: the last three minutes' ticks, within the catch-up window.
        let first = s.engine.start_scheduler(Duration::from_secs(180));
        let until = std::time::Instant::now() + Duration::from_secs(30);
        let runs = loop {
            let runs = all_runs(&s.store).await;
            if runs.len() >= 3 && runs.iter().all(|r| r.status.is_terminal()) {
                break runs;
            }
            assert!(std::time::Instant::now() < until, "ticks fired: {}", runs.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        first.abort();
        assert!(runs.iter().all(|r| r.event_kind == "schedule" && r.status == RunStatus::Succeeded));
        assert!(runs.iter().all(|r| r.params["who"] == "every-minute"));
        let mut fired: Vec<String> = runs.iter().map(|r| r.params["at"].as_str().unwrap().to_owned()).collect();
        fired.sort();
        fired.dedup();
        assert_eq!(fired.len(), runs.len(), "one run per tick");
        // A restart with the same window finds the same ticks already decided.
        let before = runs.len();
        let again = s.engine.start_scheduler(Duration::from_secs(180));
        tokio::time::sleep(Duration::from_millis(500)).await;
        again.abort();
        let after = settle(&s.store).await.len();
        assert!(after - before <= 1, "at most a tick that became due meanwhile: {before} → {after}");
    });
}

#[test]
fn all_groups_fire_when_complete_even_across_a_restart() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("e.db").display());
        let store = Store::open(&url).await.unwrap();
        let both = || {
            policy(json!({
                "version": 1, "name": "down-and-unreachable", "enabled": true,
                "trigger_group": {"logic": "ALL", "within": "5m", "triggers": [{"kind": "host.down"}, {"kind": "ping.lost"}]},
                "targets": [{"selector": "{{ $.host }}", "dynamic_resolution": true}],
                "actions": [{"capability": "thing", "verb": "poke", "params": {}}],
                "windows": {"group_by": ["$.host"]},
            }))
        };
        let start = |holder: &'static str, p: ActivePolicy| {
            let store = store.clone();
            async move {
                Engine::start(
                    EngineConfig {
                        holder: holder.into(),
                        lease_ttl: Duration::from_secs(3),
                        ..config(4)
                    },
                    Arc::new(store),
                    Arc::new(Recorder::default()),
                    routing(&["h0", "h1"]),
                    PolicySet::new(vec![p]),
                    InventorySnapshot::default(),
                )
                .await
                .unwrap()
                .0
            }
        };
        let p = both();
        let id = p.id;
        let a = start("engine-a", p).await;
        let down = event("host.down", "h0", json!({}));
        let down_id = down.event_id.clone();
        assert_eq!(
            a.decide(down).await.unwrap(),
            Decided::Recorded { decisions: 0, queued: 0 },
            "half a group is recorded state, not a decision"
        );
        // Another host's group is its own.
        a.decide(event("ping.lost", "h1", json!({}))).await.unwrap();
        a.abandon();
        // Same policy (same id) on a new engine after A is gone.
        let mut p = both();
        p.id = id;
        let b = start("engine-b", p).await;
        let d = b.decide(event("ping.lost", "h0", json!({}))).await.unwrap();
        assert_eq!(d, Decided::Recorded { decisions: 1, queued: 1 });
        let runs = settle(&store).await;
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].host, "h0");
        assert_eq!(runs[0].correlated_event_ids, [down_id]);
        // Firing cleared the group.
        let d = b.decide(event("ping.lost", "h0", json!({}))).await.unwrap();
        assert_eq!(d, Decided::Recorded { decisions: 0, queued: 0 });
    });
}

#[test]
fn a_graceful_stop_hands_the_lease_over_at_once() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("e.db").display());
        let store = Store::open(&url).await.unwrap();
        let start = |holder: &str| {
            Engine::start(
                EngineConfig {
                    holder: holder.into(),
                    lease_ttl: Duration::from_secs(600),
                    ..config(2)
                },
                Arc::new(store.clone()),
                Arc::new(Recorder::default()),
                routing(&["h0"]),
                PolicySet::new(vec![]),
                InventorySnapshot::default(),
            )
        };
        let (a, _) = start("engine-a").await.unwrap();
        assert_eq!(a.shutdown(Duration::from_secs(1)).await, 0);
        // With a ten-minute TTL, only a released lease lets B start now.
        let (b, _) = tokio::time::timeout(Duration::from_secs(20), start("engine-b"))
            .await
            .expect("engine B takes the released lease without waiting for the TTL")
            .unwrap();
        let lease = store
            .acquire_lease("engine-b", Duration::from_secs(600))
            .await
            .unwrap()
            .expect("B holds it");
        assert_eq!(lease.epoch, 2, "a new holder bumps the epoch");
        b.shutdown(Duration::from_secs(1)).await;
    });
}

/// An engine on a fresh PostgreSQL with one policy: `thing.happened` pokes
/// the event's host with `params.<param>` taken from `data.<param>`.
async fn poke_on_postgres(
    param: &str,
    hosts: &[&str],
) -> (Setup, switchyard_test_support::Postgres) {
    let pg = switchyard_test_support::Postgres::start();
    let p = on_event_host(
        "poke-host",
        "thing.happened",
        json!([{"capability": "thing", "verb": "poke", "params": {param: format!("{{{{ $.data.{param} }}}}")}}]),
        json!({}),
    );
    let s = setup_at(
        &pg.url(),
        tempfile::tempdir().unwrap(),
        config(4),
        hosts,
        vec![p],
    )
    .await;
    (s, pg)
}

/// PostgreSQL refuses a NUL character in jsonb: an event whose params carry
/// one fails its whole group-commit batch. The batch is split until that
/// event is found; it alone is refused (intake dead-letters it) while every
/// other event of its batch is recorded and carried out.
#[test]
fn a_row_the_database_refuses_is_split_out_of_its_batch() {
    rt().block_on(async {
        let hosts = ["h0", "h1", "h2", "h3"];
        let (s, _pg) = poke_on_postgres("tag", &hosts).await;
        // Decided concurrently, as intake does, so they share batches.
        let mut tasks = Vec::new();
        for i in 0..120usize {
            let tag = if i % 40 == 7 {
                format!("bad\u{0}{i}")
            } else {
                format!("ok-{i}")
            };
            let e = s.engine.clone();
            let ev = event("thing.happened", hosts[i % 4], json!({"tag": tag}));
            tasks.push(tokio::spawn(async move { (i, e.decide(ev).await) }));
        }
        let (mut refused, mut recorded) = (Vec::new(), 0);
        for t in tasks {
            match t.await.unwrap() {
                (_, Ok(Decided::Recorded { queued: 1, .. })) => recorded += 1,
                (i, Err(switchyard_engine::WriteError::Refused(_))) => refused.push(i),
                (i, other) => panic!("event {i}: {other:?}"),
            }
        }
        refused.sort();
        assert_eq!(
            refused,
            vec![7, 47, 87],
            "only the events with a NUL are refused"
        );
        assert_eq!(recorded, 117);
        let runs = settle(&s.store).await;
        assert_eq!(runs.len(), 117);
        assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded));
        assert!(s.engine.ledger_failing().is_none());
    });
}

/// A status change the database refuses (an adapter reported an effect
/// PostgreSQL cannot store) is recorded without its effects and output,
/// instead of being lost; the other runs of its batch are recorded as they are.
#[test]
fn a_status_change_the_database_refuses_is_recorded_without_its_output() {
    rt().block_on(async {
        let hosts = ["h0", "h1", "h2"];
        let (s, _pg) = poke_on_postgres("fail", &hosts).await;
        for (i, h) in hosts.iter().enumerate() {
            let fail = if i == 1 { "nul_effect" } else { "no" };
            s.engine
                .decide(event("thing.happened", h, json!({"fail": fail})))
                .await
                .unwrap();
        }
        let runs = settle(&s.store).await;
        assert_eq!(runs.len(), 3);
        assert!(
            runs.iter().all(|r| r.status == RunStatus::Succeeded),
            "{runs:?}"
        );
        let refused = runs.iter().find(|r| r.host == "h1").unwrap();
        assert!(refused.effects.is_none(), "{refused:?}");
        assert!(
            refused
                .output
                .as_deref()
                .is_some_and(|o| o.starts_with("[the ledger refused this run's output")),
            "{refused:?}"
        );
        let fine = runs.iter().find(|r| r.host == "h0").unwrap();
        assert_eq!(fine.output.as_deref(), Some("done on h0"));
    });
}

/// A param the driver marks secret reaches the driver with the value to
/// redact from its answer, and the ledger as `***`; so does the secret
/// param of the inverse an operator asks for with `undo`.
#[test]
fn secret_params_reach_the_driver_and_the_ledger_keeps_them_masked() {
    rt().block_on(async {
        let p = on_event_host(
            "seal",
            "vault.exposed",
            json!([{"capability": "vault", "verb": "seal",
                    "params": {"key": "{{ $.data.key }}", "note": "n"}}]),
            json!({}),
        );
        let s = setup(config(2), &["h0"], vec![p]).await;
        s.engine
            .decide(event("vault.exposed", "h0", json!({"key": "k-1"})))
            .await
            .unwrap();
        let runs = settle(&s.store).await;
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].status, RunStatus::Succeeded);
        assert_eq!(runs[0].params, json!({"key": "***", "note": "n"}));

        let undone = s
            .engine
            .undo(&runs[0], "unseal", json!({"key": "k-2", "note": "m"}))
            .await
            .unwrap();
        assert!(
            matches!(undone, switchyard_engine::Undone::Queued(_)),
            "{undone:?}"
        );
        let runs = settle(&s.store).await;
        let inverse = runs.iter().find(|r| r.verb == "unseal").unwrap();
        assert_eq!(inverse.status, RunStatus::Succeeded);
        assert_eq!(inverse.params, json!({"key": "***", "note": "m"}));
        assert_eq!(
            s.recorder.log.lock().unwrap().sent,
            vec![
                (
                    "seal".into(),
                    json!({"key": "k-1", "note": "n"}),
                    vec!["k-1".to_owned()]
                ),
                (
                    "unseal".into(),
                    json!({"key": "k-2", "note": "m"}),
                    vec!["k-2".to_owned()]
                ),
            ]
        );

        // A secret the schema refuses: the error says why, never the value.
        s.engine
            .decide(event(
                "vault.exposed",
                "h0",
                json!({"key": "far-too-long-a-key"}),
            ))
            .await
            .unwrap();
        let runs = settle(&s.store).await;
        let refused = runs
            .iter()
            .find(|r| r.reason.as_deref() == Some("params_invalid"))
            .unwrap();
        let error = refused.params["error"].as_str().unwrap();
        assert!(error.contains("longer than 12"), "{error}");
        assert!(!error.contains("far-too-long"), "{error}");
    });
}
