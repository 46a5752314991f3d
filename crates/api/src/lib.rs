//! switchyard's HTTP API (DESIGN §9) — the part built so far: health and
//! readiness, the ledger (`GET /api/runs`, `GET /api/runs/{id}`), cancelling a
//! queued run, and reading policies, behind JWT bearer auth with roles, or
//! loopback-only without auth with the CSRF and `Host` rules for state changes.
//!
//! Only this crate defines HTTP DTOs (`dto`).

pub mod auth;
pub mod dto;
mod error;

pub use auth::{Auth, Role};
pub use error::ApiError;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use switchyard_engine::Engine;
use switchyard_intake::{Published, Publisher};
use switchyard_store::{PolicyRef, RunFilter, RunStatus, Store};

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
        .route("/api/runs", get(list_runs))
        .route("/api/runs/{id}", get(show_run))
        .route("/api/runs/{id}/cancel", post(cancel_run))
        .route("/api/policies", get(list_policies))
        .route("/api/policies/{id}", get(show_policy))
        .route("/api/policies/{id}/enable", post(enable_policy))
        .route("/api/policies/{id}/disable", post(disable_policy))
        .route("/api/stream", get(stream))
        .route("/api/events", post(ingest_event))
        .route("/api/webhooks/alertmanager", post(ingest_alertmanager))
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

#[derive(Debug, Deserialize)]
struct RunsQuery {
    policy: Option<String>,
    host: Option<String>,
    target: Option<String>,
    status: Option<String>,
    event: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    limit: Option<u64>,
}

fn time(name: &str, v: Option<&str>) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    v.map(|t| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| d.with_timezone(&chrono::Utc))
            .map_err(|_| {
                ApiError::bad_request(
                    "bad_time",
                    format!("`{name}` must be an RFC 3339 time, not `{t}`"),
                )
            })
    })
    .transpose()
}

async fn list_runs(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<RunsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(st) => Some(RunStatus::parse(st).ok_or_else(|| {
            ApiError::bad_request(
                "bad_status",
                format!(
                    "`{st}` is not a run status; one of: {}",
                    RunStatus::ALL.map(RunStatus::as_str).join(", ")
                ),
            )
        })?),
    };
    let policy_id = match &q.policy {
        None => None,
        Some(p) => Some(s.store.get_policy(&PolicyRef::parse(p)).await?.id),
    };
    let filter = RunFilter {
        policy_id,
        host: q.host,
        target_id: q.target,
        status,
        event_id: q.event,
        since: time("since", q.since.as_deref())?,
        until: time("until", q.until.as_deref())?,
    };
    let (runs, next) = s
        .store
        .list_runs(&filter, q.cursor.as_deref(), q.limit.unwrap_or(50))
        .await?;
    Ok(Json(json!({
        "runs": runs.iter().map(dto::run).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

fn run_id(id: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::try_parse(id)
        .map_err(|_| ApiError::bad_request("bad_id", format!("`{id}` is not a run id (a UUID)")))
}

async fn show_run(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    Ok(Json(dto::run(&s.store.get_run(run_id(&id)?).await?)))
}

async fn cancel_run(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let caller = auth::authorize(&s, &method, &headers, Role::Operator)?;
    let id = run_id(&id)?;
    let run = s.store.get_run(id).await?;
    let engine = s.engine.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "engine.standby",
            "this instance is not the active engine",
        )
    })?;
    if !engine.cancel(id).await {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "run.not_queued",
            format!(
                "run {id} is {}, not waiting in a queue",
                run.status.as_str()
            ),
        ));
    }
    audit(
        &s,
        &caller,
        "run.cancelled",
        &id.to_string(),
        &run.correlation_id,
        json!({"policy": run.policy_name, "host": run.host}),
    )
    .await;
    Ok(Json(dto::run(&s.store.get_run(id).await?)))
}

async fn list_policies(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    let policies = s.store.list_policies().await?;
    Ok(Json(
        json!({"policies": policies.iter().map(dto::policy).collect::<Vec<_>>()}),
    ))
}

async fn show_policy(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    Ok(Json(dto::policy(
        &s.store.get_policy(&PolicyRef::parse(&id)).await?,
    )))
}

#[derive(Debug, Deserialize)]
struct EnableQuery {
    #[serde(default)]
    force: bool,
}

/// The number of errors the policy's last dry-run reported.
fn dry_run_errors(p: &switchyard_store::PolicyRecord) -> u64 {
    p.last_dry_run
        .as_ref()
        .and_then(|d| d.pointer("/summary/errors"))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

async fn enable_policy(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<EnableQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let caller = auth::authorize(
        &s,
        &method,
        &headers,
        if q.force { Role::Admin } else { Role::Operator },
    )?;
    let r = PolicyRef::parse(&id);
    let current = s.store.get_policy(&r).await?;
    let errors = dry_run_errors(&current);
    if errors > 0 && !q.force {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "policy.enable_blocked",
            format!(
                "the last dry-run of `{}` reported {errors} error(s); fix them and dry-run again, or enable with ?force=true as an admin",
                current.name
            ),
        ));
    }
    let saved = s.store.set_enabled(&r, true).await?;
    audit_policy(
        &s,
        &caller,
        if errors > 0 {
            "policy.enabled_forced"
        } else {
            "policy.enabled"
        },
        &saved,
    )
    .await;
    (s.policies_changed)();
    Ok(Json(dto::policy(&saved)))
}

async fn disable_policy(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let caller = auth::authorize(&s, &method, &headers, Role::Operator)?;
    let saved = s.store.set_enabled(&PolicyRef::parse(&id), false).await?;
    audit_policy(&s, &caller, "policy.disabled", &saved).await;
    (s.policies_changed)();
    Ok(Json(dto::policy(&saved)))
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

async fn audit_policy(
    s: &AppState,
    caller: &auth::Caller,
    action: &str,
    p: &switchyard_store::PolicyRecord,
) {
    let detail = json!({"version": p.version_int, "role": caller.role.as_str()});
    audit(s, caller, action, &p.name, &p.id.to_string(), detail).await;
}

/// `GET /api/stream`: server-sent events, one `run` event per run status
/// change as the engine records it (a `lagged` event says how many a slow
/// reader missed); a keep-alive comment every 15 s.
async fn stream(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<
    axum::response::Sse<
        impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    let engine = s.engine.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "engine.standby",
            "this instance is not the active engine",
        )
    })?;
    let events = futures::stream::unfold(engine.subscribe(), |mut rx| async move {
        let event = match rx.recv().await {
            Ok(notice) => Event::default()
                .event("run")
                .json_data(&notice)
                .unwrap_or_else(|_| Event::default().event("error").data("unencodable notice")),
            Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))))
}

fn publisher(s: &AppState) -> Result<&Publisher, ApiError> {
    s.publisher.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ingest.unavailable",
            "NATS is not connected yet; try again",
        )
    })
}

fn published(p: &Published) -> serde_json::Value {
    json!({"event_id": p.event_id, "stream": p.stream, "seq": p.seq, "duplicate": p.duplicate})
}

fn publish_failed(e: switchyard_intake::PublishError) -> ApiError {
    tracing::warn!(error = %e, "ingest publish failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ingest.publish_failed",
        "the event could not be published to JetStream; try again",
    )
}

/// `POST /api/events`: one event (native envelope or CloudEvents JSON),
/// checked as intake checks it, published with `Nats-Msg-Id`; 202 once
/// JetStream has acknowledged it.
async fn ingest_event(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    auth::authorize(&s, &method, &headers, Role::Ingest)?;
    let event = switchyard_spec::event::parse(&body, switchyard_spec::event::Limits::default())
        .map_err(|e| ApiError::bad_request("event.invalid", format!("{} ({})", e, e.reason())))?;
    let p = publisher(&s)?;
    let out = match &event.id {
        Some(id) => p.publish_payload(&event.kind, id, body.to_vec()).await,
        None => p.publish(&event).await,
    }
    .map_err(publish_failed)?;
    Ok((StatusCode::ACCEPTED, Json(published(&out))))
}

/// `POST /api/webhooks/alertmanager`: an Alertmanager (version 4) webhook;
/// each alert becomes an `alertmanager.firing|resolved` event; 202 once all
/// are acknowledged.
async fn ingest_alertmanager(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    auth::authorize(&s, &method, &headers, Role::Ingest)?;
    let events = switchyard_intake::alertmanager::to_events(&body)
        .map_err(|e| ApiError::bad_request("alertmanager.invalid", e.to_string()))?;
    let p = publisher(&s)?;
    let mut out = Vec::with_capacity(events.len());
    for e in &events {
        out.push(published(&p.publish(e).await.map_err(publish_failed)?));
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"events": out}))))
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
