//! Fault matrix row 13: a command whose background child holds stdout.
//!
//! The run ends (at the command's exit, or at its timeout), the command's
//! whole process group is killed, and the other runs on the same exec
//! adapter go on undisturbed.

use std::time::Duration;
use switchyard_system_tests::{Backend, Rig, RigOptions, nats};

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    switchyard_system_tests::processes()
        .into_iter()
        .filter(|(_, cmd, _)| cmd.contains(needle))
        .map(|(pid, cmd, _)| format!("{pid}: {cmd}"))
        .collect()
}

/// A policy running `argv` on `host`; the command's own `timeout_s`, and the
/// action's timeout (the supervisor's deadline) 1 s longer.
fn exec_policy(name: &str, host: &str, argv: &str, timeout_s: u64) -> String {
    let kind = name.replace('-', "_");
    format!(
        "version: 1\nname: {name}\nenabled: true\n\
         trigger_group:\n  triggers:\n    - kind: exec.{kind}\n\
         targets:\n  - selector: {host}\n\
         actions:\n  - capability: command.run\n    verb: run\n    driver: exec\n    timeout: {}s\n\
         \x20   params: {{ argv: {argv}, timeout_s: {timeout_s} }}\n",
        timeout_s + 1
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_child_holding_stdout_ends_with_its_group() {
    let mut rig = Rig::new(
        RigOptions::new(Backend::Sqlite, 0)
            .exec_host("x-01")
            .exec_host("x-02")
            .exec_host("x-03"),
    );
    // x-01: the command exits at once, its background child keeps stdout.
    rig.policy(
        "leaves-child",
        &exec_policy(
            "leaves-child",
            "x-01",
            r#"["sh", "-c", "sleep 3017 & echo started"]"#,
            2,
        ),
    );
    // x-03: the command and its background child both outlive the timeout.
    rig.policy(
        "stuck",
        &exec_policy(
            "stuck",
            "x-03",
            r#"["sh", "-c", "sleep 3018 & sleep 3019"]"#,
            2,
        ),
    );
    // x-02: a well-behaved command on the same adapter, running meanwhile.
    rig.policy(
        "slow",
        &exec_policy("slow", "x-02", r#"["sleep", "10"]"#, 12),
    );
    rig.start().await;
    let js = rig.publisher().await;
    for (name, host) in [
        ("slow", "x-02"),
        ("leaves-child", "x-01"),
        ("stuck", "x-03"),
    ] {
        js.publish(
            &format!("switchyard.events.exec.{}", name.replace('-', "_")),
            nats::event(
                &format!("exec.{}", name.replace('-', "_")),
                host,
                &format!("ev-{name}"),
                0,
            ),
        )
        .await
        .expect("published");
    }
    assert!(
        rig.settle(3, Duration::from_secs(60)).await,
        "runs did not finish:\n{}",
        rig.log()
    );
    let runs = rig.ledger().await.runs().await;
    let on = |host: &str| {
        runs.iter()
            .find(|r| r.host == host)
            .unwrap_or_else(|| panic!("no run on {host}: {runs:?}"))
    };
    assert_eq!(on("x-01").status, "succeeded", "{:?}", on("x-01"));
    assert_eq!(on("x-03").status, "failed", "{:?}", on("x-03"));
    assert!(
        on("x-03")
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("timed out after 2 s")),
        "{:?}",
        on("x-03")
    );
    assert_eq!(
        on("x-02").status,
        "succeeded",
        "the slow run shared the adapter and must not suffer: {:?}\n{}",
        on("x-02"),
        rig.log()
    );
    let log = rig.log();
    assert!(
        !log.contains("adapter ignored cancel") && !log.contains("adapter stopped"),
        "the exec adapter was killed or restarted:\n{log}"
    );
    let left = processes_with("sleep 301");
    assert!(left.is_empty(), "background children survived: {left:?}");
    rig.stop().await;
}
