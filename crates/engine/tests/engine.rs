//! The engine against a real SQLite ledger, with a driver port that records
//! what it was asked to do and when: single-flight per host, the global cap,
//! FIFO, windows, retries, `on_error`, queue bounds, cancel, standby and recovery.
//!
//! Durations are a few milliseconds of real time; every assertion is about
//! order and counts, never about how long something took. (Paused tokio time
//! cannot drive these: the SQLite pool's own timeouts run on tokio time and
//! fire while a query waits on sqlx's worker thread.)

mod common;
use common::*;

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
