//! The compiled policy IR: normalized, deterministic, hashable.
//!
//! Spec-level defaults are filled and durations are milliseconds. Defaults that
//! come from plugin.yaml (timeouts, rate limits) are not here: they are applied
//! at dispatch, so upgrading a driver never changes a hash.

use crate::canonical;
use crate::condition::ConditionIr;
use crate::selector::TargetRef;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The IR format version.
pub const IR_VERSION: u32 = 1;

/// A compiled policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyIr {
    pub ir_version: u32,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub enabled: bool,
    pub priority: i64,
    pub trigger_group: TriggerGroupIr,
    pub conditions: Vec<ConditionIr>,
    pub targets: Vec<TargetIr>,
    pub actions: Vec<ActionIr>,
    pub windows: WindowsIr,
}

/// How the triggers combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Logic {
    #[serde(rename = "ANY")]
    Any,
    #[serde(rename = "ALL")]
    All,
}

/// The trigger group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerGroupIr {
    pub logic: Logic,
    /// Correlation window for `ALL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<u64>,
    pub triggers: Vec<TriggerIr>,
}

/// One trigger: an event kind (or pattern) with optional `where`, or a cron schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TriggerIr {
    Kind {
        kind: String,
        #[serde(rename = "where", default, skip_serializing_if = "Vec::is_empty")]
        where_: Vec<ConditionIr>,
    },
    Schedule {
        schedule: String,
        tz: String,
    },
}

/// One target selector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetIr {
    /// The selector in canonical text form.
    pub selector: String,
    pub dynamic_resolution: bool,
    /// The expansion when the text alone determines it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_ids: Option<Vec<TargetRef>>,
}

/// What to do when an action fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    Stop,
    Continue,
}

/// One action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionIr {
    pub capability: String,
    pub verb: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    pub params: Value,
    /// `None`: the driver's default timeout applies at dispatch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    pub on_error: OnError,
}

/// Suppression, idempotency and staleness windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowsIr {
    /// 0: no suppression.
    pub suppression_ms: u64,
    /// 0: no idempotency window.
    pub idempotency_ms: u64,
    /// Empty: one group for the whole policy.
    pub group_by: Vec<String>,
    /// `None`: the configured `engine.max_event_age` applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_event_age_ms: Option<u64>,
}

impl PolicyIr {
    /// The behavioural part that `spec_hash` covers: triggers, conditions,
    /// targets, actions, windows — not name, description, enabled or priority.
    /// A target contributes its canonical selector text and resolution mode;
    /// `resolved_ids` is derived from that text, so hashing it adds nothing.
    pub fn behaviour(&self) -> Value {
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| json!({"selector": t.selector, "dynamic_resolution": t.dynamic_resolution}))
            .collect();
        json!({
            "trigger_group": self.trigger_group,
            "conditions": self.conditions,
            "targets": targets,
            "actions": self.actions,
            "windows": self.windows,
        })
    }

    /// SHA-256 of the RFC 8785 canonical JSON of the behavioural part.
    pub fn spec_hash(&self) -> String {
        canonical::sha256_hex(&self.behaviour())
    }

    /// The whole IR as JSON.
    pub fn to_value(&self) -> Value {
        // Plain data with string keys: it always serializes.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The whole IR as canonical JSON bytes.
    pub fn to_canonical_string(&self) -> String {
        canonical::to_canonical_string(&self.to_value())
    }
}
