//! `switchyard runs`: the execution ledger through the API — list, show,
//! tail (follows the live stream, reconnecting), undo, cancel. `list` and
//! `show` with `--database-url` read a database directly instead, so the
//! ledger can be read with no server running.

use crate::client::{self, Body, Client, Failure, Server};
use crate::{EXIT_OK, Output};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use switchyard_store::{PolicyRef, RunFilter, RunStatus, Store};

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first, with filters and paging.
    List(ListArgs),
    /// Show one run in full.
    Show(ShowArgs),
    /// Follow run status changes as they happen (reconnects until Ctrl-C).
    Tail(TailArgs),
    /// Queue the inverse of a finished run on the same target (once per run).
    Undo(UndoArgs),
    /// Cancel a queued run.
    Cancel(IdArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    server: Server,
    /// Read this database directly instead of asking the server (`sqlite://…` or `postgres://…`).
    #[arg(long)]
    database_url: Option<String>,
    /// Only runs of this policy (name or UUID).
    #[arg(long)]
    policy: Option<String>,
    /// Only runs on this host.
    #[arg(long)]
    host: Option<String>,
    /// Only runs on this target id.
    #[arg(long)]
    target: Option<String>,
    /// Only runs with this status (queued, running, succeeded, failed, timed_out,
    /// cancelled, interrupted, suppressed, deduplicated, skipped).
    #[arg(long)]
    status: Option<String>,
    /// Only runs decided for this event id.
    #[arg(long)]
    event: Option<String>,
    /// Runs per page (1–1000).
    #[arg(long, default_value_t = 50)]
    limit: u64,
    /// Continue after this cursor (printed at the end of a page).
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    server: Server,
    /// Read this database directly instead of asking the server.
    #[arg(long)]
    database_url: Option<String>,
    /// The run id.
    id: uuid::Uuid,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    server: Server,
    /// Only changes of runs of this policy (name).
    #[arg(long)]
    policy: Option<String>,
    /// Only changes of runs on this host.
    #[arg(long)]
    host: Option<String>,
    /// Only changes to this status.
    #[arg(long)]
    status: Option<String>,
}

#[derive(Debug, Args)]
pub struct UndoArgs {
    #[command(flatten)]
    server: Server,
    /// The run to undo.
    id: uuid::Uuid,
    /// Params for the inverse verb as JSON (default: the run's own when the
    /// inverse accepts them, else none).
    #[arg(long)]
    params: Option<String>,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    #[command(flatten)]
    server: Server,
    /// The run id.
    id: uuid::Uuid,
}

pub fn run(cmd: RunsCommand) -> u8 {
    match cmd {
        RunsCommand::List(a) => {
            let server = a.server.clone();
            client::run(&server, |c| list(c, a))
        }
        RunsCommand::Show(a) => {
            let server = a.server.clone();
            client::run(&server, |c| show(c, a))
        }
        RunsCommand::Tail(a) => {
            let server = a.server.clone();
            client::run(&server, |c| tail(c, a))
        }
        RunsCommand::Undo(a) => {
            let server = a.server.clone();
            client::run(&server, |c| undo(c, a))
        }
        RunsCommand::Cancel(a) => {
            let server = a.server.clone();
            client::run(&server, |c| async move {
                let run = c.post(&format!("/api/runs/{}/cancel", a.id), None).await?;
                print_run(&c, &run);
                Ok(EXIT_OK)
            })
        }
    }
}

async fn open(url: &str) -> Result<Store, Failure> {
    // Connect without migrating: reading must never change the database.
    Store::connect(url)
        .await
        .map_err(|e| Failure::Unavailable(format!("cannot open the ledger database: {e}")))
}

fn store_failure(e: switchyard_store::Error) -> Failure {
    match e {
        switchyard_store::Error::NotFound(what) => Failure::Refused {
            status: reqwest::StatusCode::NOT_FOUND,
            body: json!({"error": {"code": "not_found", "message": format!("no {what}")}}),
        },
        other => Failure::Unavailable(other.to_string()),
    }
}

async fn list(c: Client, a: ListArgs) -> Result<u8, Failure> {
    let page = match &a.database_url {
        Some(url) => list_from_db(url, &a).await?,
        None => {
            let mut q = vec![format!("limit={}", a.limit)];
            for (k, v) in [
                ("policy", &a.policy),
                ("host", &a.host),
                ("target", &a.target),
                ("status", &a.status),
                ("event", &a.event),
                ("cursor", &a.cursor),
            ] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", client::encode(v)));
                }
            }
            c.get(&format!("/api/runs?{}", q.join("&"))).await?
        }
    };
    match c.output {
        Output::Json => println!("{}", client::pretty(&page)),
        Output::Text => {
            let runs = page["runs"].as_array().cloned().unwrap_or_default();
            if runs.is_empty() {
                println!("no runs");
            } else {
                let rows: Vec<Vec<String>> = runs.iter().map(row).collect();
                client::table(
                    &[
                        "ID", "QUEUED", "STATUS", "POLICY", "TARGET", "ACTION", "TOOK", "REASON",
                    ],
                    &rows,
                );
            }
            if let Some(next) = page["next_cursor"].as_str() {
                println!("more: --cursor {next}");
            }
        }
    }
    Ok(EXIT_OK)
}

async fn list_from_db(url: &str, a: &ListArgs) -> Result<Value, Failure> {
    let status = match a.status.as_deref() {
        None => None,
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            Failure::Usage(format!(
                "`{s}` is not a run status; one of: {}",
                RunStatus::ALL.map(RunStatus::as_str).join(", ")
            ))
        })?),
    };
    let store = open(url).await?;
    let policy_id = match &a.policy {
        None => None,
        Some(p) => Some(
            store
                .get_policy(&PolicyRef::parse(p))
                .await
                .map_err(store_failure)?
                .id,
        ),
    };
    let filter = RunFilter {
        policy_id,
        host: a.host.clone(),
        target_id: a.target.clone(),
        status,
        event_id: a.event.clone(),
        ..Default::default()
    };
    let (runs, next) = store
        .list_runs(&filter, a.cursor.as_deref(), a.limit)
        .await
        .map_err(store_failure)?;
    Ok(json!({
        "runs": runs.iter().map(switchyard_api::dto::run).collect::<Vec<_>>(),
        "next_cursor": next,
    }))
}

/// One run as a table row.
fn row(r: &Value) -> Vec<String> {
    let host = r["host"].as_str().unwrap_or("");
    let (ty, id) = (
        r["target"]["type"].as_str().unwrap_or(""),
        r["target"]["id"].as_str().unwrap_or(""),
    );
    let target = if host.is_empty() {
        "-".to_owned()
    } else if ty == "host" {
        host.to_owned()
    } else {
        format!("{host}/{ty}:{id}")
    };
    let status = r["status"].as_str().unwrap_or("");
    let status = match r["count"].as_i64() {
        Some(n) if n > 1 => format!("{status} ×{n}"),
        _ => status.to_owned(),
    };
    let queued = r["queued_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string());
    let mut action = format!(
        "{}.{}",
        r["capability"].as_str().unwrap_or(""),
        r["verb"].as_str().unwrap_or("")
    );
    if r["inverse_of"].is_string() {
        action.push_str(" (undo)");
    }
    vec![
        r["id"].as_str().unwrap_or("").to_owned(),
        queued,
        status,
        r["policy_name"].as_str().unwrap_or("").to_owned(),
        target,
        action,
        r["duration_ms"]
            .as_i64()
            .map_or_else(|| "-".into(), |d| format!("{d}ms")),
        r["reason"].as_str().unwrap_or("").to_owned(),
    ]
}

fn print_run(c: &Client, run: &Value) {
    match c.output {
        Output::Json => println!("{}", client::pretty(run)),
        Output::Text => client::details(run),
    }
}

async fn show(c: Client, a: ShowArgs) -> Result<u8, Failure> {
    let run = match &a.database_url {
        Some(url) => switchyard_api::dto::run(
            &open(url)
                .await?
                .get_run(a.id)
                .await
                .map_err(store_failure)?,
        ),
        None => c.get(&format!("/api/runs/{}", a.id)).await?,
    };
    print_run(&c, &run);
    Ok(EXIT_OK)
}

async fn undo(c: Client, a: UndoArgs) -> Result<u8, Failure> {
    let body = match &a.params {
        None => None,
        Some(p) => {
            let params: Value = serde_json::from_str(p)
                .map_err(|e| Failure::Usage(format!("--params is not JSON: {e}")))?;
            Some(Body {
                content_type: "application/json",
                bytes: json!({ "params": params }).to_string().into_bytes(),
            })
        }
    };
    let run = c.post(&format!("/api/runs/{}/undo", a.id), body).await?;
    print_run(&c, &run);
    Ok(EXIT_OK)
}

/// Follow `/api/stream`, one line (or JSON object) per status change;
/// reconnect with backoff when the connection drops.
async fn tail(c: Client, a: TailArgs) -> Result<u8, Failure> {
    let mut backoff = std::time::Duration::from_millis(500);
    loop {
        let mut resp = match c.stream("/api/stream").await {
            Ok(r) => r,
            Err(Failure::Unavailable(why)) => {
                eprintln!("{why}; retrying in {:.1}s", backoff.as_secs_f64());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
                continue;
            }
            Err(other) => return Err(other),
        };
        backoff = std::time::Duration::from_millis(500);
        if c.output == Output::Text {
            eprintln!("following run status changes (Ctrl-C to stop)");
        }
        let mut buf = String::new();
        loop {
            match resp.chunk().await {
                Ok(Some(bytes)) => {
                    buf.push_str(&String::from_utf8_lossy(&bytes));
                    while let Some(end) = buf.find("\n\n") {
                        let frame: String = buf.drain(..end + 2).collect();
                        show_frame(&c, &a, &frame);
                    }
                }
                Ok(None) => {
                    eprintln!("the stream ended; reconnecting");
                    break;
                }
                Err(e) => {
                    eprintln!("the stream broke ({e}); reconnecting");
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

fn show_frame(c: &Client, a: &TailArgs, frame: &str) {
    let mut event = "message";
    let mut data = String::new();
    for line in frame.lines() {
        if let Some(e) = line.strip_prefix("event:") {
            event = e.trim();
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.trim_start());
        }
    }
    match event {
        "run" => {
            let Ok(n) = serde_json::from_str::<Value>(&data) else {
                return;
            };
            let keep = |field: &str, want: &Option<String>| {
                want.as_deref().is_none_or(|w| n[field].as_str() == Some(w))
            };
            if !(keep("policy_name", &a.policy)
                && keep("host", &a.host)
                && keep("status", &a.status))
            {
                return;
            }
            match c.output {
                Output::Json => println!("{n}"),
                Output::Text => {
                    let target = if n["target_type"] == "host" {
                        client::cell(&n["host"])
                    } else {
                        format!(
                            "{}/{}:{}",
                            client::cell(&n["host"]),
                            client::cell(&n["target_type"]),
                            client::cell(&n["target_id"])
                        )
                    };
                    println!(
                        "{}  {:<12} {:<28} {:<32} {}.{}  {}",
                        n["at"].as_str().unwrap_or("").get(..19).unwrap_or(""),
                        client::cell(&n["status"]),
                        client::cell(&n["policy_name"]),
                        target,
                        client::cell(&n["capability"]),
                        client::cell(&n["verb"]),
                        n["reason"].as_str().unwrap_or(""),
                    );
                }
            }
        }
        "lagged" => eprintln!("(missed {data} changes: this reader was too slow)"),
        _ => {}
    }
}
