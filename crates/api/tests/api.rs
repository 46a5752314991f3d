//! The HTTP API against a real SQLite store: health, the ledger's filters
//! and paging, ingest, the stream, hosts and inventory, undo, metrics, and
//! the OpenAPI document (every route, and no GET that changes anything).

mod common;
use common::*;

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
