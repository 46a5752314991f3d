//! What the engine tests share: a fake driver port that records what it
//! was asked and when, routing over a fake manifest, policies, events, and
//! an engine started on a fresh ledger.
#![allow(dead_code, unused_imports)]

pub use futures::future::BoxFuture;
pub use proptest::prelude::*;
pub use serde_json::{Value, json};
pub use std::collections::HashMap;
pub use std::sync::{Arc, Mutex};
pub use std::time::Duration;
pub use switchyard_engine::ports::{DriverFailure, ExecReport, ExecRequest, Executed};
pub use switchyard_engine::{
    ActivePolicy, Decided, Drivers, Engine, EngineConfig, HostEntry, Incoming, InventorySnapshot,
    PolicySet, Routing,
};
pub use switchyard_plugin::Manifest;
pub use switchyard_spec::event::Event;
pub use switchyard_store::{RunFilter, RunRecord, RunStatus, Store};
pub use uuid::Uuid;

pub const MANIFEST: &str = r#"
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
pub struct Log {
    pub running_per_host: HashMap<String, usize>,
    pub max_per_host: HashMap<String, usize>,
    pub running: usize,
    pub max_running: usize,
    /// (host, run id) in start order.
    pub starts: Vec<(String, String)>,
    /// When each run id's calls began.
    pub started_at: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    /// Calls per run id.
    pub calls: HashMap<String, u32>,
    /// Health probes, in order with the starts: ("health", host).
    pub events: Vec<(&'static str, String)>,
    /// (verb, timeout) of every call, in order.
    pub timeouts: Vec<(String, Duration)>,
    /// (verb, params, secrets to redact) of every call, in order.
    pub sent: Vec<(String, Value, Vec<String>)>,
}

/// A driver port that sleeps `params.ms` and fails as `params.fail` says
/// (`transient` for the first `params.failures` calls, or `permanent`).
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    pub log: Arc<Mutex<Log>>,
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

pub fn routing(hosts: &[&str]) -> Routing {
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

pub fn policy(doc: Value) -> ActivePolicy {
    let c = switchyard_spec::policy::validate_value(&doc, None);
    let ir =
        c.ir.unwrap_or_else(|| panic!("policy compiles: {:?}", c.findings));
    ActivePolicy::new(Uuid::now_v7(), &ir.name.clone(), 1, ir).unwrap()
}

/// A policy on `kind` acting on the host named by `$.host`.
pub fn on_event_host(name: &str, kind: &str, actions: Value, windows: Value) -> ActivePolicy {
    policy(json!({
        "version": 1, "name": name, "enabled": true,
        "trigger_group": {"triggers": [{"kind": kind}]},
        "targets": [{"selector": "{{ $.host }}", "dynamic_resolution": true}],
        "actions": actions,
        "windows": windows,
    }))
}

pub fn event(kind: &str, host: &str, data: Value) -> Incoming {
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

pub struct Setup {
    pub store: Store,
    pub engine: Engine,
    pub recorder: Recorder,
    pub _dir: tempfile::TempDir,
}

pub async fn setup(config: EngineConfig, hosts: &[&str], policies: Vec<ActivePolicy>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("e.db").display());
    setup_at(&url, dir, config, hosts, policies).await
}

pub async fn setup_at(
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

pub async fn all_runs(store: &Store) -> Vec<RunRecord> {
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
pub async fn settle(store: &Store) -> Vec<RunRecord> {
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

pub fn config(cap: usize) -> EngineConfig {
    EngineConfig {
        global_concurrency: cap,
        retry_backoff: Duration::from_millis(5),
        holder: format!("test-{}", Uuid::now_v7()),
        ..EngineConfig::default()
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// An engine on a fresh PostgreSQL with one policy: `thing.happened` pokes
/// the event's host with `params.<param>` taken from `data.<param>`.
pub async fn poke_on_postgres(
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
