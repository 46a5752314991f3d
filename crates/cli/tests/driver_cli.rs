//! `switchyard driver check` as a driver author runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run switchyard")
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn shipped_drivers_pass() {
    // The exec adapter is built beside the switchyard binary and found there.
    let out = switchyard(&["driver", "check", repo("drivers/exec").to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("pass dry_run command.run/run example 1"),
        "{stdout}"
    );
}

#[test]
fn the_python_example_driver_passes_with_execute() {
    let flags = tempfile::tempdir().unwrap();
    let config = format!("{{\"flag_dir\": \"{}\"}}", flags.path().display());
    let out = switchyard(&[
        "driver",
        "check",
        "--execute",
        "--driver-config",
        &config,
        "--output",
        "json",
        repo("examples/drivers/maintenance-flag").to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report[0]["ok"], true);
    let names: Vec<&str> = report[0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"execute maintenance/raise example 1"),
        "{names:?}"
    );
    // raise then lower: the flag is gone again.
    assert!(!flags.path().join("web").exists());
}

fn broken_driver(adapter: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plugin.yaml"),
        "schema_version: 1\nname: broken\nversion: 0.0.1\nadapter: { command: [python3, adapter.py] }\ncapabilities:\n  - name: thing\n    target_type: host\n    verbs:\n      - { name: poke, dry_run: true, examples: [ { params: {} } ] }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("adapter.py"), adapter).unwrap();
    dir
}

#[test]
fn a_malformed_dry_run_result_fails_the_check() {
    let dir = broken_driver(
        r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m:
        continue
    if m["method"] == "initialize":
        r = {"name": "broken", "version": "0.0.1"}
    elif m["method"] == "health":
        r = {"ok": True}
    else:
        r = {"ok": False, "severity": "info", "plan": "not a list"}
    print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": r}), flush=True)
"#,
    );
    let out = switchyard(&["driver", "check", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "fail dry_run thing/poke example 1: result does not match dry-run-result.schema.json"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("FAILED"), "{stdout}");
}

#[test]
fn an_adapter_that_cannot_start_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plugin.yaml"),
        "schema_version: 1\nname: ghost\nversion: 0.0.1\nadapter: { command: [switchyard-driver-ghost-missing] }\ncapabilities: [ { name: thing, target_type: host, verbs: [ { name: poke } ] } ]\n",
    )
    .unwrap();
    let out = switchyard(&["driver", "check", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("fail initialize + health: driver `ghost`: cannot start `switchyard-driver-ghost-missing`"), "{stdout}");

    let crashing =
        broken_driver("import sys\nsys.stderr.write('missing module foo\\n')\nsys.exit(1)\n");
    let out = switchyard(&["driver", "check", crashing.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("missing module foo"),
        "{}",
        text(&out.stdout)
    );

    let bad_manifest = tempfile::tempdir().unwrap();
    std::fs::write(
        bad_manifest.path().join("plugin.yaml"),
        "schema_version: 1\nname: x\n",
    )
    .unwrap();
    let out = switchyard(&["driver", "check", bad_manifest.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("fail manifest"),
        "{}",
        text(&out.stdout)
    );
}
