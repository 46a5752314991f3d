//! The HTTP API against a real SQLite store: status codes, error bodies,
//! filters and paging, and every auth rule — bearer tokens with pinned HS256,
//! roles, and the loopback mode's CSRF and Host guards.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use switchyard_api::{AppState, Auth, router};
use switchyard_store::{
    EventDecisions, NewDecision, NewPolicy, NewRun, PlannedDecision, PlannedRun, PolicyRef,
    RunStatus, Store,
};
use tower::ServiceExt;
use uuid::Uuid;

const SECRET: &[u8] = b"a-test-secret-of-reasonable-length";

async fn store_with_runs(dir: &std::path::Path) -> Store {
    let url = format!("sqlite://{}?mode=rwc", dir.join("api.db").display());
    let store = Store::open(&url).await.unwrap();
    let lease = store
        .acquire_lease("api-test", Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    let policy = Uuid::now_v7();
    let items: Vec<EventDecisions> = (0..5)
        .map(|i| EventDecisions {
            delivery_key: format!("S|{i}"),
            event_id: format!("e{i}"),
            received_at: chrono::Utc::now(),
            decisions: vec![PlannedDecision {
                decision: NewDecision {
                    id: Uuid::now_v7(),
                    policy_id: policy,
                    policy_name: "ups".into(),
                    policy_version: 1,
                    event_id: format!("e{i}"),
                    event_kind: "ups.on_battery".into(),
                    correlation_id: format!("c{i}"),
                    decided_at: chrono::Utc::now(),
                    correlated_event_ids: vec![],
                },
                suppression: None,
                runs: vec![PlannedRun {
                    run: NewRun {
                        id: Uuid::now_v7(),
                        host: if i % 2 == 0 { "pve-01" } else { "pve-02" }.into(),
                        target_type: "host".into(),
                        target_id: "pve-01".into(),
                        driver: Some("exec".into()),
                        capability: "command.run".into(),
                        verb: "run".into(),
                        params: json!({"argv": ["true"]}),
                        idempotency_key: None,
                        status: if i == 4 {
                            RunStatus::Failed
                        } else {
                            RunStatus::Queued
                        },
                        severity: None,
                        reason: None,
                        count: 1,
                        queued_at: chrono::Utc::now(),
                        inverse_of: None,
                    },
                    idempotency_ttl: None,
                }],
            }],
            correlation: vec![],
        })
        .collect();
    store
        .record_batch(&lease, chrono::Utc::now(), &items, &mut |_| true)
        .await
        .unwrap();
    let doc = "version: 1\nname: ups\ntrigger_group: {triggers: [{kind: ups.on_battery}]}\ntargets: [{selector: pve-01}]\nactions: [{capability: command.run, verb: run, params: {argv: [\"true\"]}}]\n";
    let c = switchyard_spec::policy::compile_text(doc, switchyard_spec::Format::Yaml).remove(0);
    store
        .create_policy(NewPolicy {
            ir: c.ir.unwrap(),
            spec_hash: c.spec_hash.unwrap(),
            source: doc.into(),
            format: "yaml".into(),
            managed_by: "api".into(),
            author: "test".into(),
            comment: String::new(),
        })
        .await
        .unwrap();
    store
}

/// Hosts `pve-01` and `pve-02` served by the test hypervisor driver
/// (`tests/drivers/fakevm`), whose VMs live in `dir/fakevm.json`; each host's
/// `token` is a secret reference to `dir/token`.
fn fleet(dir: &std::path::Path) -> Arc<switchyard_engine::Fleet> {
    let state_file = dir.join("fakevm.json");
    let drivers = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers");
    let registry = switchyard_plugin::Registry::load(&[drivers]).unwrap();
    let spec = registry
        .adapter_spec(
            "fakevm",
            json!({"state_file": state_file.to_string_lossy()}),
            &[],
        )
        .unwrap();
    let supervisor = switchyard_plugin::Supervisor::new(
        switchyard_plugin::SupervisorOptions::default(),
        vec![spec],
    );
    let hosts = ["pve-01", "pve-02"]
        .into_iter()
        .map(|id| switchyard_engine::FleetHost {
            spec: switchyard_plugin::HostSpec {
                id: id.into(),
                address: Some(format!("https://{id}.lab:8006")),
                labels: [("site".to_owned(), "fra".to_owned())].into(),
                config: json!({"token": format!("${{file:{}}}", dir.join("token").display())}),
            },
            drivers: vec!["fakevm".into()],
        })
        .collect();
    Arc::new(switchyard_engine::Fleet::new(
        Arc::new(registry),
        supervisor,
        hosts,
        Duration::from_secs(600),
    ))
}

fn state(store: Store, auth: Option<Auth>, ready: Option<&'static str>) -> AppState {
    AppState {
        fleet: fleet(std::path::Path::new("/nonexistent")),
        policy_notices: tokio::sync::broadcast::channel(64).0,
        directory: Default::default(),
        store,
        engine: Arc::default(),
        publisher: Arc::default(),
        ready: Arc::new(move || ready.map(str::to_owned)),
        auth: auth.map(Arc::new),
        listen: "127.0.0.1:8080".parse().unwrap(),
        policies_changed: Arc::new(|| {}),
    }
}

async fn call(s: &AppState, req: Request<Body>) -> (StatusCode, Value) {
    let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
    let resp = router(s.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    conforms(&method, &path, status, &body);
    (status, body)
}

/// Every answer the tests see must be one the OpenAPI document lists, with
/// a body its schema accepts.
fn conforms(method: &str, path: &str, status: StatusCode, body: &Value) {
    use switchyard_api::openapi;
    let Some(template) = openapi::template_of(path) else {
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{method} {path}: no such path"
        );
        return;
    };
    let doc = openapi::document();
    let op = &doc["paths"][template][method.to_ascii_lowercase()];
    if op.is_null() {
        return; // a method the path does not serve (405)
    }
    assert!(
        op["responses"].get(status.as_str()).is_some(),
        "{method} {template} answered {status}, which the OpenAPI document does not list"
    );
    if let Some(schema) = openapi::response_schema(method, template, status.as_u16()) {
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path().as_str()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {template} {status}: the body does not match the document: {errors:?}\n{body}"
        );
    }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn token(role: &str, exp_offset: i64, secret: &[u8]) -> String {
    let exp = chrono::Utc::now().timestamp() + exp_offset;
    encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "alice", "role": role, "exp": exp}),
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn with_bearer(uri: &str, method: &str, token: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn health_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_runs(dir.path()).await;
    let (st, body) = call(&state(store.clone(), None, None), get("/healthz")).await;
    assert_eq!((st, body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (st, _) = call(&state(store.clone(), None, None), get("/readyz")).await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = call(
        &state(
            store,
            None,
            Some("the engine lease is held by another instance"),
        ),
        get("/readyz"),
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body["reason"],
        "the engine lease is held by another instance"
    );
}

#[tokio::test]
async fn the_ledger_filters_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(store_with_runs(dir.path()).await, None, None);
    let (st, body) = call(&s, get("/api/runs?host=pve-01")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["runs"].as_array().unwrap().len(), 3);
    let (_, body) = call(&s, get("/api/runs?status=failed&policy=ups")).await;
    assert_eq!(
        body["runs"].as_array().unwrap().len(),
        0,
        "policy `ups` is the stored one, the runs belong to another id"
    );
    let (_, body) = call(&s, get("/api/runs?status=failed")).await;
    assert_eq!(body["runs"][0]["event_id"], "e4");
    let (_, page1) = call(&s, get("/api/runs?limit=2")).await;
    let cursor = page1["next_cursor"].as_str().unwrap().to_owned();
    let (_, page2) = call(&s, get(&format!("/api/runs?limit=2&cursor={cursor}"))).await;
    assert_ne!(page1["runs"][0]["id"], page2["runs"][0]["id"]);
    let id = page2["runs"][0]["id"].as_str().unwrap().to_owned();
    let (st, one) = call(&s, get(&format!("/api/runs/{id}"))).await;
    assert_eq!(
        (st, one["id"].as_str()),
        (StatusCode::OK, Some(id.as_str()))
    );
    for (uri, code, status) in [
        (
            "/api/runs?status=exploded",
            "bad_status",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/runs?since=yesterday",
            "bad_time",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/runs?cursor=nonsense",
            "bad_cursor",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/runs/not-a-uuid", "bad_id", StatusCode::BAD_REQUEST),
        (
            "/api/runs/01a20c00-0000-7000-8000-000000000000",
            "not_found",
            StatusCode::NOT_FOUND,
        ),
        ("/api/nothing", "not_found", StatusCode::NOT_FOUND),
    ] {
        let (st, body) = call(&s, get(uri)).await;
        assert_eq!(st, status, "{uri}");
        assert_eq!(body["error"]["code"], code, "{uri}: {body}");
        assert!(body["error"]["message"].is_string());
    }
    let (st, body) = call(&s, get("/api/policies")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["policies"][0]["name"], "ups");
    let (st, body) = call(&s, get("/api/policies/ups")).await;
    assert_eq!(
        (st, body["version_int"].as_i64()),
        (StatusCode::OK, Some(1))
    );
}

#[tokio::test]
async fn bearer_tokens_are_checked_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(
        store_with_runs(dir.path()).await,
        Some(Auth::hs256(SECRET, None, None).unwrap()),
        None,
    );
    let (st, body) = call(&s, get("/api/runs")).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("auth.unauthorized"))
    );
    let good = token("viewer", 600, SECRET);
    let (st, _) = call(&s, with_bearer("/api/runs", "GET", &good)).await;
    assert_eq!(st, StatusCode::OK);
    // Wrong secret, expired, `alg: none`, garbage.
    let forged = token("admin", 600, b"another-secret-entirely-000000000");
    let expired = token("admin", -3600, SECRET);
    let payload = b64url(
        format!(
            r#"{{"sub":"mallory","role":"admin","exp":{}}}"#,
            chrono::Utc::now().timestamp() + 600
        )
        .as_bytes(),
    );
    let none = format!("{}.{payload}.", b64url(br#"{"alg":"none","typ":"JWT"}"#));
    let hs384 = encode(
        &Header::new(jsonwebtoken::Algorithm::HS384),
        &json!({"sub": "alice", "role": "admin", "exp": chrono::Utc::now().timestamp() + 600}),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let no_sub = encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"role": "admin", "exp": chrono::Utc::now().timestamp() + 600}),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    for (what, t) in [
        ("forged", forged),
        ("expired", expired),
        ("alg none", none),
        ("HS384", hs384),
        ("no sub", no_sub),
        ("garbage", "x.y.z".into()),
    ] {
        let (st, body) = call(&s, with_bearer("/api/runs", "GET", &t)).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{what}: {body}");
    }
    // Roles: a viewer may not cancel; an operator may (here: no engine → 503).
    let id = call(&s, with_bearer("/api/runs?status=queued", "GET", &good))
        .await
        .1["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, body) = call(
        &s,
        with_bearer(&format!("/api/runs/{id}/cancel"), "POST", &good),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("auth.forbidden"))
    );
    let ingest = token("ingest", 600, SECRET);
    let (st, _) = call(&s, with_bearer("/api/runs", "GET", &ingest)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "ingest tokens only ingest");
    let operator = token("operator", 600, SECRET);
    let (st, body) = call(
        &s,
        with_bearer(&format!("/api/runs/{id}/cancel"), "POST", &operator),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("engine.standby"))
    );
}

#[tokio::test]
async fn without_auth_state_changes_need_the_csrf_header_and_our_host() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(store_with_runs(dir.path()).await, None, None);
    let id = call(&s, get("/api/runs?status=queued")).await.1["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let post = |csrf: Option<&str>, host: &str| {
        let mut b = Request::post(format!("/api/runs/{id}/cancel")).header("host", host);
        if let Some(c) = csrf {
            b = b.header("x-switchyard-csrf", c);
        }
        b.body(Body::empty()).unwrap()
    };
    let (st, body) = call(&s, post(None, "127.0.0.1:8080")).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("auth.csrf"))
    );
    let (st, _) = call(&s, post(Some("1"), "evil.example:8080")).await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "a foreign Host is refused (DNS rebinding)"
    );
    let (st, body) = call(&s, post(Some("1"), "localhost:8080")).await;
    assert_eq!(
        st,
        StatusCode::SERVICE_UNAVAILABLE,
        "passes the guards: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_publishes_to_jetstream_and_answers_202() {
    let nats = switchyard_test_support::NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    switchyard_intake::provision::provision(&js, &switchyard_intake::IntakeOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = state(
        store_with_runs(dir.path()).await,
        Some(Auth::hs256(SECRET, None, None).unwrap()),
        None,
    );
    let post = |uri: &str, role: &str, body: &str| {
        Request::post(uri)
            .header(
                "authorization",
                format!("Bearer {}", token(role, 600, SECRET)),
            )
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let event = r#"{"id":"evt-1","kind":"ups.on_battery","host":"pve-01","data":{"ups":"ups1"}}"#;
    // Not connected yet: 503, nothing lost silently.
    let (st, body) = call(&s, post("/api/events", "ingest", event)).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("ingest.unavailable"))
    );
    let _ = s.publisher.set(switchyard_intake::Publisher::new(client));
    let (st, _) = call(&s, post("/api/events", "viewer", event)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a viewer may not ingest");
    let (st, body) = call(&s, post("/api/events", "ingest", event)).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        (body["event_id"].as_str(), body["duplicate"].as_bool()),
        (Some("evt-1"), Some(false))
    );
    let (_, again) = call(&s, post("/api/events", "ingest", event)).await;
    assert_eq!(
        again["duplicate"], true,
        "the same id is de-duplicated by JetStream"
    );
    let (st, body) = call(
        &s,
        post("/api/events", "ingest", r#"{"kind":"Not A Kind"}"#),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("event.invalid"))
    );
    let alert = r#"{"version":"4","status":"firing","receiver":"switchyard","groupKey":"{}:{}","alerts":[{"status":"firing","labels":{"alertname":"NginxDown","instance":"web-01:80"},"annotations":{},"startsAt":"2026-11-24T08:00:00Z","fingerprint":"abc"}]}"#;
    let (st, body) = call(&s, post("/api/webhooks/alertmanager", "ingest", alert)).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["events"].as_array().unwrap().len(), 1);
    let (st, _) = call(&s, post("/api/webhooks/alertmanager", "ingest", "{}")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Both events are in the stream.
    let mut stream = js.get_stream("SWITCHYARD_EVENTS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 2);
}

#[tokio::test]
async fn enabling_is_gated_by_the_last_dry_run_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_runs(dir.path()).await;
    let reloads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut s = state(
        store.clone(),
        Some(Auth::hs256(SECRET, None, None).unwrap()),
        None,
    );
    let counter = Arc::clone(&reloads);
    s.policies_changed = Arc::new(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    let operator = token("operator", 600, SECRET);
    let admin = token("admin", 600, SECRET);
    let viewer = token("viewer", 600, SECRET);
    let (st, _) = call(&s, with_bearer("/api/policies/ups/enable", "POST", &viewer)).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, body) = call(
        &s,
        with_bearer("/api/policies/ups/enable", "POST", &operator),
    )
    .await;
    assert_eq!(
        (st, body["enabled"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{body}"
    );
    let (st, body) = call(
        &s,
        with_bearer("/api/policies/ups/disable", "POST", &operator),
    )
    .await;
    assert_eq!(
        (st, body["enabled"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    // A dry-run with errors blocks enabling; an admin may force it.
    failed_dry_run(&store, "ups", 2).await;
    let (st, body) = call(
        &s,
        with_bearer("/api/policies/ups/enable", "POST", &operator),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("policy.enable_blocked"))
    );
    let (st, _) = call(
        &s,
        with_bearer("/api/policies/ups/enable?force=true", "POST", &operator),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "forcing needs an admin");
    let (st, _) = call(
        &s,
        with_bearer("/api/policies/ups/enable?force=true", "POST", &admin),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        reloads.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "the engine is told each time"
    );
    let actions: Vec<String> = store
        .audit_events(10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert!(
        actions.contains(&"policy.enabled_forced".to_owned()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"policy.disabled".to_owned()),
        "{actions:?}"
    );
}

#[derive(Debug)]
struct Instant0;

impl switchyard_engine::Drivers for Instant0 {
    fn execute(
        &self,
        _req: switchyard_engine::ports::ExecRequest,
    ) -> futures::future::BoxFuture<'_, switchyard_engine::ports::ExecReport> {
        Box::pin(async {
            switchyard_engine::ports::ExecReport {
                result: Ok(switchyard_engine::ports::Executed {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_carries_run_status_changes() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_runs(dir.path()).await;
    let manifest = switchyard_plugin::Manifest::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../drivers/exec"),
    )
    .unwrap()
    .manifest;
    let routing = switchyard_engine::Routing::new(
        [&manifest],
        [switchyard_engine::HostEntry {
            id: "pve-01".into(),
            drivers: vec!["exec".into()],
            labels: Default::default(),
        }],
    );
    let policy = store.get_policy(&PolicyRef::parse("ups")).await.unwrap();
    let active =
        switchyard_engine::ActivePolicy::new(policy.id, &policy.name, 1, policy.ir).unwrap();
    let (engine, _) = switchyard_engine::Engine::start(
        switchyard_engine::EngineConfig {
            holder: "api-test".into(), // the holder that wrote the fixture runs
            ..Default::default()
        },
        Arc::new(store.clone()),
        Arc::new(Instant0),
        routing,
        switchyard_engine::PolicySet::new(vec![active]),
        switchyard_engine::InventorySnapshot::default(),
    )
    .await
    .unwrap();
    let s = state(store, None, None);
    let resp = router(s.clone()).oneshot(get("/api/stream")).await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "no engine yet"
    );
    let _ = s.engine.set(engine.clone());
    let resp = router(s.clone()).oneshot(get("/api/stream")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body().into_data_stream();
    let ev = switchyard_spec::event::parse(
        br#"{"id":"s1","kind":"ups.on_battery","host":"pve-01","data":{}}"#,
        Default::default(),
    )
    .unwrap();
    engine
        .decide(switchyard_engine::Incoming {
            delivery_key: "S|stream".into(),
            event_id: "s1".into(),
            event: ev,
            received_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    // Policy changes are on the same stream.
    let (st, _) = call(
        &s,
        Request::post("/api/policies/ups/disable")
            .header("x-switchyard-csrf", "1")
            .header("host", "127.0.0.1:8080")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // Runs the fixture left queued are recovered and may finish first: wait
    // for a `running` and a `succeeded` notice, whichever runs they are about.
    let mut text = String::new();
    while !(text.contains("\"status\":\"running\"")
        && text.contains("\"status\":\"succeeded\"")
        && text.contains("event: policy"))
    {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("a stream event")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("event: run"), "{text}");
    assert!(text.contains("event: policy"), "{text}");
    assert!(text.contains("\"event\":\"disabled\""), "{text}");
    assert!(text.contains("\"policy_name\":\"ups\""), "{text}");
}

/// A request with a body, a bearer token and optional extra headers.
fn send(
    method: &str,
    uri: &str,
    token: &str,
    content_type: Option<&str>,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"));
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.into()).unwrap()
}

/// The test hypervisor's VMs: pve-01 has 100 (running), 101 (stopped) and
/// 102 (running, locked by a backup); pve-02 has 200. The hosts' token is a
/// canary that must never appear in any response.
const CANARY: &str = "canary-token-9f8e7d6c5b4a";

fn write_vms(dir: &std::path::Path) {
    std::fs::write(
        dir.join("fakevm.json"),
        json!({
            "pve-01": {
                "100": {"name": "db-1", "status": "running", "labels": {"env": "prod"}},
                "101": {"name": "db-2", "status": "stopped", "labels": {"env": "prod"}},
                "102": {"name": "build", "status": "running", "lock": "backup"},
            },
            "pve-02": {"200": {"name": "web-1", "status": "running"}},
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("token"), CANARY).unwrap();
}

fn vm_status(dir: &std::path::Path, host: &str, vm: &str) -> String {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("fakevm.json")).unwrap()).unwrap();
    v[host][vm]["status"].as_str().unwrap().to_owned()
}

const GUARD: &str = "version: 1
name: vm-guard
trigger_group: {triggers: [{kind: ups.on_battery}]}
targets: [{selector: \"pve-01/vm:100,101\"}]
actions: [{capability: vm.power, verb: shutdown, params: {timeout_s: 60}}]
windows: {suppression: 10m}
";

/// Record a dry-run of `name` that found `errors` errors.
async fn failed_dry_run(store: &Store, name: &str, errors: u64) {
    store
        .save_transcript(
            &PolicyRef::parse(name),
            json!({"targets": []}),
            json!({"errors": errors}),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
}

/// `GUARD` under another name, timeout and `enabled`.
fn guard(name: &str, timeout_s: u32, enabled: bool) -> String {
    GUARD
        .replace(
            "name: vm-guard",
            &format!("name: {name}\nenabled: {enabled}"),
        )
        .replace("timeout_s: 60", &format!("timeout_s: {timeout_s}"))
}

fn bundle(files: &[(&str, String)], extra: Value) -> String {
    let mut body = json!({
        "files": files.iter().map(|(p, c)| json!({"path": p, "content": c})).collect::<Vec<_>>(),
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body.to_string()
}

#[tokio::test]
async fn bundles_apply_whole_and_roll_back_when_the_enable_gate_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_runs(dir.path()).await;
    let mut s = state(
        store.clone(),
        Some(Auth::hs256(SECRET, None, None).unwrap()),
        None,
    );
    s.fleet = fleet(dir.path());
    let mut notices = s.policy_notices.subscribe();
    let admin = token("admin", 600, SECRET);
    let operator = token("operator", 600, SECRET);
    let viewer = token("viewer", 600, SECRET);
    let apply = |body: String, who: &str| {
        send(
            "POST",
            "/api/policies/apply",
            who,
            Some("application/json"),
            &[],
            body,
        )
    };
    let files = vec![
        ("g.yaml", guard("g", 60, false)),
        ("h.yaml", guard("h", 61, true)),
    ];
    let (st, _) = call(&s, apply(bundle(&files, json!({})), &operator)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "applying needs an admin");
    let (st, body) = call(&s, apply(bundle(&files, json!({"dry_run": true})), &admin)).await;
    assert_eq!(
        (st, body["applied"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{body}"
    );
    assert_eq!(body["steps"][0]["action"], "created");
    let (st, _) = call(
        &s,
        send("GET", "/api/policies/g", &viewer, None, &[], Body::empty()),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "a dry run keeps nothing");
    let (st, body) = call(&s, apply(bundle(&files, json!({})), &admin)).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        body["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (
                s["name"].as_str().unwrap(),
                s["action"].as_str().unwrap(),
                s["file"].as_str().unwrap()
            ))
            .collect::<Vec<_>>(),
        [("g", "created", "g.yaml"), ("h", "created", "h.yaml")]
    );
    assert_eq!(body["policies"][1]["managed_by"], "dir");
    assert_eq!(
        body["policies"][1]["last_validation"],
        Value::Null,
        "the answer shows the state before the validation record"
    );
    let (_, h) = call(
        &s,
        send("GET", "/api/policies/h", &viewer, None, &[], Body::empty()),
    )
    .await;
    assert_eq!(h["last_validation"]["blockers"], 0, "{h}");
    // A blocker in one file: 400 with every finding and its file.
    let broken = vec![
        ("g.yaml", guard("g", 60, false)),
        (
            "h.yaml",
            guard("h", 62, true).replace("vm.power", "vm.nope"),
        ),
    ];
    let (st, body) = call(&s, apply(bundle(&broken, json!({})), &admin)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "bundle.driver_mismatch");
    assert!(
        body["error"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["file"] == "h.yaml"),
        "{body}"
    );

    // g's last dry-run found errors; a bundle that turns g on and edits h
    // is applied, refused at the enable gate, and rolled back whole.
    failed_dry_run(&store, "g", 1).await;
    while notices.try_recv().is_ok() {}
    let turn_on = vec![
        ("g.yaml", guard("g", 60, true)),
        ("h.yaml", guard("h", 63, true)),
    ];
    let (st, body) = call(&s, apply(bundle(&turn_on, json!({})), &admin)).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("bundle.rolled_back")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("enabling `g` is refused: its last dry-run reported 1 error(s)"),
        "{message}"
    );
    let (_, g) = call(
        &s,
        send("GET", "/api/policies/g", &viewer, None, &[], Body::empty()),
    )
    .await;
    assert_eq!(
        (g["enabled"].as_bool(), g["version_int"].as_i64()),
        (Some(false), Some(1)),
        "{g}"
    );
    let (_, h) = call(
        &s,
        send("GET", "/api/policies/h", &viewer, None, &[], Body::empty()),
    )
    .await;
    assert_eq!(h["version_int"], 3, "2 from the bundle, 3 restores 1: {h}");
    assert!(h["ir"].to_string().contains("\"timeout_s\":61"), "{h}");
    let (_, versions) = call(
        &s,
        send(
            "GET",
            "/api/policies/h/versions",
            &viewer,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    let comments: Vec<&str> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["comment"].as_str().unwrap())
        .collect();
    assert!(
        comments
            .iter()
            .any(|c| c.starts_with("automatic rollback to version 1: enabling `g` is refused")),
        "{comments:?}"
    );
    let mut events = Vec::new();
    while let Ok(n) = notices.try_recv() {
        events.push((n.event, n.name.unwrap_or_default()));
    }
    assert!(events.contains(&("rolled_back", "h".into())), "{events:?}");
    assert!(events.contains(&("rolled_back", "g".into())), "{events:?}");

    // PUT that only turns a policy on passes the same gate.
    let yaml = Some("application/yaml");
    let (st, _) = call(
        &s,
        send(
            "POST",
            "/api/policies",
            &admin,
            yaml,
            &[],
            guard("k", 70, false),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    failed_dry_run(&store, "k", 3).await;
    let put = |uri: &str| {
        send(
            "PUT",
            uri,
            &admin,
            yaml,
            &[("if-match", "1")],
            guard("k", 70, true),
        )
    };
    let (st, body) = call(&s, put("/api/policies/k")).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("policy.enable_blocked")),
        "{body}"
    );
    let (st, body) = call(&s, put("/api/policies/k?force=true")).await;
    assert_eq!(
        (st, body["enabled"].as_bool(), body["version_int"].as_i64()),
        (StatusCode::OK, Some(true), Some(1)),
        "{body}"
    );
    let audit = store.audit_events(20).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "policy.enabled_forced" && a.target == "k"),
        "{audit:?}"
    );

    // The directory endpoint: 404 without one, else its last apply.
    let (st, body) = call(
        &s,
        send("GET", "/api/directory", &viewer, None, &[], Body::empty()),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("directory.none"))
    );
    *s.directory.write().unwrap() = Some(
        json!({"dir": "/etc/switchyard/policies", "watching": true, "debounce_ms": 200, "last": {"result": "applied"}}),
    );
    let (st, body) = call(
        &s,
        send("GET", "/api/directory", &viewer, None, &[], Body::empty()),
    )
    .await;
    assert_eq!(
        (st, body["last"]["result"].as_str()),
        (StatusCode::OK, Some("applied"))
    );
}

#[tokio::test]
async fn policies_are_saved_checked_versioned_rolled_back_and_archived() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_runs(dir.path()).await;
    let mut s = state(
        store.clone(),
        Some(Auth::hs256(SECRET, None, None).unwrap()),
        None,
    );
    s.fleet = fleet(dir.path());
    let admin = token("admin", 600, SECRET);
    let viewer = token("viewer", 600, SECRET);
    let yaml = Some("application/yaml");

    // Save: 201 with Location, ETag, findings and last_validation.
    let resp = router(s.clone())
        .oneshot(send(
            "POST",
            "/api/policies?comment=first",
            &admin,
            yaml,
            &[],
            GUARD,
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["etag"], "\"1\"");
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/api/policies/"), "{location}");
    let (st, body) = call(&s, get(&location)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "reads need a token too");
    let (st, body2) = call(
        &s,
        send("GET", &location, &viewer, None, &[], Body::empty()),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body2["name"], "vm-guard");
    assert_eq!(body2["managed_by"], "api");
    assert_eq!(body2["last_validation"]["blockers"], 0);

    // Refusals, each with its status and code.
    let renamed = GUARD.replace("name: vm-guard", "name: vm-guard-copy");
    let unknown_field = GUARD.replace("windows:", "windowz:");
    let bad_capability = GUARD.replace("vm.power", "vm.teleport");
    let two = format!("{GUARD}---\n{}", GUARD.replace("vm-guard", "other"));
    let cases: [(&str, Option<&str>, &str, StatusCode, &str); 6] = [
        (
            &admin,
            yaml,
            GUARD,
            StatusCode::CONFLICT,
            "policy.name_taken",
        ),
        (
            &admin,
            yaml,
            &renamed,
            StatusCode::CONFLICT,
            "policy.duplicate",
        ),
        (
            &admin,
            yaml,
            &unknown_field,
            StatusCode::BAD_REQUEST,
            "policy.invalid",
        ),
        (
            &admin,
            yaml,
            &bad_capability,
            StatusCode::UNPROCESSABLE_ENTITY,
            "policy.driver_mismatch",
        ),
        (
            &admin,
            None,
            GUARD,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "policy.media_type",
        ),
        (
            &admin,
            yaml,
            &two,
            StatusCode::BAD_REQUEST,
            "policy.multiple_documents",
        ),
    ];
    for (tok, ct, doc, status, code) in cases {
        let (st, body) = call(
            &s,
            send("POST", "/api/policies", tok, ct, &[], doc.to_owned()),
        )
        .await;
        assert_eq!(
            (st, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    let (_, body) = call(
        &s,
        send("POST", "/api/policies", &admin, yaml, &[], renamed.clone()),
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`vm-guard`"),
        "{body}"
    );
    let (_, body) = call(
        &s,
        send(
            "POST",
            "/api/policies",
            &admin,
            yaml,
            &[],
            unknown_field.clone(),
        ),
    )
    .await;
    assert_eq!(
        body["error"]["findings"][0]["code"], "schema.unknown_field",
        "{body}"
    );
    assert_eq!(body["error"]["findings"][0]["path"], "/windowz");
    let (_, body) = call(
        &s,
        send(
            "POST",
            "/api/policies",
            &admin,
            yaml,
            &[],
            bad_capability.clone(),
        ),
    )
    .await;
    assert_eq!(
        body["error"]["findings"][0]["code"], "capability.unknown",
        "{body}"
    );
    let (st, _) = call(&s, send("POST", "/api/policies", &viewer, yaml, &[], GUARD)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "saving needs an admin");

    // Validate saves nothing and says why.
    let (st, body) = call(
        &s,
        send(
            "POST",
            "/api/policies/validate",
            &viewer,
            yaml,
            &[],
            unknown_field.clone(),
        ),
    )
    .await;
    assert_eq!(
        (st, body["valid"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{body}"
    );
    let (_, body) = call(
        &s,
        send(
            "POST",
            "/api/policies/validate",
            &viewer,
            yaml,
            &[],
            renamed.clone(),
        ),
    )
    .await;
    assert_eq!(body["valid"], true);
    assert!(body["policies"][0]["spec_hash"].is_string());

    // Update: If-Match required and checked; a change is a new version.
    let v2 = GUARD.replace("timeout_s: 60", "timeout_s: 120");
    let (st, body) = call(
        &s,
        send(
            "PUT",
            "/api/policies/vm-guard",
            &admin,
            yaml,
            &[],
            v2.clone(),
        ),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (
            StatusCode::PRECONDITION_REQUIRED,
            Some("policy.if_match_required")
        )
    );
    let (st, body) = call(
        &s,
        send(
            "PUT",
            "/api/policies/vm-guard",
            &admin,
            yaml,
            &[("if-match", "\"7\"")],
            v2.clone(),
        ),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (
            StatusCode::PRECONDITION_FAILED,
            Some("policy.version_mismatch")
        )
    );
    let (st, body) = call(
        &s,
        send(
            "PUT",
            "/api/policies/vm-guard",
            &admin,
            yaml,
            &[("if-match", "\"1\"")],
            v2.clone(),
        ),
    )
    .await;
    assert_eq!(
        (st, body["version_int"].as_i64()),
        (StatusCode::OK, Some(2)),
        "{body}"
    );

    // History, diff, rollback.
    let (_, body) = call(
        &s,
        send(
            "GET",
            "/api/policies/vm-guard/versions",
            &viewer,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    let versions = body["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["comment"], "first");
    assert_eq!(versions[1]["author"], "alice");
    let (_, body) = call(
        &s,
        send(
            "GET",
            "/api/policies/vm-guard/versions/1",
            &viewer,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(body["source"], GUARD);
    let (st, _) = call(
        &s,
        send(
            "GET",
            "/api/policies/vm-guard/versions/9",
            &viewer,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, body) = call(
        &s,
        send(
            "GET",
            "/api/policies/vm-guard/diff",
            &viewer,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(
        (body["from"].as_i64(), body["to"].as_i64()),
        (Some(1), Some(2))
    );
    assert_eq!(
        body["changes"],
        json!([{"path": "/actions/0/params/timeout_s", "before": 60, "after": 120}])
    );
    let (st, body) = call(
        &s,
        send(
            "POST",
            "/api/policies/vm-guard/rollback?to=1",
            &admin,
            None,
            &[("if-match", "2")],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(
        (st, body["version_int"].as_i64()),
        (StatusCode::OK, Some(3)),
        "{body}"
    );
    assert_eq!(body["ir"]["actions"][0]["params"]["timeout_s"], 60);
    let (st, _) = call(
        &s,
        send(
            "POST",
            "/api/policies/vm-guard/rollback?to=1",
            &admin,
            None,
            &[("if-match", "1")],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::PRECONDITION_FAILED, "a stale If-Match");

    // A directory-managed policy is read-only here, except enable/disable.
    let c = switchyard_spec::policy::validate_text(
        &renamed,
        switchyard_spec::Format::Yaml,
        Some(s.fleet.registry()),
    )
    .remove(0);
    let mut dir_ir = c.ir.unwrap();
    dir_ir.windows.suppression_ms = 1;
    let dir_hash = dir_ir.spec_hash();
    store
        .create_policy(NewPolicy {
            ir: dir_ir,
            spec_hash: dir_hash,
            source: renamed.clone(),
            format: "yaml".into(),
            managed_by: "dir".into(),
            author: "dir".into(),
            comment: String::new(),
        })
        .await
        .unwrap();
    for (method, uri, headers) in [
        (
            "PUT",
            "/api/policies/vm-guard-copy",
            vec![("if-match", "1")],
        ),
        ("DELETE", "/api/policies/vm-guard-copy", vec![]),
        (
            "POST",
            "/api/policies/vm-guard-copy/rollback?to=1",
            vec![("if-match", "1")],
        ),
    ] {
        let (st, body) = call(
            &s,
            send(method, uri, &admin, yaml, &headers, renamed.clone()),
        )
        .await;
        assert_eq!(
            (st, body["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("policy.managed_by_dir")),
            "{method} {uri}"
        );
    }
    let (st, _) = call(
        &s,
        send(
            "POST",
            "/api/policies/vm-guard-copy/disable",
            &admin,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);

    // Archive: gone from reads, history kept in the audit trail.
    let (st, body) = call(
        &s,
        send(
            "DELETE",
            "/api/policies/vm-guard",
            &admin,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(
        (st, body["archived"]["enabled"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    let (st, _) = call(
        &s,
        send(
            "GET",
            "/api/policies/vm-guard",
            &viewer,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let actions: Vec<String> = store
        .audit_events(50)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    for a in [
        "policy.created",
        "policy.updated",
        "policy.rolled_back",
        "policy.archived",
        "policy.disabled",
    ] {
        assert!(
            actions.contains(&a.to_owned()),
            "{a} missing from {actions:?}"
        );
    }
}

#[tokio::test]
async fn hosts_capabilities_inventory_previews_and_the_inverse() {
    let dir = tempfile::tempdir().unwrap();
    write_vms(dir.path());
    let store = store_with_runs(dir.path()).await;
    let mut s = state(
        store.clone(),
        Some(Auth::hs256(SECRET, None, None).unwrap()),
        None,
    );
    s.fleet = fleet(dir.path());
    let (admin, operator, viewer) = (
        token("admin", 600, SECRET),
        token("operator", 600, SECRET),
        token("viewer", 600, SECRET),
    );
    let mut bodies = Vec::new();
    let (st, body) = call(
        &s,
        send("GET", "/api/hosts", &viewer, None, &[], Body::empty()),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["hosts"].as_array().unwrap().len(), 2);
    assert_eq!(body["hosts"][0]["drivers"], json!(["fakevm"]));
    assert!(
        body["hosts"][0].get("config").is_none(),
        "host config is never returned"
    );
    bodies.push(body);

    let (st, body) = call(
        &s,
        send(
            "GET",
            "/api/hosts/pve-01/capabilities",
            &viewer,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["capabilities"][0]["name"], "vm.power");
    assert_eq!(body["capabilities"][0]["verbs"][0]["inverse"], "start");
    let (st, _) = call(
        &s,
        send(
            "GET",
            "/api/hosts/pve-09/capabilities",
            &viewer,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let (st, body) = call(
        &s,
        send(
            "GET",
            "/api/hosts/pve-01/inventory",
            &viewer,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(
        (st, body["items"].as_array().unwrap().len()),
        (StatusCode::OK, 0),
        "nothing discovered yet"
    );
    let (st, _) = call(
        &s,
        send(
            "POST",
            "/api/hosts/pve-01/inventory/refresh?mode=full",
            &viewer,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "a refresh calls drivers: operators only"
    );
    let (st, body) = call(
        &s,
        send(
            "POST",
            "/api/hosts/pve-01/inventory/refresh?mode=sideways",
            &operator,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_refresh"))
    );
    let (st, body) = call(
        &s,
        send(
            "POST",
            "/api/hosts/pve-01/inventory/refresh?mode=full",
            &operator,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["refresh"][0]["ok"], true, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 3);
    assert_eq!(body["items"][0]["state"]["status"], "running");
    assert_eq!(body["items"][0]["stale"], false);
    bodies.push(body);

    let (st, body) = call(
        &s,
        send(
            "GET",
            "/api/selectors/preview?selector=pve-01/vm:100,999",
            &viewer,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        body["targets"],
        json!([{"host": "pve-01", "type": "vm", "id": "100"}])
    );
    assert_eq!(body["missing"][0]["id"], "999");
    let (_, body) = call(
        &s,
        send(
            "GET",
            "/api/selectors/preview?selector=pve-*",
            &viewer,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(body["targets"].as_array().unwrap().len(), 2, "{body}");
    let (st, body) = call(
        &s,
        send(
            "GET",
            "/api/selectors/preview?selector=pve-01/vm:[",
            &viewer,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(
        (st, body["valid"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{body}"
    );
    assert!(
        body["finding"]["code"]
            .as_str()
            .unwrap()
            .starts_with("selector."),
        "{body}"
    );
    let (st, body) = call(
        &s,
        send(
            "GET",
            "/api/selectors/preview",
            &viewer,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("selector.missing"))
    );

    // The inverse: start for shutdown, disabled, triggers (and params that
    // do not fit `start`) left for the operator.
    let (st, _) = call(
        &s,
        send(
            "POST",
            "/api/policies",
            &admin,
            Some("application/yaml"),
            &[],
            GUARD,
        ),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, body) = call(
        &s,
        send(
            "POST",
            "/api/policies/vm-guard/inverse",
            &operator,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["spec"]["name"], "vm-guard-inverse");
    assert_eq!(body["spec"]["enabled"], false);
    assert_eq!(body["spec"]["actions"][0]["verb"], "start");
    assert_eq!(
        body["needs_input"],
        json!(["/trigger_group/triggers/0", "/actions/0/params"])
    );
    let (st, body) = call(
        &s,
        send(
            "POST",
            "/api/policies/ups/inverse",
            &operator,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("policy.no_inverse")),
        "{body}"
    );
    for b in bodies {
        assert!(!b.to_string().contains(CANARY), "a secret leaked: {b}");
    }
}

#[tokio::test]
async fn a_dry_run_reports_per_target_and_gates_enabling() {
    let dir = tempfile::tempdir().unwrap();
    write_vms(dir.path());
    let store = store_with_runs(dir.path()).await;
    let mut s = state(
        store.clone(),
        Some(Auth::hs256(SECRET, None, None).unwrap()),
        None,
    );
    s.fleet = fleet(dir.path());
    let (admin, operator) = (token("admin", 600, SECRET), token("operator", 600, SECRET));
    let yaml = Some("application/yaml");
    let (st, _) = call(&s, send("POST", "/api/policies", &admin, yaml, &[], GUARD)).await;
    assert_eq!(st, StatusCode::CREATED);
    let event = r#"{"id": "sample-1", "kind": "ups.on_battery", "data": {"charge": 40}}"#;
    let (st, t) = call(
        &s,
        send(
            "POST",
            "/api/policies/vm-guard/dry-run",
            &operator,
            Some("application/json"),
            &[],
            event,
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert!(t["transcript_id"].is_string());
    assert_eq!(t["event"]["given"], true);
    assert_eq!(t["would_fire"], true);
    assert_eq!(t["triggers"][0]["matched"], true);
    assert_eq!(t["suppression"]["decision"], "claim");
    assert_eq!(
        t["used_inventory"]["refresh"][0]["ok"], true,
        "a fast refresh first: {t}"
    );
    assert_eq!(t["used_inventory"]["stale"], false);
    let actions = t["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2);
    assert_eq!(actions[0]["driver"], "fakevm");
    assert_eq!(actions[0]["queue"]["position"], 1);
    assert_eq!(actions[0]["idempotency"]["decision"], "run");
    assert_eq!(
        actions[0]["driver_dry_run"]["result"]["effects"][0],
        json!({"target": "vm:100", "field": "status", "from": "running", "to": "stopped"})
    );
    assert_eq!(
        actions[1]["driver_dry_run"]["result"]["reason"],
        "already stopped"
    );
    assert_eq!(t["summary"]["errors"], 0, "{t}");
    let (st, body) = call(
        &s,
        send(
            "GET",
            "/api/policies/vm-guard",
            &operator,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["last_dry_run"]["transcript_id"], t["transcript_id"]);
    let (st, _) = call(
        &s,
        send(
            "POST",
            "/api/policies/vm-guard/enable",
            &operator,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "a clean dry-run lets it be enabled");

    // A locked VM and a missing one are errors; enabling is then refused.
    let risky = GUARD
        .replace("vm-guard", "vm-risky")
        .replace("vm:100,101", "vm:102,999");
    let (st, _) = call(&s, send("POST", "/api/policies", &admin, yaml, &[], risky)).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, t) = call(
        &s,
        send(
            "POST",
            "/api/policies/vm-risky/dry-run",
            &operator,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(
        t["event"]["given"], false,
        "a sample event is made from the trigger"
    );
    let codes: Vec<&str> = t["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["code"].as_str())
        .collect();
    assert!(codes.contains(&"dryrun.driver_refused"), "{codes:?}");
    assert!(codes.contains(&"dryrun.target_not_found"), "{codes:?}");
    assert_eq!(t["summary"]["errors"], 2, "{t}");
    let (st, body) = call(
        &s,
        send(
            "POST",
            "/api/policies/vm-risky/enable",
            &operator,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("policy.enable_blocked"))
    );

    // An event that does not match is a warning, not an error.
    let (_, t) = call(
        &s,
        send(
            "POST",
            "/api/policies/vm-guard/dry-run",
            &operator,
            Some("application/json"),
            &[],
            r#"{"kind": "ups.on_line"}"#,
        ),
    )
    .await;
    assert_eq!(t["would_fire"], false);
    assert_eq!(t["findings"][0]["code"], "dryrun.no_match", "{t}");
    let (st, body) = call(
        &s,
        send(
            "POST",
            "/api/policies/vm-guard/dry-run",
            &operator,
            Some("application/json"),
            &[],
            "{not json",
        ),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("event.invalid"))
    );
    assert!(!t.to_string().contains(CANARY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_queues_the_inverse_verb_once() {
    let _ = switchyard_api::metrics::handle();
    let dir = tempfile::tempdir().unwrap();
    write_vms(dir.path());
    let store = store_with_runs(dir.path()).await;
    let mut s = state(
        store.clone(),
        Some(Auth::hs256(SECRET, None, None).unwrap()),
        None,
    );
    s.fleet = fleet(dir.path());
    let (admin, operator) = (token("admin", 600, SECRET), token("operator", 600, SECRET));
    let (st, body) = call(
        &s,
        send(
            "POST",
            "/api/policies",
            &admin,
            Some("application/yaml"),
            &[],
            GUARD.replace("vm:100,101", "vm:100"),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let p = store
        .get_policy(&PolicyRef::parse("vm-guard"))
        .await
        .unwrap();
    s.fleet
        .discover_all(&store, switchyard_plugin::protocol::DiscoverMode::Full)
        .await;
    let (engine, _) = switchyard_engine::Engine::start(
        switchyard_engine::EngineConfig {
            holder: "api-test".into(),
            ..Default::default()
        },
        Arc::new(store.clone()),
        Arc::new(s.fleet.drivers_port()),
        s.fleet.routing().clone(),
        switchyard_engine::PolicySet::new(vec![
            switchyard_engine::ActivePolicy::new(p.id, &p.name, p.version_int, p.ir).unwrap(),
        ]),
        s.fleet.snapshot(&store).await.unwrap(),
    )
    .await
    .unwrap();
    let _ = s.engine.set(engine.clone());
    let decide = |id: &str| switchyard_engine::Incoming {
        delivery_key: format!("S|{id}"),
        event_id: id.into(),
        event: switchyard_spec::event::parse(
            format!(r#"{{"id":"{id}","kind":"ups.on_battery","data":{{}}}}"#).as_bytes(),
            Default::default(),
        )
        .unwrap(),
        received_at: chrono::Utc::now(),
    };
    engine.decide(decide("u1")).await.unwrap();
    engine.decide(decide("u2")).await.unwrap(); // suppressed by the window
    let settled = |event: &'static str| {
        let store = store.clone();
        async move {
            for _ in 0..200 {
                let (runs, _) = store
                    .list_runs(
                        &switchyard_store::RunFilter {
                            event_id: Some(event.into()),
                            ..Default::default()
                        },
                        None,
                        10,
                    )
                    .await
                    .unwrap();
                if let Some(r) = runs
                    .into_iter()
                    .find(|r| !matches!(r.status, RunStatus::Queued | RunStatus::Running))
                {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("no run of {event} finished");
        }
    };
    let shutdown = settled("u1").await;
    assert_eq!(shutdown.status, RunStatus::Succeeded);
    assert_eq!(vm_status(dir.path(), "pve-01", "100"), "stopped");

    let uri = format!("/api/runs/{}/undo", shutdown.id);
    let (st, _) = call(
        &s,
        send(
            "POST",
            &uri,
            &token("viewer", 600, SECRET),
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, body) = call(
        &s,
        send(
            "POST",
            &uri,
            &operator,
            Some("application/json"),
            &[],
            r#"{"params": {"timeout_s": 5}}"#,
        ),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("run.undo_params_invalid")
        ),
        "{body}"
    );
    let (st, undo) = call(&s, send("POST", &uri, &operator, None, &[], Body::empty())).await;
    assert_eq!(st, StatusCode::CREATED, "{undo}");
    assert_eq!(undo["verb"], "start");
    assert_eq!(
        undo["params"],
        json!({}),
        "shutdown's timeout_s does not fit start"
    );
    assert_eq!(undo["inverse_of"], json!(shutdown.id));
    assert_eq!(undo["target"], json!({"type": "vm", "id": "100"}));
    let started = settled_by_id(&store, undo["id"].as_str().unwrap()).await;
    assert_eq!(started.status, RunStatus::Succeeded);
    assert_eq!(vm_status(dir.path(), "pve-01", "100"), "running");
    let (st, again) = call(&s, send("POST", &uri, &operator, None, &[], Body::empty())).await;
    assert_eq!(
        (st, &again["id"]),
        (StatusCode::OK, &undo["id"]),
        "undo happens once per run"
    );

    let suppressed = settled("u2").await;
    assert_eq!(suppressed.status, RunStatus::Suppressed);
    let (st, body) = call(
        &s,
        send(
            "POST",
            &format!("/api/runs/{}/undo", suppressed.id),
            &operator,
            None,
            &[],
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("run.not_undoable"))
    );
    let actions: Vec<String> = store
        .audit_events(20)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert!(actions.contains(&"run.undo".to_owned()), "{actions:?}");

    // What happened shows in /metrics.
    let resp = router(s.clone())
        .oneshot(send(
            "GET",
            "/metrics",
            &token("viewer", 600, SECRET),
            None,
            &[],
            Body::empty(),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    for needle in [
        "switchyard_runs_finished_total{status=\"succeeded\",driver=\"fakevm\"} 2",
        "switchyard_decisions_total{outcome=\"queued\"}",
        "switchyard_decisions_total{outcome=\"suppressed\"} 1",
        "switchyard_policy_matches_total{policy=\"vm-guard\"} 2",
        "switchyard_decision_latency_seconds_bucket",
        "switchyard_run_duration_seconds_count{driver=\"fakevm\"} 2",
        "switchyard_policies{state=\"disabled\"} 2",
        "switchyard_policy_version{policy=\"vm-guard\"} 1",
        "switchyard_runs_in_flight 0",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let (st, _) = call(&s, get("/metrics")).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "metrics need a viewer token when auth is on"
    );
    engine.shutdown(Duration::from_secs(5)).await;
}

async fn settled_by_id(store: &Store, id: &str) -> switchyard_store::RunRecord {
    let id = Uuid::parse_str(id).unwrap();
    for _ in 0..200 {
        let r = store.get_run(id).await.unwrap();
        if !matches!(r.status, RunStatus::Queued | RunStatus::Running) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {id} did not finish");
}

#[test]
fn every_metric_is_documented() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/OPERATIONS.md"
    ))
    .unwrap();
    for name in switchyard_spec::metric_names::ALL {
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/OPERATIONS.md does not list `{name}`"
        );
    }
}

/// A key pair from openssl: (private PKCS#8 PEM, public PEM).
fn keypair(dir: &std::path::Path, name: &str, genpkey: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let key = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let ok = std::process::Command::new("openssl")
        .arg("genpkey")
        .args(genpkey)
        .arg("-out")
        .arg(&key)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl genpkey");
    let ok = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl pkey");
    (std::fs::read(key).unwrap(), std::fs::read(public).unwrap())
}

fn signed(alg: jsonwebtoken::Algorithm, key: &EncodingKey) -> String {
    let exp = chrono::Utc::now().timestamp() + 600;
    jwt(
        alg,
        None,
        key,
        json!({"sub": "idp-user", "role": "viewer", "exp": exp}),
    )
}

#[tokio::test]
async fn public_keys_pin_rs256_or_es256() {
    use jsonwebtoken::Algorithm::{ES256, HS256, RS256};
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_runs(dir.path()).await;
    let (rsa_private, rsa_public) = keypair(
        dir.path(),
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let (ec_private, ec_public) = keypair(
        dir.path(),
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let rs = EncodingKey::from_rsa_pem(&rsa_private).unwrap();
    let es = EncodingKey::from_ec_pem(&ec_private).unwrap();

    let auth = Auth::public_key(&rsa_public, None, None).unwrap();
    assert_eq!(auth.algorithms(), [RS256]);
    let s = state(store.clone(), Some(auth), None);
    let (st, _) = call(&s, with_bearer("/api/runs", "GET", &signed(RS256, &rs))).await;
    assert_eq!(st, StatusCode::OK);
    for (what, token) in [
        (
            "HS256 with the public key as the secret",
            signed(HS256, &EncodingKey::from_secret(&rsa_public)),
        ),
        ("ES256 against an RSA key", signed(ES256, &es)),
    ] {
        let (st, _) = call(&s, with_bearer("/api/runs", "GET", &token)).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{what}");
    }

    let auth = Auth::public_key(&ec_public, None, None).unwrap();
    assert_eq!(auth.algorithms(), [ES256]);
    let s = state(store, Some(auth), None);
    let (st, _) = call(&s, with_bearer("/api/runs", "GET", &signed(ES256, &es))).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = call(&s, with_bearer("/api/runs", "GET", &signed(RS256, &rs))).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "RS256 against an EC key");
    assert!(Auth::public_key(b"-----BEGIN NONSENSE-----", None, None).is_err());
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(store_with_runs(dir.path()).await, None, None);
    let (st, doc) = call(&s, get("/api/openapi.json")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = std::collections::BTreeSet::new();
    let mut count = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            count += 1;
            assert!(
                ids.insert(op["operationId"].as_str().unwrap().to_owned()),
                "{method} {path}: duplicate operationId"
            );
            assert!(
                !op["responses"].as_object().unwrap().is_empty(),
                "{method} {path}"
            );
            // Every documented route is served (a 404 from the fallback would mean it is not).
            let uri = path.replace("{id}", "ups").replace("{v}", "1");
            let resp = router(s.clone())
                .oneshot(
                    Request::builder()
                        .method(method.to_uppercase().as_str())
                        .uri(&uri)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            assert_ne!(
                body["error"]["message"], "no such endpoint",
                "{method} {path} is documented but not served"
            );
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }
    assert_eq!(count, 32, "operations in the document");
}

/// Everything a request could change that a test can see: every row of
/// every table, and the test hypervisor's VMs.
fn fingerprint(dir: &std::path::Path) -> String {
    let db = rusqlite::Connection::open_with_flags(
        dir.join("api.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = String::new();
    for t in tables {
        let mut stmt = db.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        let mut lines = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            let cells: Vec<String> = (0..n)
                .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                .collect();
            lines.push(cells.join("|"));
        }
        lines.sort();
        out.push_str(&format!("## {t}\n{}\n", lines.join("\n")));
    }
    out + &std::fs::read_to_string(dir.join("fakevm.json")).unwrap_or_default()
}

/// A value for a query or path parameter, from its schema.
fn example(name: &str, schema: &Value) -> Option<String> {
    if let Some(e) = schema["enum"].as_array() {
        return e[0].as_str().map(str::to_owned);
    }
    Some(match (schema["type"].as_str(), schema["format"].as_str()) {
        (_, Some("date-time")) => "2020-01-01T00:00:00Z".into(),
        (Some("integer"), _) => "1".into(),
        (Some("boolean"), _) => "true".into(),
        _ if name == "cursor" => return None,
        _ if name == "selector" => "pve-01".into(),
        _ => "pve-01".into(),
    })
}

#[tokio::test]
async fn no_get_changes_anything_a_test_can_see() {
    let dir = tempfile::tempdir().unwrap();
    write_vms(dir.path());
    let mut s = state(store_with_runs(dir.path()).await, None, None);
    s.fleet = fleet(dir.path());
    let run_id = call(&s, get("/api/runs?limit=1")).await.1["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = fingerprint(dir.path());
    let doc = switchyard_api::openapi::document();
    let mut walked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let Some(op) = ops.get("get") else { continue };
        let mut uri = path.clone();
        let mut query = Vec::new();
        for p in op["parameters"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            match p["in"].as_str() {
                Some("path") => {
                    let value = match name {
                        "id" if path.starts_with("/api/runs/") => run_id.clone(),
                        "id" if path.starts_with("/api/hosts/") => "pve-01".into(),
                        "id" => "ups".into(),
                        _ => "1".into(),
                    };
                    uri = uri.replace(&format!("{{{name}}}"), &value);
                }
                Some("query") => {
                    if let Some(v) = example(name, &p["schema"]) {
                        query.push(format!("{name}={v}"));
                    }
                }
                _ => {}
            }
        }
        // Once without parameters, once with every one the operation takes.
        for uri in [uri.clone(), format!("{uri}?{}", query.join("&"))] {
            let resp = router(s.clone()).oneshot(get(&uri)).await.unwrap();
            let status = resp.status();
            let streaming = resp
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            if !streaming {
                let _ = axum::body::to_bytes(resp.into_body(), 1 << 22).await;
            }
            assert!(
                status.is_success()
                    || status.is_client_error()
                    || status == StatusCode::SERVICE_UNAVAILABLE,
                "GET {uri}: {status}"
            );
            walked += 1;
        }
        assert_eq!(
            fingerprint(dir.path()),
            before,
            "GET {path} changed something"
        );
    }
    assert!(walked >= 30, "walked {walked} GETs");
    // The check can fail: a refresh (a POST) does change what it sees.
    let resp = router(s.clone())
        .oneshot(
            Request::post("/api/hosts/pve-01/inventory/refresh")
                .header("x-switchyard-csrf", "1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_ne!(fingerprint(dir.path()), before, "a refresh stores items");
}

#[tokio::test]
async fn without_auth_every_request_must_name_this_server() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(store_with_runs(dir.path()).await, None, None);
    let with = |uri: &str, headers: &[(&str, &str)]| {
        let mut b = Request::get(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    };
    for uri in [
        "/api/runs",
        "/api/stream",
        "/metrics",
        "/api/policies/ups",
        "/healthz",
    ] {
        for (what, headers, allowed) in [
            (
                "a rebinding Host",
                vec![("host", "evil.example:8080")],
                false,
            ),
            ("another port", vec![("host", "127.0.0.1:9999")], false),
            (
                "a foreign Origin",
                vec![
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://evil.example"),
                ],
                false,
            ),
            (
                "an opaque Origin",
                vec![("host", "127.0.0.1:8080"), ("origin", "null")],
                false,
            ),
            ("our Host", vec![("host", "127.0.0.1:8080")], true),
            (
                "our Host and Origin",
                vec![
                    ("host", "localhost:8080"),
                    ("origin", "http://localhost:8080"),
                ],
                true,
            ),
            ("no Host (not a browser)", vec![], true),
        ] {
            let resp = router(s.clone())
                .oneshot(with(uri, &headers))
                .await
                .unwrap();
            let status = resp.status();
            if allowed {
                assert_ne!(status, StatusCode::FORBIDDEN, "GET {uri} with {what}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "GET {uri} with {what}");
                let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
                    .await
                    .unwrap();
                let body: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(body["error"]["code"], "auth.csrf", "{uri} {what}");
            }
        }
    }
}

#[tokio::test]
async fn every_answer_carries_browser_headers_and_bodies_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(store_with_runs(dir.path()).await, None, None);
    for uri in ["/api/runs", "/api/nothing", "/metrics", "/healthz"] {
        let resp = router(s.clone()).oneshot(get(uri)).await.unwrap();
        for (name, value) in switchyard_api::SECURITY_HEADERS {
            assert_eq!(
                resp.headers().get(*name).and_then(|v| v.to_str().ok()),
                Some(*value),
                "{uri}: {name}"
            );
        }
        let csp = resp.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }
    // Every state-changing operation refuses a body over the limit: 413, and nothing changes.
    let big = vec![b' '; switchyard_api::MAX_BODY_BYTES + 1];
    let before = fingerprint(dir.path());
    let doc = switchyard_api::openapi::document();
    let mut refused = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys().filter(|m| *m != "get") {
            let uri = path.replace("{id}", "ups").replace("{v}", "1").replace(
                "/api/runs/ups",
                "/api/runs/01a20c00-0000-7000-8000-000000000000",
            );
            for chunked in [false, true] {
                let body = if chunked {
                    // No Content-Length: read up to the limit, then refused.
                    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                        big.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
                    Body::from_stream(futures::stream::iter(chunks))
                } else {
                    Body::from(big.clone())
                };
                let mut b = Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .header("x-switchyard-csrf", "1")
                    .header("content-type", "application/json")
                    .header("if-match", "1");
                if !chunked {
                    b = b.header("content-length", big.len().to_string());
                }
                let (st, body) = call(&s, b.body(body).unwrap()).await;
                assert_eq!(
                    st,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "{method} {path} (chunked: {chunked}): {body}"
                );
                assert_eq!(body["error"]["code"], "body.too_large");
                refused += 1;
            }
        }
    }
    assert!(refused >= 30, "{refused} refusals");
    assert_eq!(fingerprint(dir.path()), before);
}

const K1: &[u8] = b"jwks-key-one-of-at-least-32-bytes!!";
const K2: &[u8] = b"jwks-key-two-of-at-least-32-bytes!!";

fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

fn oct(kid: &str, secret: &[u8]) -> Value {
    json!({"kty": "oct", "kid": kid, "alg": "HS256", "k": b64url(secret).trim_end_matches('=')})
}

/// An RSA public key as a JWK, from openssl's modulus.
fn rsa_jwk(dir: &std::path::Path, kid: &str, public_pem: &[u8]) -> Value {
    let pem = dir.join(format!("{kid}.pem"));
    std::fs::write(&pem, public_pem).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["rsa", "-pubin", "-noout", "-modulus", "-in"])
        .arg(&pem)
        .output()
        .unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    let hex = hex.trim().trim_start_matches("Modulus=");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    json!({"kty": "RSA", "kid": kid, "n": b64url(&bytes), "e": "AQAB"})
}

fn jwt(
    alg: jsonwebtoken::Algorithm,
    kid: Option<&str>,
    key: &EncodingKey,
    claims: Value,
) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    encode(&h, &claims, key).unwrap()
}

#[tokio::test]
async fn tokens_cookies_and_key_rotation_table() {
    use jsonwebtoken::Algorithm::{HS256, RS256};
    use switchyard_api::auth::{Claims, Key};
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_runs(dir.path()).await;
    let (rsa_private, rsa_public) = keypair(
        dir.path(),
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(
        &jwks_path,
        jwks(&[oct("k1", K1), rsa_jwk(dir.path(), "r1", &rsa_public)]),
    )
    .unwrap();
    let auth = Auth::new(
        vec![Key::hs256(SECRET, None).unwrap()],
        Some(&jwks_path),
        &Claims {
            issuer: Some("https://idp.example".into()),
            audience: Some("switchyard".into()),
            leeway: Duration::from_secs(5),
        },
    )
    .unwrap();
    let s = state(store, Some(auth), None);
    let now = chrono::Utc::now().timestamp();
    let claims = |extra: Value| {
        let mut c = json!({"sub": "alice", "role": "operator", "exp": now + 600,
                           "iss": "https://idp.example", "aud": "switchyard"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let hs = |kid: Option<&str>, key: &[u8], extra: Value| {
        jwt(HS256, kid, &EncodingKey::from_secret(key), claims(extra))
    };
    let good = hs(None, SECRET, json!({}));
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        let payload = b64url(claims(json!({"role": "admin"})).to_string().as_bytes());
        format!(
            "{}.{}.{}",
            parts[0],
            payload.trim_end_matches('='),
            parts[2]
        )
    };
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#).trim_end_matches('='),
        b64url(claims(json!({})).to_string().as_bytes()).trim_end_matches('=')
    );
    let rs = EncodingKey::from_rsa_pem(&rsa_private).unwrap();
    let run = call(&s, with_bearer("/api/runs?status=queued", "GET", &good))
        .await
        .1["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cancel = format!("/api/runs/{run}/cancel");
    // (what, method, uri, bearer token, cookie token, extra headers, status, code)
    type Row<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Option<String>,
        Option<String>,
        Vec<(&'a str, &'a str)>,
        StatusCode,
    );
    let rows: Vec<Row> = vec![
        (
            "kid-less key",
            "GET",
            "/api/runs",
            Some(good.clone()),
            None,
            vec![],
            StatusCode::OK,
        ),
        (
            "JWKS oct key by kid",
            "GET",
            "/api/runs",
            Some(hs(Some("k1"), K1, json!({}))),
            None,
            vec![],
            StatusCode::OK,
        ),
        (
            "JWKS RSA key by kid",
            "GET",
            "/api/runs",
            Some(jwt(RS256, Some("r1"), &rs, claims(json!({})))),
            None,
            vec![],
            StatusCode::OK,
        ),
        (
            "alg none",
            "GET",
            "/api/runs",
            Some(none),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "HS256 signed with the RSA public key (kid r1)",
            "GET",
            "/api/runs",
            Some(hs(Some("r1"), &rsa_public, json!({}))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "RS256 without kid against the HS256 key",
            "GET",
            "/api/runs",
            Some(jwt(RS256, None, &rs, claims(json!({})))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "expired beyond the leeway",
            "GET",
            "/api/runs",
            Some(hs(None, SECRET, json!({"exp": now - 60}))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "expired within the leeway",
            "GET",
            "/api/runs",
            Some(hs(None, SECRET, json!({"exp": now - 2}))),
            None,
            vec![],
            StatusCode::OK,
        ),
        (
            "not yet valid (nbf)",
            "GET",
            "/api/runs",
            Some(hs(None, SECRET, json!({"nbf": now + 120}))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "valid since (nbf)",
            "GET",
            "/api/runs",
            Some(hs(None, SECRET, json!({"nbf": now - 1}))),
            None,
            vec![],
            StatusCode::OK,
        ),
        (
            "wrong iss",
            "GET",
            "/api/runs",
            Some(hs(None, SECRET, json!({"iss": "https://evil.example"}))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no iss",
            "GET",
            "/api/runs",
            Some(hs(None, SECRET, json!({"iss": null}))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong aud",
            "GET",
            "/api/runs",
            Some(hs(None, SECRET, json!({"aud": "grafana"}))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no aud",
            "GET",
            "/api/runs",
            Some(hs(None, SECRET, json!({"aud": null}))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "aud list holding ours",
            "GET",
            "/api/runs",
            Some(hs(None, SECRET, json!({"aud": ["grafana", "switchyard"]}))),
            None,
            vec![],
            StatusCode::OK,
        ),
        (
            "unknown kid",
            "GET",
            "/api/runs",
            Some(hs(Some("k9"), K1, json!({}))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "right kid, wrong key",
            "GET",
            "/api/runs",
            Some(hs(Some("k1"), SECRET, json!({}))),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "tampered payload",
            "GET",
            "/api/runs",
            Some(tampered),
            None,
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "session cookie read",
            "GET",
            "/api/runs",
            None,
            Some(good.clone()),
            vec![],
            StatusCode::OK,
        ),
        (
            "session cookie change without the CSRF header",
            "POST",
            &cancel,
            None,
            Some(good.clone()),
            vec![],
            StatusCode::FORBIDDEN,
        ),
        (
            "session cookie change from another Origin",
            "POST",
            &cancel,
            None,
            Some(good.clone()),
            vec![
                ("x-switchyard-csrf", "1"),
                ("host", "sy.example:8443"),
                ("origin", "https://evil.example"),
            ],
            StatusCode::FORBIDDEN,
        ),
        (
            "session cookie change, CSRF header, same Origin",
            "POST",
            &cancel,
            None,
            Some(good.clone()),
            vec![
                ("x-switchyard-csrf", "1"),
                ("host", "sy.example:8443"),
                ("origin", "https://sy.example:8443"),
            ],
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            "bearer change needs no CSRF header",
            "POST",
            &cancel,
            Some(good.clone()),
            None,
            vec![],
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            "expired session cookie",
            "GET",
            "/api/runs",
            None,
            Some(hs(None, SECRET, json!({"exp": now - 60}))),
            vec![],
            StatusCode::UNAUTHORIZED,
        ),
    ];
    let mut table = Vec::new();
    for (what, method, uri, bearer, cookie, headers, expected) in rows {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(t) = bearer {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        if let Some(t) = cookie {
            b = b.header(
                "cookie",
                format!("theme=dark; {}={t}", switchyard_api::auth::SESSION_COOKIE),
            );
        }
        for (k, v) in headers {
            b = b.header(k, v);
        }
        let (st, body) = call(&s, b.body(Body::empty()).unwrap()).await;
        table.push(format!("{what}: {st}"));
        assert_eq!(st, expected, "{what}: {body}");
        if st == StatusCode::FORBIDDEN {
            assert_eq!(body["error"]["code"], "auth.csrf", "{what}");
        }
    }
    println!("{}", table.join("\n"));

    // Rotation with no restart: k2 replaces k1 in the file.
    let k2 = hs(Some("k2"), K2, json!({}));
    let (st, _) = call(&s, with_bearer("/api/runs", "GET", &k2)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "k2 is not published yet");
    std::fs::write(&jwks_path, jwks(&[oct("k2", K2)])).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (st, _) = call(&s, with_bearer("/api/runs", "GET", &k2)).await;
    assert_eq!(st, StatusCode::OK, "k2 accepted once the file names it");
    let (st, _) = call(
        &s,
        with_bearer("/api/runs", "GET", &hs(Some("k1"), K1, json!({}))),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "k1 retired");
    // A broken file keeps the last good keys.
    std::fs::write(&jwks_path, "{ not json").unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (st, _) = call(&s, with_bearer("/api/runs", "GET", &k2)).await;
    assert_eq!(st, StatusCode::OK, "a broken JWKS file keeps k2");
    // Bad key material is refused when configured.
    for (what, text) in [
        ("short oct key", jwks(&[oct("s", b"short")])),
        (
            "no kid",
            json!({"keys": [{"kty": "oct", "k": b64url(K1)}]}).to_string(),
        ),
        (
            "alg that does not fit",
            jwks(&[json!({"kty": "oct", "kid": "x", "alg": "RS256", "k": b64url(K1)})]),
        ),
        ("kid twice", jwks(&[oct("a", K1), oct("a", K2)])),
    ] {
        assert!(switchyard_api::auth::parse_jwks(&text).is_err(), "{what}");
    }
    assert!(Key::hs256(b"short", None).is_err(), "a short HS256 secret");
}
