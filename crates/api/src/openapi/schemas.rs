//! The response shapes of the OpenAPI document (`components/schemas`), one
//! per DTO in `dto`; the API tests check every response against them.

use super::param_schema;
use serde_json::{Value, json};

fn nullable(kind: &str) -> Value {
    json!({"type": [kind, "null"]})
}

fn obj(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

fn array_of(name: &str) -> Value {
    json!({"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}})
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The response shapes (see `dto`).
pub(super) fn schemas() -> Value {
    let string = json!({"type": "string"});
    let integer = json!({"type": "integer"});
    let boolean = json!({"type": "boolean"});
    let time = json!({"type": "string", "format": "date-time"});
    let target = obj(
        &["host", "type", "id"],
        json!({"host": string, "type": string, "id": string}),
    );
    json!({
        "Object": {"type": "object"},
        "Health": obj(&["status"], json!({"status": {"const": "ok"}})),
        "Ready": obj(&["status"], json!({"status": {"enum": ["ready", "not_ready"]}, "reason": string,
            "drivers": integer, "warnings": {"type": "array", "items": string}})),
        "Error": obj(&["error"], json!({"error": obj(&["code", "message"], json!({
            "code": string, "message": string, "findings": array_of("Finding")}))})),
        "Finding": obj(&["severity", "code", "message", "path"], json!({
            "severity": {"enum": ["info", "warn", "error", "blocker"]},
            "code": string, "message": string, "path": string, "line": integer, "column": integer})),
        "EventIn": obj(&["kind"], json!({
            "id": string, "kind": string, "source": string, "host": string,
            "time": time, "severity": string, "data": {"type": "object"}})),
        "Run": obj(&["id", "decision_id", "policy_id", "policy_name", "policy_version", "event_id",
                     "event_kind", "correlation_id", "host", "target", "capability", "verb",
                     "status", "attempt", "count", "queued_at"], json!({
            "id": {"type": "string", "format": "uuid"},
            "decision_id": {"type": "string", "format": "uuid"},
            "policy_id": {"type": "string", "format": "uuid"},
            "policy_name": string, "policy_version": integer,
            "event_id": string, "event_kind": string, "correlation_id": string,
            "correlated_event_ids": {"type": "array", "items": string},
            "host": string,
            "target": obj(&["type", "id"], json!({"type": string, "id": string})),
            "driver": nullable("string"), "capability": string, "verb": string,
            "params": {},
            "idempotency_key": nullable("string"),
            "status": param_schema("status"),
            "severity": nullable("string"), "reason": nullable("string"),
            "effects": {}, "output": nullable("string"),
            "attempt": integer, "count": integer,
            "queued_at": time, "started_at": nullable("string"), "finished_at": nullable("string"),
            "duration_ms": nullable("integer"), "inverse_of": nullable("string")})),
        "RunPage": obj(&["runs", "next_cursor"], json!({"runs": array_of("Run"), "next_cursor": nullable("string")})),
        "Policy": obj(&["id", "name", "version_int", "enabled", "priority", "spec_hash", "managed_by",
                        "format", "ir", "created_at", "updated_at"], json!({
            "id": {"type": "string", "format": "uuid"}, "name": string, "version_int": integer,
            "enabled": boolean, "priority": integer, "spec_hash": string,
            "managed_by": {"enum": ["api", "dir"]}, "format": {"enum": ["yaml", "json", "toml"]},
            "ir": {"type": "object"},
            "last_validation": nullable("object"), "last_dry_run": nullable("object"),
            "created_at": time, "updated_at": time,
            "findings": array_of("Finding")})),
        "Applied": obj(&["applied", "steps", "warnings", "policies"], json!({
            "applied": boolean,
            "steps": {"type": "array", "items": obj(&["action", "name", "id", "version_int", "enabled"], json!({
                "action": {"enum": ["created", "updated", "unchanged", "disabled"]},
                "name": string, "id": string, "version_int": integer, "enabled": boolean,
                "file": nullable("string")}))},
            "warnings": {"type": "array"},
            "policies": array_of("Policy")})),
        "Directory": obj(&["dir", "watching", "debounce_ms"], json!({
            "dir": string, "watching": boolean, "debounce_ms": integer,
            "last": nullable("object")})),
        "PolicyList": obj(&["policies"], json!({"policies": array_of("Policy")})),
        "Archived": obj(&["archived"], json!({"archived": reference("Policy")})),
        "Validation": obj(&["valid", "policies"], json!({"valid": boolean, "policies": {"type": "array", "items":
            obj(&["document", "valid", "findings"], json!({
                "document": integer, "name": nullable("string"), "valid": boolean,
                "findings": array_of("Finding"), "ir": nullable("object"), "spec_hash": nullable("string")}))}})),
        "VersionSummary": obj(&["version_int", "spec_hash", "author", "comment", "checksum", "created_at"], json!({
            "version_int": integer, "spec_hash": string, "author": string, "comment": string,
            "checksum": string, "created_at": time})),
        "Version": obj(&["version_int", "spec_hash", "policy_id", "format", "source", "ir"], json!({
            "version_int": integer, "spec_hash": string, "author": string, "comment": string,
            "checksum": string, "created_at": time, "policy_id": string,
            "format": string, "source": string, "ir": {"type": "object"}})),
        "VersionList": obj(&["policy", "versions"], json!({
            "policy": obj(&["id", "name", "version_int"], json!({"id": string, "name": string, "version_int": integer})),
            "versions": array_of("VersionSummary")})),
        "Diff": obj(&["policy", "from", "to", "changes", "source_from", "source_to"], json!({
            "policy": {"type": "object"}, "from": integer, "to": integer,
            "changes": {"type": "array", "items": obj(&["path"], json!({"path": string, "before": {}, "after": {}}))},
            "source_from": string, "source_to": string})),
        "DryRun": obj(&["transcript_id", "policy", "at", "event", "triggers", "conditions", "would_fire",
                        "used_inventory", "targets", "actions", "findings", "summary"], json!({
            "transcript_id": {"type": "string", "format": "uuid"},
            "policy": {"type": "object"}, "at": time,
            "event": obj(&["given", "envelope"], json!({"given": boolean, "envelope": {"type": "object"}})),
            "logic": {"enum": ["ANY", "ALL"]},
            "triggers": {"type": "array"}, "conditions": {"type": "array"},
            "would_fire": boolean, "suppression": nullable("object"),
            "used_inventory": obj(&["stale", "refresh"], json!({
                "refreshed_at": nullable("string"), "stale": boolean, "refresh": {"type": "array"}})),
            "targets": {"type": "array"}, "actions": {"type": "array"},
            "findings": array_of("Finding"),
            "summary": obj(&["errors", "warnings", "targets", "actions", "would_fire"], json!({
                "errors": integer, "warnings": integer, "targets": integer, "actions": integer, "would_fire": boolean}))})),
        "Inverse": obj(&["policy", "spec", "needs_input", "findings"], json!({
            "policy": {"type": "object"}, "spec": {"type": "object"},
            "needs_input": {"type": "array", "items": string}, "findings": array_of("Finding")})),
        "Host": obj(&["id", "labels", "drivers", "inventory", "queue", "breakers"], json!({
            "id": string, "address": nullable("string"), "labels": {"type": "object"},
            "drivers": {"type": "array", "items": string},
            "inventory": obj(&["items", "stale"], json!({"items": integer, "stale": integer, "refreshed_at": nullable("string")})),
            "queue": obj(&["waiting", "running"], json!({"waiting": integer, "running": integer})),
            "breakers": {"type": "array", "items": obj(&["host", "driver", "state", "failures"], json!({
                "host": string, "driver": string, "state": {"enum": ["closed", "open", "half_open"]},
                "failures": integer, "open_until": time}))}})),
        "HostList": obj(&["hosts"], json!({"hosts": array_of("Host")})),
        "Capabilities": obj(&["host", "capabilities"], json!({"host": string, "capabilities": {"type": "array", "items":
            obj(&["driver", "name", "target_type", "verbs"], json!({
                "driver": string, "name": string, "target_type": string, "serialize": {"enum": ["host", "target"]},
                "description": nullable("string"),
                "verbs": {"type": "array", "items": obj(&["name", "idempotent", "dry_run"], json!({
                    "name": string, "description": nullable("string"), "idempotent": boolean,
                    "inverse": nullable("string"), "dry_run": boolean, "params_schema": {}}))}}))}})),
        "Inventory": obj(&["host", "refresh", "items"], json!({
            "host": string,
            "refresh": {"type": "array", "items": obj(&["driver", "mode", "ok"], json!({
                "driver": string, "mode": {"enum": ["fast", "full"]}, "ok": boolean,
                "items": integer, "complete": boolean, "error": string}))},
            "items": {"type": "array", "items": obj(&["type", "id", "labels", "refreshed_at", "stale"], json!({
                "type": string, "id": string, "name": nullable("string"), "labels": {"type": "object"},
                "state": {}, "refreshed_at": time, "stale": boolean}))}})),
        "Preview": obj(&["selector", "valid", "targets", "missing", "dropped", "stale_targets"], json!({
            "selector": string, "valid": boolean, "canonical": string,
            "finding": obj(&["code", "message"], json!({"code": string, "message": string})),
            "targets": {"type": "array", "items": target}, "missing": {"type": "array", "items": target},
            "dropped": integer, "stale_targets": integer})),
        "Published": obj(&["event_id", "stream", "seq", "duplicate"], json!({
            "event_id": string, "stream": string, "seq": integer, "duplicate": boolean})),
        "PublishedList": obj(&["events"], json!({"events": array_of("Published")})),
    })
}
