//! Policies over HTTP (DESIGN §9): validate, save, update (`If-Match`),
//! archive, enable/disable, dry-run, versions, diff, rollback, inverse.
//!
//! A document arrives as the request body, its format named by
//! `Content-Type` (`application/json`, `application/yaml` or `text/yaml`,
//! `application/toml`), one policy per request. Saves are checked against
//! the installed drivers: spec blockers answer 400, driver mismatches 422,
//! both with every finding. Policies applied from the watched directory are
//! read-only here (409 `policy.managed_by_dir`) except enable and disable.

use crate::Query;
use crate::{ApiError, AppState, Role, audit, auth, dto};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_engine::ActivePolicy;
use switchyard_engine::dryrun::{self, DryRunInput};
use switchyard_spec::Severity;
use switchyard_spec::finding::{BlockerClass, Finding};
use switchyard_spec::policy::{self, Compiled, Format};
use switchyard_store::{NewPolicy, PolicyRecord, PolicyRef};

/// Who may change a policy through the API.
const MANAGED_BY_DIR: &str = "dir";

fn format_of(headers: &HeaderMap) -> Result<Format, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Format::from_content_type(ct).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "policy.media_type",
            format!(
                "Content-Type `{ct}` is not a policy format; send application/json, application/yaml or application/toml"
            ),
        )
    })
}

fn text_of(body: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("body.not_utf8", "the policy document is not UTF-8"))
}

fn findings_json(findings: &[Finding]) -> Value {
    serde_json::to_value(findings).unwrap_or(Value::Null)
}

/// Validate a body against the spec and the installed drivers.
fn compile(
    s: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Vec<Compiled>, Format, String), ApiError> {
    let format = format_of(headers)?;
    let text = text_of(body)?;
    let compiled = policy::validate_text(text, format, Some(s.fleet.registry()));
    Ok((compiled, format, text.to_owned()))
}

/// The one policy a save carries, or the error that refuses it.
fn one_policy(mut compiled: Vec<Compiled>) -> Result<Compiled, ApiError> {
    if compiled.len() != 1 {
        return Err(ApiError::bad_request(
            "policy.multiple_documents",
            format!(
                "the body holds {} policy documents; save one per request (or apply a directory)",
                compiled.len()
            ),
        ));
    }
    let c = compiled.remove(0);
    let result = if c.is_blocked() { "blocked" } else { "ok" };
    metrics::counter!(switchyard_spec::metric_names::POLICY_VALIDATIONS, "result" => result)
        .increment(1);
    if !c.is_blocked() {
        return Ok(c);
    }
    let blockers: Vec<&Finding> = c
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Blocker)
        .collect();
    let drivers_only = blockers
        .iter()
        .all(|f| f.blocker_class() == Some(BlockerClass::Drivers));
    let first = blockers
        .first()
        .map(|f| format!(": {} at `{}`: {}", f.code, f.path, f.message))
        .unwrap_or_default();
    let (status, code, what) = if drivers_only {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "policy.driver_mismatch",
            "does not fit the installed drivers",
        )
    } else {
        (StatusCode::BAD_REQUEST, "policy.invalid", "is invalid")
    };
    Err(ApiError::new(
        status,
        code,
        format!("the policy {what} ({} blocker(s)){first}", blockers.len()),
    )
    .with_findings(findings_json(&c.findings)))
}

/// `last_validation` as stored with each save.
fn validation_record(c: &Compiled, subject: &str) -> Value {
    let warnings = c
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warn)
        .count();
    validation_json(subject, warnings, findings_json(&c.findings))
}

/// `last_validation` of a saved (so blocker-free) version: who validated it,
/// its warning count and its findings as JSON.
pub(crate) fn validation_json(by: &str, warnings: usize, findings: Value) -> Value {
    json!({
        "at": chrono::Utc::now(),
        "by": by,
        "blockers": 0,
        "warnings": warnings,
        "findings": findings,
    })
}

/// The version a caller last saw, from `If-Match` (`3`, `"3"` or `W/"3"`).
fn if_match(headers: &HeaderMap) -> Result<i64, ApiError> {
    let raw = headers
        .get(header::IF_MATCH)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::PRECONDITION_REQUIRED,
                "policy.if_match_required",
                "send If-Match: <version_int> (the version you last read) so a concurrent change is not overwritten",
            )
        })?
        .to_str()
        .unwrap_or("");
    let v = raw.trim().trim_start_matches("W/").trim_matches('"');
    v.parse().map_err(|_| {
        ApiError::bad_request(
            "policy.bad_if_match",
            format!("If-Match `{raw}` is not a version number"),
        )
    })
}

/// A policy with its version as the `ETag`.
fn policy_response(status: StatusCode, p: &PolicyRecord, extra: Option<Value>) -> Response {
    let mut body = dto::policy(p);
    if let Some(Value::Object(m)) = extra {
        for (k, v) in m {
            body[k] = v;
        }
    }
    let mut resp = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", p.version_int)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&format!("/api/policies/{}", p.id))
    {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn not_managed_by_dir(p: &PolicyRecord) -> Result<(), ApiError> {
    if p.managed_by == MANAGED_BY_DIR {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "policy.managed_by_dir",
            format!(
                "policy `{}` comes from the policy directory; change the file there (only enable and disable work through the API)",
                p.name
            ),
        ));
    }
    Ok(())
}

/// Announce a policy change on the stream (and, through serve, on NATS).
fn announce(s: &AppState, event: &'static str, p: &PolicyRecord, caller: &auth::Caller) {
    let _ = s
        .policy_notices
        .send(crate::PolicyNotice::of(event, p, &caller.subject, None));
}

/// Announce a refused save.
fn announce_refusal(s: &AppState, name: Option<String>, caller: &auth::Caller, e: &ApiError) {
    let mut notice = crate::PolicyNotice::general(
        "validation_failed",
        &caller.subject,
        json!({"code": e.code, "message": e.message, "findings": e.findings}),
    );
    notice.name = name;
    let _ = s.policy_notices.send(notice);
}

async fn audit_policy(s: &AppState, caller: &auth::Caller, action: &str, p: &PolicyRecord) {
    let detail = json!({"version": p.version_int, "role": caller.role.as_str()});
    audit(s, caller, action, &p.name, &p.id.to_string(), detail).await;
}

pub(crate) async fn list(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    let policies = s.store.list_policies().await?;
    Ok(Json(
        json!({"policies": policies.iter().map(dto::policy).collect::<Vec<_>>()}),
    ))
}

pub(crate) async fn show(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    let p = s.store.get_policy(&PolicyRef::parse(&id)).await?;
    Ok(policy_response(StatusCode::OK, &p, None))
}

/// `POST /api/policies/validate`: findings, IR and `spec_hash` per document; saves nothing.
pub(crate) async fn validate(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    let (compiled, ..) = compile(&s, &headers, &body)?;
    let valid = compiled.iter().all(|c| !c.is_blocked());
    Ok(Json(json!({
        "valid": valid,
        "policies": compiled.iter().map(|c| json!({
            "document": c.document,
            "name": c.name,
            "valid": !c.is_blocked(),
            "findings": findings_json(&c.findings),
            "ir": c.ir.as_ref().map(switchyard_spec::PolicyIr::to_value),
            "spec_hash": c.spec_hash,
        })).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SaveQuery {
    /// Recorded with the version.
    comment: Option<String>,
    /// Turn the policy on although its last dry-run found errors (update).
    #[serde(default)]
    force: bool,
}

/// `POST /api/policies`: save a new policy as version 1 (201).
pub(crate) async fn create(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<SaveQuery>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let caller = auth::authorize(&s, &method, &headers, Role::Admin)?;
    let (compiled, format, text) = compile(&s, &headers, &body)?;
    let name = compiled.first().and_then(|c| c.name.clone());
    let c = one_policy(compiled).inspect_err(|e| announce_refusal(&s, name, &caller, e))?;
    let (Some(ir), Some(spec_hash)) = (c.ir.clone(), c.spec_hash.clone()) else {
        return Err(ApiError::bad_request(
            "policy.invalid",
            "the policy did not compile",
        ));
    };
    let saved = s
        .store
        .create_policy(NewPolicy {
            ir,
            spec_hash,
            source: text,
            format: format.as_str().to_owned(),
            managed_by: "api".into(),
            author: caller.subject.clone(),
            comment: q.comment.unwrap_or_default(),
        })
        .await?;
    let saved = s
        .store
        .set_last_validation(
            &PolicyRef::Id(saved.id),
            validation_record(&c, &caller.subject),
        )
        .await?;
    audit_policy(&s, &caller, "policy.created", &saved).await;
    announce(&s, "version_created", &saved, &caller);
    (s.policies_changed)();
    Ok(policy_response(
        StatusCode::CREATED,
        &saved,
        Some(json!({"findings": findings_json(&c.findings)})),
    ))
}

/// `PUT /api/policies/{id}`: a new version, guarded by `If-Match`.
pub(crate) async fn update(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<SaveQuery>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let caller = auth::authorize(&s, &method, &headers, Role::Admin)?;
    let r = PolicyRef::parse(&id);
    let current = s.store.get_policy(&r).await?;
    not_managed_by_dir(&current)?;
    let expected = if_match(&headers)?;
    let (compiled, format, text) = compile(&s, &headers, &body)?;
    let name = compiled.first().and_then(|c| c.name.clone());
    let c = one_policy(compiled).inspect_err(|e| announce_refusal(&s, name, &caller, e))?;
    let (Some(ir), Some(spec_hash)) = (c.ir.clone(), c.spec_hash.clone()) else {
        return Err(ApiError::bad_request(
            "policy.invalid",
            "the policy did not compile",
        ));
    };
    // Turning the policy on without changing what it does keeps its last
    // dry-run, so the enable gate applies as for POST …/enable.
    let turns_on = ir.enabled && !current.enabled && {
        let mut before = current.ir.clone();
        before.enabled = true;
        before == ir
    };
    let blocked_by = if turns_on {
        dry_run_errors(&current)
    } else {
        0
    };
    if blocked_by > 0 && !q.force {
        return Err(enable_blocked(&current.name, blocked_by));
    }
    let saved = s
        .store
        .update_policy(
            &PolicyRef::Id(current.id),
            expected,
            NewPolicy {
                ir,
                spec_hash,
                source: text,
                format: format.as_str().to_owned(),
                managed_by: current.managed_by.clone(),
                author: caller.subject.clone(),
                comment: q.comment.unwrap_or_default(),
            },
        )
        .await?;
    let saved = s
        .store
        .set_last_validation(
            &PolicyRef::Id(saved.id),
            validation_record(&c, &caller.subject),
        )
        .await?;
    audit_policy(&s, &caller, "policy.updated", &saved).await;
    if blocked_by > 0 {
        audit_policy(&s, &caller, "policy.enabled_forced", &saved).await;
    }
    announce(
        &s,
        if saved.version_int > current.version_int {
            "version_created"
        } else {
            "updated"
        },
        &saved,
        &caller,
    );
    (s.policies_changed)();
    Ok(policy_response(
        StatusCode::OK,
        &saved,
        Some(json!({"findings": findings_json(&c.findings)})),
    ))
}

/// `DELETE /api/policies/{id}`: archive (disabled, hidden, history kept).
pub(crate) async fn archive(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authorize(&s, &method, &headers, Role::Admin)?;
    let r = PolicyRef::parse(&id);
    not_managed_by_dir(&s.store.get_policy(&r).await?)?;
    let archived = s.store.archive_policy(&r).await?;
    audit_policy(&s, &caller, "policy.archived", &archived).await;
    announce(&s, "archived", &archived, &caller);
    (s.policies_changed)();
    Ok(Json(json!({"archived": dto::policy(&archived)})))
}

#[derive(Debug, Deserialize)]
pub(crate) struct EnableQuery {
    #[serde(default)]
    force: bool,
}

/// 409 `policy.enable_blocked`: the last dry-run of `name` found errors.
fn enable_blocked(name: &str, errors: u64) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "policy.enable_blocked",
        format!(
            "the last dry-run of `{name}` reported {errors} error(s); fix them and dry-run again, or enable with ?force=true as an admin"
        ),
    )
}

/// The number of errors the policy's last dry-run reported.
pub(crate) fn dry_run_errors(p: &PolicyRecord) -> u64 {
    p.last_dry_run
        .as_ref()
        .and_then(|d| d.pointer("/summary/errors"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

pub(crate) async fn enable(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<EnableQuery>,
) -> Result<Response, ApiError> {
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
        return Err(enable_blocked(&current.name, errors));
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
    announce(&s, "enabled", &saved, &caller);
    (s.policies_changed)();
    Ok(policy_response(StatusCode::OK, &saved, None))
}

pub(crate) async fn disable(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = auth::authorize(&s, &method, &headers, Role::Operator)?;
    let saved = s.store.set_enabled(&PolicyRef::parse(&id), false).await?;
    audit_policy(&s, &caller, "policy.disabled", &saved).await;
    announce(&s, "disabled", &saved, &caller);
    (s.policies_changed)();
    Ok(policy_response(StatusCode::OK, &saved, None))
}

/// `GET /api/policies/{id}/versions`: every kept version, oldest first.
pub(crate) async fn versions(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    let r = PolicyRef::parse(&id);
    let p = s.store.get_policy(&r).await?;
    let versions = s.store.list_versions(&r).await?;
    Ok(Json(json!({
        "policy": {"id": p.id, "name": p.name, "version_int": p.version_int},
        "versions": versions.iter().map(dto::version_summary).collect::<Vec<_>>(),
    })))
}

/// `GET /api/policies/{id}/versions/{v}`: one version with its document and IR.
pub(crate) async fn version(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path((id, v)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    let v: i64 = v.parse().map_err(|_| {
        ApiError::bad_request("bad_version", format!("`{v}` is not a version number"))
    })?;
    Ok(Json(dto::version(
        &s.store.get_version(&PolicyRef::parse(&id), v).await?,
    )))
}

#[derive(Debug, Deserialize)]
pub(crate) struct DiffQuery {
    from: Option<i64>,
    to: Option<i64>,
}

/// `GET /api/policies/{id}/diff?from=&to=`: IR changes by JSON pointer and
/// both documents (default: the previous version to the current one).
pub(crate) async fn diff(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DiffQuery>,
) -> Result<Json<Value>, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    let r = PolicyRef::parse(&id);
    let current = s.store.get_policy(&r).await?;
    let to = q.to.unwrap_or(current.version_int);
    let from = q.from.unwrap_or((to - 1).max(1));
    let d = s.store.diff_versions(&r, from, to).await?;
    Ok(Json(json!({
        "policy": {"id": current.id, "name": current.name},
        "from": d.from,
        "to": d.to,
        "changes": d.changes,
        "source_from": d.source_from,
        "source_to": d.source_to,
    })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct RollbackQuery {
    to: Option<i64>,
}

/// `POST /api/policies/{id}/rollback?to=N`: a new version whose content is
/// version N's; guarded by `If-Match` like an update.
pub(crate) async fn rollback(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<RollbackQuery>,
) -> Result<Response, ApiError> {
    let caller = auth::authorize(&s, &method, &headers, Role::Admin)?;
    let r = PolicyRef::parse(&id);
    let current = s.store.get_policy(&r).await?;
    not_managed_by_dir(&current)?;
    let expected = if_match(&headers)?;
    let to = q.to.ok_or_else(|| {
        ApiError::bad_request(
            "rollback.to_missing",
            "name the version to return to: ?to=N",
        )
    })?;
    let saved = s
        .store
        .rollback(&PolicyRef::Id(current.id), to, expected, &caller.subject)
        .await?;
    metrics::counter!(switchyard_spec::metric_names::POLICY_ROLLBACKS, "trigger" => "operator")
        .increment(1);
    let detail = json!({"version": saved.version_int, "to": to, "from": current.version_int, "role": caller.role.as_str()});
    audit(
        &s,
        &caller,
        "policy.rolled_back",
        &saved.name,
        &saved.id.to_string(),
        detail,
    )
    .await;
    announce(&s, "rolled_back", &saved, &caller);
    (s.policies_changed)();
    Ok(policy_response(StatusCode::OK, &saved, None))
}

/// `POST /api/policies/{id}/dry-run`: body an optional sample event (JSON
/// envelope or CloudEvents). Runs a fast inventory refresh of the hosts
/// involved, then reports what would happen; stores the transcript as the
/// policy's `last_dry_run`.
pub(crate) async fn dry_run(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authorize(&s, &method, &headers, Role::Operator)?;
    let r = PolicyRef::parse(&id);
    let p = s.store.get_policy(&r).await?;
    let active = ActivePolicy::new(p.id, &p.name, p.version_int, p.ir.clone()).map_err(|e| {
        tracing::error!(policy = %p.name, error = %e, "a stored policy does not compile");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    })?;
    let given = !body.iter().all(u8::is_ascii_whitespace);
    let event = if given {
        switchyard_spec::event::parse(&body, switchyard_spec::event::Limits::default()).map_err(
            |e| {
                ApiError::bad_request(
                    "event.invalid",
                    format!("the sample event: {e} ({})", e.reason()),
                )
            },
        )?
    } else {
        dryrun::sample_event(&active)
    };
    let engine = s.engine.get();
    let out = dryrun::dry_run(
        &active,
        DryRunInput {
            fleet: &s.fleet,
            store: &s.store,
            event,
            given,
            queues: engine.map(|e| e.queue_depths()).unwrap_or_default(),
            max_event_age: engine.map_or(
                switchyard_engine::EngineConfig::default().max_event_age,
                |e| e.config().max_event_age,
            ),
        },
    )
    .await;
    let transcript_id = s
        .store
        .save_transcript(
            &PolicyRef::Id(p.id),
            out.transcript.clone(),
            out.summary.clone(),
            chrono::Utc::now(),
        )
        .await?;
    audit(
        &s,
        &caller,
        "policy.dry_run",
        &p.name,
        &p.id.to_string(),
        json!({"version": p.version_int, "transcript_id": transcript_id, "summary": out.summary}),
    )
    .await;
    let mut transcript = out.transcript;
    transcript["transcript_id"] = json!(transcript_id);
    Ok(Json(transcript))
}

/// `POST /api/policies/{id}/inverse`: the inverse policy's document
/// (disabled, named `<name>-inverse`, each action's verb replaced by the
/// inverse its driver declares, actions in reverse order) with the JSON
/// pointers an operator must fill in (`needs_input`) — its triggers, at least.
/// Nothing is saved.
pub(crate) async fn inverse(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Operator)?;
    let p = s.store.get_policy(&PolicyRef::parse(&id)).await?;
    let format = match p.format.as_str() {
        "json" => Format::Json,
        "toml" => Format::Toml,
        _ => Format::Yaml,
    };
    let internal = |what: String| {
        tracing::error!(policy = %p.name, "{what}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    };
    let docs = policy::load(&p.source, format)
        .map_err(|f| internal(format!("stored source does not parse: {}", f.message)))?;
    let mut doc = docs
        .into_iter()
        .find(|d| d.get("name").and_then(Value::as_str) == Some(p.name.as_str()))
        .ok_or_else(|| internal("stored source lacks the policy".into()))?;
    let mut needs_input = Vec::new();
    let mut inverse_actions = Vec::new();
    for (i, a) in p.ir.actions.iter().enumerate() {
        let inverse = s
            .fleet
            .registry()
            .drivers()
            .filter(|d| a.driver.as_deref().is_none_or(|n| n == d.manifest().name))
            .find_map(|d| {
                let verb = d.manifest().capability(&a.capability)?.verb(&a.verb)?;
                verb.inverse.clone().map(|inv| (d, inv))
            });
        let Some((driver, verb)) = inverse else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "policy.no_inverse",
                format!(
                    "action {i} ({}.{}) has no inverse: its driver declares none",
                    a.capability, a.verb
                ),
            ));
        };
        let mut action = doc
            .pointer(&format!("/actions/{i}"))
            .cloned()
            .unwrap_or_else(|| json!({}));
        action["verb"] = verb.clone().into();
        let fits = driver
            .params_validator(&a.capability, &verb)
            .is_none_or(|v| v.is_valid(&a.params));
        if !fits {
            if let Some(m) = action.as_object_mut() {
                m.remove("params");
            }
            needs_input.push(format!("/actions/{}/params", p.ir.actions.len() - 1 - i));
        }
        inverse_actions.push(action);
    }
    inverse_actions.reverse();
    doc["actions"] = Value::Array(inverse_actions);
    doc["name"] = format!("{}-inverse", p.name).into();
    doc["enabled"] = false.into();
    if let Some(m) = doc.as_object_mut() {
        m.remove("conditions");
        m.remove("description");
    }
    doc["description"] = format!(
        "Undoes `{}` (generated from version {}).",
        p.name, p.version_int
    )
    .into();
    for i in 0..p.ir.trigger_group.triggers.len() {
        needs_input.insert(i, format!("/trigger_group/triggers/{i}"));
    }
    let check = policy::validate_value(&doc, Some(s.fleet.registry()));
    Ok(Json(json!({
        "policy": {"id": p.id, "name": p.name, "version_int": p.version_int},
        "spec": doc,
        "needs_input": needs_input,
        "findings": findings_json(&check.findings),
    })))
}
