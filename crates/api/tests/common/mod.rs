//! What the API tests share: a store with runs, a fleet of test hypervisor
//! hosts, the app state, requests, tokens and keys, and the check that every
//! answer is one the OpenAPI document lists.
#![allow(dead_code, unused_imports)]

pub use axum::body::Body;
pub use axum::http::{Request, StatusCode};
pub use jsonwebtoken::{EncodingKey, Header, encode};
pub use serde_json::{Value, json};
pub use std::sync::Arc;
pub use std::time::Duration;
pub use switchyard_api::{AppState, Auth, router};
pub use switchyard_store::{
    EventDecisions, NewDecision, NewPolicy, NewRun, PlannedDecision, PlannedRun, PolicyRef,
    RunStatus, Store,
};
pub use tower::ServiceExt;
pub use uuid::Uuid;

pub const SECRET: &[u8] = b"a-test-secret-of-reasonable-length";

pub async fn store_with_runs(dir: &std::path::Path) -> Store {
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
pub fn fleet(dir: &std::path::Path) -> Arc<switchyard_engine::Fleet> {
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

pub fn state(store: Store, auth: Option<Auth>, ready: Option<&'static str>) -> AppState {
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

pub async fn call(s: &AppState, req: Request<Body>) -> (StatusCode, Value) {
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
pub fn conforms(method: &str, path: &str, status: StatusCode, body: &Value) {
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

pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

pub fn token(role: &str, exp_offset: i64, secret: &[u8]) -> String {
    let exp = chrono::Utc::now().timestamp() + exp_offset;
    encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "alice", "role": role, "exp": exp}),
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

pub fn b64url(bytes: &[u8]) -> String {
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

pub fn with_bearer(uri: &str, method: &str, token: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[derive(Debug)]
pub struct Instant0;

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

/// A request with a body, a bearer token and optional extra headers.
pub fn send(
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
pub const CANARY: &str = "canary-token-9f8e7d6c5b4a";

pub fn write_vms(dir: &std::path::Path) {
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

pub fn vm_status(dir: &std::path::Path, host: &str, vm: &str) -> String {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("fakevm.json")).unwrap()).unwrap();
    v[host][vm]["status"].as_str().unwrap().to_owned()
}

pub const GUARD: &str = "version: 1
name: vm-guard
trigger_group: {triggers: [{kind: ups.on_battery}]}
targets: [{selector: \"pve-01/vm:100,101\"}]
actions: [{capability: vm.power, verb: shutdown, params: {timeout_s: 60}}]
windows: {suppression: 10m}
";

/// Record a dry-run of `name` that found `errors` errors.
pub async fn failed_dry_run(store: &Store, name: &str, errors: u64) {
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
pub fn guard(name: &str, timeout_s: u32, enabled: bool) -> String {
    GUARD
        .replace(
            "name: vm-guard",
            &format!("name: {name}\nenabled: {enabled}"),
        )
        .replace("timeout_s: 60", &format!("timeout_s: {timeout_s}"))
}

pub fn bundle(files: &[(&str, String)], extra: Value) -> String {
    let mut body = json!({
        "files": files.iter().map(|(p, c)| json!({"path": p, "content": c})).collect::<Vec<_>>(),
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body.to_string()
}

pub async fn settled_by_id(store: &Store, id: &str) -> switchyard_store::RunRecord {
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

/// A key pair from openssl: (private PKCS#8 PEM, public PEM).
pub fn keypair(dir: &std::path::Path, name: &str, genpkey: &[&str]) -> (Vec<u8>, Vec<u8>) {
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

pub fn signed(alg: jsonwebtoken::Algorithm, key: &EncodingKey) -> String {
    let exp = chrono::Utc::now().timestamp() + 600;
    jwt(
        alg,
        None,
        key,
        json!({"sub": "idp-user", "role": "viewer", "exp": exp}),
    )
}

/// Everything a request could change that a test can see: every row of
/// every table, and the test hypervisor's VMs.
pub fn fingerprint(dir: &std::path::Path) -> String {
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
pub fn example(name: &str, schema: &Value) -> Option<String> {
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

pub const K1: &[u8] = b"jwks-key-one-of-at-least-32-bytes!!";
pub const K2: &[u8] = b"jwks-key-two-of-at-least-32-bytes!!";

pub fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

pub fn oct(kid: &str, secret: &[u8]) -> Value {
    json!({"kty": "oct", "kid": kid, "alg": "HS256", "k": b64url(secret).trim_end_matches('=')})
}

/// An RSA public key as a JWK, from openssl's modulus.
pub fn rsa_jwk(dir: &std::path::Path, kid: &str, public_pem: &[u8]) -> Value {
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

pub fn jwt(
    alg: jsonwebtoken::Algorithm,
    kid: Option<&str>,
    key: &EncodingKey,
    claims: Value,
) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    encode(&h, &claims, key).unwrap()
}
