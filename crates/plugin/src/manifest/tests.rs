use super::*;

pub(crate) const GOOD: &str = r#"
schema_version: 1
name: proxmox
version: 0.1.0
description: Proxmox VE virtual machines
adapter:
  command: ["switchyard-driver-proxmox", "--quiet"]
  instances: 2
driver_config_schema:
  type: object
  properties: { verify_tls: { type: boolean } }
  additionalProperties: false
host_config_schema:
  type: object
  required: [token_id]
target_types:
  - { name: vm, id_pattern: "^[0-9]+$" }
capabilities:
  - name: vm.power
    target_type: vm
    serialize: target
    verbs:
      - name: shutdown
        params_schema:
          type: object
          properties:
            timeout_s: { type: integer, minimum: 1 }
            reason: { type: string }
          additionalProperties: false
        inverse: start
        idempotent: true
        dry_run: true
        examples:
          - { target: { type: vm, id: "100" }, params: { timeout_s: 60 } }
      - name: start
        inverse: shutdown
        idempotent: true
      - name: reset
  - name: host.ping
    target_type: host
    verbs:
      - { name: ping, idempotent: true }
defaults:
  timeout_s: 120
  rate_limit: { per_host: "30/min", per_driver: "5/s" }
discovery: { fast: true, full: true }
"#;

#[test]
fn good_manifest_has_no_problems() {
    let m = Manifest::parse(GOOD).unwrap();
    assert_eq!(m.problems(), vec![]);
    assert_eq!(m.adapter.instances, 2);
    assert_eq!(
        m.capability("vm.power").unwrap().serialize,
        Serialization::Target
    );
    assert_eq!(m.defaults.dry_run_refresh_sla_s, 5, "default filled");
    assert_eq!(
        Rate::parse("30/min").unwrap(),
        Rate {
            count: 30,
            per_ms: 60_000
        }
    );
}

#[test]
fn unknown_fields_are_refused_with_a_position() {
    let err =
        Manifest::parse(&GOOD.replace("instances: 2", "instances: 2\n  shell: true")).unwrap_err();
    assert!(err.contains("shell") && err.contains("line"), "{err}");
}

#[test]
fn each_rule_reports_its_path() {
    let cases: &[(&str, &str, &str)] = &[
        ("schema_version: 1", "schema_version: 2", "schema_version"),
        ("name: proxmox", "name: Prox Mox", "name"),
        (
            r#"command: ["switchyard-driver-proxmox", "--quiet"]"#,
            "command: []",
            "adapter.command",
        ),
        ("instances: 2", "instances: 0", "adapter.instances"),
        ("required: [token_id]", "required: 5", "host_config_schema"),
        (
            r#"id_pattern: "^[0-9]+$""#,
            r#"id_pattern: "([""#,
            "target_types[0].id_pattern",
        ),
        (
            "target_type: vm\n",
            "target_type: lxc\n",
            "capabilities[0].target_type",
        ),
        (
            "inverse: start",
            "inverse: boot",
            "capabilities[0].verbs[0].inverse",
        ),
        (
            "- name: reset",
            "- name: start",
            "capabilities[0].verbs[2].name",
        ),
        (
            "timeout_s: { type: integer, minimum: 1 }",
            "timeout_s: { type: wrong }",
            "capabilities[0].verbs[0].params_schema",
        ),
        (
            "params: { timeout_s: 60 }",
            "params: { timeout_s: 0 }",
            "capabilities[0].verbs[0].examples[0].params/timeout_s",
        ),
        (
            "target: { type: vm, id: \"100\" }",
            "target: { type: host, id: \"h\" }",
            "capabilities[0].verbs[0].examples[0].target.type",
        ),
        (
            "per_host: \"30/min\"",
            "per_host: \"30 per minute\"",
            "defaults.rate_limit.per_host",
        ),
        ("name: host.ping", "name: vm.power", "capabilities[1].name"),
    ];
    for (from, to, path) in cases {
        let text = GOOD.replacen(from, to, 1);
        assert_ne!(text, GOOD, "replacement {from:?} did not apply");
        let m = Manifest::parse(&text).unwrap_or_else(|e| panic!("{to}: {e}"));
        let problems = m.problems();
        assert!(
            problems.iter().any(|p| p.path == *path),
            "{to}: wanted a problem at {path}, got {problems:?}"
        );
    }
}
