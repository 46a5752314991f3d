//! Policy files as one bundle (a directory): every document of every file is
//! validated against the spec and the installed drivers; any blocker refuses
//! the whole bundle, reported per file. `serve` applies its `[policies] dir`
//! this way, `POST /api/policies/apply` (and `switchyard policy apply`) too.

use crate::{ApiError, AppState, PolicyNotice, Role, auth, dto, record_audit};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Json;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_spec::Severity;
use switchyard_spec::catalog::DriverCatalog;
use switchyard_spec::finding::{BlockerClass, Finding};
use switchyard_spec::policy::{self, Format};
use switchyard_store::{BundleAction, BundleStep, NewPolicy, PolicyRef, RestoredStep, Store};
use tokio::sync::broadcast;

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
    /// The file a policy of the bundle came from.
    pub fn file_of(&self, name: &str) -> Option<&str> {
        self.policies
            .iter()
            .find(|(_, p)| p.ir.name == name)
            .map(|(f, _)| f.as_str())
    }

    pub fn blocked(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.finding.severity == Severity::Blocker)
    }
}

/// Validation results by file, so a directory applied again validates only
/// the files that changed (installed drivers do not change while running).
#[derive(Debug, Default)]
pub struct ValidationCache(std::collections::HashMap<String, (String, Vec<policy::Compiled>)>);

/// Validate every document of every file; `author` and `comment` go with
/// each new version.
pub fn compile(files: &[File], catalog: &dyn DriverCatalog, author: &str) -> Compiled {
    compile_cached(files, catalog, author, &mut ValidationCache::default())
}

/// [`compile`], reusing `cache` for files whose content it has seen.
pub fn compile_cached(
    files: &[File],
    catalog: &dyn DriverCatalog,
    author: &str,
    cache: &mut ValidationCache,
) -> Compiled {
    cache
        .0
        .retain(|path, _| files.iter().any(|f| &f.path == path));
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
        let validated = match cache.0.get(&file.path) {
            Some((content, v)) if *content == file.content => v.clone(),
            _ => {
                let v = policy::validate_text(&file.content, format, Some(catalog));
                cache
                    .0
                    .insert(file.path.clone(), (file.content.clone(), v.clone()));
                v
            }
        };
        for c in validated {
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

/// Files a folder of policies never counts as policies: switchyard's
/// configuration and driver manifests, often kept in the same tree.
pub const NOT_POLICIES: &[&str] = &["switchyard.toml", "plugin.yaml"];

/// The policy files of a folder and its subfolders, sorted by path: `.yaml`,
/// `.yml`, `.json`, `.toml`, symbolic links followed (each folder once);
/// hidden files and folders (`.name`: editors' and atomic writers'
/// temporaries, `.git`) and [`NOT_POLICIES`] are not policies. `serve`'s
/// policy directory, `policy apply DIR` and `policy validate DIR` all read a
/// folder this way.
pub fn policy_paths(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    fn walk(
        dir: &std::path::Path,
        seen: &mut std::collections::HashSet<std::path::PathBuf>,
        out: &mut Vec<std::path::PathBuf>,
    ) -> std::io::Result<()> {
        if !seen.insert(dir.canonicalize()?) {
            return Ok(()); // a link back to a folder already read
        }
        let mut entries: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                !p.file_name().is_some_and(|n| {
                    n.to_string_lossy().starts_with('.') || NOT_POLICIES.iter().any(|x| n == *x)
                })
            })
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, seen, out)?;
            } else if p.is_file() && Format::from_path(&p).is_some() {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, &mut std::collections::HashSet::new(), &mut out)?;
    Ok(out)
}

/// Read the policy files of a folder and its subfolders: [`policy_paths`].
pub fn read_dir(dir: &std::path::Path) -> std::io::Result<Vec<File>> {
    policy_paths(dir)?
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

/// A bundle to apply, and who applies it.
#[derive(Debug, Clone, Copy)]
pub struct ApplyRequest<'a> {
    pub files: &'a [File],
    /// The token subject, or `dir` for `serve`'s watched directory.
    pub by: &'a str,
    /// Ties the audit events of this bundle together.
    pub correlation_id: &'a str,
    /// Disable live directory policies the bundle no longer holds.
    pub prune: bool,
    /// Plan only: the exact steps, nothing kept.
    pub dry_run: bool,
    /// Validation results kept between applies of the same directory.
    pub cache: Option<&'a std::sync::Mutex<ValidationCache>>,
}

/// What became of a bundle.
#[derive(Debug)]
pub enum Outcome {
    /// Blockers: nothing applied; every finding with its file.
    Refused(Compiled),
    /// Applied (with `dry_run`: planned) and active.
    Applied {
        steps: Vec<BundleStep>,
        compiled: Compiled,
    },
    /// Validated, then a later step failed (a store error, an enable the
    /// last dry-run refuses): every policy of the bundle is back where it
    /// stood, and the history of each restored one says why.
    RolledBack {
        reason: String,
        restored: Vec<RestoredStep>,
        compiled: Compiled,
    },
}

/// What applying a bundle needs: the store, the installed drivers to check
/// it against, and where its changes are announced.
#[derive(Clone, Copy)]
pub struct BundleContext<'a> {
    pub store: &'a Store,
    pub catalog: &'a (dyn DriverCatalog + Sync),
    pub notices: &'a broadcast::Sender<PolicyNotice>,
}

impl std::fmt::Debug for BundleContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleContext").finish_non_exhaustive()
    }
}

/// Validate and apply a bundle: blockers refuse it whole; otherwise it is
/// applied in one transaction, then activated (each new version's validation
/// record, the enable gate for policies the bundle turns on). When
/// activation fails, the bundle is rolled back. Every change is audited and
/// announced (`version_created`, `updated`, `enabled`, `disabled`,
/// `validation_failed`, `rolled_back`).
///
/// `Err` is a refusal from the store that changed nothing (a name or
/// behaviour another policy holds, a policy another source manages), or a
/// store failure during the rollback itself.
pub async fn apply_files(
    l: BundleContext<'_>,
    req: ApplyRequest<'_>,
) -> Result<Outcome, switchyard_store::Error> {
    let compiled = match req.cache {
        Some(cache) => compile_cached(
            req.files,
            l.catalog,
            req.by,
            &mut cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ),
        None => compile(req.files, l.catalog, req.by),
    };
    let result = if compiled.blocked() { "blocked" } else { "ok" };
    metrics::counter!(switchyard_spec::metric_names::POLICY_VALIDATIONS, "result" => result)
        .increment(1);
    if compiled.blocked() {
        let e = refused(&compiled);
        let _ = l.notices.send(PolicyNotice::general(
            "validation_failed",
            req.by,
            json!({"code": e.code, "message": e.message, "findings": e.findings}),
        ));
        return Ok(Outcome::Refused(compiled));
    }
    let bundle: Vec<NewPolicy> = compiled.policies.iter().map(|(_, p)| p.clone()).collect();
    let names: Vec<String> = bundle.iter().map(|p| p.ir.name.clone()).collect();
    let steps = match l
        .store
        .apply_bundle(bundle, MANAGED_BY_DIR, req.prune, req.dry_run)
        .await
    {
        Ok(steps) => steps,
        Err(switchyard_store::Error::Db(e)) => {
            // The transaction is undone: nothing of the bundle was kept.
            tracing::error!(error = %e, "applying a policy bundle failed in the store; nothing applied");
            let reason = format!("the store failed while applying the bundle: {e}");
            rolled_back(l, req, &reason, &[], Some(&names)).await;
            return Ok(Outcome::RolledBack {
                reason,
                restored: Vec::new(),
                compiled,
            });
        }
        Err(e) => return Err(e),
    };
    if req.dry_run {
        return Ok(Outcome::Applied { steps, compiled });
    }
    if let Err(reason) = activate(l.store, &steps, &compiled, req.by).await {
        tracing::warn!(%reason, "a policy bundle is rolled back");
        let restored = l.store.rollback_bundle(&steps, &reason, req.by).await.inspect_err(|e| {
            tracing::error!(error = %e, %reason, "a policy bundle could not be rolled back; its policies stay as applied");
        })?;
        rolled_back(l, req, &reason, &restored, None).await;
        return Ok(Outcome::RolledBack {
            reason,
            restored,
            compiled,
        });
    }
    for step in &steps {
        let Some(event) = step_event(step) else {
            continue;
        };
        let p = &step.policy;
        record_audit(
            l.store,
            req.by,
            &format!("policy.{}", step.action.as_str()),
            &p.name,
            req.correlation_id,
            json!({"version": p.version_int, "managed_by": MANAGED_BY_DIR, "enabled": p.enabled}),
        )
        .await;
        let _ = l.notices.send(PolicyNotice::of(event, p, req.by, None));
    }
    Ok(Outcome::Applied { steps, compiled })
}

/// After the bundle's transaction: the enable gate for each policy the
/// bundle turns on (refused while its last dry-run reported errors, as
/// `POST /enable` is), then each new version's validation record.
async fn activate(
    store: &Store,
    steps: &[BundleStep],
    compiled: &Compiled,
    by: &str,
) -> Result<(), String> {
    for step in steps {
        let turned_on = step.policy.enabled && step.previous.is_some_and(|p| !p.enabled);
        let errors = crate::policies::dry_run_errors(&step.policy);
        if turned_on && errors > 0 {
            return Err(format!(
                "enabling `{}` is refused: its last dry-run reported {errors} error(s)",
                step.policy.name
            ));
        }
    }
    for step in steps
        .iter()
        .filter(|s| matches!(s.action, BundleAction::Created | BundleAction::Updated))
    {
        let file = compiled.file_of(&step.policy.name);
        let of_file: Vec<&FileFinding> = compiled
            .findings
            .iter()
            .filter(|f| Some(f.file.as_str()) == file)
            .collect();
        let warnings = of_file
            .iter()
            .filter(|f| f.finding.severity == Severity::Warn)
            .count();
        let record = crate::policies::validation_json(
            by,
            warnings,
            Value::Array(of_file.iter().map(|f| f.to_json()).collect()),
        );
        store
            .set_last_validation(&PolicyRef::Id(step.policy.id), record)
            .await
            .map_err(|e| {
                tracing::error!(policy = %step.policy.name, error = %e, "recording a validation failed");
                format!("the store failed while activating `{}`: {e}", step.policy.name)
            })?;
    }
    Ok(())
}

/// Audit, count and announce a rolled-back bundle: one notice per restored
/// policy, or one for the bundle when the store undid it whole.
async fn rolled_back(
    l: BundleContext<'_>,
    req: ApplyRequest<'_>,
    reason: &str,
    restored: &[RestoredStep],
    undone: Option<&[String]>,
) {
    metrics::counter!(switchyard_spec::metric_names::POLICY_ROLLBACKS, "trigger" => "automatic")
        .increment(1);
    for r in restored {
        record_audit(
            l.store,
            req.by,
            "policy.rolled_back",
            &r.policy.name,
            req.correlation_id,
            json!({"reason": reason, "action": r.action, "version": r.policy.version_int, "enabled": r.policy.enabled}),
        )
        .await;
        let detail = json!({"reason": reason, "action": r.action});
        let _ = l.notices.send(PolicyNotice::of(
            "rolled_back",
            &r.policy,
            req.by,
            Some(detail),
        ));
    }
    if let Some(names) = undone {
        record_audit(
            l.store,
            req.by,
            "policy.bundle_rolled_back",
            "bundle",
            req.correlation_id,
            json!({"reason": reason, "policies": names}),
        )
        .await;
        let _ = l.notices.send(PolicyNotice::general(
            "rolled_back",
            req.by,
            json!({"reason": reason, "policies": names}),
        ));
    }
}

/// The notice for a step that changed something: a new version, or only
/// `enabled` (or another field that makes no version) changed.
pub fn step_event(step: &BundleStep) -> Option<&'static str> {
    let version_changed = step
        .previous
        .is_none_or(|p| p.version_int != step.policy.version_int);
    match step.action {
        BundleAction::Unchanged => None,
        BundleAction::Disabled => Some("disabled"),
        BundleAction::Created => Some("version_created"),
        BundleAction::Updated if version_changed => Some("version_created"),
        BundleAction::Updated => Some(match step.previous {
            Some(p) if p.enabled != step.policy.enabled && step.policy.enabled => "enabled",
            Some(p) if p.enabled != step.policy.enabled => "disabled",
            _ => "updated",
        }),
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
    let correlation_id = uuid::Uuid::now_v7().to_string();
    let outcome = apply_files(
        BundleContext {
            store: &s.store,
            catalog: s.fleet.registry(),
            notices: &s.policy_notices,
        },
        ApplyRequest {
            files: &body.files,
            by: &caller.subject,
            correlation_id: &correlation_id,
            prune: body.prune,
            dry_run: body.dry_run,
            cache: None,
        },
    )
    .await?;
    let (steps, compiled) = match outcome {
        Outcome::Refused(c) => return Err(refused(&c)),
        Outcome::RolledBack {
            reason, restored, ..
        } => {
            if restored.is_empty() {
                // The store undid the transaction itself; details are logged.
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store.unavailable",
                    "the store failed while applying the bundle; nothing was applied",
                ));
            }
            (s.policies_changed)();
            let what: Vec<String> = restored.iter().map(restored_text).collect();
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "bundle.rolled_back",
                format!(
                    "the bundle was applied and rolled back: {reason}; {}",
                    what.join(", ")
                ),
            ));
        }
        Outcome::Applied { steps, compiled } => (steps, compiled),
    };
    if !body.dry_run {
        (s.policies_changed)();
    }
    Ok(Json(json!({
        "applied": !body.dry_run,
        "steps": steps.iter().map(|st| step_json(st, compiled.file_of(&st.policy.name))).collect::<Vec<_>>(),
        "warnings": compiled.findings.iter().map(FileFinding::to_json).collect::<Vec<_>>(),
        "policies": steps.iter().map(|st| dto::policy(&st.policy)).collect::<Vec<_>>(),
    })))
}

/// What a rollback did to one policy, in words.
pub fn restored_text(r: &RestoredStep) -> String {
    let p = &r.policy;
    match r.action {
        "restored" => format!("`{}` restored as version {}", p.name, p.version_int),
        "archived" => format!("`{}` archived", p.name),
        "reenabled" => format!("`{}` enabled again", p.name),
        _ => format!("`{}` disabled again", p.name),
    }
}

/// `GET /api/directory`: `serve`'s policy directory and its last apply.
pub(crate) async fn directory(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::authorize(&s, &method, &headers, Role::Viewer)?;
    let status = s
        .directory
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    status.map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "directory.none",
            "no policy directory is configured ([policies] dir)",
        )
    })
}
