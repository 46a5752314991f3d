//! The watched policy directory with a running `switchyard serve`: real
//! files in a temporary directory, a real nats-server and SQLite. Files are
//! created, edited (also the way editors save: a temporary renamed over the
//! original), broken, fixed and deleted; a bundle with one bad file applies
//! nothing; a store failure after validation rolls every policy back.

use futures::StreamExt;
use sea_orm::ConnectionTrait;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use switchyard_test_support::NatsServer;

mod common;
use common::*;

fn policy(name: &str, word: &str, enabled: bool) -> String {
    format!(
        "version: 1\nname: {name}\nenabled: {enabled}\ntrigger_group: {{ triggers: [ {{ kind: lab.{name} }} ] }}\ntargets: [ {{ selector: lab-01 }} ]\nactions: [ {{ capability: command.run, verb: run, params: {{ argv: [\"echo\", \"{word}\"] }} }} ]\n"
    )
}

/// Poll `GET path` until `done` holds on the body (bounded).
fn until(port: u16, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http(port, "GET", path, &[]);
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: {body:#}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn version_of(port: u16, name: &str) -> (i64, bool) {
    let (status, p) = http(port, "GET", &format!("/api/policies/{name}"), &[]);
    assert_eq!(status, 200, "{p}");
    (p["version_int"].as_i64().unwrap(), p["enabled"] == true)
}

/// The version the engine evaluates now, from /metrics (0: not active).
fn active_version(port: u16, name: &str) -> Option<i64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let prefix = format!("switchyard_policy_active_version{{policy=\"{name}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse::<f64>().unwrap() as i64)
}

fn directory(port: u16) -> Value {
    http(port, "GET", "/api/directory", &[]).1
}

/// A webhook receiver on loopback: answers 200 and keeps each JSON body.
fn webhook_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/switchyard", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).unwrap();
                    log.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .unwrap();
                    len = 0;
                }
            }
        }
    });
    (url, seen)
}

async fn sql(dir: &Path, statement: &str) {
    let url = format!("sqlite://{}", dir.join("ledger.db").display());
    let db = sea_orm::Database::connect(&url).await.unwrap();
    db.execute_unprepared(statement).await.unwrap();
}

#[tokio::test]
async fn the_watched_directory_is_followed_safely() {
    let nats = NatsServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (hook, delivered) = webhook_receiver();
    let port = write_config(
        d,
        &nats.url(),
        &format!("debounce = \"100ms\"\n[[policies.webhooks]]\nurl = \"{hook}\""),
    );
    let policies = d.join("policies");
    std::fs::write(policies.join("a.yaml"), policy("a", "one", true)).unwrap();
    let mut serve = Serve::start(d);
    assert_eq!(version_of(port, "a"), (1, true));
    assert_eq!(directory(port)["last"]["result"], "applied");
    assert_eq!(directory(port)["watching"], true);

    // Create.
    std::fs::write(policies.join("b.yaml"), policy("b", "bee", true)).unwrap();
    until(port, "/api/policies/b", "b is created", |p| {
        p["version_int"] == 1
    });
    // In a subfolder made while serve runs: read and watched too; a
    // configuration file beside it is not a policy.
    std::fs::create_dir(policies.join("team")).unwrap();
    std::fs::write(policies.join("team/switchyard.toml"), "[nats]\n").unwrap();
    std::fs::write(
        policies.join("team/nested.yaml"),
        policy("nested", "deep", true),
    )
    .unwrap();
    until(
        port,
        "/api/policies/nested",
        "a policy in a subfolder is created",
        |p| p["version_int"] == 1,
    );
    // Edit: a new version, active in the engine.
    std::fs::write(policies.join("a.yaml"), policy("a", "two", true)).unwrap();
    until(port, "/api/policies/a", "a is edited", |p| {
        p["version_int"] == 2
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while active_version(port, "a") != Some(2) {
        assert!(Instant::now() < deadline, "the engine never took version 2");
        std::thread::sleep(Duration::from_millis(25));
    }

    // An editor's save: a swap file, then a temporary renamed over the file.
    std::fs::write(policies.join(".a.yaml.swp"), "\0\0binary swap").unwrap();
    std::fs::write(policies.join("a.yaml~"), policy("a", "backup", true)).unwrap();
    std::fs::write(policies.join(".a.yaml.tmp"), policy("a", "three", true)).unwrap();
    std::fs::rename(policies.join(".a.yaml.tmp"), policies.join("a.yaml")).unwrap();
    until(port, "/api/policies/a", "a is saved by rename", |p| {
        p["version_int"] == 3
    });
    let (_, a) = http(port, "GET", "/api/policies/a", &[]);
    assert!(a["ir"].to_string().contains("three"), "{a}");

    // A partial write, then the rest: only the whole file is ever applied.
    let whole = policy("a", "four", true);
    let (head, tail) = whole.split_at(whole.find("actions").unwrap() + 12);
    std::fs::write(policies.join("a.yaml"), head).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(policies.join("a.yaml"), format!("{head}{tail}")).unwrap();
    until(port, "/api/policies/a", "the whole file is applied", |p| {
        p["version_int"] == 4
    });
    let (_, versions) = http(port, "GET", "/api/policies/a/versions", &[]);
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        4,
        "{versions}"
    );

    // Break a: refused, reported, and the last good version keeps running.
    std::fs::write(
        policies.join("a.yaml"),
        "version: 1\nname: a\ntrigger_group: { triggers: [ { kind: lab.a } ] }\ntargets: [ { selector: \"lab-[01\" } ]\nactions: []\n",
    )
    .unwrap();
    let status = until(port, "/api/directory", "the broken file is reported", |d| {
        d["last"]["result"] == "refused"
    });
    let findings = status["last"]["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["file"].as_str().unwrap().ends_with("a.yaml") && f["severity"] == "blocker"),
        "{status:#}"
    );
    assert_eq!(version_of(port, "a"), (4, true));
    assert_eq!(active_version(port, "a"), Some(4));
    serve.wait_for_log("the policy directory has blockers");
    // Fix it.
    std::fs::write(policies.join("a.yaml"), policy("a", "five", true)).unwrap();
    until(port, "/api/policies/a", "the fix is applied", |p| {
        p["version_int"] == 5
    });

    // A bundle with one bad file applies nothing: the bad one first, so no
    // debounce window can hold the good one alone.
    std::fs::write(policies.join("d.yaml"), "version: 1\nname: d\n").unwrap();
    std::fs::write(policies.join("c.yaml"), policy("c", "sea", true)).unwrap();
    until(port, "/api/directory", "the bundle is refused", |d| {
        d["last"]["result"] == "refused"
            && d["last"]["findings"].as_array().is_some_and(|f| {
                f.iter()
                    .any(|f| f["file"].as_str().unwrap().ends_with("d.yaml"))
            })
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        http(port, "GET", "/api/policies/c", &[]).0,
        404,
        "c was not applied alone"
    );
    std::fs::remove_file(policies.join("d.yaml")).unwrap();
    until(
        port,
        "/api/policies/c",
        "c is applied once d is gone",
        |p| p["version_int"] == 1,
    );

    // Delete: the policy is disabled, its history kept.
    std::fs::remove_file(policies.join("b.yaml")).unwrap();
    until(port, "/api/policies/b", "b is disabled", |p| {
        p["enabled"] == false
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while active_version(port, "b") != Some(0) {
        assert!(Instant::now() < deadline, "b is still active in the engine");
        std::thread::sleep(Duration::from_millis(25));
    }

    // A store failure after validation: the edit is rolled back, with the
    // reason in the version history.
    sql(
        d,
        "CREATE TRIGGER inject_failure BEFORE UPDATE OF last_validation ON policies \
         WHEN NEW.name = 'a' BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .await;
    std::fs::write(policies.join("a.yaml"), policy("a", "six", true)).unwrap();
    let status = until(port, "/api/directory", "the edit is rolled back", |d| {
        d["last"]["result"] == "rolled_back"
    });
    assert!(
        status["last"]["reason"]
            .as_str()
            .unwrap()
            .contains("injected failure"),
        "{status:#}"
    );
    let (_, a) = http(port, "GET", "/api/policies/a", &[]);
    assert_eq!(a["version_int"], 7, "6 from the file, 7 restoring 5: {a}");
    assert!(a["ir"].to_string().contains("five"), "{a}");
    let (_, versions) = http(port, "GET", "/api/policies/a/versions", &[]);
    let last = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version_int"] == 7)
        .unwrap()
        .clone();
    assert!(
        last["comment"]
            .as_str()
            .unwrap()
            .starts_with("automatic rollback to version 5: the store failed while activating `a`"),
        "{last}"
    );
    sql(d, "DROP TRIGGER inject_failure").await;

    // Every change reached the webhook, in order.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events: Vec<(String, String)> = delivered
            .lock()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["event"].as_str().unwrap_or("").to_owned(),
                    n["name"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let has = |e: &str, n: &str| events.iter().any(|x| x.0 == e && x.1 == n);
        if has("version_created", "b")
            && has("validation_failed", "")
            && has("disabled", "b")
            && has("rolled_back", "a")
        {
            let first_a = events
                .iter()
                .position(|x| x == &("version_created".into(), "a".into()));
            let rollback = events
                .iter()
                .position(|x| x == &("rolled_back".into(), "a".into()));
            assert!(first_a < rollback, "{events:?}");
            break;
        }
        assert!(Instant::now() < deadline, "webhook got {events:?}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Serve stops cleanly with the watcher running.
    serve.signal("-TERM");
    assert!(serve.wait_exit().success(), "{}", serve.log_text());
}

#[tokio::test]
async fn a_failed_bundle_restores_every_policy_and_says_so() {
    let nats = NatsServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let port = write_config(d, &nats.url(), "watch = false");
    let _serve = Serve::start(d);
    assert_eq!(directory(port)["watching"], false);
    let bundle = d.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let b = bundle.to_str().unwrap();
    std::fs::write(bundle.join("px.yaml"), policy("px", "1", true)).unwrap();
    std::fs::write(bundle.join("py.yaml"), policy("py", "1", false)).unwrap();
    std::fs::write(bundle.join("pz.yaml"), policy("pz", "1", true)).unwrap();
    let (code, _, err) = cli(d, &["policy", "apply", b]);
    assert_eq!(code, 0, "{err}");
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let mut notices = nc
        .subscribe("switchyard.policies.rolled_back")
        .await
        .unwrap();
    nc.flush().await.unwrap();

    // Edit x, enable y, create w, drop z (pruned); the store then fails on
    // w's validation record, after x's and y's were written.
    sql(
        d,
        "CREATE TRIGGER inject_failure BEFORE UPDATE OF last_validation ON policies \
         WHEN NEW.name = 'pw' BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .await;
    std::fs::write(bundle.join("px.yaml"), policy("px", "2", true)).unwrap();
    std::fs::write(bundle.join("py.yaml"), policy("py", "2", true)).unwrap();
    std::fs::write(bundle.join("pw.yaml"), policy("pw", "1", true)).unwrap();
    std::fs::remove_file(bundle.join("pz.yaml")).unwrap();
    let (code, _, err) = cli(d, &["policy", "apply", b, "--prune"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bundle.rolled_back") && err.contains("injected failure"),
        "{err}"
    );
    assert_eq!(
        version_of(port, "px"),
        (3, true),
        "x: 2 applied, 3 restores 1"
    );
    let (_, x) = http(port, "GET", "/api/policies/px", &[]);
    assert!(x["ir"].to_string().contains("\"1\""), "{x}");
    assert_eq!(
        version_of(port, "py"),
        (3, false),
        "y: back to version 1's content, disabled"
    );
    assert_eq!(
        http(port, "GET", "/api/policies/pw", &[]).0,
        404,
        "w archived"
    );
    assert_eq!(version_of(port, "pz"), (1, true), "z enabled again");
    let mut restored = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(5), notices.next()).await {
        let n: Value = serde_json::from_slice(&msg.payload).unwrap();
        restored.push(n["name"].as_str().unwrap_or("").to_owned());
        if restored.len() == 4 {
            break;
        }
    }
    restored.sort();
    assert_eq!(restored, ["pw", "px", "py", "pz"]);

    // A store failure inside the bundle's transaction: nothing applied.
    sql(d, "DROP TRIGGER inject_failure").await;
    sql(
        d,
        "CREATE TRIGGER inject_failure BEFORE INSERT ON policy_versions \
         WHEN NEW.source LIKE '%boom%' BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .await;
    std::fs::write(bundle.join("px.yaml"), policy("px", "boom", true)).unwrap();
    let (code, _, err) = cli(d, &["policy", "apply", b]);
    assert_eq!(code, 3, "a store failure is the server's: {err}");
    assert!(err.contains("nothing was applied"), "{err}");
    assert_eq!(version_of(port, "px"), (3, true));
}
