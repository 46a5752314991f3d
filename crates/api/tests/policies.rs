//! Policies over the API against a real SQLite store: save, check,
//! version, roll back and archive; bundles applied whole; dry-runs per
//! target and the enable gate they feed.

mod common;
use common::*;

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
