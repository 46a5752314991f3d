//! A newcomer's first commands: `init`, a minimal configuration that serves
//! without drivers, `--config` / `SWITCHYARD_CONFIG` on the commands that
//! talk to NATS, the database and the API, `policy validate` of folders
//! (standard input: policy_cli.rs), and errors that say their cause once.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use switchyard_test_support::{NatsServer, free_port};

mod common;
use common::*;

fn switchyard(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .current_dir(dir)
        .env_remove("SWITCHYARD_CONFIG")
        .env_remove("SWITCHYARD_SERVER")
        .env_remove("SWITCHYARD_NATS__URL")
        .env_remove("SWITCHYARD_DATABASE__URL")
        .stdin(Stdio::null())
        .output()
        .expect("run switchyard")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minimal_configuration_serves_without_drivers() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    // Database, NATS, API: nothing else (the default `drivers` folder is missing).
    let config = dir.path().join("site.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://site.db?mode=rwc\"\n[nats]\nurl = \"{}\"\n[api]\nlisten = \"127.0.0.1:{api}\"\n",
            nats.url()
        ),
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();

    // `db migrate` finds the database through the configuration (relative to it).
    let out = switchyard(
        elsewhere.path(),
        &["db", "migrate", "--config", config.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("applied "),
        "{}",
        text(&out.stdout)
    );
    assert!(dir.path().join("site.db").is_file());

    let log = dir.path().join("serve.log");
    let mut serve = Serve {
        child: Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("serve")
            .current_dir(dir.path())
            .env("SWITCHYARD_CONFIG", &config)
            .env("SWITCHYARD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        log,
    };
    serve.wait_for_log("switchyard is running");
    let (status, body) = http(api, "GET", "/readyz", &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["drivers"], 0, "{body}");
    assert_eq!(
        body["warnings"],
        serde_json::json!(["no drivers are installed: no action can run"])
    );
    let logged = serve.log_text();
    assert_eq!(
        logged.matches("drivers.paths: ").count(),
        1,
        "the missing folder is said once:\n{logged}"
    );
    assert!(logged.contains("/drivers: no such folder"), "{logged}");
    assert!(logged.contains("no drivers are installed"), "{logged}");
    let metrics = std::process::Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{api}/metrics")])
        .output()
        .unwrap();
    assert!(
        text(&metrics.stdout).contains("\nswitchyard_drivers_installed 0\n"),
        "{}",
        text(&metrics.stdout)
    );

    // `event publish` finds NATS through the configuration (SWITCHYARD_CONFIG).
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["event", "publish", "--kind", "first.contact"])
        .current_dir(elsewhere.path())
        .env("SWITCHYARD_CONFIG", &config)
        .env_remove("SWITCHYARD_NATS__URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("published first.contact"),
        "{}",
        text(&out.stdout)
    );
    // A client command finds the API through ./switchyard.toml.
    std::fs::copy(&config, elsewhere.path().join("switchyard.toml")).unwrap();
    let out = switchyard(elsewhere.path(), &["hosts", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    serve.signal("-TERM");
    assert!(serve.wait_exit().success(), "{}", serve.log_text());
}

/// Each line of `err` that names `cause` names it once; some line does.
fn said_once(err: &str, cause: &str) {
    assert!(err.contains(cause), "{err}");
    for line in err.lines() {
        assert!(
            line.matches(cause).count() <= 1,
            "the cause is repeated: {line}"
        );
    }
}

#[test]
fn errors_say_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = switchyard(dir.path(), &["serve", "--config", "missing.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    said_once(&err, "No such file or directory");
    assert!(err.contains("cannot read missing.toml"), "{err}");

    // A drivers path that is a file, not a folder: an error, said once.
    std::fs::write(dir.path().join("not-a-folder"), "").unwrap();
    std::fs::write(
        dir.path().join("switchyard.toml"),
        "[database]\nurl = \"sqlite://x.db?mode=rwc\"\n[drivers]\npaths = [\"not-a-folder\"]\n",
    )
    .unwrap();
    let out = switchyard(dir.path(), &["serve"]);
    assert_ne!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(err.contains("loading drivers: "), "{err}");
    said_once(&err, "Not a directory");

    // A database that cannot be opened: the driver's error, said once.
    std::fs::write(
        dir.path().join("switchyard.toml"),
        "[database]\nurl = \"sqlite:///nonexistent-folder/x.db?mode=rwc\"\n",
    )
    .unwrap();
    let out = switchyard(dir.path(), &["serve"]);
    assert_ne!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert!(line.contains("database"), "{err}");
    let cause = line.rsplit(": ").next().unwrap_or_default();
    assert_eq!(
        line.matches(cause).count(),
        1,
        "the cause is repeated: {line}"
    );
}

#[test]
fn init_writes_a_configuration_that_validates_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = switchyard(dir.path(), &["init", "site"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("wrote site/switchyard.toml"), "{stdout}");
    assert!(stdout.contains("cd site && switchyard serve"), "{stdout}");
    // From the source tree's build: its drivers.
    let config = std::fs::read_to_string(dir.path().join("site/switchyard.toml")).unwrap();
    let drivers = repo("drivers").canonicalize().unwrap();
    assert!(
        config.contains(&format!("paths = [\"{}\"]", drivers.display())),
        "{config}"
    );
    let out = switchyard(dir.path(), &["policy", "validate", "site"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("ok: policy `hello`"));
    // With the drivers named, the example's action checks out too.
    let out = switchyard(
        dir.path(),
        &[
            "policy",
            "validate",
            "--drivers",
            drivers.to_str().unwrap(),
            "site/policies",
        ],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let out = switchyard(dir.path(), &["init", "site"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already exist"),
        "{}",
        text(&out.stderr)
    );
    let out = switchyard(dir.path(), &["init", "--force", "site"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn policy_validate_takes_folders() {
    let root = repo("examples");
    let dir = tempfile::tempdir().unwrap();
    // A folder, recursively: the examples' policies all pass, the broken one does not.
    let out = switchyard(
        dir.path(),
        &[
            "policy",
            "validate",
            root.join("policies").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stderr).matches(": ok: policy").count(),
        4,
        "{}",
        text(&out.stderr)
    );
    let out = switchyard(dir.path(), &["policy", "validate", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("broken/ups-typos.yaml: blocker"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("switchyard.toml") && !stdout.contains("plugin.yaml"),
        "switchyard's own files are not policies: {stdout}"
    );
    // An empty folder is a usage error.
    let out = switchyard(
        dir.path(),
        &["policy", "validate", dir.path().to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no policy files here"));
}
