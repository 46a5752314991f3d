//! The JSON shapes the API returns (DESIGN §6 field names).

use serde_json::{Value, json};
use switchyard_store::{PolicyRecord, RunRecord, VersionRecord};

/// A run.
pub fn run(r: &RunRecord) -> Value {
    json!({
        "id": r.id,
        "decision_id": r.decision_id,
        "policy_id": r.policy_id,
        "policy_name": r.policy_name,
        "policy_version": r.policy_version,
        "event_id": r.event_id,
        "event_kind": r.event_kind,
        "correlation_id": r.correlation_id,
        "correlated_event_ids": r.correlated_event_ids,
        "host": r.host,
        "target": {"type": r.target_type, "id": r.target_id},
        "driver": r.driver,
        "capability": r.capability,
        "verb": r.verb,
        "params": r.params,
        "idempotency_key": r.idempotency_key,
        "status": r.status.as_str(),
        "severity": r.severity,
        "reason": r.reason,
        "effects": r.effects,
        "output": r.output,
        "attempt": r.attempt,
        "count": r.count,
        "queued_at": r.queued_at,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "duration_ms": r.duration_ms,
        "inverse_of": r.inverse_of,
    })
}

/// A policy (its newest version).
pub fn policy(p: &PolicyRecord) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "version_int": p.version_int,
        "enabled": p.enabled,
        "priority": p.priority,
        "spec_hash": p.spec_hash,
        "managed_by": p.managed_by,
        "format": p.format,
        "ir": p.ir.to_value(),
        "last_validation": p.last_validation,
        "last_dry_run": p.last_dry_run,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    })
}

/// A version in a history listing (no document).
pub fn version_summary(v: &VersionRecord) -> Value {
    json!({
        "version_int": v.version_int,
        "spec_hash": v.spec_hash,
        "author": v.author,
        "comment": v.comment,
        "checksum": v.checksum,
        "created_at": v.created_at,
    })
}

/// One version with its document and IR.
pub fn version(v: &VersionRecord) -> Value {
    let mut out = version_summary(v);
    out["policy_id"] = json!(v.policy_id);
    out["format"] = json!(v.format);
    out["source"] = json!(v.source);
    out["ir"] = v.ir.to_value();
    out
}
