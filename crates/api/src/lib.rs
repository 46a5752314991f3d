//! switchyard's HTTP API (DESIGN §9): health and readiness; policies (validate,
//! save, update, archive, enable/disable, dry-run, versions, diff, rollback,
//! inverse); the ledger (runs, cancel, undo) and its live stream; hosts,
//! capabilities, inventory and selector previews; event and Alertmanager
//! ingest — behind JWT bearer auth with roles, or loopback-only without auth
//! with the CSRF and `Host` rules for state changes.
//!
//! Only this crate defines HTTP DTOs (`dto`).

pub mod auth;
pub mod dto;
mod error;
mod hosts;
mod ingest;
pub mod metrics;
mod policies;
mod runs;

pub use auth::{Auth, Role};
pub use error::ApiError;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
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
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("listen", &self.listen)
            .field("auth", &self.auth.is_some())
            .finish()
    }
}

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/runs", get(runs::list))
        .route("/api/runs/{id}", get(runs::show))
        .route("/api/runs/{id}/cancel", post(runs::cancel))
        .route("/api/runs/{id}/undo", post(runs::undo))
        .route("/api/stream", get(runs::stream))
        .route("/api/policies", get(policies::list).post(policies::create))
        .route("/api/policies/validate", post(policies::validate))
        .route(
            "/api/policies/{id}",
            get(policies::show)
                .put(policies::update)
                .delete(policies::archive),
        )
        .route("/api/policies/{id}/enable", post(policies::enable))
        .route("/api/policies/{id}/disable", post(policies::disable))
        .route("/api/policies/{id}/versions", get(policies::versions))
        .route("/api/policies/{id}/versions/{v}", get(policies::version))
        .route("/api/policies/{id}/diff", get(policies::diff))
        .route("/api/policies/{id}/rollback", post(policies::rollback))
        .route("/api/policies/{id}/dry-run", post(policies::dry_run))
        .route("/api/policies/{id}/inverse", post(policies::inverse))
        .route("/api/hosts", get(hosts::list))
        .route("/api/hosts/{id}/capabilities", get(hosts::capabilities))
        .route("/api/hosts/{id}/inventory", get(hosts::inventory))
        .route("/api/selectors/preview", get(hosts::preview))
        .route("/api/events", post(ingest::event))
        .route("/api/webhooks/alertmanager", post(ingest::alertmanager))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(s): State<AppState>) -> Response {
    match (s.ready)() {
        None => Json(json!({"status": "ready"})).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": reason})),
        )
            .into_response(),
    }
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
    let event = switchyard_store::AuditEvent {
        id: uuid::Uuid::now_v7(),
        at: chrono::Utc::now(),
        subject: caller.subject.clone(),
        action: action.into(),
        target: target.into(),
        correlation_id: correlation_id.into(),
        detail,
    };
    if let Err(e) = s.store.audit(&event).await {
        tracing::warn!(error = %e, "recording an audit event failed");
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
