//! The engine over time, against a real SQLite (and PostgreSQL) ledger:
//! the lease and a standby taking over, recovery of what a stopped engine
//! left, circuit breakers, schedules and `ALL` groups across restarts, and
//! rows the database refuses.

mod common;
use common::*;

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
