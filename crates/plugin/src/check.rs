//! `switchyard driver check`: conformance of a driver folder — the manifest,
//! the adapter's initialize and health, and every verb's examples through
//! dry_run (and, on request, execute).

use crate::manifest::{HOST_TARGET_TYPE, Manifest};
use crate::protocol::{
    DryRunParams, ExecuteParams, ExecuteResult, HealthParams, HealthResult, Target,
};
use crate::supervisor::{HostSpec, Supervisor, SupervisorOptions};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

const DRY_RUN_SCHEMA: &str = include_str!("../../../plugin-schemas/dry-run-result.schema.json");

/// The dry-run result schema shipped in plugin-schemas/ (a test keeps it
/// valid); `Err` says why it is not.
fn dry_run_validator() -> Result<&'static jsonschema::Validator, String> {
    static V: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    V.get_or_init(|| {
        let schema: Value = serde_json::from_str(DRY_RUN_SCHEMA)
            .map_err(|e| format!("the bundled dry-run result schema is not JSON: {e}"))?;
        jsonschema::validator_for(&schema)
            .map_err(|e| format!("the bundled dry-run result schema is invalid: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub name: String,
    /// `pass`, `fail`, `warn` (does not fail the driver) or `skip`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Check {
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: "pass",
            detail: detail.into(),
        }
    }
    fn fail(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: "fail",
            detail: detail.into(),
        }
    }
    fn other(status: &'static str, name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status,
            detail: detail.into(),
        }
    }
}

/// Options for a check run.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Also run `execute` on every example.
    pub execute: bool,
    /// `[drivers.config.<name>]` to initialize with.
    pub driver_config: Value,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Folders searched for the adapter after the driver folder (then PATH).
    pub search: Vec<std::path::PathBuf>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            execute: false,
            driver_config: json!({}),
            timeout: Duration::from_secs(30),
            search: Vec::new(),
        }
    }
}

/// The host a check runs against when an example names none.
fn local_host() -> HostSpec {
    HostSpec {
        id: "localhost".into(),
        address: Some("127.0.0.1".into()),
        ..HostSpec::default()
    }
}

fn example_host(v: Option<&Value>) -> Result<HostSpec, String> {
    let Some(v) = v else {
        return Ok(local_host());
    };
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .ok_or("an example host needs an `id`")?;
    let labels = match v.get("labels") {
        Some(l) => {
            serde_json::from_value(l.clone()).map_err(|e| format!("example host labels: {e}"))?
        }
        None => Default::default(),
    };
    Ok(HostSpec {
        id: id.into(),
        address: v.get("address").and_then(Value::as_str).map(str::to_owned),
        labels,
        config: v.get("config").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Check the driver in `dir`. The adapter is started and stopped here.
pub async fn check_driver(dir: &Path, options: &CheckOptions) -> Vec<Check> {
    let mut out = Vec::new();
    let loaded = match Manifest::load(dir) {
        Ok(m) => m,
        Err(e) => {
            out.push(Check::fail("manifest", e.to_string()));
            return out;
        }
    };
    let m = &loaded.manifest;
    let verbs: usize = m.capabilities.iter().map(|c| c.verbs.len()).sum();
    out.push(Check::pass(
        "manifest",
        format!(
            "{} {}: {} capabilities, {verbs} verbs",
            m.name,
            m.version,
            m.capabilities.len()
        ),
    ));
    let mut registry = crate::Registry::default();
    if let Err(e) = registry.add(loaded.clone()) {
        out.push(Check::fail("registry", e.to_string()));
        return out;
    }
    let spec = match registry.adapter_spec(&m.name, options.driver_config.clone(), &options.search)
    {
        Ok(spec) => spec,
        Err(problems) => {
            out.push(Check::fail("driver config", problems.join("; ")));
            return out;
        }
    };
    let sup = Supervisor::new(SupervisorOptions::default(), vec![spec]);
    let local = local_host();
    let health = sup
        .call::<_, HealthResult>(&m.name, &local, "health", None, options.timeout, |host| {
            HealthParams { host }
        })
        .await;
    match health.result {
        Ok(h) => out.push(Check::pass(
            "initialize + health",
            format!(
                "ok: {}{}",
                h.ok,
                h.detail.map(|d| format!(" ({d})")).unwrap_or_default()
            ),
        )),
        Err(e) => {
            out.push(Check::fail("initialize + health", e.to_string()));
            sup.shutdown().await;
            return out;
        }
    }
    for cap in &m.capabilities {
        for verb in &cap.verbs {
            let label = format!("{}/{}", cap.name, verb.name);
            if verb.examples.is_empty() {
                out.push(Check::other(
                    "warn",
                    format!("{label} examples"),
                    "no examples: nothing to check",
                ));
                continue;
            }
            for (i, ex) in verb.examples.iter().enumerate() {
                let name = match &ex.description {
                    Some(d) => format!("{label} example {} ({d})", i + 1),
                    None => format!("{label} example {}", i + 1),
                };
                let host = match example_host(ex.host.as_ref()) {
                    Ok(h) => h,
                    Err(e) => {
                        out.push(Check::fail(name, e));
                        continue;
                    }
                };
                let target = match &ex.target {
                    Some(t) => Target {
                        target_type: t.target_type.clone(),
                        id: t.id.clone(),
                    },
                    None if cap.target_type == HOST_TARGET_TYPE => Target {
                        target_type: HOST_TARGET_TYPE.into(),
                        id: host.id.clone(),
                    },
                    None => {
                        out.push(Check::fail(
                            name,
                            format!("a `{}` example needs a `target`", cap.target_type),
                        ));
                        continue;
                    }
                };
                let run_id = format!("check-{}-{}-{i}", cap.name, verb.name);
                if verb.dry_run {
                    let raw = sup
                        .call::<_, Value>(
                            &m.name,
                            &host,
                            "dry_run",
                            Some(run_id.clone()),
                            options.timeout,
                            |h| DryRunParams {
                                run_id: run_id.clone(),
                                host: h,
                                target: target.clone(),
                                capability: cap.name.clone(),
                                verb: verb.name.clone(),
                                params: ex.params.clone(),
                            },
                        )
                        .await;
                    out.push(match raw.result {
                        Err(e) => Check::fail(format!("dry_run {name}"), e.to_string()),
                        Ok(v) => {
                            let errors: Vec<String> = match dry_run_validator() {
                                Ok(schema) => schema
                                    .iter_errors(&v)
                                    .map(|e| format!("{} at {}", e, e.instance_path().as_str()))
                                    .collect(),
                                Err(e) => vec![e],
                            };
                            if errors.is_empty() {
                                let ok = v["ok"].as_bool().unwrap_or(false);
                                let plan = v["plan"]
                                    .as_array()
                                    .map(|p| {
                                        p.iter()
                                            .filter_map(Value::as_str)
                                            .collect::<Vec<_>>()
                                            .join("; ")
                                    })
                                    .unwrap_or_default();
                                Check::pass(
                                    format!("dry_run {name}"),
                                    format!(
                                        "ok: {ok}, severity: {}{}",
                                        v["severity"].as_str().unwrap_or("?"),
                                        if plan.is_empty() {
                                            String::new()
                                        } else {
                                            format!(", plan: {plan}")
                                        }
                                    ),
                                )
                            } else {
                                Check::fail(
                                    format!("dry_run {name}"),
                                    format!(
                                        "result does not match dry-run-result.schema.json: {}",
                                        errors.join("; ")
                                    ),
                                )
                            }
                        }
                    });
                } else {
                    out.push(Check::other(
                        "skip",
                        format!("dry_run {name}"),
                        "the verb declares dry_run: false",
                    ));
                }
                if options.execute {
                    let r = sup
                        .call::<_, ExecuteResult>(
                            &m.name,
                            &host,
                            "execute",
                            Some(run_id.clone()),
                            options.timeout,
                            |h| ExecuteParams {
                                run_id: run_id.clone(),
                                host: h,
                                target: target.clone(),
                                capability: cap.name.clone(),
                                verb: verb.name.clone(),
                                params: ex.params.clone(),
                                idempotency_key: run_id.clone(),
                                deadline_ms: options.timeout.as_millis() as u64,
                                deadline_at_ms: None,
                            },
                        )
                        .await;
                    out.push(match r.result {
                        Ok(r) if r.ok => Check::pass(format!("execute {name}"), "ok: true"),
                        Ok(r) => Check::fail(
                            format!("execute {name}"),
                            format!("ok: false: {}", r.reason.unwrap_or_default()),
                        ),
                        Err(e) => Check::fail(format!("execute {name}"), e.to_string()),
                    });
                }
            }
        }
    }
    sup.shutdown().await;
    out
}

/// True when no check failed.
pub fn all_passed(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.status != "fail")
}
