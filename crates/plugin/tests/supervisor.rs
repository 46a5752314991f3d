//! The supervisor against a real adapter process that misbehaves on request.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use switchyard_plugin::protocol::{DiscoverMode, Target};
use switchyard_plugin::supervisor::{
    AdapterSpec, CallError, HostSpec, Outcome, Supervisor, SupervisorOptions,
};

fn fake_adapter() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/adapters/fake.py")
}

fn options() -> SupervisorOptions {
    SupervisorOptions {
        cancel_grace: Duration::from_millis(1500),
        init_timeout: Duration::from_secs(10),
        restart_backoff_min: Duration::from_millis(100),
        restart_backoff_max: Duration::from_millis(400),
        ..SupervisorOptions::default()
    }
}

fn supervisor_with(opts: SupervisorOptions, instances: usize, driver_config: Value) -> Supervisor {
    let spec = AdapterSpec {
        driver: "fake".into(),
        argv: vec![
            "python3".into(),
            fake_adapter().to_string_lossy().into_owned(),
        ],
        cwd: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        instances,
        driver_config,
    };
    Supervisor::new(opts, vec![spec])
}

fn supervisor() -> Supervisor {
    supervisor_with(options(), 1, json!({}))
}

fn host(id: &str) -> HostSpec {
    HostSpec {
        id: id.into(),
        address: Some("127.0.0.1".into()),
        ..HostSpec::default()
    }
}

fn target() -> Target {
    Target {
        target_type: "host".into(),
        id: "h1".into(),
    }
}

async fn exec(
    sup: &Supervisor,
    host_id: &str,
    run: &str,
    params: Value,
    timeout_ms: u64,
) -> Outcome<switchyard_plugin::protocol::ExecuteResult> {
    sup.execute(
        "fake",
        &host(host_id),
        run,
        target(),
        "command.run",
        "run",
        params,
        "key",
        Duration::from_millis(timeout_ms),
        &[],
    )
    .await
}

fn pid_of(out: &Outcome<switchyard_plugin::protocol::ExecuteResult>) -> u64 {
    let r = out
        .result
        .as_ref()
        .unwrap_or_else(|e| panic!("call failed: {e}"));
    let v: Value = serde_json::from_str(r.output.as_deref().unwrap()).unwrap();
    v["pid"].as_u64().unwrap()
}

#[tokio::test]
async fn starts_lazily_and_initializes_once_per_process() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("init.log");
    let sup = supervisor_with(options(), 1, json!({"init_log": log}));
    assert!(!log.exists(), "nothing starts before the first call");
    let a = exec(&sup, "h1", "r1", json!({"action": "echo", "n": 1}), 10_000).await;
    let b = exec(&sup, "h1", "r2", json!({"action": "echo", "n": 2}), 10_000).await;
    assert_eq!(pid_of(&a), pid_of(&b), "one process serves both calls");
    let out: Value = serde_json::from_str(a.result.unwrap().output.as_deref().unwrap()).unwrap();
    assert_eq!(out["params"]["n"], 1);
    assert_eq!(out["host"]["id"], "h1");
    assert!(out["deadline_ms"].as_u64().unwrap() <= 10_000);
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
    sup.shutdown().await;
}

#[tokio::test]
async fn concurrent_requests_are_multiplexed() {
    let sup = supervisor();
    let slow = exec(
        &sup,
        "h1",
        "slow",
        json!({"action": "sleep", "ms": 600}),
        10_000,
    );
    let fast = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let out = exec(&sup, "h1", "fast", json!({"action": "echo"}), 10_000).await;
        (out, std::time::Instant::now())
    };
    let ((slow_out, slow_done), (fast_out, fast_done)) = tokio::join!(
        async {
            let o = slow.await;
            (o, std::time::Instant::now())
        },
        fast
    );
    assert!(slow_out.result.unwrap().ok);
    assert!(fast_out.result.unwrap().ok);
    assert!(
        fast_done < slow_done,
        "the fast request is not stuck behind the slow one"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn deadline_cancels_a_cooperative_adapter_without_killing_it() {
    let sup = supervisor();
    let before = pid_of(&exec(&sup, "h1", "r0", json!({"action": "echo"}), 10_000).await);
    let out = exec(
        &sup,
        "h1",
        "r1",
        json!({"action": "sleep", "ms": 10_000}),
        300,
    )
    .await;
    match out.result {
        Err(CallError::Timeout {
            method,
            killed: false,
            ..
        }) => assert_eq!(method, "execute"),
        other => panic!("wanted a timeout without kill, got {other:?}"),
    }
    let after = pid_of(&exec(&sup, "h1", "r2", json!({"action": "echo"}), 10_000).await);
    assert_eq!(before, after, "the adapter stopped on cancel and lives on");
    sup.shutdown().await;
}

#[tokio::test]
async fn an_adapter_that_ignores_cancel_is_killed_and_restarted() {
    let sup = supervisor();
    let before = pid_of(&exec(&sup, "h1", "r0", json!({"action": "echo"}), 10_000).await);
    let out = exec(&sup, "h1", "r1", json!({"action": "hang"}), 300).await;
    let err = out.result.unwrap_err();
    assert!(
        matches!(err, CallError::Timeout { killed: true, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(err.reason(), "timeout");
    let after = pid_of(&exec(&sup, "h1", "r2", json!({"action": "echo"}), 10_000).await);
    assert_ne!(before, after, "a new adapter process serves the next call");
    sup.shutdown().await;
}

#[tokio::test]
async fn a_crash_fails_in_flight_requests_clearly_and_the_adapter_restarts() {
    let sup = supervisor();
    let before = pid_of(&exec(&sup, "h1", "r0", json!({"action": "echo"}), 10_000).await);
    let in_flight = exec(
        &sup,
        "h1",
        "waiting",
        json!({"action": "sleep", "ms": 5_000}),
        10_000,
    );
    let crash = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        exec(&sup, "h1", "crasher", json!({"action": "crash"}), 10_000).await
    };
    let (waiting, crashed) = tokio::join!(in_flight, crash);
    for out in [&waiting, &crashed] {
        match &out.result {
            Err(CallError::Crashed { detail, .. }) => {
                assert!(detail.contains("exit status: 3"), "{detail}");
            }
            other => panic!("wanted a crash, got {other:?}"),
        }
    }
    assert!(
        crashed.stderr.iter().any(|l| l.contains("boom")),
        "stderr attached: {:?}",
        crashed.stderr
    );
    let after = pid_of(&exec(&sup, "h1", "r2", json!({"action": "echo"}), 10_000).await);
    assert_ne!(before, after);
    sup.shutdown().await;
}

#[tokio::test]
async fn garbage_on_stdout_is_a_protocol_error_and_the_adapter_restarts() {
    let sup = supervisor();
    let out = exec(&sup, "h1", "r1", json!({"action": "garbage"}), 10_000).await;
    match out.result {
        Err(CallError::Protocol { detail, .. }) => {
            assert!(detail.contains("this is not json"), "{detail}")
        }
        other => panic!("wanted a protocol error, got {other:?}"),
    }
    assert!(
        exec(&sup, "h1", "r2", json!({"action": "echo"}), 10_000)
            .await
            .result
            .is_ok()
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn an_oversized_line_is_a_protocol_error() {
    let sup = supervisor_with(
        SupervisorOptions {
            max_line_bytes: 64 * 1024,
            ..options()
        },
        1,
        json!({}),
    );
    let out = exec(
        &sup,
        "h1",
        "r1",
        json!({"action": "huge", "bytes": 200_000}),
        10_000,
    )
    .await;
    match out.result {
        Err(CallError::Protocol { detail, .. }) => {
            assert!(detail.contains("longer than 65536 bytes"), "{detail}")
        }
        other => panic!("wanted a protocol error, got {other:?}"),
    }
    assert!(
        exec(&sup, "h1", "r2", json!({"action": "echo"}), 10_000)
            .await
            .result
            .is_ok()
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn adapter_errors_keep_their_codes() {
    let sup = supervisor();
    let transient = exec(
        &sup,
        "h1",
        "r1",
        json!({"action": "error", "code": -32003, "message": "busy"}),
        10_000,
    )
    .await;
    let e = transient.result.unwrap_err();
    assert_eq!(
        e,
        CallError::Adapter {
            code: -32003,
            message: "busy".into()
        }
    );
    assert!(e.is_transient());
    let missing = exec(
        &sup,
        "h1",
        "r2",
        json!({"action": "error", "code": -32001, "message": "no vm 100"}),
        10_000,
    )
    .await;
    let e = missing.result.unwrap_err();
    assert!(!e.is_transient());
    assert_eq!(e.reason(), "target_not_found");
    let bad = exec(&sup, "h1", "r3", json!({"action": "bad_result"}), 10_000).await;
    assert!(
        matches!(bad.result, Err(CallError::InvalidResult { .. })),
        "{:?}",
        bad.result
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn stderr_lines_go_to_the_run_they_name() {
    let sup = supervisor();
    let a = exec(
        &sup,
        "h1",
        "run-a",
        json!({"action": "stderr", "pre_ms": 300, "tagged": ["a1", "a2"], "untagged": ["shared"], "hold_ms": 300}),
        10_000,
    );
    let b = exec(
        &sup,
        "h1",
        "run-b",
        json!({"action": "stderr", "pre_ms": 300, "tagged": ["b1"], "hold_ms": 900}),
        10_000,
    );
    let (a, b) = tokio::join!(a, b);
    assert!(
        a.stderr.iter().any(|l| l.ends_with("a1")) && a.stderr.iter().any(|l| l.ends_with("a2")),
        "{:?}",
        a.stderr
    );
    assert!(
        !a.stderr.iter().any(|l| l.ends_with("b1")),
        "{:?}",
        a.stderr
    );
    assert!(
        b.stderr.iter().any(|l| l.ends_with("b1")) && !b.stderr.iter().any(|l| l.ends_with("a1")),
        "{:?}",
        b.stderr
    );
    assert!(
        b.stderr.iter().any(|l| l == "shared"),
        "untagged lines go to every request in flight: {:?}",
        b.stderr
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn a_huge_stderr_line_is_cut_not_held() {
    let sup = supervisor();
    let out = exec(
        &sup,
        "h1",
        "run-long",
        json!({"action": "long_stderr", "bytes": 8 * 1024 * 1024}),
        10_000,
    )
    .await;
    assert!(out.result.is_ok(), "{:?}", out.result);
    assert_eq!(out.stderr.len(), 1);
    let line = &out.stderr[0];
    assert!(
        line.ends_with(" [line truncated]"),
        "{}",
        &line[line.len() - 40..]
    );
    assert!(line.len() < 17 * 1024, "{} bytes kept", line.len());
    sup.shutdown().await;
}

#[tokio::test]
async fn secrets_are_resolved_at_use_and_never_come_back() {
    let sup = supervisor();
    let secret = std::env::var("CARGO_PKG_NAME").unwrap();
    let h = HostSpec {
        config: json!({"token": "${env:CARGO_PKG_NAME}"}),
        ..host("h1")
    };
    let out = sup
        .execute(
            "fake",
            &h,
            "r1",
            target(),
            "c",
            "v",
            json!({"action": "leak"}),
            "k",
            Duration::from_secs(10),
            &[],
        )
        .await;
    let r = out.result.unwrap();
    assert_eq!(r.output.as_deref(), Some("sent ***"));
    assert_eq!(r.reason.as_deref(), Some("rejected ***"));
    assert!(
        out.stderr.iter().any(|l| l == "token is ***"),
        "{:?}",
        out.stderr
    );
    assert!(!out.stderr.iter().any(|l| l.contains(&secret)));

    let out = sup
        .execute(
            "fake",
            &h,
            "r2",
            target(),
            "c",
            "v",
            json!({"action": "leak_error"}),
            "k",
            Duration::from_secs(10),
            &[],
        )
        .await;
    let e = out.result.unwrap_err().to_string();
    assert!(e.contains("bad token ***") && !e.contains(&secret), "{e}");

    let unresolved = HostSpec {
        config: json!({"token": "${env:SWITCHYARD_TEST_SURELY_UNSET}"}),
        ..host("h1")
    };
    let out = sup
        .health("fake", &unresolved, Duration::from_secs(10))
        .await;
    let e = out.result.unwrap_err();
    assert_eq!(e.reason(), "secret_unresolved");
    assert!(
        e.to_string()
            .contains("${env:SWITCHYARD_TEST_SURELY_UNSET}"),
        "{e}"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn a_runs_secret_params_are_redacted_from_its_call_only() {
    let sup = supervisor();
    let secret = "param-secret-3f9a1c".to_owned();
    let call = |run: &'static str, action: &'static str, secrets: Vec<String>| {
        let sup = sup.clone();
        let secret = secret.clone();
        async move {
            sup.execute(
                "fake",
                &host("h1"),
                run,
                target(),
                "c",
                "v",
                json!({"action": action, "secret": secret}),
                "k",
                Duration::from_secs(10),
                &secrets,
            )
            .await
        }
    };
    let out = call("r1", "leak", vec![secret.clone()]).await;
    let r = out.result.unwrap();
    assert_eq!(r.output.as_deref(), Some("sent ***"));
    assert_eq!(r.reason.as_deref(), Some("rejected ***"));
    assert_eq!(out.stderr, vec!["token is ***".to_owned()]);

    let out = call("r2", "leak_error", vec![secret.clone()]).await;
    let e = out.result.unwrap_err().to_string();
    assert!(e.contains("bad token ***") && !e.contains(&secret), "{e}");

    // Not remembered by the adapter process: the answer of another run,
    // for which the value is not a secret, is left alone (only stderr lines
    // read within 10 s of the first runs' answers still lose it).
    let out = call("r3", "leak", Vec::new()).await;
    assert_eq!(
        out.result.unwrap().output.as_deref(),
        Some(format!("sent {secret}").as_str())
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn restarts_back_off() {
    let sup = supervisor_with(
        SupervisorOptions {
            restart_backoff_min: Duration::from_millis(800),
            restart_backoff_max: Duration::from_secs(5),
            ..options()
        },
        1,
        json!({}),
    );
    let _ = exec(&sup, "h1", "r1", json!({"action": "crash"}), 10_000).await;
    // Within the backoff window, a call that cannot wait is refused at once…
    let out = exec(&sup, "h1", "r2", json!({"action": "echo"}), 100).await;
    match out.result {
        Err(CallError::Unavailable { retry_in_ms, .. }) => {
            assert!(retry_in_ms > 0 && retry_in_ms <= 800)
        }
        other => panic!("wanted unavailable, got {other:?}"),
    }
    // …and one that can wait is served once the window has passed.
    assert!(
        exec(&sup, "h1", "r3", json!({"action": "echo"}), 10_000)
            .await
            .result
            .is_ok()
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn start_and_initialize_failures_are_clear() {
    let missing = Supervisor::new(
        options(),
        vec![AdapterSpec {
            driver: "ghost".into(),
            argv: vec!["/nonexistent/switchyard-driver-ghost".into()],
            cwd: std::env::temp_dir(),
            instances: 1,
            driver_config: json!({}),
        }],
    );
    let out = missing
        .health("ghost", &host("h1"), Duration::from_secs(5))
        .await;
    match out.result {
        Err(CallError::Spawn { program, .. }) => {
            assert_eq!(program, "/nonexistent/switchyard-driver-ghost")
        }
        other => panic!("wanted a spawn error, got {other:?}"),
    }
    let failing = supervisor_with(options(), 1, json!({"fail_init": "no credentials"}));
    let out = failing
        .health("fake", &host("h1"), Duration::from_secs(5))
        .await;
    match out.result {
        Err(CallError::Init { reason, .. }) => {
            assert!(reason.contains("no credentials"), "{reason}")
        }
        other => panic!("wanted an init error, got {other:?}"),
    }
    let out = failing
        .health("nope", &host("h1"), Duration::from_secs(5))
        .await;
    assert_eq!(
        out.result.unwrap_err(),
        CallError::UnknownDriver("nope".into())
    );
}

#[tokio::test]
async fn hosts_are_pinned_to_instances() {
    let sup = supervisor_with(options(), 3, json!({}));
    let mut by_slot = std::collections::HashMap::new();
    for i in 0..12 {
        let h = format!("host-{i}");
        let slot = sup.instance_for("fake", &h).unwrap();
        assert_eq!(sup.instance_for("fake", &h), Some(slot), "stable");
        let pid = pid_of(&exec(&sup, &h, "r", json!({"action": "echo"}), 10_000).await);
        let again = pid_of(&exec(&sup, &h, "r", json!({"action": "echo"}), 10_000).await);
        assert_eq!(pid, again, "{h} stays on its instance");
        let seen = by_slot.entry(slot).or_insert(pid);
        assert_eq!(*seen, pid, "one process per instance");
    }
    assert!(by_slot.len() > 1, "hosts spread over instances");
    let pids: std::collections::HashSet<_> = by_slot.values().collect();
    assert_eq!(pids.len(), by_slot.len());
    sup.shutdown().await;
}

#[tokio::test]
async fn discover_and_health_are_typed() {
    let sup = supervisor();
    let d = sup
        .discover(
            "fake",
            &host("h1"),
            DiscoverMode::Full,
            Duration::from_secs(10),
        )
        .await
        .result
        .unwrap();
    assert!(d.complete);
    assert_eq!(d.items[0].id, "100");
    assert_eq!(d.items[0].labels["env"], "prod");
    let h = sup
        .health("fake", &host("h1"), Duration::from_secs(10))
        .await
        .result
        .unwrap();
    assert!(h.ok);
    sup.shutdown().await;
}
