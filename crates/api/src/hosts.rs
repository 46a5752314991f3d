//! Hosts, their drivers' capabilities, the inventory (with on-demand
//! refresh) and selector previews (DESIGN §8).

use crate::Query;
use crate::{ApiError, AppState, Role, auth};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Json;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_engine::{Discovery, FleetHost};
use switchyard_plugin::protocol::DiscoverMode;
use switchyard_spec::selector::{self, Inventory};
use switchyard_store::{InventoryQuery, InventoryRecord};

fn host<'a>(s: &'a AppState, id: &str) -> Result<&'a FleetHost, ApiError> {
    s.fleet.host(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no host `{id}` is configured"),
        )
    })
}

fn item(r: &InventoryRecord) -> Value {
    json!({
        "type": r.item_type,
        "id": r.id,
        "name": r.name,
        "labels": r.labels,
        "state": r.state,
        "refreshed_at": r.refreshed_at,
        "stale": r.stale,
    })
}

/// `GET /api/hosts`: every configured host with its drivers, inventory
/// freshness, queue and circuit breakers (host `config` is never returned).
pub(crate) async fn list(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    let items = s
        .store
        .inventory(
            &InventoryQuery::default(),
            chrono::Utc::now(),
            s.fleet.stale_after,
        )
        .await?;
    let engine = s.engine.get();
    let depths = engine.map(|e| e.queue_depths()).unwrap_or_default();
    let breakers = engine.map(|e| e.breakers()).unwrap_or_default();
    let hosts: Vec<Value> = s
        .fleet
        .hosts()
        .map(|h| {
            let id = &h.spec.id;
            let mine: Vec<&InventoryRecord> = items.iter().filter(|i| &i.host == id).collect();
            let (waiting, running) = depths
                .iter()
                .find(|(host, ..)| host == id)
                .map_or((0, 0), |(_, w, r)| (*w, *r));
            json!({
                "id": id,
                "address": h.spec.address,
                "labels": h.spec.labels,
                "drivers": h.drivers,
                "inventory": {
                    "items": mine.len(),
                    "stale": mine.iter().filter(|i| i.stale).count(),
                    "refreshed_at": mine.iter().map(|i| i.refreshed_at).max(),
                },
                "queue": {"waiting": waiting, "running": running},
                "breakers": breakers
                    .iter()
                    .filter(|b| &b.host == id)
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "hosts": hosts })))
}

/// `GET /api/hosts/{id}/capabilities`: what the host's drivers offer, in
/// the order actions are routed.
pub(crate) async fn capabilities(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    let h = host(&s, &id)?;
    let mut caps = Vec::new();
    for d in s.fleet.drivers_of(h) {
        let m = d.manifest();
        for c in &m.capabilities {
            caps.push(json!({
                "driver": m.name,
                "name": c.name,
                "target_type": c.target_type,
                "serialize": c.serialize,
                "description": c.description,
                "verbs": c.verbs.iter().map(|v| json!({
                    "name": v.name,
                    "description": v.description,
                    "idempotent": v.idempotent,
                    "inverse": v.inverse,
                    "dry_run": v.dry_run,
                    "params_schema": v.params_schema,
                })).collect::<Vec<_>>(),
            }));
        }
    }
    Ok(Json(json!({"host": id, "capabilities": caps})))
}

#[derive(Debug, Deserialize)]
pub(crate) struct InventoryParams {
    #[serde(rename = "type")]
    item_type: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RefreshParams {
    mode: Option<String>,
    #[serde(rename = "type")]
    item_type: Option<String>,
}

pub(crate) fn discovery(d: &Discovery) -> Value {
    match &d.result {
        Ok((items, complete)) => json!({
            "driver": d.driver, "mode": d.mode, "ok": true, "items": items, "complete": complete,
        }),
        Err(e) => json!({"driver": d.driver, "mode": d.mode, "ok": false, "error": e}),
    }
}

/// `GET /api/hosts/{id}/inventory`: the host's stored items. Reading never
/// asks a driver anything; `POST …/inventory/refresh` does.
pub(crate) async fn inventory(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<InventoryParams>,
) -> Result<Json<Value>, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    host(&s, &id)?;
    answer_inventory(&s, &id, q.item_type, Vec::new()).await
}

/// `POST /api/hosts/{id}/inventory/refresh?mode=fast|full`: the host's
/// drivers discover now (a state change: drivers act and rows change), the
/// engine gets the new snapshot, and the answer is the inventory.
pub(crate) async fn refresh_inventory(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<RefreshParams>,
) -> Result<Json<Value>, ApiError> {
    let mode = match q.mode.as_deref() {
        None | Some("full") => DiscoverMode::Full,
        Some("fast") => DiscoverMode::Fast,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_refresh",
                format!("`mode` is `fast` or `full`, not `{other}`"),
            ));
        }
    };
    let caller = auth::authorize(&s, &method, &headers, Role::Operator)?;
    let h = host(&s, &id)?;
    let refreshed = s.fleet.discover(&s.store, h, mode).await;
    if let Some(engine) = s.engine.get() {
        engine.set_inventory(s.fleet.snapshot(&s.store).await?);
    }
    crate::audit(
        &s,
        &caller,
        "inventory.refresh",
        &format!("host:{id}"),
        "",
        json!({"mode": q.mode.as_deref().unwrap_or("full"),
               "drivers": refreshed.iter().map(discovery).collect::<Vec<_>>()}),
    )
    .await;
    answer_inventory(&s, &id, q.item_type, refreshed).await
}

async fn answer_inventory(
    s: &AppState,
    id: &str,
    item_type: Option<String>,
    refreshed: Vec<Discovery>,
) -> Result<Json<Value>, ApiError> {
    let items = s
        .store
        .inventory(
            &InventoryQuery {
                host: Some(id.to_owned()),
                item_type,
                ..InventoryQuery::default()
            },
            chrono::Utc::now(),
            s.fleet.stale_after,
        )
        .await?;
    Ok(Json(json!({
        "host": id,
        "refresh": refreshed.iter().map(discovery).collect::<Vec<_>>(),
        "items": items.iter().map(item).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct PreviewParams {
    selector: Option<String>,
}

/// `GET /api/selectors/preview?selector=`: what a selector resolves to now,
/// against the configured hosts and the stored inventory.
pub(crate) async fn preview(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<PreviewParams>,
) -> Result<Json<Value>, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    let text = q.selector.filter(|t| !t.is_empty()).ok_or_else(|| {
        ApiError::bad_request("selector.missing", "give the selector as ?selector=")
    })?;
    // Like validate, a preview answers 200 for a selector it cannot use and
    // says why; 400 is for a request without a selector.
    let refused = |code: &str, message: String| {
        Json(json!({
            "selector": text, "valid": false,
            "finding": {"code": code, "message": message},
            "targets": [], "missing": [], "dropped": 0, "stale_targets": 0,
        }))
    };
    let parsed = match selector::parse(&text) {
        Ok(p) => p,
        Err(e) => return Ok(refused(e.code, format!("selector `{text}`: {e}"))),
    };
    if parsed.has_placeholders() {
        return Ok(refused(
            "selector.placeholder",
            format!(
                "selector `{text}` holds placeholders; they are filled from an event, so preview it with a dry-run and a sample event"
            ),
        ));
    }
    let snapshot = s.fleet.snapshot(&s.store).await?;
    let resolution = parsed.resolve(
        None,
        &Inventory {
            hosts: &snapshot.hosts,
            items: &snapshot.items,
        },
    );
    let resolution = match resolution {
        Ok(r) => r,
        Err(e) => return Ok(refused("selector.unresolvable", e.to_string())),
    };
    let stale = s
        .store
        .inventory(
            &InventoryQuery::default(),
            chrono::Utc::now(),
            s.fleet.stale_after,
        )
        .await?
        .into_iter()
        .filter(|i| i.stale)
        .filter(|i| {
            resolution
                .targets
                .iter()
                .any(|t| t.host == i.host && t.target_type == i.item_type && t.id == i.id)
        })
        .count();
    Ok(Json(json!({
        "selector": text,
        "valid": true,
        "canonical": parsed.to_string(),
        "targets": resolution.targets,
        "missing": resolution.missing,
        "dropped": resolution.dropped,
        "stale_targets": stale,
    })))
}
