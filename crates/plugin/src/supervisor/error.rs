//! Why a call to an adapter failed, and what the ledger records for it.

use crate::{protocol, secrets};
use thiserror::Error;

/// Why a call to an adapter failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallError {
    #[error("driver `{0}` is not configured")]
    UnknownDriver(String),
    #[error("driver `{driver}`: cannot start `{program}`: {reason}")]
    Spawn {
        driver: String,
        program: String,
        reason: String,
    },
    #[error("driver `{driver}`: initialize failed: {reason}")]
    Init { driver: String, reason: String },
    #[error(
        "driver `{driver}` is restarting after a failure; next start in {retry_in_ms} ms ({last})"
    )]
    Unavailable {
        driver: String,
        retry_in_ms: u64,
        last: String,
    },
    #[error("adapter error {code}: {message}")]
    Adapter { code: i64, message: String },
    #[error("{method} timed out after {after_ms} ms{}", if *killed { "; the adapter did not stop on cancel and was killed" } else { "" })]
    Timeout {
        method: String,
        after_ms: u64,
        killed: bool,
    },
    #[error("driver `{driver}`: the adapter crashed: {detail}")]
    Crashed { driver: String, detail: String },
    #[error("driver `{driver}`: protocol error: {detail}; the adapter was restarted")]
    Protocol { driver: String, detail: String },
    #[error("{method}: the adapter's result does not match the protocol: {detail}")]
    InvalidResult { method: String, detail: String },
    #[error("{method}: the request cannot be encoded: {detail}")]
    Encode { method: String, detail: String },
    #[error("host `{host}`: {cause}")]
    Secret { host: String, cause: secrets::Error },
    #[error("the supervisor is shutting down")]
    ShuttingDown,
}

impl CallError {
    /// Transient failures (DESIGN §5): retryable for idempotent verbs, and
    /// counted by circuit breakers.
    pub fn is_transient(&self) -> bool {
        match self {
            CallError::Adapter { code, .. } => *code == protocol::codes::TRANSIENT,
            CallError::Timeout { .. }
            | CallError::Crashed { .. }
            | CallError::Protocol { .. }
            | CallError::Unavailable { .. } => true,
            _ => false,
        }
    }

    /// The run reason recorded in the ledger.
    pub fn reason(&self) -> &'static str {
        match self {
            CallError::UnknownDriver(_) => "no_driver",
            CallError::Spawn { .. } | CallError::Init { .. } | CallError::Unavailable { .. } => {
                "driver_unavailable"
            }
            CallError::Adapter { code, .. } => match *code {
                protocol::codes::TARGET_NOT_FOUND => "target_not_found",
                protocol::codes::PRECONDITION_FAILED => "precondition_failed",
                protocol::codes::TRANSIENT => "transient",
                protocol::codes::UNSUPPORTED => "unsupported",
                protocol::codes::INVALID_PARAMS => "params_invalid",
                _ => "driver_error",
            },
            CallError::Timeout { .. } => "timeout",
            CallError::Crashed { .. } => "adapter_crashed",
            CallError::Protocol { .. }
            | CallError::InvalidResult { .. }
            | CallError::Encode { .. } => "protocol_error",
            CallError::Secret { .. } => "secret_unresolved",
            CallError::ShuttingDown => "shutting_down",
        }
    }
}
