//! The API's operations, as one table the router is built from and the
//! OpenAPI 3.1 document (`GET /api/openapi.json`) is generated from: a route
//! cannot exist without its description. The response schemas below are
//! checked against real responses by the API tests and by schemathesis.

use crate::Role;
use axum::http::Method;
use serde_json::{Map, Value, json};

mod schemas;
use schemas::schemas;

/// How a request body is described.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    None,
    /// A policy document: JSON, YAML or TOML by `Content-Type`.
    Policy,
    /// An event envelope (or CloudEvents JSON); `optional` for dry-runs.
    Event {
        optional: bool,
    },
    /// An Alertmanager webhook.
    Alertmanager,
    /// `{"params": {…}}`, optional.
    Undo,
    /// `{"files": [{"path", "content"}], "prune"?, "dry_run"?}`.
    Bundle,
}

/// A query or header parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Param {
    pub name: &'static str,
    pub kind: &'static str,
    pub about: &'static str,
    pub required: bool,
}

const fn q(name: &'static str, kind: &'static str, about: &'static str) -> Param {
    Param {
        name,
        kind,
        about,
        required: false,
    }
}

const fn required(name: &'static str, kind: &'static str, about: &'static str) -> Param {
    Param {
        name,
        kind,
        about,
        required: true,
    }
}

/// One operation.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    pub method: Method,
    pub path: &'static str,
    pub id: &'static str,
    pub summary: &'static str,
    /// `None`: open to anyone.
    pub role: Option<Role>,
    pub query: &'static [Param],
    pub if_match: bool,
    pub body: Body,
    /// Status code → schema name in `components/schemas` (`""`: no JSON body;
    /// `text` and `sse` name the non-JSON media types).
    pub responses: &'static [(u16, &'static str)],
}

/// The error body's schema name.
const E: &str = "Error";

const RUN_FILTERS: &[Param] = &[
    q("policy", "string", "policy name or UUID"),
    q("host", "string", "host id"),
    q("target", "string", "target id"),
    q("status", "status", "run status"),
    q("event", "string", "event id"),
    q("since", "date-time", "queued at or after (RFC 3339)"),
    q("until", "date-time", "queued before (RFC 3339)"),
    q("cursor", "cursor", "next_cursor of the previous page"),
    q("limit", "limit", "runs per page, 1–1000 (default 50)"),
];

fn op(
    method: Method,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    role: Option<Role>,
    responses: &'static [(u16, &'static str)],
) -> Op {
    Op {
        method,
        path,
        id,
        summary,
        role,
        query: &[],
        if_match: false,
        body: Body::None,
        responses,
    }
}

/// Every operation the API serves (built once).
pub(crate) fn operations() -> &'static [Op] {
    static OPS: std::sync::OnceLock<Vec<Op>> = std::sync::OnceLock::new();
    OPS.get_or_init(build_operations)
}

fn build_operations() -> Vec<Op> {
    use Method as M;
    use Role::{Admin, Ingest, Operator, Viewer};
    vec![
        op(
            M::GET,
            "/healthz",
            "healthz",
            "Liveness",
            None,
            &[(200, "Health")],
        ),
        op(
            M::GET,
            "/readyz",
            "readyz",
            "Readiness: database, NATS, lease held",
            None,
            &[(200, "Ready"), (503, "Ready")],
        ),
        op(
            M::GET,
            "/metrics",
            "metrics",
            "Prometheus metrics",
            Some(Viewer),
            &[(200, "text")],
        ),
        op(
            M::GET,
            "/api/openapi.json",
            "openapi",
            "This document",
            None,
            &[(200, "Object")],
        ),
        Op {
            query: RUN_FILTERS,
            ..op(
                M::GET,
                "/api/runs",
                "listRuns",
                "The ledger, newest first, with filters and cursor paging",
                Some(Viewer),
                &[(200, "RunPage"), (400, "Error"), (404, "Error")],
            )
        },
        op(
            M::GET,
            "/api/runs/{id}",
            "showRun",
            "One run",
            Some(Viewer),
            &[(200, "Run"), (400, "Error"), (404, "Error")],
        ),
        op(
            M::POST,
            "/api/runs/{id}/cancel",
            "cancelRun",
            "Cancel a queued run",
            Some(Operator),
            &[(200, "Run"), (400, E), (404, E), (409, E), (503, E)],
        ),
        Op {
            body: Body::Undo,
            ..op(
                M::POST,
                "/api/runs/{id}/undo",
                "undoRun",
                "Queue the inverse verb of a finished run on the same target (once per run)",
                Some(Operator),
                &[
                    (201, "Run"),
                    (200, "Run"),
                    (400, E),
                    (404, E),
                    (409, E),
                    (422, E),
                    (503, E),
                ],
            )
        },
        op(
            M::GET,
            "/api/stream",
            "stream",
            "Server-sent events: one `run` event per recorded status change",
            Some(Viewer),
            &[(200, "sse"), (503, E)],
        ),
        op(
            M::GET,
            "/api/policies",
            "listPolicies",
            "Live policies in evaluation order",
            Some(Viewer),
            &[(200, "PolicyList")],
        ),
        Op {
            body: Body::Policy,
            query: const { &[q("comment", "string", "recorded with the version")] },
            ..op(
                M::POST,
                "/api/policies",
                "createPolicy",
                "Save a policy as version 1",
                Some(Admin),
                &[(201, "Policy"), (400, E), (409, E), (415, E), (422, E)],
            )
        },
        Op {
            body: Body::Bundle,
            ..op(
                M::POST,
                "/api/policies/apply",
                "applyPolicies",
                "Apply policy files as one bundle (managed_by: dir), or plan it with dry_run",
                Some(Admin),
                &[(200, "Applied"), (400, E), (409, E), (422, E), (503, E)],
            )
        },
        op(
            M::GET,
            "/api/directory",
            "showDirectory",
            "The watched policy directory and the outcome of its last apply",
            Some(Viewer),
            &[(200, "Directory"), (404, E)],
        ),
        Op {
            body: Body::Policy,
            ..op(
                M::POST,
                "/api/policies/validate",
                "validatePolicy",
                "Findings, IR and spec_hash per document; saves nothing",
                Some(Viewer),
                &[(200, "Validation"), (400, E), (415, E)],
            )
        },
        op(
            M::GET,
            "/api/policies/{id}",
            "showPolicy",
            "One policy (id: UUID or name)",
            Some(Viewer),
            &[(200, "Policy"), (404, E)],
        ),
        Op {
            body: Body::Policy,
            if_match: true,
            query: const {
                &[
                    q("comment", "string", "recorded with the version"),
                    q(
                        "force",
                        "boolean",
                        "turn the policy on although its last dry-run found errors",
                    ),
                ]
            },
            ..op(
                M::PUT,
                "/api/policies/{id}",
                "updatePolicy",
                "Replace the document: a new version",
                Some(Admin),
                &[
                    (200, "Policy"),
                    (400, E),
                    (404, E),
                    (409, E),
                    (412, E),
                    (415, E),
                    (422, E),
                    (428, E),
                ],
            )
        },
        op(
            M::DELETE,
            "/api/policies/{id}",
            "archivePolicy",
            "Archive: disabled, hidden, history kept",
            Some(Admin),
            &[(200, "Archived"), (404, E), (409, E)],
        ),
        Op {
            query: const {
                &[q(
                    "force",
                    "boolean",
                    "enable despite dry-run errors (admin; audited)",
                )]
            },
            ..op(
                M::POST,
                "/api/policies/{id}/enable",
                "enablePolicy",
                "Enable (refused while the last dry-run has errors)",
                Some(Operator),
                &[(200, "Policy"), (400, E), (404, E), (409, E)],
            )
        },
        op(
            M::POST,
            "/api/policies/{id}/disable",
            "disablePolicy",
            "Disable",
            Some(Operator),
            &[(200, "Policy"), (404, E)],
        ),
        op(
            M::GET,
            "/api/policies/{id}/versions",
            "listVersions",
            "Kept versions, oldest first",
            Some(Viewer),
            &[(200, "VersionList"), (404, E)],
        ),
        op(
            M::GET,
            "/api/policies/{id}/versions/{v}",
            "showVersion",
            "One version with its document and IR",
            Some(Viewer),
            &[(200, "Version"), (400, E), (404, E)],
        ),
        Op {
            query: const {
                &[
                    q(
                        "from",
                        "integer",
                        "from version (default: the one before `to`)",
                    ),
                    q("to", "integer", "to version (default: current)"),
                ]
            },
            ..op(
                M::GET,
                "/api/policies/{id}/diff",
                "diffPolicy",
                "IR changes by JSON pointer, and both documents",
                Some(Viewer),
                &[(200, "Diff"), (400, E), (404, E)],
            )
        },
        Op {
            if_match: true,
            query: const {
                &[required(
                    "to",
                    "integer",
                    "the version whose content comes back",
                )]
            },
            ..op(
                M::POST,
                "/api/policies/{id}/rollback",
                "rollbackPolicy",
                "A new version with an earlier version's content",
                Some(Admin),
                &[
                    (200, "Policy"),
                    (400, E),
                    (404, E),
                    (409, E),
                    (412, E),
                    (428, E),
                ],
            )
        },
        Op {
            body: Body::Event { optional: true },
            ..op(
                M::POST,
                "/api/policies/{id}/dry-run",
                "dryRunPolicy",
                "What the policy would do now for a sample event; stored as last_dry_run",
                Some(Operator),
                &[(200, "DryRun"), (400, E), (404, E)],
            )
        },
        op(
            M::POST,
            "/api/policies/{id}/inverse",
            "inversePolicy",
            "The inverse policy's document and what to fill in",
            Some(Operator),
            &[(200, "Inverse"), (404, E), (409, E)],
        ),
        op(
            M::GET,
            "/api/hosts",
            "listHosts",
            "Configured hosts with inventory freshness, queues, circuit breakers",
            Some(Viewer),
            &[(200, "HostList")],
        ),
        op(
            M::GET,
            "/api/hosts/{id}/capabilities",
            "hostCapabilities",
            "What the host's drivers offer",
            Some(Viewer),
            &[(200, "Capabilities"), (404, E)],
        ),
        Op {
            query: const { &[q("type", "string", "only items of this type")] },
            ..op(
                M::GET,
                "/api/hosts/{id}/inventory",
                "hostInventory",
                "The host's discovered items",
                Some(Viewer),
                &[(200, "Inventory"), (400, E), (404, E)],
            )
        },
        Op {
            query: const {
                &[
                    q(
                        "mode",
                        "refresh",
                        "`fast` (known items) or `full` (default)",
                    ),
                    q("type", "string", "only items of this type in the answer"),
                ]
            },
            ..op(
                M::POST,
                "/api/hosts/{id}/inventory/refresh",
                "refreshInventory",
                "Ask the host's drivers to discover its items now, then answer the inventory",
                Some(Operator),
                &[(200, "Inventory"), (400, E), (404, E)],
            )
        },
        Op {
            query: const {
                &[required(
                    "selector",
                    "string",
                    "a selector, e.g. pve-01/vm:100,101",
                )]
            },
            ..op(
                M::GET,
                "/api/selectors/preview",
                "previewSelector",
                "What a selector resolves to now",
                Some(Viewer),
                &[(200, "Preview"), (400, E)],
            )
        },
        Op {
            body: Body::Event { optional: false },
            ..op(
                M::POST,
                "/api/events",
                "ingestEvent",
                "Publish one event; 202 once JetStream has it",
                Some(Ingest),
                &[(202, "Published"), (400, E), (503, E)],
            )
        },
        Op {
            body: Body::Alertmanager,
            ..op(
                M::POST,
                "/api/webhooks/alertmanager",
                "ingestAlertmanager",
                "An Alertmanager webhook; one event per alert",
                Some(Ingest),
                &[(202, "PublishedList"), (400, E), (503, E)],
            )
        },
    ]
}

pub(super) fn param_schema(kind: &str) -> Value {
    match kind {
        "status" => json!({"type": "string", "enum": [
            "queued", "running", "succeeded", "failed", "timed_out", "cancelled",
            "interrupted", "suppressed", "deduplicated", "skipped"]}),
        "date-time" => json!({"type": "string", "format": "date-time"}),
        "limit" => json!({"type": "integer", "minimum": 1, "maximum": 1000}),
        "integer" => json!({"type": "integer", "minimum": 1, "maximum": 2_147_483_647}),
        "cursor" => {
            json!({"type": "string", "pattern": "^$|^-?[0-9]{1,18}:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"})
        }
        "boolean" => json!({"type": "boolean"}),
        "refresh" => json!({"type": "string", "enum": ["fast", "full"]}),
        _ => json!({"type": "string"}),
    }
}

fn operation(o: &Op) -> Value {
    let mut params: Vec<Value> = Vec::new();
    for seg in o.path.split('/') {
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let schema = if name == "v" {
                json!({"type": "integer", "minimum": 1, "maximum": 2_147_483_647})
            } else if o.path.starts_with("/api/runs/") {
                json!({"type": "string", "format": "uuid"})
            } else {
                json!({"type": "string", "minLength": 1})
            };
            params.push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
        }
    }
    for p in o.query {
        let mut schema = param_schema(p.kind);
        if p.kind == "string" && p.required {
            schema["minLength"] = 1.into();
        }
        params.push(json!({"name": p.name, "in": "query", "required": p.required, "description": p.about, "schema": schema}));
    }
    if o.if_match {
        params.push(json!({"name": "If-Match", "in": "header", "required": true,
            "description": "the version_int last read (`3` or `\"3\"`)", "schema": {"type": "string"}}));
    }
    let mut responses = Map::new();
    let mut all: Vec<(u16, &str)> = o.responses.to_vec();
    if o.role.is_some() {
        all.push((401, "Error"));
    }
    // Roles and the CSRF rule, and without auth the Host/Origin guard on every request.
    all.push((403, "Error"));
    if o.method != Method::GET {
        all.push((413, "Error"));
    }
    for (status, schema) in all {
        let content = match schema {
            "" => None,
            "text" => Some(json!({"text/plain": {"schema": {"type": "string"}}})),
            "sse" => Some(json!({"text/event-stream": {"schema": {"type": "string"}}})),
            name => Some(
                json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}),
            ),
        };
        let mut r = json!({"description": status_text(status)});
        if let Some(c) = content {
            r["content"] = c;
        }
        responses.insert(status.to_string(), r);
    }
    let mut out = json!({
        "operationId": o.id,
        "summary": o.summary,
        "parameters": params,
        "responses": responses,
    });
    match o.role {
        Some(role) => {
            out["security"] = json!([{"bearer": []}]);
            out["description"] = format!("Needs role `{}` when auth is on.", role.as_str()).into();
        }
        None => out["security"] = json!([]),
    }
    let body = match o.body {
        Body::None => None,
        Body::Policy => Some(json!({"required": true, "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
            "application/toml": {"schema": {"type": "string"}},
        }})),
        Body::Event { optional } => Some(json!({"required": !optional, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/EventIn"}}}})),
        Body::Alertmanager => Some(json!({"required": true, "content": {
            "application/json": {"schema": {"type": "object", "required": ["alerts"],
                "properties": {"alerts": {"type": "array", "items": {"type": "object"}}}}}}})),
        Body::Bundle => Some(json!({"required": true, "content": {
            "application/json": {"schema": {"type": "object", "required": ["files"], "additionalProperties": false,
                "properties": {
                    "files": {"type": "array", "items": {"type": "object", "required": ["path", "content"],
                        "properties": {"path": {"type": "string"}, "content": {"type": "string"}}}},
                    "prune": {"type": "boolean"}, "dry_run": {"type": "boolean"}}}}}})),
        Body::Undo => Some(json!({"required": false, "content": {
            "application/json": {"schema": {"type": "object", "additionalProperties": false,
                "properties": {"params": {"type": "object"}}}}}})),
    };
    if let Some(b) = body {
        out["requestBody"] = b;
    }
    out
}

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted: in the stream",
        400 => "Bad request",
        401 => "No valid bearer token",
        403 => "The role may not do this, the CSRF rule, or without auth the Host/Origin guard",
        413 => "The request body is larger than 1 MiB",
        404 => "Not found",
        409 => "Conflict with the current state",
        412 => "If-Match names a stale version",
        415 => "Unsupported Content-Type",
        422 => "Does not fit the installed drivers",
        428 => "If-Match is required",
        503 => "Not ready: starting, standing by, or NATS unavailable",
        _ => "",
    }
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for o in operations() {
        let entry = paths
            .entry(o.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[o.method.as_str().to_ascii_lowercase()] = operation(o);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "switchyard",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Event-driven automation for infrastructure: policies, the execution ledger, hosts and ingest.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": schemas(),
        },
    })
}

/// The schema a response to `method path` with `status` must match, as a
/// self-contained JSON Schema (for tests); `None` when the document names no
/// JSON body for it.
pub fn response_schema(method: &str, path_template: &str, status: u16) -> Option<Value> {
    let doc = document();
    let op = &doc["paths"][path_template][method.to_ascii_lowercase()];
    let schema =
        op["responses"][status.to_string()]["content"]["application/json"]["schema"].clone();
    if schema.is_null() {
        return None;
    }
    Some(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "allOf": [schema],
        "components": doc["components"],
    }))
}

/// The path template (`/api/runs/{id}`) a concrete path matches, if any.
pub fn template_of(path: &str) -> Option<&'static str> {
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.split('/').collect();
    let mut best: Option<(&'static str, usize)> = None;
    for o in operations() {
        let t: Vec<&str> = o.path.split('/').collect();
        if t.len() != segs.len() {
            continue;
        }
        let literal = t.iter().filter(|s| !s.starts_with('{')).count();
        let fits = t
            .iter()
            .zip(&segs)
            .all(|(a, b)| a.starts_with('{') || a == b);
        // Prefer the template with more literal segments (`/validate` over `/{id}`).
        if fits && best.is_none_or(|(_, n)| literal > n) {
            best = Some((o.path, literal));
        }
    }
    best.map(|(p, _)| p)
}
