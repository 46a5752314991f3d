//! Ingest: `POST /api/events` and `POST /api/webhooks/alertmanager` publish
//! to JetStream and answer 202 once it has acknowledged.

use crate::{ApiError, AppState, Role, auth};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Json;
use serde_json::json;
use switchyard_intake::{Published, Publisher};

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
pub(crate) async fn event(
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
pub(crate) async fn alertmanager(
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
