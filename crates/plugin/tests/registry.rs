//! Policies checked against installed drivers: every driver-check code, with pointers.

use serde_json::{Value, json};
use std::path::Path;
use switchyard_plugin::Registry;
use switchyard_spec::finding::{Severity, codes};
use switchyard_spec::policy;

fn write_driver(root: &Path, name: &str, manifest: &str) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plugin.yaml"), manifest).unwrap();
}

fn registry() -> (tempfile::TempDir, Registry) {
    let root = tempfile::tempdir().unwrap();
    write_driver(
        root.path(),
        "proxmox",
        r#"
schema_version: 1
name: proxmox
version: 0.1.0
adapter: { command: ["switchyard-driver-proxmox"] }
target_types: [ { name: vm, id_pattern: "^[0-9]+$" } ]
capabilities:
  - name: vm.power
    target_type: vm
    verbs:
      - name: shutdown
        idempotent: true
        inverse: start
        params_schema:
          type: object
          properties: { timeout_s: { type: integer, minimum: 1 }, reason: { type: string } }
          additionalProperties: false
      - { name: start, idempotent: true, inverse: shutdown }
      - { name: reset }
"#,
    );
    write_driver(
        root.path(),
        "ssh",
        r#"
schema_version: 1
name: ssh
version: 0.1.0
adapter: { command: ["switchyard-driver-ssh"] }
target_types: [ { name: service } ]
capabilities:
  - name: service
    target_type: service
    verbs:
      - { name: restart, idempotent: true }
"#,
    );
    let registry = Registry::load(&[root.path().to_path_buf()]).unwrap();
    (root, registry)
}

fn base() -> Value {
    json!({
        "version": 1,
        "name": "p",
        "trigger_group": {"triggers": [{"kind": "ups.on_battery"}]},
        "targets": [{"selector": "pve-01/vm:100-110"}],
        "actions": [{"capability": "vm.power", "verb": "shutdown", "params": {"timeout_s": 120}}],
        "windows": {"idempotency": "1h"}
    })
}

fn findings(doc: &Value) -> Vec<(Severity, String, String)> {
    let (_dir, reg) = registry();
    let c = policy::validate_value(doc, Some(&reg));
    c.findings
        .into_iter()
        .map(|f| (f.severity, f.code, f.path))
        .collect()
}

/// The base policy with the member at `path` set (its parent must exist).
fn with(path: &str, value: Value) -> Value {
    let mut doc = base();
    let (parent, key) = path.rsplit_once('/').unwrap();
    match doc
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("{parent}"))
    {
        Value::Object(m) => {
            m.insert(key.to_owned(), value);
        }
        Value::Array(a) => a[key.parse::<usize>().unwrap()] = value,
        _ => panic!("{path}"),
    }
    doc
}

fn without_idempotency(mut doc: Value) -> Value {
    doc["windows"] = json!({});
    doc
}

#[test]
fn a_matching_policy_is_clean() {
    assert_eq!(findings(&base()), vec![]);
    // Without `driver`, the capability is found among all drivers.
    let two = with(
        "/actions",
        json!([
            {"capability": "vm.power", "verb": "shutdown", "driver": "proxmox"},
            {"capability": "vm.power", "verb": "start"}
        ]),
    );
    assert_eq!(findings(&two), vec![]);
}

#[test]
fn every_driver_check_reports_its_code_and_pointer() {
    let b = Severity::Blocker;
    let cases: Vec<(Value, Severity, &str, &str)> = vec![
        (
            with("/actions/0/driver", json!("vmware")),
            b,
            codes::DRIVER_UNKNOWN,
            "/actions/0/driver",
        ),
        (
            with("/actions/0/capability", json!("vm.snapshot")),
            b,
            codes::CAPABILITY_UNKNOWN,
            "/actions/0/capability",
        ),
        (
            with(
                "/actions/0",
                json!({"capability": "service", "verb": "restart", "driver": "proxmox"}),
            ),
            b,
            codes::CAPABILITY_UNKNOWN,
            "/actions/0/capability",
        ),
        (
            with("/actions/0/verb", json!("reboot")),
            b,
            codes::VERB_UNKNOWN,
            "/actions/0/verb",
        ),
        (
            with("/actions/0/params/timeout_s", json!(0)),
            b,
            codes::DRIVER_PARAMS_INVALID,
            "/actions/0/params/timeout_s",
        ),
        (
            with("/actions/0/params/timeout_s", json!("soon")),
            b,
            codes::DRIVER_PARAMS_INVALID,
            "/actions/0/params/timeout_s",
        ),
        (
            with("/actions/0/params", json!({"force": true})),
            b,
            codes::DRIVER_PARAMS_INVALID,
            "/actions/0/params",
        ),
        (
            with(
                "/actions/0",
                json!({"capability": "vm.power", "verb": "start", "params": {"x": 1}}),
            ),
            b,
            codes::DRIVER_PARAMS_INVALID,
            "/actions/0/params",
        ),
        (
            with("/targets/0/selector", json!("web-01/service:nginx")),
            b,
            codes::CAPABILITY_TARGET_TYPE,
            "/actions/0/capability",
        ),
        (
            with("/targets/0/selector", json!("pve-01")),
            b,
            codes::CAPABILITY_TARGET_TYPE,
            "/actions/0/capability",
        ),
        (
            without_idempotency(with(
                "/actions/0",
                json!({"capability": "vm.power", "verb": "reset"}),
            )),
            Severity::Warn,
            codes::VERB_NOT_IDEMPOTENT,
            "/actions/0/verb",
        ),
    ];
    for code in codes::DRIVER_CHECKS {
        assert!(cases.iter().any(|c| c.2 == *code), "no case for {code}");
    }
    for (doc, severity, code, path) in cases {
        let got = findings(&doc);
        assert!(
            got.iter()
                .any(|(s, c, p)| *s == severity && c == code && p == path),
            "wanted {severity} {code} at {path}, got {got:?}"
        );
    }
}

#[test]
fn placeholders_in_params_are_checked_at_run_time() {
    let doc = with("/actions/0/params/timeout_s", json!("{{ $.data.timeout }}"));
    assert_eq!(findings(&doc), vec![]);
}

#[test]
fn driver_blockers_are_the_422_class() {
    let (_dir, reg) = registry();
    let c = policy::validate_value(&with("/actions/0/verb", json!("reboot")), Some(&reg));
    assert_eq!(
        c.findings[0].blocker_class(),
        Some(switchyard_spec::finding::BlockerClass::Drivers)
    );
    assert!(c.ir.is_none(), "a driver blocker withholds the IR");
}

#[test]
fn loading_errors_name_the_file() {
    let root = tempfile::tempdir().unwrap();
    write_driver(
        root.path(),
        "a",
        "schema_version: 1\nname: a\nversion: 0.1.0\nadapter: { command: [x] }\ncapabilities: []\n",
    );
    let err = Registry::load(&[root.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("plugin.yaml") && err.contains("capabilities"),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    let err = Registry::load(&[empty.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no plugin.yaml"), "{err}");

    let dup = tempfile::tempdir().unwrap();
    let m = "schema_version: 1\nname: same\nversion: 0.1.0\nadapter: { command: [x] }\ncapabilities: [{name: c, target_type: host, verbs: [{name: v}]}]\n";
    write_driver(dup.path(), "one", m);
    write_driver(dup.path(), "two", m);
    let err = Registry::load(&[dup.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("installed twice"), "{err}");
}

#[test]
fn driver_and_host_configs_are_checked_against_their_schemas() {
    let root = tempfile::tempdir().unwrap();
    write_driver(
        root.path(),
        "api",
        "schema_version: 1\nname: api\nversion: 0.1.0\nadapter: { command: [x] }\n\
         driver_config_schema: { type: object, properties: { verify_tls: { type: boolean } }, additionalProperties: false }\n\
         host_config_schema: { type: object, required: [token], properties: { token: { type: string } } }\n\
         capabilities: [ { name: c, target_type: host, verbs: [ { name: v } ] } ]\n",
    );
    let reg = Registry::load(&[root.path().to_path_buf()]).unwrap();
    let d = reg.get("api").unwrap();
    assert!(d.check_driver_config(&json!({"verify_tls": true})).is_ok());
    let problems = d
        .check_driver_config(&json!({"verify_tls": "yes"}))
        .unwrap_err();
    assert!(problems[0].starts_with("/verify_tls: "), "{problems:?}");
    assert!(
        d.check_host_config(&json!({"token": "${env:API_TOKEN}"}))
            .is_ok(),
        "references are strings"
    );
    assert!(d.check_host_config(&json!({})).is_err());
    let refused = reg
        .adapter_spec("api", json!({"verify_tls": 1}), &[])
        .unwrap_err();
    assert!(
        refused[0].starts_with("[drivers.config.api] /verify_tls: "),
        "{refused:?}"
    );
    let spec = reg
        .adapter_spec("api", json!({"verify_tls": false}), &[])
        .unwrap();
    assert_eq!(spec.argv, ["x"]);
    assert!(reg.adapter_spec("nope", json!({}), &[]).is_err());
}
