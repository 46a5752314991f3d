//! The ledger: runs list and show, cancel, undo, and the live stream.

use crate::Query;
use crate::{ApiError, AppState, Role, audit, auth, dto, engine};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Json;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_engine::Undone;
use switchyard_store::{PolicyRef, RunFilter, RunRecord, RunStatus};

#[derive(Debug, Deserialize)]
pub(crate) struct RunsQuery {
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

pub(crate) async fn list(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<RunsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    // An empty parameter (`?host=`) is no filter.
    let some = |v: Option<String>| v.filter(|s| !s.is_empty());
    let q = RunsQuery {
        policy: some(q.policy),
        host: some(q.host),
        target: some(q.target),
        status: some(q.status),
        event: some(q.event),
        since: q.since,
        until: q.until,
        cursor: some(q.cursor),
        limit: q.limit,
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "bad_limit",
            format!("`limit` is 1–1000, not {limit}"),
        ));
    }
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
        .list_runs(&filter, q.cursor.as_deref(), limit)
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

pub(crate) async fn show(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    Ok(Json(dto::run(&s.store.get_run(run_id(&id)?).await?)))
}

pub(crate) async fn cancel(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let caller = auth::authorize(&s, &method, &headers, Role::Operator)?;
    let id = run_id(&id)?;
    let run = s.store.get_run(id).await?;
    if !engine(&s)?.cancel(id).await {
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

/// `POST /api/runs/{id}/undo` body (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UndoBody {
    /// Params for the inverse verb; by default the run's own params when the
    /// inverse verb accepts them, else none.
    params: Option<Value>,
}

fn conflict(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

/// The inverse verb of a run, and the params it will get.
fn inverse_of(
    s: &AppState,
    run: &RunRecord,
    params: Option<Value>,
) -> Result<(String, Value), ApiError> {
    match run.status {
        RunStatus::Queued | RunStatus::Running => {
            return Err(conflict(
                "run.not_finished",
                format!(
                    "run {} is {}; cancel it instead, or undo it once it has finished",
                    run.id,
                    run.status.as_str()
                ),
            ));
        }
        RunStatus::Suppressed
        | RunStatus::Deduplicated
        | RunStatus::Skipped
        | RunStatus::Cancelled => {
            return Err(conflict(
                "run.not_undoable",
                format!(
                    "run {} is {}: it never reached its target, so there is nothing to undo",
                    run.id,
                    run.status.as_str()
                ),
            ));
        }
        _ => {}
    }
    let driver = run.driver.as_deref().ok_or_else(|| {
        conflict(
            "run.not_undoable",
            format!("run {} never reached a driver", run.id),
        )
    })?;
    let info = s
        .fleet
        .routing()
        .verb(driver, &run.capability, &run.verb)
        .ok_or_else(|| {
            conflict(
                "run.no_inverse",
                format!(
                    "driver `{driver}` no longer offers {}.{}",
                    run.capability, run.verb
                ),
            )
        })?;
    let inverse = info.inverse.clone().ok_or_else(|| {
        conflict(
            "run.no_inverse",
            format!(
                "verb `{}` of capability `{}` (driver `{driver}`) declares no inverse",
                run.verb, run.capability
            ),
        )
    })?;
    let validator = s
        .fleet
        .registry()
        .get(driver)
        .and_then(|d| d.params_validator(&run.capability, &inverse));
    let problems = |p: &Value| -> Vec<String> {
        validator.map_or_else(Vec::new, |v| {
            v.iter_errors(p)
                .map(|e| {
                    format!("{} {e}", e.instance_path().as_str())
                        .trim()
                        .to_owned()
                })
                .collect()
        })
    };
    // The run's own params lost their secret members to `***` in the ledger.
    let masked = info
        .params
        .as_ref()
        .is_some_and(|rules| rules.has_secrets(&run.params));
    let params = match params {
        Some(p) => p,
        None if masked => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "run.undo_params_invalid",
                format!(
                    "run {} had secret params, which the ledger does not keep; pass the params as {{\"params\": {{…}}}}",
                    run.id
                ),
            ));
        }
        None if problems(&run.params).is_empty() && run.params.is_object() => run.params.clone(),
        None => json!({}),
    };
    let found = problems(&params);
    if !found.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "run.undo_params_invalid",
            format!(
                "params for `{}.{inverse}` do not fit its params_schema ({}); pass them as {{\"params\": {{…}}}}",
                run.capability,
                found.join("; ")
            ),
        ));
    }
    Ok((inverse, params))
}

/// `POST /api/runs/{id}/undo`: queue the inverse verb on the same target
/// (201 with the new run); 200 with the earlier one when the run was undone before.
pub(crate) async fn undo(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = auth::authorize(&s, &method, &headers, Role::Operator)?;
    let id = run_id(&id)?;
    let body: UndoBody = if body.iter().all(u8::is_ascii_whitespace) {
        UndoBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(
                "body.invalid",
                format!("the body must be {{\"params\": {{…}}}} or empty: {e}"),
            )
        })?
    };
    let run = s.store.get_run(id).await?;
    let (verb, params) = inverse_of(&s, &run, body.params)?;
    let undone = engine(&s)?
        .undo(&run, &verb, params)
        .await
        .map_err(|e| match e {
            switchyard_engine::UndoError::Write(w) => {
                tracing::error!(error = %w, "recording an undo failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "engine.unavailable",
                    "the undo could not be recorded; try again",
                )
            }
            other => conflict("run.not_undoable", other.to_string()),
        })?;
    let filter = RunFilter {
        event_id: Some(format!("undo-{id}")),
        ..RunFilter::default()
    };
    let (status, inverse) = match undone {
        Undone::Queued(new) => (StatusCode::CREATED, s.store.get_run(new).await?),
        Undone::Already => {
            let (found, _) = s.store.list_runs(&filter, None, 1).await?;
            let earlier = found.into_iter().next().ok_or_else(|| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            })?;
            return Ok((StatusCode::OK, Json(dto::run(&earlier))));
        }
    };
    audit(
        &s,
        &caller,
        "run.undo",
        &id.to_string(),
        &run.correlation_id,
        json!({"policy": run.policy_name, "host": run.host, "verb": verb, "inverse_run": inverse.id}),
    )
    .await;
    Ok((status, Json(dto::run(&inverse))))
}

/// `GET /api/stream`: server-sent events, one `run` event per run status
/// change as the engine records it and one `policy` event per policy change (a `lagged` event says how many a slow
/// reader missed); a keep-alive comment every 15 s.
pub(crate) async fn stream(
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
    let runs = futures::stream::unfold(engine(&s)?.subscribe(), |mut rx| async move {
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
    let policies = futures::stream::unfold(s.policy_notices.subscribe(), |mut rx| async move {
        let event = match rx.recv().await {
            Ok(notice) => Event::default()
                .event("policy")
                .json_data(&notice)
                .unwrap_or_else(|_| Event::default().event("error").data("unencodable notice")),
            Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    let events = futures::stream::select(runs, policies);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))))
}
