//! `switchyard driver …`: conformance checks for driver plugins.

use crate::{EXIT_BLOCKED, EXIT_OK, EXIT_USAGE, Output};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use switchyard_plugin::check::{self, CheckOptions};

#[derive(Debug, Subcommand)]
pub enum DriverCommand {
    /// Check driver folders: the manifest, the adapter's initialize and
    /// health, and a dry-run of every verb's examples (whose results must
    /// match dry-run-result.schema.json). Exits 0 only if every check passes.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Driver folders, each holding plugin.yaml.
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Also run execute on every example (this really does what the examples say).
    #[arg(long)]
    execute: bool,
    /// Driver config (`[drivers.config.<name>]`) as JSON, sent with initialize.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    driver_config: String,
    /// Per-request timeout in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    timeout: u64,
    /// Output style.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

pub fn run(cmd: DriverCommand) -> u8 {
    match cmd {
        DriverCommand::Check(args) => check_cmd(&args),
    }
}

fn check_cmd(args: &CheckArgs) -> u8 {
    let driver_config: Value = match serde_json::from_str(&args.driver_config) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: --driver-config is not JSON: {e}");
            return EXIT_USAGE;
        }
    };
    let options = CheckOptions {
        execute: args.execute,
        driver_config,
        timeout: Duration::from_secs(args.timeout.max(1)),
        // Drivers installed beside the switchyard binary are found without PATH changes.
        search: std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .into_iter()
            .collect(),
    };
    let runtime = match crate::runtime(Some(2)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let mut all_ok = true;
    let mut report = Vec::new();
    for dir in &args.dirs {
        let checks = runtime.block_on(check::check_driver(dir, &options));
        let ok = check::all_passed(&checks);
        all_ok &= ok;
        match args.output {
            Output::Text => {
                for c in &checks {
                    let detail = if c.detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", c.detail)
                    };
                    println!("{}: {:<4} {}{detail}", dir.display(), c.status, c.name);
                }
                let failed = checks.iter().filter(|c| c.status == "fail").count();
                println!(
                    "{}: {}",
                    dir.display(),
                    if ok {
                        format!("ok ({} checks)", checks.len())
                    } else {
                        format!("FAILED ({failed} of {} checks)", checks.len())
                    }
                );
            }
            Output::Json => {
                report.push(json!({"dir": dir.display().to_string(), "ok": ok, "checks": checks}))
            }
        }
    }
    if args.output == Output::Json {
        println!("{:#}", Value::Array(report));
    }
    if all_ok { EXIT_OK } else { EXIT_BLOCKED }
}
