//! The `http` driver: `http.request` get/post/put/delete against a host's
//! address (its base URL), with headers from the host's config (secrets
//! resolved by switchyard) and the action's params.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_plugin::protocol::{
    DryRunParams, DryRunResult, ExecuteParams, ExecuteResult, HealthParams, HealthResult, Host,
    InitializeParams, Precondition, Severity,
};
use switchyard_plugin::sdk::{self, Adapter, AdapterError, Context};

const DEFAULT_MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    user_agent: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostConfig {
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    verify_tls: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Expect {
    One(u16),
    Many(Vec<u16>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestParams {
    #[serde(default)]
    path: Option<String>,
    /// Path segments appended after `path`, each encoded whole: a `/`, `?`,
    /// `#` or `%` inside one stays inside it.
    #[serde(default)]
    segments: Vec<String>,
    #[serde(default)]
    query: BTreeMap<String, Value>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    expect_status: Option<Expect>,
}

struct Http {
    verified: reqwest::Client,
    unverified: reqwest::Client,
    max_body: usize,
}

fn method(capability: &str, verb: &str) -> Result<reqwest::Method, AdapterError> {
    if capability != "http.request" {
        return Err(AdapterError::unsupported(format!(
            "http provides http.request, not {capability}"
        )));
    }
    Ok(match verb {
        "get" => reqwest::Method::GET,
        "post" => reqwest::Method::POST,
        "put" => reqwest::Method::PUT,
        "delete" => reqwest::Method::DELETE,
        other => return Err(AdapterError::unsupported(format!("unknown verb `{other}`"))),
    })
}

fn host_config(host: &Host) -> Result<HostConfig, AdapterError> {
    if host.config.is_null() {
        return Ok(HostConfig::default());
    }
    serde_json::from_value(host.config.clone())
        .map_err(|e| AdapterError::invalid_params(format!("host `{}` config: {e}", host.id)))
}

/// The request URL: the host's address with the params' path and query.
fn url_for(host: &Host, p: &RequestParams) -> Result<url::Url, AdapterError> {
    let base = host.address.as_deref().ok_or_else(|| {
        AdapterError::precondition_failed(format!("host `{}` has no address (a base URL)", host.id))
    })?;
    let mut url = url::Url::parse(base).map_err(|e| {
        AdapterError::precondition_failed(format!("host `{}` address `{base}`: {e}", host.id))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(AdapterError::precondition_failed(format!(
            "host `{}` address `{base}` is not http(s)",
            host.id
        )));
    }
    let mut path = url.path().trim_end_matches('/').to_owned();
    if let Some(extra) = &p.path {
        check_path(extra)?;
        path.push_str(extra);
    }
    for segment in &p.segments {
        check_segment(segment)?;
        path.push('/');
        path.extend(
            url::form_urlencoded::byte_serialize(segment.as_bytes()).map(|s| {
                // form encoding writes a space as `+`; a path needs `%20`.
                if s == "+" { "%20" } else { s }
            }),
        );
    }
    if p.path.is_some() || !p.segments.is_empty() {
        url.set_path(&path);
    }
    if !p.query.is_empty() {
        let mut q = url.query_pairs_mut();
        for (k, v) in &p.query {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            q.append_pair(k, &v);
        }
    }
    Ok(url)
}

/// A `path` stays under the host's address: no `.` or `..` segment (also
/// percent-encoded), no `?` or `#` (the query goes in `query`), no
/// backslash, no control character.
fn check_path(path: &str) -> Result<(), AdapterError> {
    let refuse = |why: &str| {
        Err(AdapterError::invalid_params(format!(
            "path `{}`: {why}",
            path.escape_debug()
        )))
    };
    if !path.starts_with('/') {
        return refuse("must start with `/`");
    }
    if path.chars().any(|c| c.is_control()) {
        return refuse("holds a control character");
    }
    if path.contains(['?', '#', '\\']) {
        return refuse("holds `?`, `#` or `\\`; give the query as `query`");
    }
    for segment in path.split('/') {
        let decoded: String = url::form_urlencoded::parse(format!("x={segment}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if matches!(decoded.as_str(), "." | "..") || decoded.contains(['/', '\\']) {
            return refuse(
                "holds a `.`, `..` or encoded `/` segment; the path must stay under the host's address",
            );
        }
    }
    Ok(())
}

/// One segment from `segments`: encoded whole, so only `.` and `..` (which
/// a server would still resolve) and control characters are refused.
fn check_segment(segment: &str) -> Result<(), AdapterError> {
    if segment.is_empty()
        || matches!(segment, "." | "..")
        || segment.chars().any(|c| c.is_control())
    {
        return Err(AdapterError::invalid_params(format!(
            "segment `{}`: empty, `.`, `..` or a control character",
            segment.escape_debug()
        )));
    }
    Ok(())
}

fn status_ok(expect: Option<&Expect>, status: u16) -> bool {
    match expect {
        None => (200..300).contains(&status),
        Some(Expect::One(s)) => *s == status,
        Some(Expect::Many(list)) => list.contains(&status),
    }
}

fn parse_params(params: Value) -> Result<RequestParams, AdapterError> {
    serde_json::from_value(params).map_err(|e| AdapterError::invalid_params(e.to_string()))
}

/// Can a TCP connection be opened to the URL's host and port?
async fn reachable(url: &url::Url, limit: Duration) -> Result<String, String> {
    let host = url.host_str().ok_or("the URL has no host")?;
    let port = url.port_or_known_default().ok_or("the URL has no port")?;
    match tokio::time::timeout(limit, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(format!("{host}:{port} accepts connections")),
        Ok(Err(e)) => Err(format!("{host}:{port}: {e}")),
        Err(_) => Err(format!(
            "{host}:{port}: no answer within {} s",
            limit.as_secs()
        )),
    }
}

impl Adapter for Http {
    const NAME: &'static str = "http";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn initialize(params: InitializeParams) -> Result<Self, AdapterError> {
        let config: Config = if params.driver_config.is_null() {
            Config::default()
        } else {
            serde_json::from_value(params.driver_config)
                .map_err(|e| AdapterError::invalid_params(format!("driver config: {e}")))?
        };
        let agent = config
            .user_agent
            .unwrap_or_else(|| format!("switchyard-driver-http/{}", env!("CARGO_PKG_VERSION")));
        let build = |verify: bool| {
            reqwest::Client::builder()
                .user_agent(agent.clone())
                .danger_accept_invalid_certs(!verify)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| AdapterError::internal(format!("cannot build the HTTP client: {e}")))
        };
        Ok(Http {
            verified: build(true)?,
            unverified: build(false)?,
            max_body: config.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY),
        })
    }

    async fn dry_run(
        &self,
        req: DryRunParams,
        _ctx: Context,
    ) -> Result<DryRunResult, AdapterError> {
        let m = method(&req.capability, &req.verb)?;
        let p = parse_params(req.params)?;
        host_config(&req.host)?;
        let (url_check, plan) = match url_for(&req.host, &p) {
            Ok(url) => {
                let reach = reachable(&url, Duration::from_secs(5)).await;
                let plan = format!("{m} {url}");
                (
                    vec![
                        Precondition {
                            name: "url".into(),
                            ok: true,
                            detail: Some(url.to_string()),
                        },
                        Precondition {
                            name: "reachable".into(),
                            ok: reach.is_ok(),
                            detail: Some(reach.unwrap_or_else(|e| e)),
                        },
                    ],
                    vec![plan],
                )
            }
            Err(e) => (
                vec![Precondition {
                    name: "url".into(),
                    ok: false,
                    detail: Some(e.message),
                }],
                vec![],
            ),
        };
        let ok = url_check.iter().all(|c| c.ok);
        Ok(DryRunResult {
            ok,
            severity: if ok { Severity::Info } else { Severity::Error },
            idempotency_key: None,
            preconditions: url_check,
            plan,
            effects: vec![],
            reason: (!ok).then(|| "a precondition failed".to_owned()),
        })
    }

    async fn execute(
        &self,
        req: ExecuteParams,
        ctx: Context,
    ) -> Result<ExecuteResult, AdapterError> {
        let m = method(&req.capability, &req.verb)?;
        let p = parse_params(req.params)?;
        let hc = host_config(&req.host)?;
        let url = url_for(&req.host, &p)?;
        let client = if hc.verify_tls.unwrap_or(true) {
            &self.verified
        } else {
            &self.unverified
        };
        let mut rb = client.request(m.clone(), url.clone());
        // switchyard enforces the deadline (cancel at it, the SDK drops the
        // handler just after); the client's own limit is only a backstop, set
        // past the deadline so a slow server is reported as a timeout.
        if let Some(left) = ctx.remaining() {
            rb = rb.timeout(left + Duration::from_secs(2));
        }
        for (k, v) in hc.headers.iter().chain(&p.headers) {
            rb = rb.header(k, v);
        }
        rb = match &p.body {
            None => rb,
            Some(Value::String(s)) => rb
                .header("content-type", "text/plain; charset=utf-8")
                .body(s.clone()),
            Some(v) => rb.json(v),
        };
        ctx.log(format!("{m} {url}"));
        let send = rb.send();
        let resp = tokio::select! {
            r = send => r,
            () = ctx.cancelled() => return Err(AdapterError::transient("cancelled by switchyard")),
        };
        let resp = resp.map_err(|e| {
            if e.is_timeout() || e.is_connect() {
                AdapterError::transient(format!("{m} {url}: {e}"))
            } else {
                AdapterError::internal(format!("{m} {url}: {e}"))
            }
        })?;
        let status = resp.status().as_u16();
        // Read at most `max_body` bytes: a huge or endless body costs nothing more.
        let mut resp = resp;
        let mut body = Vec::new();
        let mut truncated = false;
        loop {
            let chunk = tokio::select! {
                c = resp.chunk() => c.map_err(|e| AdapterError::transient(format!("reading the response: {e}")))?,
                () = ctx.cancelled() => return Err(AdapterError::transient("cancelled by switchyard")),
            };
            let Some(chunk) = chunk else { break };
            let room = self.max_body - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let mut output = format!("{status}\n{}", String::from_utf8_lossy(&body));
        if truncated {
            output.push_str("\n[truncated]");
        }
        let ok = status_ok(p.expect_status.as_ref(), status);
        if !ok && (status == 429 || status >= 500) && p.expect_status.is_none() {
            // The server says "later": a transient error, retried for idempotent verbs.
            return Err(AdapterError::transient(format!(
                "{m} {url} answered {status}"
            )));
        }
        Ok(ExecuteResult {
            ok,
            effects: vec![],
            output: Some(output),
            reason: (!ok).then(|| format!("{m} {url} answered {status}, not the expected status")),
        })
    }

    async fn health(&self, req: HealthParams, _ctx: Context) -> Result<HealthResult, AdapterError> {
        let Some(address) = req.host.address.as_deref() else {
            return Ok(HealthResult {
                ok: false,
                detail: Some(format!("host `{}` has no address", req.host.id)),
            });
        };
        let Ok(url) = url::Url::parse(address) else {
            return Ok(HealthResult {
                ok: false,
                detail: Some(format!("`{address}` is not a URL")),
            });
        };
        let r = reachable(&url, Duration::from_secs(5)).await;
        Ok(HealthResult {
            ok: r.is_ok(),
            detail: Some(r.unwrap_or_else(|e| e)),
        })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // reqwest is built without a default TLS provider: choose ring once, before any client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    sdk::serve::<Http>().await;
}
