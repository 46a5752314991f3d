//! Error bodies: `{error: {code, message, findings?}}`, never internals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

/// An error as the API returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Validation findings behind a refused save.
    pub findings: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            findings: None,
        }
    }

    pub fn with_findings(mut self, findings: serde_json::Value) -> ApiError {
        self.findings = Some(findings);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(f) = self.findings {
            error["findings"] = f;
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

impl From<switchyard_store::Error> for ApiError {
    fn from(e: switchyard_store::Error) -> ApiError {
        use switchyard_store::Error as E;
        match e {
            E::NotFound(what) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no {what}"))
            }
            E::Duplicate { id, name } => ApiError::new(
                StatusCode::CONFLICT,
                "policy.duplicate",
                format!("policy `{name}` ({id}) already has exactly this behaviour"),
            ),
            E::NameTaken(name) => ApiError::new(
                StatusCode::CONFLICT,
                "policy.name_taken",
                format!("a policy named `{name}` already exists"),
            ),
            E::ManagedElsewhere { name, managed_by } => ApiError::new(
                StatusCode::CONFLICT,
                "policy.managed_elsewhere",
                format!(
                    "policy `{name}` is managed by `{managed_by}`; rename it in the file or archive that policy first"
                ),
            ),
            E::VersionMismatch {
                name,
                expected,
                current,
            } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "policy.version_mismatch",
                format!(
                    "policy `{name}` is at version {current}, not {expected}; fetch it again and retry"
                ),
            ),
            E::NoSuchVersion { name, version } => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("policy `{name}` has no version {version}"),
            ),
            E::Cursor(c) => ApiError::bad_request(
                "bad_cursor",
                format!("`{c}` is not a cursor this API gave out"),
            ),
            other => {
                tracing::error!(error = %other, "store error behind an API request");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            }
        }
    }
}
