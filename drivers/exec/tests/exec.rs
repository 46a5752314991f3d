//! The exec driver through the real supervisor, as switchyard runs it.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use switchyard_plugin::protocol::{ExecuteResult, Severity, Target};
use switchyard_plugin::supervisor::{
    AdapterSpec, CallError, HostSpec, Outcome, Supervisor, SupervisorOptions,
};

fn supervisor(driver_config: Value) -> Supervisor {
    let spec = AdapterSpec {
        driver: "exec".into(),
        argv: vec![env!("CARGO_BIN_EXE_switchyard-driver-exec").into()],
        cwd: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        instances: 1,
        driver_config,
    };
    Supervisor::new(
        SupervisorOptions {
            cancel_grace: Duration::from_secs(2),
            ..SupervisorOptions::default()
        },
        vec![spec],
    )
}

fn local() -> HostSpec {
    HostSpec {
        id: "localhost".into(),
        ..HostSpec::default()
    }
}

fn target() -> Target {
    Target {
        target_type: "host".into(),
        id: "localhost".into(),
    }
}

async fn run(sup: &Supervisor, params: Value, timeout: Duration) -> Outcome<ExecuteResult> {
    sup.execute(
        "exec",
        &local(),
        "run-1",
        target(),
        "command.run",
        "run",
        params,
        "k",
        timeout,
        &[],
    )
    .await
}

async fn ok_run(sup: &Supervisor, params: Value) -> ExecuteResult {
    run(sup, params, Duration::from_secs(20))
        .await
        .result
        .expect("execute answered")
}

#[tokio::test]
async fn runs_argv_and_captures_output() {
    let sup = supervisor(json!({}));
    let r = ok_run(&sup, json!({"argv": ["echo", "hello", "world"]})).await;
    assert!(r.ok, "{r:?}");
    assert!(
        r.output
            .as_deref()
            .unwrap()
            .contains("--- stdout ---\nhello world\n"),
        "{:?}",
        r.output
    );
    let r = ok_run(&sup, json!({"argv": ["ls", "/nonexistent-dir"]})).await;
    assert!(!r.ok);
    assert!(
        r.reason
            .as_deref()
            .unwrap()
            .starts_with("exited with status 2"),
        "{:?}",
        r.reason
    );
    assert!(
        r.output.as_deref().unwrap().contains("No such file"),
        "{:?}",
        r.output
    );
    let r = ok_run(&sup, json!({"argv": ["false"], "expect_exit": [1]})).await;
    assert!(r.ok);
    sup.shutdown().await;
}

#[tokio::test]
async fn arguments_never_go_through_a_shell() {
    let sup = supervisor(json!({}));
    let r = ok_run(
        &sup,
        json!({"argv": ["echo", "$(id)", ";", "rm -rf /tmp/x", "`whoami`"]}),
    )
    .await;
    assert!(
        r.output
            .as_deref()
            .unwrap()
            .contains("$(id) ; rm -rf /tmp/x `whoami`"),
        "{:?}",
        r.output
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn environment_is_built_from_an_allowlist() {
    let sup = supervisor(json!({"env_allowlist": ["CARGO_PKG_NAME"]}));
    let r = ok_run(&sup, json!({"argv": ["env"], "env": {"GREETING": "hi"}})).await;
    let out = r.output.unwrap();
    assert!(out.contains("GREETING=hi"), "{out}");
    assert!(
        out.contains("CARGO_PKG_NAME=switchyard-driver-exec"),
        "allowlisted: {out}"
    );
    assert!(out.contains("PATH=/usr/local/sbin:"), "{out}");
    assert!(
        !out.contains("CARGO_MANIFEST_DIR="),
        "not allowlisted: {out}"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn working_directory_timeout_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let sup = supervisor(json!({"max_output_bytes": 1024}));
    let r = ok_run(&sup, json!({"argv": ["pwd"], "cwd": dir.path()})).await;
    assert!(
        r.output
            .unwrap()
            .contains(&dir.path().display().to_string())
    );

    let r = ok_run(&sup, json!({"argv": ["sleep", "30"], "timeout_s": 1})).await;
    assert!(!r.ok);
    assert_eq!(
        r.reason.as_deref(),
        Some("timed out after 1 s; the command's process group was killed")
    );

    let r = ok_run(&sup, json!({"argv": ["head", "-c", "100000", "/dev/zero"]})).await;
    let out = r.output.unwrap();
    assert!(
        out.contains("[truncated]") && out.len() < 4096,
        "{}",
        out.len()
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn the_run_deadline_cancels_the_command() {
    let sup = supervisor(json!({}));
    let started = std::time::Instant::now();
    let out = run(
        &sup,
        json!({"argv": ["sleep", "30"]}),
        Duration::from_millis(800),
    )
    .await;
    match out.result {
        Err(CallError::Timeout { killed: false, .. }) => {}
        other => panic!("wanted a cooperative timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // The adapter is still the same healthy process.
    assert!(ok_run(&sup, json!({"argv": ["true"]})).await.ok);
    sup.shutdown().await;
}

#[tokio::test]
async fn missing_programs_fail_the_precondition() {
    let sup = supervisor(json!({}));
    let out = run(
        &sup,
        json!({"argv": ["no-such-program-here"]}),
        Duration::from_secs(10),
    )
    .await;
    let e = out.result.unwrap_err();
    assert_eq!(e.reason(), "precondition_failed", "{e}");
    let out = run(&sup, json!({"nope": 1}), Duration::from_secs(10)).await;
    assert!(
        matches!(out.result, Err(CallError::Adapter { code: -32602, .. })),
        "{:?}",
        out.result
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn dry_run_shows_the_argv_and_checks_the_program() {
    let sup = supervisor(json!({}));
    let dr = |params: Value| {
        let sup = sup.clone();
        async move {
            sup.dry_run(
                "exec",
                &local(),
                "run-1",
                target(),
                "command.run",
                "run",
                params,
                Duration::from_secs(10),
                &[],
            )
            .await
            .result
            .unwrap()
        }
    };
    let r = dr(json!({"argv": ["echo", "hi"], "timeout_s": 5})).await;
    assert!(r.ok);
    assert_eq!(r.severity, Severity::Info);
    assert_eq!(r.plan, vec![r#"run ["echo", "hi"], timeout 5s"#.to_owned()]);
    assert!(
        r.preconditions[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("/echo is executable")
    );
    let r = dr(json!({"argv": ["no-such-program-here"], "cwd": "/nonexistent"})).await;
    assert!(!r.ok);
    assert_eq!(r.severity, Severity::Error);
    assert_eq!(r.preconditions.iter().filter(|c| !c.ok).count(), 2);
    sup.shutdown().await;
}

#[tokio::test]
async fn a_reversible_command_applies_and_reverts_with_the_same_params() {
    let sup = supervisor(json!({}));
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("maintenance.flag");
    let params = json!({
        "apply": ["touch", flag.to_string_lossy()],
        "revert": ["rm", flag.to_string_lossy()],
    });
    let host = local();
    let call = |verb: &'static str| {
        sup.execute(
            "exec",
            &host,
            verb,
            target(),
            "command.reversible",
            verb,
            params.clone(),
            "k",
            Duration::from_secs(20),
            &[],
        )
    };
    assert!(call("apply").await.result.unwrap().ok);
    assert!(flag.exists(), "apply ran `touch`");
    assert!(call("revert").await.result.unwrap().ok);
    assert!(!flag.exists(), "revert ran `rm`");
    let failed = call("revert").await.result.unwrap();
    assert!(!failed.ok, "rm of a missing file exits 1: a failed run");
    let dry = sup
        .dry_run(
            "exec",
            &local(),
            "d",
            target(),
            "command.reversible",
            "nope",
            params.clone(),
            Duration::from_secs(5),
            &[],
        )
        .await;
    assert!(
        matches!(dry.result, Err(CallError::Adapter { code: -32004, .. })),
        "{:?}",
        dry.result
    );
}
