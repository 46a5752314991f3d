//! plugin.schema.json in step with the manifest parser; the protocol schema
//! accepts what the supervisor sends.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use switchyard_plugin::Manifest;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn validator(name: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("plugin-schemas").join(name)).unwrap(),
    )
    .unwrap();
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn manifests() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for root in ["drivers", "examples/drivers"] {
        for e in std::fs::read_dir(repo().join(root)).unwrap() {
            let p = e.unwrap().path().join("plugin.yaml");
            if p.is_file() {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn every_shipped_manifest_passes_schema_and_parser() {
    let schema = validator("plugin.schema.json");
    let files = manifests();
    assert!(files.len() >= 2, "{files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let as_json: Value = serde_saphyr::from_str(&text).unwrap();
        let errors: Vec<String> = schema
            .iter_errors(&as_json)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        let m = Manifest::parse(&text).unwrap();
        assert_eq!(m.problems(), vec![], "{}", path.display());
    }
}

#[test]
fn schema_refuses_what_the_parser_refuses() {
    let schema = validator("plugin.schema.json");
    let base = json!({
        "schema_version": 1, "name": "d", "version": "1",
        "adapter": {"command": ["x"]},
        "capabilities": [{"name": "c", "target_type": "host", "verbs": [{"name": "v"}]}]
    });
    assert!(schema.is_valid(&base));
    let bad = [
        json!({"schema_version": 2}),
        json!({"name": "Bad Name"}),
        json!({"adapter": {"command": []}}),
        json!({"adapter": {"command": ["x"], "shell": true}}),
        json!({"capabilities": []}),
        json!({"extra": 1}),
        json!({"defaults": {"rate_limit": {"per_host": "lots"}}}),
        json!({"capabilities": [{"name": "c", "target_type": "host", "verbs": [{"name": "v", "idempotent": "yes"}]}]}),
    ];
    for patch in bad {
        let mut doc = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            doc[k] = v.clone();
        }
        assert!(!schema.is_valid(&doc), "schema accepted {patch}");
        let refused_by_parser = match serde_json::from_value::<Manifest>(doc.clone()) {
            Err(_) => true,
            Ok(m) => !m.problems().is_empty(),
        };
        assert!(refused_by_parser, "parser accepted {patch}");
    }
}

#[test]
fn protocol_schema_accepts_supervisor_messages() {
    let schema = validator("adapter-protocol.schema.json");
    let host = json!({"id": "h1", "address": "127.0.0.1", "labels": {}, "config": {}});
    let target = json!({"type": "vm", "id": "100"});
    let good = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocol_version": 1, "driver_config": {}}}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "discover", "params": {"host": host, "mode": "full"}}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "execute", "params": {"run_id": "r", "host": host, "target": target, "capability": "vm.power", "verb": "shutdown", "params": {}, "idempotency_key": "k", "deadline_ms": 1000}}),
        json!({"jsonrpc": "2.0", "method": "cancel", "params": {"id": 3}}),
        json!({"jsonrpc": "2.0", "id": 3, "result": {"ok": true}}),
        json!({"jsonrpc": "2.0", "id": 3, "error": {"code": -32003, "message": "busy"}}),
    ];
    for m in good {
        assert!(schema.is_valid(&m), "refused {m}");
    }
    let bad = [
        json!({"jsonrpc": "2.0", "id": 3, "method": "execute", "params": {"run_id": "r"}}),
        json!({"jsonrpc": "1.0", "id": 1, "method": "health", "params": {"host": host}}),
        json!({"jsonrpc": "2.0", "id": 3}),
    ];
    for m in bad {
        assert!(!schema.is_valid(&m), "accepted {m}");
    }
}
