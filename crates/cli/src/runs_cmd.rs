//! `switchyard runs`: read the execution ledger.
//!
//! These commands read the database named by the configuration (or
//! `--database-url`) directly, so the ledger can be read while `serve` runs
//! and after it stopped.

use crate::config::Config;
use crate::{EXIT_BLOCKED, EXIT_OK, EXIT_USAGE, Output};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use switchyard_store::{PolicyRef, RunFilter, RunRecord, RunStatus, Store};

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first, with filters and paging.
    List(ListArgs),
    /// Show one run in full.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct Source {
    /// The configuration file whose database to read (default: ./switchyard.toml when it exists).
    #[arg(long, env = "SWITCHYARD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Read this database instead (`sqlite://…` or `postgres://…`).
    #[arg(long, env = "SWITCHYARD_DATABASE__URL")]
    database_url: Option<String>,
}

impl Source {
    fn url(&self) -> Result<String, String> {
        if let Some(u) = &self.database_url {
            return Ok(u.clone());
        }
        let path = crate::serve::config_path(self.config.as_deref());
        Config::load(path.as_deref())
            .map(|c| c.database_url())
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    source: Source,
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
    /// Output style.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    source: Source,
    /// The run id.
    id: uuid::Uuid,
    /// Output style.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

pub fn run(cmd: RunsCommand) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    match cmd {
        RunsCommand::List(a) => rt.block_on(list(a)),
        RunsCommand::Show(a) => rt.block_on(show(a)),
    }
}

async fn open(source: &Source) -> Result<Store, u8> {
    let url = source.url().map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })?;
    // Connect without migrating: reading must never change the database.
    Store::connect(&url).await.map_err(|e| {
        eprintln!("error: cannot open the ledger database: {e}");
        EXIT_BLOCKED
    })
}

async fn list(a: ListArgs) -> u8 {
    let status = match a.status.as_deref().map(|s| (s, RunStatus::parse(s))) {
        Some((s, None)) => {
            eprintln!(
                "error: `{s}` is not a run status; one of: {}",
                RunStatus::ALL.map(RunStatus::as_str).join(", ")
            );
            return EXIT_USAGE;
        }
        Some((_, st)) => st,
        None => None,
    };
    let store = match open(&a.source).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let policy_id = match &a.policy {
        None => None,
        Some(p) => match store.get_policy(&PolicyRef::parse(p)).await {
            Ok(rec) => Some(rec.id),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_BLOCKED;
            }
        },
    };
    let filter = RunFilter {
        policy_id,
        host: a.host.clone(),
        target_id: a.target.clone(),
        status,
        event_id: a.event.clone(),
        ..Default::default()
    };
    let (runs, next) = match store.list_runs(&filter, a.cursor.as_deref(), a.limit).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BLOCKED;
        }
    };
    match a.output {
        Output::Json => {
            let body = serde_json::json!({
                "runs": runs.iter().map(switchyard_api::dto::run).collect::<Vec<_>>(),
                "next_cursor": next,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&body).unwrap_or_default()
            );
        }
        Output::Text => {
            print_table(&runs);
            if let Some(c) = next {
                println!("more: --cursor {c}");
            }
        }
    }
    EXIT_OK
}

async fn show(a: ShowArgs) -> u8 {
    let store = match open(&a.source).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    match store.get_run(a.id).await {
        Ok(r) => {
            let v = switchyard_api::dto::run(&r);
            match a.output {
                Output::Json => {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default())
                }
                Output::Text => {
                    if let Some(map) = v.as_object() {
                        for (k, val) in map {
                            if val.is_null() || val.as_array().is_some_and(Vec::is_empty) {
                                continue;
                            }
                            let text = match val {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            let mut lines = text.lines();
                            println!("{k:>20}  {}", lines.next().unwrap_or_default());
                            for more in lines {
                                println!("{:>20}  {more}", "");
                            }
                        }
                    }
                }
            }
            EXIT_OK
        }
        Err(switchyard_store::Error::NotFound(what)) => {
            eprintln!("error: no {what}");
            EXIT_BLOCKED
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_BLOCKED
        }
    }
}

fn print_table(runs: &[RunRecord]) {
    if runs.is_empty() {
        println!("no runs");
        return;
    }
    let rows: Vec<[String; 7]> = runs
        .iter()
        .map(|r| {
            let target = if r.host.is_empty() {
                "-".to_owned()
            } else if r.target_type == "host" {
                r.host.clone()
            } else {
                format!("{}/{}:{}", r.host, r.target_type, r.target_id)
            };
            let status = if r.count > 1 {
                format!("{} ×{}", r.status.as_str(), r.count)
            } else {
                r.status.as_str().to_owned()
            };
            [
                r.queued_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                status,
                r.policy_name.clone(),
                target,
                format!("{}.{}", r.capability, r.verb),
                r.duration_ms
                    .map(|d| format!("{d}ms"))
                    .unwrap_or_else(|| "-".into()),
                r.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let head = [
        "QUEUED", "STATUS", "POLICY", "TARGET", "ACTION", "TOOK", "REASON",
    ];
    let mut widths = head.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count()).min(48);
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| {
                let c: String = c.chars().take(w).collect();
                format!("{c:<w$}")
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!("{}", line(&head.map(str::to_owned)));
    for row in &rows {
        println!("{}", line(row));
    }
}
