//! The `switchyard` binary.
//!
//! `serve` runs switchyard; offline commands (`policy validate`, `policy
//! compile`, `driver check`) need no server; `runs` reads the ledger database.
//! Exit codes scripts can trust: 0 success, 1 findings with a blocker, 2 usage
//! or IO errors.

mod config;
mod db_cmd;
mod driver_cmd;
mod event_cmd;
mod policy_cmd;
mod runs_cmd;
mod serve;
mod token_cmd;

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

/// Event-driven automation for infrastructure: policies in, safe actions out.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run switchyard: intake, engine and drivers (configuration in switchyard.toml).
    Serve(serve::ServeArgs),
    /// Write, check and inspect policies.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Work with driver plugins.
    #[command(subcommand)]
    Driver(driver_cmd::DriverCommand),
    /// Publish events.
    #[command(subcommand)]
    Event(event_cmd::EventCommand),
    /// Read the execution ledger.
    #[command(subcommand)]
    Runs(runs_cmd::RunsCommand),
    /// Issue API tokens.
    #[command(subcommand)]
    Token(token_cmd::TokenCommand),
    /// Manage the database.
    #[command(subcommand)]
    Db(db_cmd::DbCommand),
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Lines for people.
    #[default]
    Text,
    /// JSON for scripts.
    Json,
}

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: a blocker was found.
pub const EXIT_BLOCKED: u8 = 1;
/// Exit code: bad usage or an IO error.
pub const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let code = match cli.command {
        Command::Policy(cmd) => policy_cmd::run(cmd),
        Command::Driver(cmd) => driver_cmd::run(cmd),
        Command::Event(cmd) => event_cmd::run(cmd),
        Command::Db(cmd) => db_cmd::run(cmd),
        Command::Serve(args) => serve::run(args),
        Command::Runs(cmd) => runs_cmd::run(cmd),
        Command::Token(cmd) => token_cmd::run(cmd),
    };
    ExitCode::from(code)
}
