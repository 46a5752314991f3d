//! switchyard's HTTP API (DESIGN §9): health and readiness; policies (validate,
//! save, update, archive, enable/disable, dry-run, versions, diff, rollback,
//! inverse); the ledger (runs, cancel, undo) and its live stream; hosts,
//! capabilities, inventory and selector previews; event and Alertmanager
//! ingest — behind JWT bearer auth with roles, or loopback-only without auth
//! with the CSRF and `Host` rules for state changes.
//!
//! Only this crate defines HTTP DTOs (`dto`).

#![recursion_limit = "512"]

pub mod auth;
pub mod bundle;
pub mod dto;
mod error;
mod hosts;
mod ingest;
pub mod metrics;
pub mod openapi;
mod policies;
mod runs;

pub use auth::{Auth, Role};
pub use error::ApiError;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use switchyard_engine::{Engine, Fleet};
use switchyard_intake::Publisher;
use switchyard_store::Store;

/// Why readiness fails, if it does (`None`: ready).
pub type ReadyCheck = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Set once this instance holds the engine lease.
    pub engine: Arc<std::sync::OnceLock<Engine>>,
    /// Set once intake is connected: the ingest endpoints publish through it.
    pub publisher: Arc<std::sync::OnceLock<Publisher>>,
    pub ready: ReadyCheck,
    pub auth: Option<Arc<Auth>>,
    /// The address the API listens on (the `Host` guard without auth).
    pub listen: SocketAddr,
    /// Called after a policy change so the engine picks it up.
    pub policies_changed: Arc<dyn Fn() + Send + Sync>,
    /// Hosts, installed drivers and the inventory.
    pub fleet: Arc<Fleet>,
    /// Policy changes as they happen: streamed on `/api/stream`, and
    /// published on NATS by `serve`.
    pub policy_notices: tokio::sync::broadcast::Sender<PolicyNotice>,
    /// The watched policy directory and its last reload (`None`: no
    /// `[policies] dir`).
    pub directory: DirectoryStatus,
}

/// `serve`'s policy directory as `GET /api/directory` shows it: the
/// directory, whether it is watched, and the outcome of its last apply.
pub type DirectoryStatus = Arc<std::sync::RwLock<Option<serde_json::Value>>>;

/// A policy change, announced (`event`: `version_created`, `updated`,
/// `rolled_back`, `validation_failed`, `enabled`, `disabled`, `archived`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicyNotice {
    pub event: &'static str,
    /// Absent when a document that never became a policy failed validation.
    pub policy_id: Option<uuid::Uuid>,
    pub name: Option<String>,
    pub version: Option<i64>,
    pub enabled: Option<bool>,
    /// Who made the change (token subject, `dir` for the watched directory).
    pub by: String,
    pub at: chrono::DateTime<chrono::Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl PolicyNotice {
    /// A notice about no single stored policy: a refused document or
    /// bundle, a bundle the store undid whole.
    pub fn general(event: &'static str, by: &str, detail: serde_json::Value) -> PolicyNotice {
        PolicyNotice {
            event,
            policy_id: None,
            name: None,
            version: None,
            enabled: None,
            by: by.to_owned(),
            at: chrono::Utc::now(),
            detail: Some(detail),
        }
    }

    /// A notice about a stored policy.
    pub fn of(
        event: &'static str,
        p: &switchyard_store::PolicyRecord,
        by: &str,
        detail: Option<serde_json::Value>,
    ) -> PolicyNotice {
        PolicyNotice {
            event,
            policy_id: Some(p.id),
            name: Some(p.name.clone()),
            version: Some(p.version_int),
            enabled: Some(p.enabled),
            by: by.to_owned(),
            at: chrono::Utc::now(),
            detail,
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("listen", &self.listen)
            .field("auth", &self.auth.is_some())
            .finish()
    }
}

/// `Query<T>` whose refusals are this API's JSON errors (400 `query.invalid`).
#[derive(Debug)]
pub(crate) struct Query<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e| ApiError::bad_request("query.invalid", e.body_text()))
    }
}

/// Refuse query parameters an operation does not take (400 `query.unknown`):
/// `?stauts=failed` must not quietly list every run.
async fn known_query_only(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if let Some(query) = req.uri().query().filter(|q| !q.is_empty())
        && let Some(template) = openapi::template_of(req.uri().path())
        && let Some(op) = openapi::operations()
            .iter()
            .find(|o| o.path == template && o.method == *req.method())
    {
        for (name, _) in url::form_urlencoded::parse(query.as_bytes()) {
            if !op.query.iter().any(|p| p.name == name) {
                let known: Vec<&str> = op.query.iter().map(|p| p.name).collect();
                return ApiError::bad_request(
                    "query.unknown",
                    if known.is_empty() {
                        format!("`{name}` is not a parameter here; this endpoint takes none")
                    } else {
                        format!(
                            "`{name}` is not a parameter here; known: {}",
                            known.join(", ")
                        )
                    },
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// Longest a request may take to produce its answer (a dry-run waits for
/// drivers, bounded by their SLAs; a stream's events flow after the answer).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

async fn time_limit(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {}s",
                REQUEST_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    }
}

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The routes: one per operation in [`openapi::operations`], so the served
/// API and its OpenAPI document cannot drift apart.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for op in openapi::operations() {
        router = router.route(op.path, handler(op));
    }
    router
        .fallback(not_found)
        .layer(axum::middleware::from_fn(known_query_only))
        .layer(axum::middleware::from_fn(time_limit))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::loopback_guard,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// Refuse a body larger than [`MAX_BODY_BYTES`] on every endpoint, before
/// any handler runs: by its declared length, or by reading a body sent
/// without one up to the limit.
async fn body_limit(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body.too_large",
            format!("a request body may hold at most {MAX_BODY_BYTES} bytes"),
        )
        .into_response()
    };
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    // A body sent without a length (chunked) is read here, up to the limit,
    // so that an endpoint that never reads its body refuses it too.
    let req = if declared.is_none()
        && axum::body::HttpBody::size_hint(req.body()).exact() != Some(0)
    {
        let (parts, body) = req.into_parts();
        match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
            Ok(bytes) => axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes)),
            Err(_) => return too_large(),
        }
    } else {
        req
    };
    let resp = next.run(req).await;
    // An extractor that hit the limit on a body sent without a length
    // answers in plain text; the API answers in its own error shape.
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large();
    }
    resp
}

/// Headers on every answer that keep a browser from running, framing or
/// sniffing what the API returns, and from leaking its URLs.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cache-control", "no-store"),
];

async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let headers = resp.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            axum::http::HeaderName::from_static(name),
            axum::http::HeaderValue::from_static(value),
        );
    }
    resp
}

/// The handler of an operation, by its `operationId`.
fn handler(op: &openapi::Op) -> MethodRouter<AppState> {
    let Ok(filter) = MethodFilter::try_from(op.method.clone()) else {
        // The operation table names standard methods only; the OpenAPI walk
        // in the tests reaches every operation.
        tracing::error!(operation = op.id, method = %op.method, "not a routable method");
        return MethodRouter::new();
    };
    match op.id {
        "healthz" => on(filter, healthz),
        "readyz" => on(filter, readyz),
        "metrics" => on(filter, metrics::metrics),
        "openapi" => on(filter, openapi_json),
        "listRuns" => on(filter, runs::list),
        "showRun" => on(filter, runs::show),
        "cancelRun" => on(filter, runs::cancel),
        "undoRun" => on(filter, runs::undo),
        "stream" => on(filter, runs::stream),
        "listPolicies" => on(filter, policies::list),
        "createPolicy" => on(filter, policies::create),
        "validatePolicy" => on(filter, policies::validate),
        "applyPolicies" => on(filter, bundle::apply),
        "showDirectory" => on(filter, bundle::directory),
        "showPolicy" => on(filter, policies::show),
        "updatePolicy" => on(filter, policies::update),
        "archivePolicy" => on(filter, policies::archive),
        "enablePolicy" => on(filter, policies::enable),
        "disablePolicy" => on(filter, policies::disable),
        "listVersions" => on(filter, policies::versions),
        "showVersion" => on(filter, policies::version),
        "diffPolicy" => on(filter, policies::diff),
        "rollbackPolicy" => on(filter, policies::rollback),
        "dryRunPolicy" => on(filter, policies::dry_run),
        "inversePolicy" => on(filter, policies::inverse),
        "listHosts" => on(filter, hosts::list),
        "hostCapabilities" => on(filter, hosts::capabilities),
        "hostInventory" => on(filter, hosts::inventory),
        "refreshInventory" => on(filter, hosts::refresh_inventory),
        "previewSelector" => on(filter, hosts::preview),
        "ingestEvent" => on(filter, ingest::event),
        "ingestAlertmanager" => on(filter, ingest::alertmanager),
        other => unreachable!("operation `{other}` has no handler"),
    }
}

/// `GET /api/openapi.json`.
async fn openapi_json() -> Json<serde_json::Value> {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    Json(DOC.get_or_init(openapi::document).clone())
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready or not, with what an operator setting up should know: the
/// drivers installed, and a warning when there are none (the server still
/// takes events and decides them; no action can run).
async fn readyz(State(s): State<AppState>) -> Response {
    let drivers = s.fleet.registry().len();
    let mut body = match (s.ready)() {
        None => json!({"status": "ready"}),
        Some(reason) => json!({"status": "not_ready", "reason": reason}),
    };
    body["drivers"] = drivers.into();
    if drivers == 0 {
        body["warnings"] = json!(["no drivers are installed: no action can run"]);
    }
    let status = if body["status"] == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The engine, or 503 while this instance starts or stands by.
fn engine(s: &AppState) -> Result<&Engine, ApiError> {
    s.engine.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "engine.standby",
            "this instance is not the active engine",
        )
    })
}

/// Record a state change made through the API; a failure to audit is
/// logged, never turned into an error for the caller.
async fn audit(
    s: &AppState,
    caller: &auth::Caller,
    action: &str,
    target: &str,
    correlation_id: &str,
    detail: serde_json::Value,
) {
    record_audit(
        &s.store,
        &caller.subject,
        action,
        target,
        correlation_id,
        detail,
    )
    .await;
}

/// Record an audit event: `subject` did `action` to `target`. A failure to
/// audit is logged, never turned into an error for the change it records.
pub async fn record_audit(
    store: &Store,
    subject: &str,
    action: &str,
    target: &str,
    correlation_id: &str,
    detail: serde_json::Value,
) {
    let event = switchyard_store::AuditEvent {
        id: uuid::Uuid::now_v7(),
        at: chrono::Utc::now(),
        subject: subject.into(),
        action: action.into(),
        target: target.into(),
        correlation_id: correlation_id.into(),
        detail,
    };
    if let Err(e) = store.audit(&event).await {
        tracing::warn!(action, target, error = %e, "recording an audit event failed");
    }
}

/// Serve `router(state)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
