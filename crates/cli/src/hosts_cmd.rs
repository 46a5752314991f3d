//! `switchyard hosts`: configured hosts, their drivers' capabilities and the
//! discovered inventory, through the API.

use crate::client::{self, Client, Failure, Server};
use crate::{EXIT_OK, Output};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// The configured hosts with drivers, inventory freshness, queues and circuit breakers.
    List(ListArgs),
    /// What a host's drivers can do: capabilities, verbs, inverses.
    Capabilities(HostArgs),
    /// A host's discovered items; `--refresh` asks its drivers first.
    Inventory(InventoryArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    server: Server,
}

#[derive(Debug, Args)]
pub struct HostArgs {
    #[command(flatten)]
    server: Server,
    /// The host id.
    host: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Refresh {
    Fast,
    Full,
}

#[derive(Debug, Args)]
pub struct InventoryArgs {
    #[command(flatten)]
    server: Server,
    /// The host id.
    host: String,
    /// Ask the host's drivers first (an operator token is needed).
    #[arg(long, value_enum)]
    refresh: Option<Refresh>,
    /// Only items of this type (`vm`, `service`, ...).
    #[arg(long = "type")]
    item_type: Option<String>,
}

pub fn run(cmd: HostsCommand) -> u8 {
    match cmd {
        HostsCommand::List(a) => client::run(&a.server, list),
        HostsCommand::Capabilities(a) => {
            let server = a.server.clone();
            client::run(&server, |c| capabilities(c, a))
        }
        HostsCommand::Inventory(a) => {
            let server = a.server.clone();
            client::run(&server, |c| inventory(c, a))
        }
    }
}

async fn list(c: Client) -> Result<u8, Failure> {
    let body = c.get("/api/hosts").await?;
    if c.output == Output::Json {
        println!("{}", client::pretty(&body));
        return Ok(EXIT_OK);
    }
    let rows: Vec<Vec<String>> = body["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let labels = h["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", client::cell(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let open: Vec<String> = h["breakers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|b| b["state"] != "closed")
                .map(|b| {
                    format!(
                        "{}:{}",
                        client::cell(&b["driver"]),
                        client::cell(&b["state"])
                    )
                })
                .collect();
            vec![
                client::cell(&h["id"]),
                h["drivers"]
                    .as_array()
                    .map(|d| d.iter().map(client::cell).collect::<Vec<_>>().join(","))
                    .unwrap_or_default(),
                labels,
                format!(
                    "{} ({} stale)",
                    client::cell(&h["inventory"]["items"]),
                    client::cell(&h["inventory"]["stale"])
                ),
                format!(
                    "{} waiting, {} running",
                    client::cell(&h["queue"]["waiting"]),
                    client::cell(&h["queue"]["running"])
                ),
                if open.is_empty() {
                    "closed".into()
                } else {
                    open.join(" ")
                },
            ]
        })
        .collect();
    client::table(
        &["HOST", "DRIVERS", "LABELS", "ITEMS", "QUEUE", "CIRCUITS"],
        &rows,
    );
    Ok(EXIT_OK)
}

async fn capabilities(c: Client, a: HostArgs) -> Result<u8, Failure> {
    let body = c
        .get(&format!(
            "/api/hosts/{}/capabilities",
            client::encode(&a.host)
        ))
        .await?;
    if c.output == Output::Json {
        println!("{}", client::pretty(&body));
        return Ok(EXIT_OK);
    }
    let mut rows = Vec::new();
    for cap in body["capabilities"].as_array().into_iter().flatten() {
        for v in cap["verbs"].as_array().into_iter().flatten() {
            let flags: Vec<&str> = [
                (v["idempotent"] == true, "idempotent"),
                (v["dry_run"] == true, "dry-run"),
            ]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
            rows.push(vec![
                client::cell(&cap["driver"]),
                client::cell(&cap["name"]),
                client::cell(&cap["target_type"]),
                client::cell(&v["name"]),
                v["inverse"].as_str().unwrap_or("-").to_owned(),
                flags.join(","),
            ]);
        }
    }
    client::table(
        &["DRIVER", "CAPABILITY", "TARGET", "VERB", "INVERSE", "FLAGS"],
        &rows,
    );
    Ok(EXIT_OK)
}

async fn inventory(c: Client, a: InventoryArgs) -> Result<u8, Failure> {
    let mut q = Vec::new();
    if let Some(t) = &a.item_type {
        q.push(format!("type={}", client::encode(t)));
    }
    let host = client::encode(&a.host);
    // A refresh makes drivers act: a POST, never a GET.
    let body = match a.refresh {
        Some(r) => {
            q.push(format!(
                "mode={}",
                match r {
                    Refresh::Fast => "fast",
                    Refresh::Full => "full",
                }
            ));
            c.post(
                &format!("/api/hosts/{host}/inventory/refresh?{}", q.join("&")),
                None,
            )
            .await?
        }
        None => {
            c.get(&format!("/api/hosts/{host}/inventory?{}", q.join("&")))
                .await?
        }
    };
    if c.output == Output::Json {
        println!("{}", client::pretty(&body));
        return Ok(EXIT_OK);
    }
    for r in body["refresh"].as_array().into_iter().flatten() {
        if r["ok"] == true {
            eprintln!(
                "refreshed by {}: {} items{}",
                client::cell(&r["driver"]),
                client::cell(&r["items"]),
                if r["complete"] == true {
                    ""
                } else {
                    " (partial: stale)"
                }
            );
        } else {
            eprintln!(
                "refresh by {} failed: {}",
                client::cell(&r["driver"]),
                client::cell(&r["error"])
            );
        }
    }
    let items: &[Value] = body["items"].as_array().map_or(&[], Vec::as_slice);
    if items.is_empty() {
        println!("no items discovered on {}", a.host);
        return Ok(EXIT_OK);
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                client::cell(&i["type"]),
                client::cell(&i["id"]),
                client::cell(&i["name"]),
                i["state"]
                    .as_object()
                    .map_or_else(|| "-".into(), |s| Value::Object(s.clone()).to_string()),
                client::cell(&i["refreshed_at"]),
                if i["stale"] == true {
                    "stale".into()
                } else {
                    "fresh".into()
                },
            ]
        })
        .collect();
    client::table(
        &["TYPE", "ID", "NAME", "STATE", "REFRESHED", "FRESHNESS"],
        &rows,
    );
    Ok(EXIT_OK)
}
