//! `switchyard policy list|show|diff|rollback|enable|disable|dry-run|inverse|delete`:
//! policies on a running switchyard, through the API.

use crate::client::{self, Body, Client, Server};
use crate::{EXIT_BLOCKED, EXIT_OK, Output};
use clap::Args;
use reqwest::Method;
use serde_json::Value;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub server: Server,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    #[command(flatten)]
    pub server: Server,
    /// The policy's name or UUID.
    pub policy: String,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub server: Server,
    /// The policy's name or UUID.
    pub policy: String,
    /// Print the document as saved instead of the summary.
    #[arg(long)]
    pub source: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub server: Server,
    /// The policy's name or UUID.
    pub policy: String,
    /// From this version (default: the one before `--to`).
    #[arg(long)]
    pub from: Option<i64>,
    /// To this version (default: the current one).
    #[arg(long)]
    pub to: Option<i64>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub server: Server,
    /// The policy's name or UUID.
    pub policy: String,
    /// The version whose content comes back (as a new version).
    #[arg(long)]
    pub to: i64,
}

#[derive(Debug, Args)]
pub struct EnableArgs {
    #[command(flatten)]
    pub server: Server,
    /// The policy's name or UUID.
    pub policy: String,
    /// Enable although the last dry-run reported errors (admin; audited).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct DryRunArgs {
    #[command(flatten)]
    pub server: Server,
    /// The policy's name or UUID.
    pub policy: String,
    /// A sample event (JSON file, `-` for standard input); default: one made from the first trigger.
    #[arg(long, value_name = "FILE")]
    pub event: Option<PathBuf>,
}

pub fn list(a: ListArgs) -> u8 {
    client::run(&a.server, |c| async move {
        let body = c.get("/api/policies").await?;
        if c.output == Output::Json {
            println!("{}", client::pretty(&body));
            return Ok(EXIT_OK);
        }
        let rows: Vec<Vec<String>> = body["policies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                vec![
                    client::cell(&p["name"]),
                    client::cell(&p["version_int"]),
                    state(&p["enabled"]),
                    client::cell(&p["priority"]),
                    client::cell(&p["managed_by"]),
                    dry_run_summary(&p["last_dry_run"]),
                    client::cell(&p["updated_at"])
                        .get(..19)
                        .unwrap_or("-")
                        .to_owned(),
                ]
            })
            .collect();
        if rows.is_empty() {
            println!("no policies");
        } else {
            client::table(
                &[
                    "NAME",
                    "VERSION",
                    "STATE",
                    "PRIORITY",
                    "MANAGED BY",
                    "LAST DRY-RUN",
                    "UPDATED",
                ],
                &rows,
            );
        }
        Ok(EXIT_OK)
    })
}

fn dry_run_summary(d: &Value) -> String {
    if d.is_null() {
        return "-".into();
    }
    format!(
        "{} errors, {} warnings",
        client::cell(&d["summary"]["errors"]),
        client::cell(&d["summary"]["warnings"])
    )
}

fn path(policy: &str, rest: &str) -> String {
    format!("/api/policies/{}{rest}", client::encode(policy))
}

fn print_policy(c: &Client, p: &Value) {
    if c.output == Output::Json {
        println!("{}", client::pretty(p));
        return;
    }
    let mut summary = p.clone();
    if let Some(m) = summary.as_object_mut() {
        m.remove("ir");
        m.remove("findings");
    }
    client::details(&summary);
}

pub fn show(a: ShowArgs) -> u8 {
    client::run(&a.server, |c| async move {
        let p = c.get(&path(&a.policy, "")).await?;
        if a.source && c.output == Output::Text {
            let v = p["version_int"].as_i64().unwrap_or(1);
            let version = c.get(&path(&a.policy, &format!("/versions/{v}"))).await?;
            print!("{}", version["source"].as_str().unwrap_or(""));
        } else {
            print_policy(&c, &p);
        }
        Ok(EXIT_OK)
    })
}

pub fn diff(a: DiffArgs) -> u8 {
    client::run(&a.server, |c| async move {
        let mut q = Vec::new();
        if let Some(f) = a.from {
            q.push(format!("from={f}"));
        }
        if let Some(t) = a.to {
            q.push(format!("to={t}"));
        }
        let d = c
            .get(&path(&a.policy, &format!("/diff?{}", q.join("&"))))
            .await?;
        if c.output == Output::Json {
            println!("{}", client::pretty(&d));
            return Ok(EXIT_OK);
        }
        println!(
            "{} version {} → {}",
            client::cell(&d["policy"]["name"]),
            d["from"],
            d["to"]
        );
        let changes = d["changes"].as_array().map_or(&[][..], Vec::as_slice);
        if changes.is_empty() {
            println!("  no change");
        }
        for ch in changes {
            let at = client::cell(&ch["path"]);
            match (ch.get("before"), ch.get("after")) {
                (Some(b), Some(x)) => println!("  ~ {at}: {b} → {x}"),
                (None, Some(x)) => println!("  + {at}: {x}"),
                (Some(b), None) => println!("  - {at}: {b}"),
                (None, None) => {}
            }
        }
        Ok(EXIT_OK)
    })
}

pub fn rollback(a: RollbackArgs) -> u8 {
    client::run(&a.server, |c| async move {
        let current = c.get(&path(&a.policy, "")).await?;
        let version = client::cell(&current["version_int"]);
        let (p, _) = c
            .send(
                Method::POST,
                &path(&a.policy, &format!("/rollback?to={}", a.to)),
                None,
                &[("if-match", version)],
            )
            .await?;
        print_policy(&c, &p);
        Ok(EXIT_OK)
    })
}

pub fn enable(a: EnableArgs, on: bool) -> u8 {
    client::run(&a.server, |c| async move {
        let verb = if on { "enable" } else { "disable" };
        let force = if a.force { "?force=true" } else { "" };
        let p = c
            .post(&path(&a.policy, &format!("/{verb}{force}")), None)
            .await?;
        if c.output == Output::Json {
            println!("{}", client::pretty(&p));
        } else {
            println!(
                "{} is {}d (version {})",
                client::cell(&p["name"]),
                verb,
                client::cell(&p["version_int"])
            );
        }
        Ok(EXIT_OK)
    })
}

pub fn delete(a: NameArgs) -> u8 {
    client::run(&a.server, |c| async move {
        let (body, _) = c
            .send(Method::DELETE, &path(&a.policy, ""), None, &[])
            .await?;
        if c.output == Output::Json {
            println!("{}", client::pretty(&body));
        } else {
            println!(
                "{} is archived (history kept)",
                client::cell(&body["archived"]["name"])
            );
        }
        Ok(EXIT_OK)
    })
}

pub fn inverse(a: NameArgs) -> u8 {
    client::run(&a.server, |c| async move {
        let body = c.post(&path(&a.policy, "/inverse"), None).await?;
        if c.output == Output::Json {
            println!("{}", client::pretty(&body));
            return Ok(EXIT_OK);
        }
        // The document, as YAML-compatible JSON, then what to fill in.
        println!("{}", client::pretty(&body["spec"]));
        eprintln!("fill in before saving:");
        for p in body["needs_input"].as_array().into_iter().flatten() {
            eprintln!("  {}", client::cell(p));
        }
        Ok(EXIT_OK)
    })
}

/// Exit 0 when the dry-run found no error, 1 when it did (enable would be refused).
pub fn dry_run(a: DryRunArgs) -> u8 {
    let event = match &a.event {
        None => None,
        Some(p) => {
            let read = if p.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map(|_| s)
            } else {
                std::fs::read_to_string(p)
            };
            match read {
                Ok(text) => Some(text),
                Err(e) => {
                    eprintln!("error: reading {}: {e}", p.display());
                    return crate::EXIT_USAGE;
                }
            }
        }
    };
    client::run(&a.server, |c| async move {
        let body = event.map(|text| Body {
            content_type: "application/json",
            bytes: text.into_bytes(),
        });
        let t = c.post(&path(&a.policy, "/dry-run"), body).await?;
        let errors = t["summary"]["errors"].as_u64().unwrap_or(0);
        if c.output == Output::Json {
            println!("{}", client::pretty(&t));
        } else {
            print_transcript(&t);
        }
        Ok(if errors > 0 { EXIT_BLOCKED } else { EXIT_OK })
    })
}

fn print_transcript(t: &Value) {
    println!(
        "dry-run of {} version {} (transcript {})",
        client::cell(&t["policy"]["name"]),
        client::cell(&t["policy"]["version"]),
        client::cell(&t["transcript_id"])
    );
    println!(
        "  event: {}{}",
        client::cell(&t["event"]["envelope"]["kind"]),
        if t["event"]["given"] == true {
            ""
        } else {
            " (made from the first trigger)"
        }
    );
    println!("  would fire: {}", t["would_fire"]);
    if t["suppression"].is_object() {
        println!(
            "  suppression window: {}",
            client::cell(&t["suppression"]["decision"])
        );
    }
    let inv = &t["used_inventory"];
    if inv["refreshed_at"].is_null() {
        println!("  inventory: no discovered item involved");
    } else {
        println!(
            "  inventory: refreshed {}{}",
            client::cell(&inv["refreshed_at"]),
            if inv["stale"] == true { " (stale)" } else { "" }
        );
    }
    let rows: Vec<Vec<String>> = t["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let target = if a["target"]["type"] == "host" {
                client::cell(&a["target"]["host"])
            } else {
                format!(
                    "{}/{}:{}",
                    client::cell(&a["target"]["host"]),
                    client::cell(&a["target"]["type"]),
                    client::cell(&a["target"]["id"])
                )
            };
            let dr = &a["driver_dry_run"];
            let driver_says = if let Some(r) = dr.get("result") {
                let plan = r["plan"]
                    .as_array()
                    .map(|p| p.iter().map(client::cell).collect::<Vec<_>>().join("; "));
                format!(
                    "{} {}",
                    client::cell(&r["severity"]),
                    r["reason"]
                        .as_str()
                        .map(str::to_owned)
                        .or(plan)
                        .unwrap_or_default()
                )
            } else if let Some(e) = dr.get("error") {
                format!("error {}", client::cell(e))
            } else if dr["supported"] == false {
                "no driver dry-run".into()
            } else {
                client::cell(&a["error"])
            };
            vec![
                target,
                format!(
                    "{}.{}",
                    client::cell(&a["capability"]),
                    client::cell(&a["verb"])
                ),
                client::cell(&a["driver"]),
                client::cell(&a["idempotency"]["decision"]),
                client::cell(&a["queue"]["position"]),
                driver_says,
            ]
        })
        .collect();
    if !rows.is_empty() {
        client::table(
            &[
                "TARGET",
                "ACTION",
                "DRIVER",
                "WINDOW",
                "QUEUE",
                "DRIVER SAYS",
            ],
            &rows,
        );
    }
    for f in t["findings"].as_array().into_iter().flatten() {
        println!(
            "  {} {} at {}: {}",
            client::cell(&f["severity"]),
            client::cell(&f["code"]),
            client::cell(&f["path"]),
            client::cell(&f["message"])
        );
    }
    println!(
        "  summary: {} errors, {} warnings, {} targets, {} actions",
        t["summary"]["errors"],
        t["summary"]["warnings"],
        t["summary"]["targets"],
        t["summary"]["actions"]
    );
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub server: Server,
    /// Policy files or folders of them (`.yaml`, `.yml`, `.json`, `.toml`; subfolders included).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Disable directory-managed policies that are not in this bundle.
    #[arg(long)]
    pub prune: bool,
    /// Print the plan (create, update, unchanged, disable) without applying.
    #[arg(long)]
    pub dry_run: bool,
}

/// Apply files as one bundle: all or nothing. Exit 1 when refused.
pub fn apply(a: ApplyArgs) -> u8 {
    let mut files = Vec::new();
    for p in &a.paths {
        let read = if p.is_dir() {
            switchyard_api::bundle::read_dir(p)
        } else {
            std::fs::read_to_string(p).map(|content| {
                vec![switchyard_api::bundle::File {
                    path: p.display().to_string(),
                    content,
                }]
            })
        };
        match read {
            Ok(f) => files.extend(f),
            Err(e) => {
                eprintln!("error: reading {}: {e}", p.display());
                return crate::EXIT_USAGE;
            }
        }
    }
    if files.is_empty() {
        eprintln!("error: no policy files (.yaml, .yml, .json, .toml) in the given paths");
        return crate::EXIT_USAGE;
    }
    let body = serde_json::json!({
        "files": files.iter().map(|f| serde_json::json!({"path": f.path, "content": f.content})).collect::<Vec<_>>(),
        "prune": a.prune,
        "dry_run": a.dry_run,
    });
    client::run(&a.server, |c| async move {
        let out = c
            .post(
                "/api/policies/apply",
                Some(Body {
                    content_type: "application/json",
                    bytes: body.to_string().into_bytes(),
                }),
            )
            .await?;
        if c.output == Output::Json {
            println!("{}", client::pretty(&out));
            return Ok(EXIT_OK);
        }
        for w in out["warnings"].as_array().into_iter().flatten() {
            eprintln!(
                "{}: {} {} at {}: {}",
                client::cell(&w["file"]),
                client::cell(&w["severity"]),
                client::cell(&w["code"]),
                client::cell(&w["path"]),
                client::cell(&w["message"])
            );
        }
        let rows: Vec<Vec<String>> = out["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                vec![
                    client::cell(&s["action"]),
                    client::cell(&s["name"]),
                    client::cell(&s["version_int"]),
                    state(&s["enabled"]),
                    client::cell(&s["file"]),
                ]
            })
            .collect();
        client::table(&["ACTION", "POLICY", "VERSION", "STATE", "FILE"], &rows);
        println!(
            "{}",
            if out["applied"] == true {
                "applied as one bundle"
            } else {
                "dry run: nothing applied"
            }
        );
        Ok(EXIT_OK)
    })
}

/// `enabled` as a table cell.
fn state(enabled: &serde_json::Value) -> String {
    if *enabled == true {
        "enabled"
    } else {
        "disabled"
    }
    .into()
}
