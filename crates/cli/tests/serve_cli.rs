//! `switchyard serve` end to end: a real nats-server, SQLite, the exec driver
//! and the policy directory. Events are published as producers would, the
//! ledger is read back, and the process is stopped by SIGTERM — or killed.

use futures::StreamExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use switchyard_store::{RunFilter, RunRecord, RunStatus, Store};
use switchyard_test_support::NatsServer;

mod common;
use common::*;

async fn runs(dir: &Path) -> Vec<RunRecord> {
    let url = format!("sqlite://{}", dir.join("ledger.db").display());
    let store = Store::connect(&url).await.unwrap();
    store
        .list_runs(&RunFilter::default(), None, 1000)
        .await
        .unwrap()
        .0
}

/// Poll the ledger until `done` holds (bounded).
async fn wait_for(dir: &Path, what: &str, done: impl Fn(&[RunRecord]) -> bool) -> Vec<RunRecord> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let r = runs(dir).await;
        if done(&r) {
            return r;
        }
        assert!(
            Instant::now() < until,
            "{what}: {:#?}",
            r.iter()
                .map(|r| (r.host.as_str(), r.status, r.reason.as_deref()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_become_runs_in_the_ledger() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let api = write_config(dir.path(), &nats.url(), "");
    std::fs::write(
        dir.path().join("policies/ups.yaml"),
        r#"
version: 1
name: ups-on-battery-note
enabled: true
trigger_group:
  triggers:
    - kind: ups.on_battery
conditions:
  - { path: "$.data.ups", op: in, value: [ups1, ups2] }
targets:
  - selector: "lab-[01:02]"
actions:
  - capability: command.run
    verb: run
    params: { argv: ["echo", "{{ $.data.ups }} is on battery"] }
windows:
  suppression: 10m
  group_by: ["$.data.ups"]
"#,
    )
    .unwrap();
    let mut serve = Serve::start(dir.path());
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut succeeded = client.subscribe("switchyard.runs.succeeded").await.unwrap();

    for ups in ["ups1", "ups1", "ups1", "ups2", "ups9"] {
        publish(
            &nats.url(),
            &[
                "--kind",
                "ups.on_battery",
                "--data",
                &format!("{{\"ups\":\"{ups}\"}}"),
            ],
        );
    }
    publish(
        &nats.url(),
        &[
            "--kind",
            "ups.on_battery",
            "--time",
            "2020-01-01T00:00:00Z",
            "--data",
            "{\"ups\":\"ups2\"}",
        ],
    );
    // Events are decided concurrently: wait for the whole picture (four
    // succeeded runs, the stale skip, both suppressions counted).
    let all = wait_for(dir.path(), "four succeeded runs and every decision", |r| {
        r.iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count()
            == 4
            && r.iter().any(|r| r.status == RunStatus::Skipped)
            && r.iter()
                .filter(|r| r.status == RunStatus::Suppressed)
                .map(|r| r.count)
                .sum::<i64>()
                == 2
    })
    .await;
    let suppressed: Vec<&RunRecord> = all
        .iter()
        .filter(|r| r.status == RunStatus::Suppressed)
        .collect();
    assert_eq!(
        suppressed.len(),
        1,
        "one aggregated record for ups1's window"
    );
    assert_eq!(suppressed[0].count, 2);
    let stale: Vec<&RunRecord> = all
        .iter()
        .filter(|r| r.status == RunStatus::Skipped)
        .collect();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].reason.as_deref(), Some("stale_event"));
    assert_eq!(all.len(), 6, "ups9 matched no condition and left no record");
    let ok = all
        .iter()
        .find(|r| r.status == RunStatus::Succeeded && r.host == "lab-02")
        .unwrap();
    assert!(
        ok.output.as_deref().unwrap_or("").contains("is on battery"),
        "{:?}",
        ok.output
    );
    assert_eq!(ok.policy_version, 1);

    // Every status change is announced on NATS.
    let notice = tokio::time::timeout(Duration::from_secs(10), succeeded.next())
        .await
        .expect("a notification")
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&notice.payload).unwrap();
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["policy_name"], "ups-on-battery-note");

    // The ledger reads the same through the CLI.
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["runs", "list", "--config"])
        .arg(dir.path().join("switchyard.toml"))
        .args(["--status", "suppressed", "-o", "json"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["runs"][0]["count"], 2);

    // The same ledger over HTTP, with readiness.
    assert_eq!(http(api, "GET", "/readyz", &[]).0, 200);
    let (status, body) = http(api, "GET", "/api/runs?status=suppressed", &[]);
    assert_eq!(status, 200);
    assert_eq!(body["runs"][0]["count"], 2);
    let (status, body) = http(api, "POST", &format!("/api/runs/{}/cancel", ok.id), &[]);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("auth.csrf"))
    );
    let (status, body) = http(
        api,
        "POST",
        &format!("/api/runs/{}/cancel", ok.id),
        &["X-Switchyard-CSRF: 1"],
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("run.not_queued")),
        "{body}"
    );

    // Disabling the policy through the API stops it firing on the next event.
    let (status, body) = http(
        api,
        "POST",
        "/api/policies/ups-on-battery-note/disable",
        &["X-Switchyard-CSRF: 1"],
    );
    assert_eq!(
        (status, body["enabled"].as_bool()),
        (200, Some(false)),
        "{body}"
    );
    let before = runs(dir.path()).await.len();
    let mut reloaded = false;
    for _ in 0..50 {
        if serve.log_text().contains("policies reloaded") {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reloaded, "{}", serve.log_text());
    publish(
        &nats.url(),
        &["--kind", "ups.on_battery", "--data", "{\"ups\":\"ups2\"}"],
    );
    // Wait until intake has acknowledged everything: the event was decided.
    let js = async_nats::jetstream::new(client.clone());
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream("SWITCHYARD_EVENTS")
        .await
        .unwrap()
        .get_consumer("switchyard-engine")
        .await
        .unwrap();
    let mut settled = false;
    for _ in 0..100 {
        let info = consumer.info().await.unwrap();
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(settled, "intake acknowledged the event");
    assert_eq!(
        runs(dir.path()).await.len(),
        before,
        "a disabled policy decides nothing"
    );

    // What serve changed is audited.
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let audit = Store::connect(&url)
        .await
        .unwrap()
        .audit_events(50)
        .await
        .unwrap();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|a| (a.action.as_str(), a.target.as_str()))
        .collect();
    assert!(
        actions.contains(&("policy.created", "ups-on-battery-note")),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|(a, _)| *a == "engine.started"),
        "{actions:?}"
    );

    serve.signal("-TERM");
    let status = serve.wait_exit();
    assert!(status.success(), "{status}\n{}", serve.log_text());
    assert!(serve.log_text().contains("stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_leaves_it_interrupted_never_rerun() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &nats.url(), "[engine]\nlease_ttl = \"3s\"\n");
    let marker = dir.path().join("marker");
    std::fs::write(
        dir.path().join("policies/slow.yaml"),
        format!(
            r#"
version: 1
name: slow-then-quick
enabled: true
trigger_group:
  triggers:
    - kind: job.slow
    - kind: job.quick
targets:
  - selector: "lab-01"
actions:
  - capability: command.run
    verb: run
    driver: exec
    params: {{ argv: ["sh", "-c", "echo started >> {}; if [ \"$KIND\" = job.slow ]; then sleep 10; fi"], env: {{ KIND: "{{{{ $.kind }}}}" }} }}
"#,
            marker.display()
        ),
    )
    .unwrap();
    let mut serve = Serve::start(dir.path());
    publish(&nats.url(), &["--kind", "job.slow"]);
    wait_for(dir.path(), "the slow run is running", |r| {
        r.iter().any(|r| r.status == RunStatus::Running)
    })
    .await;
    publish(&nats.url(), &["--kind", "job.quick"]);
    wait_for(dir.path(), "the quick run is queued behind it", |r| {
        r.iter().any(|r| r.status == RunStatus::Queued)
    })
    .await;
    serve.signal("-KILL");
    serve.wait_exit();
    // The orphaned `sleep 10` of the killed adapter is not ours to wait for.
    let mut again = Serve::start(dir.path());
    let all = wait_for(dir.path(), "recovery settles both runs", |r| {
        r.len() == 2 && r.iter().all(|r| r.status.is_terminal())
    })
    .await;
    let slow = all.iter().find(|r| r.event_kind == "job.slow").unwrap();
    assert_eq!(
        slow.status,
        RunStatus::Interrupted,
        "a non-idempotent run is never silently re-run"
    );
    assert_eq!(slow.reason.as_deref(), Some("engine_restarted"));
    let quick = all.iter().find(|r| r.event_kind == "job.quick").unwrap();
    assert_eq!(
        quick.status,
        RunStatus::Succeeded,
        "the queued run is carried out after restart"
    );
    let starts = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(starts.lines().count(), 2, "slow once, quick once: {starts}");
    assert!(
        again.log_text().contains("interrupted=1"),
        "{}",
        again.log_text()
    );
    again.signal("-TERM");
    assert!(again.wait_exit().success());
}

#[test]
fn a_broken_configuration_is_refused_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("switchyard.toml"),
        "[engine]\nmax_event_age = \"soon\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--config"])
        .arg(dir.path().join("switchyard.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("engine.max_event_age"), "{err}");
}

#[test]
fn a_policy_directory_with_a_blocker_applies_nothing() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &nats.url(), "");
    std::fs::write(
        dir.path().join("policies/good.yaml"),
        "version: 1\nname: good\ntrigger_group: { triggers: [ { kind: a.b } ] }\ntargets: [ { selector: lab-01 } ]\nactions: [ { capability: command.run, verb: run, params: { argv: [\"true\"] } } ]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policies/bad.yaml"),
        "version: 1\nname: bad\ntrigger_group: { triggers: [ { kind: a.b } ] }\ntargets: [ { selector: \"lab-[01\" } ]\nactions: [ { capability: command.run, verb: nope } ]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--config"])
        .arg(dir.path().join("switchyard.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml") && err.contains("nothing applied"),
        "{err}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let policies = rt.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
        Store::connect(&url)
            .await
            .unwrap()
            .list_policies()
            .await
            .unwrap()
    });
    assert!(policies.is_empty(), "the good file was not applied alone");
}

#[test]
fn an_unsafe_api_setup_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[api]\nlisten = \"0.0.0.0:18080\"\n",
            "not a loopback address and [auth] is not configured",
        ),
        (
            "[auth]\njwt_hs256_secret = \"${env:SWITCHYARD_TEST_UNSET_SECRET}\"\n",
            "SWITCHYARD_TEST_UNSET_SECRET",
        ),
        (
            "[auth]\njwt_public_key_file = \"no-such.pem\"\n",
            "no-such.pem",
        ),
        (
            "[auth]\njwt_public_key_file = \"switchyard.toml\"\n",
            "not an RSA or EC (P-256) public key",
        ),
        (
            "[auth]\njwt_hs256_secret = \"0123456789abcdef0123456789abcdef-literal\"\n",
            "secrets written into the configuration: auth.jwt_hs256_secret",
        ),
        (
            "[policies]\nwebhooks = [{ url = \"https://hooks.example/x?token=abc\", bearer_token = \"literal-token\" }]\n",
            "policies.webhooks[0].bearer_token",
        ),
        (
            "[auth]\njwks_file = \"no-such-jwks.json\"\n",
            "no-such-jwks.json",
        ),
        (
            "[engine]\nidempotency_secret = \"a-literal-key-of-some-length\"\n",
            "engine.idempotency_secret",
        ),
        (
            "[engine]\nidempotency_secret = \"${env:SWITCHYARD_TEST_UNSET_SECRET}\"\n",
            "engine.idempotency_secret: `${env:SWITCHYARD_TEST_UNSET_SECRET}`",
        ),
        ("[auth]\nissuer = \"https://idp\"\n", "[auth] needs a key"),
    ];
    for (toml, needle) in cases {
        std::fs::write(
            dir.path().join("switchyard.toml"),
            format!("[database]\nurl = \"sqlite://ledger.db?mode=rwc\"\n{toml}"),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["serve", "--config"])
            .arg(dir.path().join("switchyard.toml"))
            .env_remove("SWITCHYARD_TEST_UNSET_SECRET")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{toml}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{toml}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_the_cli_open_the_authenticated_api() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("jwt.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef-test\n").unwrap();
    let api = write_config(
        dir.path(),
        &nats.url(),
        &format!(
            "[auth]\njwt_hs256_secret = \"${{file:{}}}\"\n",
            secret.display()
        ),
    );
    let mut serve = Serve::start(dir.path());
    let issue = |role: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args([
                "token",
                "issue",
                "--role",
                role,
                "--ttl",
                "10m",
                "--subject",
                "ci",
                "--config",
            ])
            .arg(dir.path().join("switchyard.toml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(http(api, "GET", "/api/runs", &[]).0, 401);
    let viewer = issue("viewer");
    let (status, body) = http(
        api,
        "GET",
        "/api/runs",
        &[&format!("Authorization: Bearer {viewer}")],
    );
    assert_eq!(status, 200, "{body}");
    let ingest = issue("ingest");
    let (status, _) = http(
        api,
        "GET",
        "/api/runs",
        &[&format!("Authorization: Bearer {ingest}")],
    );
    assert_eq!(status, 403);
    // Client commands take the token from SWITCHYARD_TOKEN.
    let cli = |token: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        c.args(["policy", "list", "-o", "json", "--config"])
            .arg(dir.path().join("switchyard.toml"))
            .env_remove("SWITCHYARD_TOKEN");
        if let Some(t) = token {
            c.env("SWITCHYARD_TOKEN", t);
        }
        c.output().unwrap()
    };
    let out = cli(Some(&viewer));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(None);
    assert_eq!(out.status.code(), Some(1), "refused: no token");
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.unauthorized"));
    // The secret never shows up in the log.
    serve.signal("-TERM");
    assert!(serve.wait_exit().success());
    assert!(
        !serve
            .log_text()
            .contains("0123456789abcdef0123456789abcdef")
    );
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["token", "issue", "--role", "root"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn the_cli_drives_a_running_switchyard() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &nats.url(), "");
    std::fs::write(
        dir.path().join("policies/note.yaml"),
        "version: 1\nname: note\ntrigger_group: { triggers: [ { kind: lab.note } ] }\ntargets: [ { selector: lab-01 } ]\nactions: [ { capability: command.run, verb: run, params: { argv: [\"echo\", \"noted\"] } } ]\n",
    )
    .unwrap();
    let _serve = Serve::start(dir.path());
    let d = dir.path();

    let (code, out, err) = cli(d, &["policy", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("NAME") && out.contains("note") && out.contains("disabled"),
        "{out}"
    );
    let (code, out, err) = cli(d, &["policy", "dry-run", "note"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("lab-01") && out.contains("summary: 0 errors"),
        "{out}"
    );
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let mut policy_events = nc.subscribe("switchyard.policies.>").await.unwrap();
    nc.flush().await.unwrap();
    let (code, out, _) = cli(d, &["policy", "enable", "note"]);
    assert_eq!((code, out.trim()), (0, "note is enabled (version 1)"));
    let msg = tokio::time::timeout(Duration::from_secs(10), policy_events.next())
        .await
        .expect("a policy notification on NATS")
        .unwrap();
    assert_eq!(msg.subject.as_str(), "switchyard.policies.enabled");
    let notice: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(
        (notice["name"].as_str(), notice["version"].as_i64()),
        (Some("note"), Some(1))
    );
    let (code, _, err) = cli(d, &["policy", "show", "nope"]);
    assert_eq!(code, 1, "a 4xx answer exits 1");
    assert!(err.contains("not_found"), "{err}");
    let (code, out, _) = cli(d, &["policy", "show", "note", "--source"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("version: 1"), "{out}");
    let (code, _, err) = cli(d, &["policy", "delete", "note"]);
    assert_eq!(code, 1, "directory policies are read-only here");
    assert!(err.contains("policy.managed_by_dir"), "{err}");

    // A directory applied through the API as one bundle.
    let bundle = d.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let note = |name: &str, word: &str| {
        format!(
            "version: 1\nname: {name}\nenabled: true\ntrigger_group: {{ triggers: [ {{ kind: lab.{name} }} ] }}\ntargets: [ {{ selector: lab-02 }} ]\nactions: [ {{ capability: command.run, verb: run, params: {{ argv: [\"echo\", \"{word}\"] }} }} ]\n"
        )
    };
    std::fs::write(bundle.join("one.yaml"), note("one", "1")).unwrap();
    std::fs::write(bundle.join("two.yaml"), note("two", "2")).unwrap();
    let b = bundle.to_str().unwrap();
    let (code, out, err) = cli(d, &["policy", "apply", b, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("created") && out.contains("dry run: nothing applied"),
        "{out}"
    );
    let (_, out, _) = cli(d, &["policy", "list"]);
    assert!(!out.contains("one"), "a dry run applies nothing: {out}");
    let (code, out, err) = cli(d, &["policy", "apply", b]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("applied as one bundle"), "{out}");
    std::fs::write(bundle.join("two.yaml"), note("two", "two")).unwrap();
    std::fs::write(
        bundle.join("three.yaml"),
        "version: 1\nname: three\ntrigger_group: {}\n",
    )
    .unwrap();
    let (code, _, err) = cli(d, &["policy", "apply", b]);
    assert_eq!(code, 1, "one broken file refuses the bundle");
    assert!(
        err.contains("three.yaml") && err.contains("nothing applied"),
        "{err}"
    );
    std::fs::remove_file(bundle.join("three.yaml")).unwrap();
    std::fs::remove_file(bundle.join("one.yaml")).unwrap();
    let (code, out, err) = cli(d, &["policy", "apply", b, "--prune", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    let action = |name: &str| {
        plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| (s["action"].clone(), s["version_int"].clone()))
    };
    assert_eq!(action("two"), Some(("updated".into(), 2.into())));
    assert_eq!(
        action("one").map(|a| a.0),
        Some("disabled".into()),
        "{plan}"
    );
    // The watched directory's policies are directory-managed too: --prune
    // disables every one this bundle does not hold.
    assert_eq!(
        action("note").map(|a| a.0),
        Some("disabled".into()),
        "{plan}"
    );
    let warnings = plan["warnings"].as_array().unwrap();
    assert_eq!(
        warnings.len(),
        1,
        "one warning per action, not per driver: {warnings:?}"
    );
    let (code, _, err) = cli(d, &["policy", "enable", "note"]);
    assert_eq!(
        code, 0,
        "enable/disable stay open for directory policies: {err}"
    );

    let (code, out, _) = cli(d, &["hosts", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("lab-01") && out.contains("exec"), "{out}");
    let (code, out, _) = cli(d, &["hosts", "capabilities", "lab-02"]);
    assert_eq!(code, 0);
    assert!(out.contains("command.run"), "{out}");

    // Follow the stream while an event makes a run.
    let mut tail = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "runs",
            "tail",
            "-o",
            "json",
            "--status",
            "succeeded",
            "--config",
        ])
        .arg(d.join("switchyard.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A watchdog: a missing run fails the test instead of hanging it.
    let tail_pid = tail.id();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        let _ = Command::new("kill").arg(tail_pid.to_string()).status();
    });
    std::thread::sleep(Duration::from_millis(500));
    publish(&nats.url(), &["--kind", "lab.note", "--data", "{}"]);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(tail.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = tail.kill();
    let _ = tail.wait();
    let notice: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (notice["status"].as_str(), notice["policy_name"].as_str()),
        (Some("succeeded"), Some("note"))
    );

    let (code, out, _) = cli(d, &["runs", "list", "--policy", "note"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("succeeded") && out.contains("command.run"),
        "{out}"
    );
    let id = notice["run_id"].as_str().unwrap();
    let (code, out, _) = cli(d, &["runs", "show", id]);
    assert_eq!(code, 0);
    assert!(out.contains("noted"), "{out}");
    let (code, _, err) = cli(d, &["runs", "undo", id]);
    assert_eq!(code, 1);
    assert!(err.contains("run.no_inverse"), "{err}");
    let (code, _, err) = cli(d, &["runs", "cancel", id]);
    assert_eq!(code, 1);
    assert!(err.contains("run.not_queued"), "{err}");

    let (code, _, err) = cli(d, &["policy", "list", "--server", "http://127.0.0.1:9"]);
    assert_eq!(code, 3, "unreachable exits 3: {err}");
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("switchyard"));
}
