//! `switchyard policy validate|compile` as a user runs them.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run switchyard")
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn examples_validate_clean() {
    let files = examples();
    let args: Vec<&str> = ["policy", "validate"]
        .into_iter()
        .chain(files.iter().map(|p| p.to_str().unwrap()))
        .collect();
    let out = switchyard(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "no findings expected: {}",
        text(&out.stdout)
    );
    assert_eq!(
        text(&out.stderr).matches(": ok: policy").count(),
        files.len()
    );
}

#[test]
fn broken_file_gets_one_line_per_finding_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        "version: 1\nname: broken\ntrigger_group: {triggers: [{kind: ups.on_battery}]}\ntargets: [{selector: pve-01}]\nactions:\n  - capability: vm.power\n    verb: shutdown\n    params: {timeout_s: 120}\n    timeout: 3 minutes\nwindows: {suppression: 10x}\n",
    )
    .unwrap();
    let out = switchyard(&["policy", "validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let file = path.display().to_string();
    assert!(
        lines[0].starts_with(&format!(
            "{file}: blocker duration.syntax /actions/0/timeout: "
        )),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!(
            "{file}: blocker duration.syntax /windows/suppression: "
        )),
        "{}",
        lines[1]
    );
}

#[test]
fn json_output_has_findings_and_hash_per_document() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.yaml");
    let one = std::fs::read_to_string(
        examples()
            .into_iter()
            .find(|p| p.ends_with("alert-restart-nginx.yaml"))
            .unwrap(),
    )
    .unwrap();
    std::fs::write(&path, format!("{one}\n---\nversion: 1\nname: BAD\n")).unwrap();
    let out = switchyard(&[
        "policy",
        "validate",
        "--output",
        "json",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let docs = v.as_array().unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["ok"], true);
    assert_eq!(docs[0]["spec_hash"].as_str().unwrap().len(), 64);
    assert_eq!(docs[1]["ok"], false);
    assert_eq!(docs[1]["document"], 1);
    assert!(docs[1]["spec_hash"].is_null());
    let codes: Vec<&str> = docs[1]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"name.invalid") && codes.contains(&"schema.required"),
        "{codes:?}"
    );
}

#[test]
fn usage_and_io_errors_exit_2() {
    assert_eq!(switchyard(&["policy", "validate"]).status.code(), Some(2));
    assert_eq!(switchyard(&["policy", "frobnicate"]).status.code(), Some(2));
    let missing = switchyard(&["policy", "validate", "/nonexistent/p.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("/nonexistent/p.yaml"));
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("policy.txt");
    std::fs::write(&odd, "version: 1").unwrap();
    let out = switchyard(&["policy", "validate", odd.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--format"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(switchyard(&["--help"]).status.code(), Some(0));
}

#[test]
fn compile_prints_ir_with_hash_and_canonical_bytes_are_stable() {
    let file = examples()
        .into_iter()
        .find(|p| p.ends_with("ups-on-battery-shutdown.yaml"))
        .unwrap();
    let out = switchyard(&["policy", "compile", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ir: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ir["ir_version"], 1);
    assert_eq!(ir["windows"]["suppression_ms"], 600_000);
    assert_eq!(
        ir["targets"][0]["resolved_ids"].as_array().unwrap().len(),
        297
    );
    let hash = ir["spec_hash"].as_str().unwrap().to_owned();

    let a = switchyard(&["policy", "compile", "--canonical", file.to_str().unwrap()]);
    let b = switchyard(&["policy", "compile", "--canonical", file.to_str().unwrap()]);
    assert_eq!(a.stdout, b.stdout);
    let canon: Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(canon["spec_hash"], Value::String(hash));

    let broken = tempfile::NamedTempFile::with_suffix(".json").unwrap();
    std::fs::write(broken.path(), "{\"version\": 1}").unwrap();
    let out = switchyard(&["policy", "compile", broken.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("schema.required"));
}

/// `switchyard ARGS` with `input` on standard input.
fn with_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn stdin_with_format() {
    let out = with_stdin(
        &["policy", "validate", "--format", "toml", "-"],
        b"version = 1\nname = \"from-stdin\"\ntrigger_group = { triggers = [ { kind = \"a.b\" } ] }\ntargets = [ { selector = \"h1\" } ]\nactions = [ { capability = \"c\", verb = \"v\" } ]\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("from-stdin"));
}

/// Standard input without --format: told apart by content.
#[test]
fn stdin_without_format_is_told_apart_by_content() {
    for file in examples() {
        let out = with_stdin(&["policy", "validate", "-"], &std::fs::read(&file).unwrap());
        assert!(
            out.status.success(),
            "{}: {}{}",
            file.display(),
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("-: ok: policy"),
            "{}",
            file.display()
        );
    }
}

#[test]
fn validate_against_installed_drivers() {
    let drivers = tempfile::tempdir().unwrap();
    let dir = drivers.path().join("proxmox");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("plugin.yaml"),
        "schema_version: 1\nname: proxmox\nversion: 0.1.0\nadapter: { command: [switchyard-driver-proxmox] }\ntarget_types: [ { name: vm } ]\ncapabilities:\n  - name: vm.power\n    target_type: vm\n    verbs:\n      - name: shutdown\n        idempotent: true\n        params_schema: { type: object, properties: { timeout_s: { type: integer, maximum: 60 }, reason: { type: string } }, additionalProperties: false }\n",
    )
    .unwrap();
    let policy = examples()
        .into_iter()
        .find(|p| p.ends_with("ups-on-battery-shutdown.yaml"))
        .unwrap();
    let out = switchyard(&[
        "policy",
        "validate",
        "--drivers",
        drivers.path().to_str().unwrap(),
        policy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("blocker driver.params_invalid /actions/0/params/timeout_s: "),
        "{stdout}"
    );

    let other = examples()
        .into_iter()
        .find(|p| p.ends_with("alert-restart-nginx.yaml"))
        .unwrap();
    let out = switchyard(&[
        "policy",
        "validate",
        "--drivers",
        dir.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout)
            .contains("blocker driver.unknown /actions/0/driver: driver `ssh` is not installed"),
        "{}",
        text(&out.stdout)
    );

    let out = switchyard(&[
        "policy",
        "validate",
        "--drivers",
        "/nonexistent-drivers",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}
