//! The adapter protocol: JSON-RPC 2.0, one JSON object per line over the
//! adapter's stdin and stdout. Requests carry ids and may be concurrent.
//!
//! | method | params | result |
//! |---|---|---|
//! | `initialize` | [`InitializeParams`] | [`InitializeResult`] — once per process |
//! | `discover` | [`DiscoverParams`] | [`DiscoverResult`] |
//! | `dry_run` | [`DryRunParams`] | [`DryRunResult`] |
//! | `execute` | [`ExecuteParams`] | [`ExecuteResult`] |
//! | `health` | [`HealthParams`] | [`HealthResult`] |
//! | `cancel` (notification) | [`CancelParams`] | — |

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The protocol version sent in `initialize`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest stdout line accepted from an adapter: 4 MiB.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// Error codes an adapter returns.
pub mod codes {
    /// The target does not exist.
    pub const TARGET_NOT_FOUND: i64 = -32001;
    /// A precondition failed (the target is in no state to do this).
    pub const PRECONDITION_FAILED: i64 = -32002;
    /// A transient failure: retrying may succeed.
    pub const TRANSIENT: i64 = -32003;
    /// The adapter does not support this request.
    pub const UNSUPPORTED: i64 = -32004;
    /// JSON-RPC: the request was not valid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// JSON-RPC: not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// JSON-RPC: no such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// JSON-RPC: invalid params.
    pub const INVALID_PARAMS: i64 = -32602;
    /// JSON-RPC: internal error.
    pub const INTERNAL: i64 = -32603;
}

/// A request or notification sent to an adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub jsonrpc: String,
    /// Absent for notifications (`cancel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub method: String,
    #[serde(default)]
    pub params: Value,
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// A response from an adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub jsonrpc: String,
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

/// `initialize` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitializeParams {
    pub protocol_version: u32,
    /// `[drivers.config.<name>]`, validated against `driver_config_schema`.
    pub driver_config: Value,
}

/// `initialize` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitializeResult {
    pub name: String,
    pub version: String,
}

/// The host a request is about, with secret references resolved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default = "empty_object")]
    pub config: Value,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// A target: an item of a type on the host (`host` for the host itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    #[serde(rename = "type")]
    pub target_type: String,
    pub id: String,
}

/// Discovery depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscoverMode {
    /// Refresh the state of known items within the driver's SLA.
    Fast,
    /// Enumerate everything.
    Full,
}

/// `discover` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscoverParams {
    pub host: Host,
    pub mode: DiscoverMode,
}

/// One discovered item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    #[serde(rename = "type")]
    pub item_type: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
}

/// `discover` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscoverResult {
    pub items: Vec<Item>,
    /// False when part of the refresh failed: the items are then stale.
    pub complete: bool,
}

/// `dry_run` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DryRunParams {
    pub run_id: String,
    pub host: Host,
    pub target: Target,
    pub capability: String,
    pub verb: String,
    pub params: Value,
}

/// A checked precondition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Precondition {
    pub name: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A change the action would make (or made).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    pub target: String,
    pub field: String,
    #[serde(default)]
    pub from: Value,
    #[serde(default)]
    pub to: Value,
}

/// Severity of a dry-run result (the finding severities).
pub use switchyard_spec::finding::Severity;

/// `dry_run` result: the standardized shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DryRunResult {
    pub ok: bool,
    pub severity: Severity,
    /// The driver's own idempotency key: shown, never used to decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub preconditions: Vec<Precondition>,
    #[serde(default)]
    pub plan: Vec<String>,
    #[serde(default)]
    pub effects: Vec<Effect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `execute` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteParams {
    pub run_id: String,
    pub host: Host,
    pub target: Target,
    pub capability: String,
    pub verb: String,
    pub params: Value,
    pub idempotency_key: String,
    /// Remaining time budget in milliseconds.
    pub deadline_ms: u64,
    /// The same deadline as a time: milliseconds since the Unix epoch. The
    /// SDK refuses a request received past it and stops one still running
    /// at it, whatever became of the engine that sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_at_ms: Option<u64>,
}

/// `execute` result. `ok: false` is a failed run, not retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteResult {
    pub ok: bool,
    #[serde(default)]
    pub effects: Vec<Effect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `health` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthParams {
    pub host: Host,
}

/// `health` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthResult {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `cancel` notification params: the id of the request to stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelParams {
    pub id: u64,
}
