//! `switchyard event publish`: put an event on the stream, as a producer would.

use crate::{EXIT_BLOCKED, EXIT_OK, EXIT_USAGE, Output};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};
use std::io::Read;
use std::path::PathBuf;
use switchyard_intake::Publisher;
use switchyard_spec::event::{self, Event, Limits};

#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Publish one event to switchyard.events.<kind> and wait for JetStream's ack.
    ///
    /// Exits 0 when published (or de-duplicated), 1 when it could not be
    /// published, 2 on bad input. The stream is created by `switchyard serve`.
    Publish(PublishArgs),
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Event kind: dotted lowercase tokens (`ups.on_battery`).
    #[arg(long, required_unless_present = "event")]
    kind: Option<String>,
    /// The host the event is about.
    #[arg(long)]
    host: Option<String>,
    /// Event id (de-duplication key); default: a new UUIDv7.
    #[arg(long)]
    id: Option<String>,
    /// Where the event comes from.
    #[arg(long)]
    source: Option<String>,
    /// Severity (`info`, `warning`, `critical`, …).
    #[arg(long)]
    severity: Option<String>,
    /// When it happened (RFC 3339); default: the receive time.
    #[arg(long, value_name = "RFC3339")]
    time: Option<String>,
    /// `data` as a JSON object.
    #[arg(long, value_name = "JSON", conflicts_with = "file")]
    data: Option<String>,
    /// Read `data` (a JSON object) from a file; `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Publish a complete event from a file (native envelope or CloudEvents JSON); `-` reads standard input.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kind", "data", "file", "host", "source", "severity", "time"])]
    event: Option<PathBuf>,
    /// NATS server (default: the configuration's nats.url, else nats://127.0.0.1:4222).
    #[arg(long, env = "SWITCHYARD_NATS__URL")]
    nats_url: Option<String>,
    /// Names nats.url when --nats-url is not given.
    #[command(flatten)]
    config: crate::config::ConfigFile,
    /// Output style.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

pub fn run(cmd: EventCommand) -> u8 {
    match cmd {
        EventCommand::Publish(args) => publish(&args),
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("standard input: {e}"))?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Build (and check) the payload to publish: `(kind, id, bytes)`.
fn payload(args: &PublishArgs) -> Result<(String, String, Vec<u8>), String> {
    if let Some(path) = &args.event {
        let bytes = read(path)?;
        let ev = event::parse(&bytes, Limits::default())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let id = ev
            .id
            .clone()
            .or_else(|| args.id.clone())
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        return Ok((ev.kind, id, bytes));
    }
    let data: Map<String, Value> = match (&args.data, &args.file) {
        (Some(text), _) => {
            serde_json::from_str(text).map_err(|e| format!("--data is not a JSON object: {e}"))?
        }
        (None, Some(path)) => serde_json::from_slice(&read(path)?)
            .map_err(|e| format!("{}: not a JSON object: {e}", path.display()))?,
        (None, None) => Map::new(),
    };
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let mut candidate = json!({
        "id": id, "kind": args.kind, "host": args.host, "source": args.source, "severity": args.severity, "data": data,
    });
    if let Some(t) = &args.time {
        candidate["time"] = Value::String(t.clone());
    }
    // The same checks intake applies: an event it would dead-letter is refused here.
    let bytes = candidate.to_string().into_bytes();
    let ev: Event = event::parse(&bytes, Limits::default()).map_err(|e| e.to_string())?;
    Ok((ev.kind, id, bytes))
}

fn publish(args: &PublishArgs) -> u8 {
    let (kind, id, bytes) = match payload(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let url = match args.config.or_flag(args.nats_url.as_ref(), |c| c.nats.url) {
        Ok(url) => url,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let shown = switchyard_plugin::secrets::redact_urls(&url);
    let runtime = match crate::runtime(None) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let publisher = Publisher::connect(&url, std::time::Duration::from_secs(10))
            .await
            .map_err(|e| format!("cannot connect to NATS at {shown}: {}", switchyard_plugin::secrets::redact_urls(&e.to_string())))?;
        publisher.publish_payload(&kind, &id, bytes).await.map_err(|e| {
            let msg = e.to_string();
            if msg.contains("no responders") || msg.contains("no stream") || msg.contains("503") {
                format!("{msg}: no JetStream stream takes switchyard.events.{kind}; `switchyard serve` creates it")
            } else {
                msg
            }
        })
    });
    match result {
        Ok(p) => {
            match args.output {
                Output::Text => println!(
                    "{} {kind} id={} stream={} seq={}",
                    if p.duplicate {
                        "duplicate (already published):"
                    } else {
                        "published"
                    },
                    p.event_id,
                    p.stream,
                    p.seq
                ),
                Output::Json => println!(
                    "{}",
                    json!({"kind": kind, "id": p.event_id, "stream": p.stream, "seq": p.seq, "duplicate": p.duplicate})
                ),
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_BLOCKED
        }
    }
}
