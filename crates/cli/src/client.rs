//! The API client behind the CLI's client commands (`policy list|show|…`,
//! `runs …`, `hosts …`): where the server is, the token, requests, and how
//! answers become output and exit codes.
//!
//! The server: `--server`, else `SWITCHYARD_SERVER`, else `http://` + the
//! configuration's `api.listen`. The token: `--token` or `SWITCHYARD_TOKEN`
//! (none when the API runs without auth). Exit codes: 0 success, 1 the server
//! refused (a 4xx answer: not found, invalid, conflict, forbidden), 2 usage,
//! 3 the server could not be reached or failed (5xx, 503 while starting).

use crate::{EXIT_BLOCKED, EXIT_USAGE, Output};
use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Exit code: the server could not be reached, or failed.
pub const EXIT_UNAVAILABLE: u8 = 3;

/// Where the API is and who is calling.
#[derive(Debug, Clone, Args)]
pub struct Server {
    /// switchyard's API, e.g. http://127.0.0.1:8080 (default: the configuration's api.listen).
    #[arg(long, env = "SWITCHYARD_SERVER")]
    pub server: Option<String>,
    /// A bearer token (`switchyard token issue`); not needed when the API runs without auth.
    #[arg(long, env = "SWITCHYARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Names api.listen when --server is not given.
    #[command(flatten)]
    pub config: crate::config::ConfigFile,
    /// Output style.
    #[arg(long, short, value_enum, default_value_t)]
    pub output: Output,
}

/// Why a command failed, with the exit code it maps to.
#[derive(Debug)]
pub enum Failure {
    Usage(String),
    /// The server answered 4xx.
    Refused {
        status: StatusCode,
        body: Value,
    },
    /// Unreachable, 5xx, or an answer that is not ours.
    Unavailable(String),
}

impl Failure {
    /// Print the failure and return its exit code.
    pub fn report(&self, output: Output) -> u8 {
        match self {
            Failure::Usage(m) => {
                eprintln!("error: {m}");
                EXIT_USAGE
            }
            Failure::Unavailable(m) => {
                eprintln!("error: {m}");
                EXIT_UNAVAILABLE
            }
            Failure::Refused { status, body } => {
                if output == Output::Json {
                    println!("{}", pretty(body));
                }
                let e = &body["error"];
                eprintln!(
                    "error: {} ({}): {}",
                    e["code"].as_str().unwrap_or("refused"),
                    status.as_u16(),
                    e["message"].as_str().unwrap_or("")
                );
                for f in e["findings"].as_array().into_iter().flatten() {
                    let file = f["file"]
                        .as_str()
                        .map(|p| format!("{p}: "))
                        .unwrap_or_default();
                    eprintln!(
                        "  {file}{} {} at {}: {}",
                        f["severity"].as_str().unwrap_or(""),
                        f["code"].as_str().unwrap_or(""),
                        f["path"].as_str().filter(|p| !p.is_empty()).unwrap_or("/"),
                        f["message"].as_str().unwrap_or("")
                    );
                }
                EXIT_BLOCKED
            }
        }
    }
}

/// A request body.
#[derive(Debug)]
pub struct Body {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// A connected client.
#[derive(Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    pub output: Output,
}

impl Client {
    pub fn new(s: &Server) -> Result<Client, Failure> {
        let base = match &s.server {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let config = s.config.load().map_err(|e| Failure::Usage(e.to_string()))?;
                format!("http://{}", config.api.listen)
            }
        };
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Failure::Usage(format!(
                "--server `{base}` must start with http:// or https://"
            )));
        }
        // reqwest's rustls needs a process-wide crypto provider; a second
        // install (already set) is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| Failure::Usage(format!("building the HTTP client: {e}")))?;
        Ok(Client {
            base,
            token: s.token.clone().filter(|t| !t.is_empty()),
            http,
            output: s.output,
        })
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .timeout(std::time::Duration::from_secs(120));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if method != Method::GET {
            // The CLI is a deliberate client: it passes the CSRF check the
            // unauthenticated loopback mode asks of state changes.
            r = r.header("X-Switchyard-CSRF", "1");
        }
        r
    }

    /// Send a request; 2xx → the JSON body and headers, else a [`Failure`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        headers: &[(&str, String)],
    ) -> Result<(Value, reqwest::header::HeaderMap), Failure> {
        let mut r = self.request(method, path);
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        if let Some(b) = body {
            r = r.header("content-type", b.content_type).body(b.bytes);
        }
        let resp = r.send().await.map_err(|e| {
            Failure::Unavailable(format!(
                "cannot reach switchyard at {}: {}",
                self.base,
                root_cause(&e)
            ))
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp
            .text()
            .await
            .map_err(|e| Failure::Unavailable(format!("reading the answer: {e}")))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            Ok((body, headers))
        } else if status.is_client_error() && body["error"].is_object() {
            Err(Failure::Refused { status, body })
        } else {
            let why = body["error"]["message"]
                .as_str()
                .or_else(|| body["reason"].as_str())
                .map_or_else(|| text.chars().take(200).collect(), str::to_owned);
            Err(Failure::Unavailable(format!(
                "switchyard answered {status}: {why}"
            )))
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.send(Method::GET, path, None, &[])
            .await
            .map(|(v, _)| v)
    }

    pub async fn post(&self, path: &str, body: Option<Body>) -> Result<Value, Failure> {
        self.send(Method::POST, path, body, &[])
            .await
            .map(|(v, _)| v)
    }

    /// A streaming GET (server-sent events) with no overall timeout.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, Failure> {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.map_err(|e| {
            Failure::Unavailable(format!(
                "cannot reach switchyard at {}: {}",
                self.base,
                root_cause(&e)
            ))
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_client_error() {
            Err(Failure::Refused { status, body })
        } else {
            Err(Failure::Unavailable(format!(
                "switchyard answered {status}"
            )))
        }
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    cause
}

/// Percent-encode a query value.
pub fn encode(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Run a client command on a small runtime; print failures and map them to exit codes.
pub fn run<F, Fut>(server: &Server, f: F) -> u8
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<u8, Failure>>,
{
    let output = server.output;
    let client = match Client::new(server) {
        Ok(c) => c,
        Err(e) => return e.report(output),
    };
    let rt = match crate::runtime(None) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(f(client)) {
        Ok(code) => code,
        Err(e) => e.report(output),
    }
}

/// A value as one table cell.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Columns cut to fit a terminal (`COLUMNS`, else 160 wide; no cell over 48;
/// the first column is never cut).
pub fn table(head: &[&str], rows: &[Vec<String>]) {
    let total: usize = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(160);
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, (w, c)) in widths.iter_mut().zip(row).enumerate() {
            let cap = if i == 0 { usize::MAX } else { 48 };
            *w = (*w).max(c.chars().count()).min(cap);
        }
    }
    // Shrink the widest columns until the line fits; the first column (an
    // id or name to copy) keeps its width.
    while widths.iter().sum::<usize>() + 2 * widths.len() > total {
        let Some(widest) = widths.iter_mut().skip(1).max() else {
            break;
        };
        if *widest <= 8 {
            break;
        }
        *widest -= 1;
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, &w)| {
                let n = c.chars().count();
                let c: String = if n > w {
                    c.chars().take(w.saturating_sub(1)).chain(['…']).collect()
                } else {
                    c.clone()
                };
                format!("{c:<w$}")
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!(
        "{}",
        line(&head.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>())
    );
    for row in rows {
        println!("{}", line(row));
    }
}

/// Print `key  value` lines for an object (nested values as JSON).
pub fn details(v: &Value) {
    let Some(map) = v.as_object() else {
        println!("{}", pretty(v));
        return;
    };
    for (k, val) in map {
        if val.is_null() || val.as_array().is_some_and(Vec::is_empty) {
            continue;
        }
        let text = match val {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut lines = text.lines();
        println!("{k:>20}  {}", lines.next().unwrap_or_default());
        for more in lines {
            println!("{:>20}  {more}", "");
        }
    }
}
