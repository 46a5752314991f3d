//! Policy files as one bundle (a directory): every document of every file is
//! validated against the spec and the installed drivers; any blocker refuses
//! the whole bundle, reported per file. `serve` applies its `[policies] dir`
//! this way, `POST /api/policies/apply` (and `switchyard policy apply`) too.

use crate::{ApiError, AppState, Role, audit, auth, dto};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Json;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_spec::Severity;
use switchyard_spec::catalog::DriverCatalog;
use switchyard_spec::finding::{BlockerClass, Finding};
use switchyard_spec::policy::{self, Format};
use switchyard_store::{BundleAction, BundleStep, NewPolicy};

/// Who manages policies that come from files.
pub const MANAGED_BY_DIR: &str = "dir";

/// One policy file.
#[derive(Debug, Clone, Deserialize)]
pub struct File {
    /// Its path (or name); the extension gives the format.
    pub path: String,
    pub content: String,
}

/// A finding in a file of a bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct FileFinding {
    pub file: String,
    pub document: usize,
    pub finding: Finding,
}

impl FileFinding {
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(&self.finding).unwrap_or(Value::Null);
        v["file"] = self.file.clone().into();
        v["document"] = self.document.into();
        v
    }
}

impl std::fmt::Display for FileFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.finding.path.is_empty() {
            "/"
        } else {
            &self.finding.path
        };
        write!(
            f,
            "{}: {} {} at {}: {}",
            self.file, self.finding.severity, self.finding.code, path, self.finding.message
        )
    }
}

/// A validated bundle: the policies to apply, and every finding (warnings
/// included). `blocked` when any finding is a blocker: nothing may be applied.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub policies: Vec<(String, NewPolicy)>,
    pub findings: Vec<FileFinding>,
}

impl Compiled {
    pub fn blocked(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.finding.severity == Severity::Blocker)
    }
}

/// Validate every document of every file; `author` and `comment` go with
/// each new version.
pub fn compile(files: &[File], catalog: &dyn DriverCatalog, author: &str) -> Compiled {
    let mut policies = Vec::new();
    let mut findings = Vec::new();
    let mut seen: std::collections::BTreeMap<String, String> = Default::default();
    for file in files {
        let Some(format) = Format::from_path(std::path::Path::new(&file.path)) else {
            findings.push(FileFinding {
                file: file.path.clone(),
                document: 0,
                finding: Finding::blocker(
                    "parse.syntax",
                    "",
                    "not a policy file: use .yaml, .yml, .json or .toml",
                ),
            });
            continue;
        };
        for c in policy::validate_text(&file.content, format, Some(catalog)) {
            for f in &c.findings {
                findings.push(FileFinding {
                    file: file.path.clone(),
                    document: c.document,
                    finding: f.clone(),
                });
            }
            let (Some(ir), Some(hash)) = (c.ir, c.spec_hash) else {
                continue;
            };
            if let Some(other) = seen.insert(ir.name.clone(), file.path.clone()) {
                findings.push(FileFinding {
                    file: file.path.clone(),
                    document: c.document,
                    finding: Finding::blocker(
                        "name.invalid",
                        "/name",
                        format!("policy `{}` is also defined in {other}", ir.name),
                    ),
                });
                continue;
            }
            policies.push((
                file.path.clone(),
                NewPolicy {
                    ir,
                    spec_hash: hash,
                    source: file.content.clone(),
                    format: format.as_str().to_owned(),
                    managed_by: MANAGED_BY_DIR.into(),
                    author: author.to_owned(),
                    comment: format!("applied from {}", file.path),
                },
            ));
        }
    }
    Compiled { policies, findings }
}

/// Read the policy files of a directory (not recursive), sorted by name.
pub fn read_dir(dir: &std::path::Path) -> std::io::Result<Vec<File>> {
    let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && Format::from_path(p).is_some())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            Ok(File {
                content: std::fs::read_to_string(&p)?,
                path: p.display().to_string(),
            })
        })
        .collect()
}

/// The error for a blocked bundle: 422 when every blocker is a driver
/// mismatch, else 400; every finding with its file.
pub fn refused(c: &Compiled) -> ApiError {
    let blockers: Vec<&FileFinding> = c
        .findings
        .iter()
        .filter(|f| f.finding.severity == Severity::Blocker)
        .collect();
    let drivers_only = blockers
        .iter()
        .all(|f| f.finding.blocker_class() == Some(BlockerClass::Drivers));
    let (status, code) = if drivers_only {
        (StatusCode::UNPROCESSABLE_ENTITY, "bundle.driver_mismatch")
    } else {
        (StatusCode::BAD_REQUEST, "bundle.invalid")
    };
    let first = blockers
        .first()
        .map(|f| format!(": {f}"))
        .unwrap_or_default();
    ApiError::new(
        status,
        code,
        format!(
            "the bundle has {} blocker(s); nothing applied{first}",
            blockers.len()
        ),
    )
    .with_findings(Value::Array(
        c.findings.iter().map(FileFinding::to_json).collect(),
    ))
}

/// One applied step as JSON, with the file it came from.
pub fn step_json(step: &BundleStep, file: Option<&str>) -> Value {
    json!({
        "action": step.action.as_str(),
        "name": step.policy.name,
        "id": step.policy.id,
        "version_int": step.policy.version_int,
        "enabled": step.policy.enabled,
        "file": file,
    })
}

/// The notice event for a step that changed something.
pub fn step_event(action: BundleAction) -> Option<&'static str> {
    match action {
        BundleAction::Created | BundleAction::Updated => Some("version_created"),
        BundleAction::Disabled => Some("disabled"),
        BundleAction::Unchanged => None,
    }
}

/// `POST /api/policies/apply` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplyBody {
    files: Vec<File>,
    #[serde(default)]
    prune: bool,
    #[serde(default)]
    dry_run: bool,
}

/// `POST /api/policies/apply`: a bundle of policy files, applied in one
/// transaction as `managed_by: dir` (or planned, with `dry_run`).
pub(crate) async fn apply(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let caller = auth::authorize(&s, &method, &headers, Role::Admin)?;
    let body: ApplyBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "body.invalid",
            format!("the body must be {{\"files\": [{{\"path\", \"content\"}}], \"prune\"?, \"dry_run\"?}}: {e}"),
        )
    })?;
    let compiled = compile(&body.files, s.fleet.registry(), &caller.subject);
    let result = if compiled.blocked() { "blocked" } else { "ok" };
    metrics::counter!(switchyard_spec::metric_names::POLICY_VALIDATIONS, "result" => result)
        .increment(1);
    if compiled.blocked() {
        let e = refused(&compiled);
        let _ = s.policy_notices.send(crate::PolicyNotice {
            event: "validation_failed",
            policy_id: None,
            name: None,
            version: None,
            enabled: None,
            by: caller.subject.clone(),
            at: chrono::Utc::now(),
            detail: Some(json!({"code": e.code, "message": e.message, "findings": e.findings})),
        });
        return Err(e);
    }
    let files: Vec<(String, String)> = compiled
        .policies
        .iter()
        .map(|(f, p)| (p.ir.name.clone(), f.clone()))
        .collect();
    let steps = s
        .store
        .apply_bundle(
            compiled.policies.into_iter().map(|(_, p)| p).collect(),
            MANAGED_BY_DIR,
            body.prune,
            body.dry_run,
        )
        .await?;
    let file_of = |name: &str| {
        files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f.as_str())
    };
    if !body.dry_run {
        for step in &steps {
            if let Some(event) = step_event(step.action) {
                let p = &step.policy;
                let detail =
                    json!({"version": p.version_int, "role": caller.role.as_str(), "bundle": true});
                audit(
                    &s,
                    &caller,
                    &format!("policy.{}", step.action.as_str()),
                    &p.name,
                    &p.id.to_string(),
                    detail,
                )
                .await;
                let _ =
                    s.policy_notices
                        .send(crate::PolicyNotice::of(event, p, &caller.subject, None));
            }
        }
        (s.policies_changed)();
    }
    Ok(Json(json!({
        "applied": !body.dry_run,
        "steps": steps.iter().map(|st| step_json(st, file_of(&st.policy.name))).collect::<Vec<_>>(),
        "warnings": compiled.findings.iter().map(FileFinding::to_json).collect::<Vec<_>>(),
        "policies": steps.iter().map(|st| dto::policy(&st.policy)).collect::<Vec<_>>(),
    })))
}
