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
        .acquire_lease("api-test", chrono::Utc::now(), Duration::from_secs(600))
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

fn state(store: Store, auth: Option<Auth>, ready: Option<&'static str>) -> AppState {
    AppState {
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
    let resp = router(s.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body)
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
        Some(Auth::hs256(SECRET, None, None)),
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
        Some(Auth::hs256(SECRET, None, None)),
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
    let mut s = state(store.clone(), Some(Auth::hs256(SECRET, None, None)), None);
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
    store
        .save_transcript(
            &PolicyRef::parse("ups"),
            json!({"targets": []}),
            json!({"errors": 2}),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
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
    let mut text = String::new();
    while !text.contains("succeeded") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("a stream event")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("event: run"), "{text}");
    assert!(text.contains("\"status\":\"running\""), "{text}");
    assert!(text.contains("\"policy_name\":\"ups\""), "{text}");
}
