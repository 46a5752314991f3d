//! `plugin-schemas/policy.schema.json` and `event.schema.json` kept in step
//! with the parsers: every example validates against both, and a set of bad
//! inputs is refused by both.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use switchyard_spec::event;
use switchyard_spec::policy::{self, Format};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn validator(name: &str) -> jsonschema::Validator {
    let text =
        std::fs::read_to_string(repo().join("plugin-schemas").join(name)).expect("schema file");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("{name} is not a valid schema: {e}"))
}

fn schema_errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn every_example_policy_passes_the_schema_and_the_parser() {
    let schema = validator("policy.schema.json");
    let dir = repo().join("examples/policies");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/policies") {
        let path = entry.expect("entry").path();
        let Some(format) = Format::from_path(&path) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("read");
        let docs =
            policy::load(&text, format).unwrap_or_else(|f| panic!("{}: {f}", path.display()));
        for doc in &docs {
            let errors = schema_errors(&schema, doc);
            assert!(
                errors.is_empty(),
                "{}: schema says {errors:?}",
                path.display()
            );
            let c = policy::validate_value(doc, None);
            assert!(
                c.findings.is_empty(),
                "{}: parser says {:?}",
                path.display(),
                c.findings
            );
            seen += 1;
        }
    }
    assert!(seen >= 3, "expected the example policies, found {seen}");
}

fn good_policy() -> Value {
    json!({
        "version": 1,
        "name": "good",
        "trigger_group": {"triggers": [{"kind": "ups.on_battery"}]},
        "targets": [{"selector": "pve-01"}],
        "actions": [{"capability": "vm.power", "verb": "shutdown"}]
    })
}

fn with(path: &str, value: Value) -> Value {
    let mut doc = good_policy();
    let (parent, key) = path.rsplit_once('/').unwrap();
    doc.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .insert(key.into(), value);
    doc
}

#[test]
fn schema_refuses_what_the_parser_refuses() {
    let schema = validator("policy.schema.json");
    assert!(schema_errors(&schema, &good_policy()).is_empty());
    let mut missing_name = good_policy();
    missing_name.as_object_mut().unwrap().remove("name");
    let bad = [
        ("unknown field", with("/colour", json!("red"))),
        ("missing name", missing_name),
        ("version 2", with("/version", json!(2))),
        ("bad name", with("/name", json!("Bad Name"))),
        (
            "uuid name",
            with("/name", json!("01937c9e-6b1a-7cc1-9f1e-2f4c2b8d0a11")),
        ),
        ("enabled string", with("/enabled", json!("yes"))),
        ("logic", with("/trigger_group/logic", json!("SOME"))),
        (
            "ALL without within",
            with("/trigger_group/logic", json!("ALL")),
        ),
        ("no triggers", with("/trigger_group/triggers", json!([]))),
        (
            "reserved kind",
            with("/trigger_group/triggers", json!([{"kind": "schedule"}])),
        ),
        (
            "bad kind",
            with("/trigger_group/triggers", json!([{"kind": "Ups.X"}])),
        ),
        (
            "both kind and schedule",
            with(
                "/trigger_group/triggers",
                json!([{"kind": "a", "schedule": "* * * * *"}]),
            ),
        ),
        (
            "cron 4 fields",
            with("/trigger_group/triggers", json!([{"schedule": "* * * *"}])),
        ),
        (
            "duration without unit",
            with("/windows", json!({"suppression": "10"})),
        ),
        (
            "duration with bad unit",
            with("/windows", json!({"suppression": "10x"})),
        ),
        (
            "condition unknown op",
            with(
                "/conditions",
                json!([{"path": "$.a", "op": "lessthan", "value": 1}]),
            ),
        ),
        (
            "condition path without $",
            with("/conditions", json!([{"path": "a", "op": "exists"}])),
        ),
        (
            "in with a string",
            with(
                "/conditions",
                json!([{"path": "$.a", "op": "in", "value": "x"}]),
            ),
        ),
        (
            "lt without value",
            with("/conditions", json!([{"path": "$.a", "op": "lt"}])),
        ),
        (
            "exists with value",
            with(
                "/conditions",
                json!([{"path": "$.a", "op": "exists", "value": 1}]),
            ),
        ),
        (
            "condition mixing",
            with("/conditions", json!([{"all": [], "path": "$.a"}])),
        ),
        ("empty actions", with("/actions", json!([]))),
        (
            "action missing verb",
            with("/actions", json!([{"capability": "vm.power"}])),
        ),
        (
            "bad on_error",
            with(
                "/actions",
                json!([{"capability": "c", "verb": "v", "on_error": "retry"}]),
            ),
        ),
        (
            "params array",
            with(
                "/actions",
                json!([{"capability": "c", "verb": "v", "params": [1]}]),
            ),
        ),
        (
            "target without selector",
            with("/targets", json!([{"dynamic_resolution": true}])),
        ),
        ("priority out of range", with("/priority", json!(5_000_000))),
    ];
    for (what, doc) in bad {
        let by_parser = policy::validate_value(&doc, None);
        assert!(by_parser.is_blocked(), "{what}: the parser accepted it");
        assert!(
            !schema_errors(&schema, &doc).is_empty(),
            "{what}: the schema accepted it"
        );
    }
}

#[test]
fn event_schema_agrees_with_the_envelope_parser() {
    let schema = validator("event.schema.json");
    let good = [
        json!({"kind": "ups.on_battery"}),
        json!({"id": "e1", "kind": "ups.on_battery", "source": "nut://ups1@nut-01", "host": "nut-01",
               "time": "2026-11-23T08:00:00Z", "severity": "warning", "data": {"ups": "ups1", "charge": 87}}),
        json!({"specversion": "1.0", "type": "host.down", "source": "/probe", "id": "c1", "subject": "web-01", "data": {}}),
        json!({"specversion": "1.0", "type": "host.down", "source": "/probe", "id": "c2", "site": "fra"}),
    ];
    for ev in good {
        assert!(
            schema_errors(&schema, &ev).is_empty(),
            "schema refused {ev}"
        );
        event::from_value(ev.clone()).unwrap_or_else(|e| panic!("parser refused {ev}: {e}"));
    }
    let bad = [
        json!({"data": {}}),
        json!({"kind": "UPS"}),
        json!({"kind": "schedule"}),
        json!({"kind": "a", "data": [1]}),
        json!({"kind": "a", "extra": 1}),
        json!({"kind": "a", "host": 5}),
        json!({"kind": "a", "id": ""}),
        json!({"specversion": "0.3", "type": "a"}),
        json!({"specversion": "1.0", "source": "x"}),
        json!({"specversion": "1.0", "type": "a", "data_base64": "AAAA"}),
        json!([1]),
    ];
    for ev in bad {
        assert!(
            !schema_errors(&schema, &ev).is_empty(),
            "schema accepted {ev}"
        );
        assert!(
            event::from_value(ev.clone()).is_err(),
            "parser accepted {ev}"
        );
    }
}
