//! The `switchyard` binary.
//!
//! `serve` runs switchyard; offline commands (`policy validate`, `policy
//! compile`, `driver check`) need no server; client commands (`policy list`,
//! `runs`, `hosts`, …) talk to the API (`client`). Exit codes scripts can
//! trust: 0 success, 1 refused (a blocker, a dry-run error, a 4xx answer),
//! 2 usage or IO errors, 3 the server is unreachable or failing.

mod client;
mod config;
mod db_cmd;
mod driver_cmd;
mod event_cmd;
mod hosts_cmd;
mod init_cmd;
mod policy_client;
mod policy_cmd;
mod policy_dir;
mod runs_cmd;
mod serve;
mod token_cmd;
mod webhooks;

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

/// mimalloc instead of the system allocator: the hot path (events, decisions,
/// ledger rows) allocates many short-lived strings and JSON values, and glibc's
/// malloc spent a tenth of the engine's CPU on them (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process. mimalloc asks for them on its
/// arenas, and the kernel then zeroes a whole 2 MiB page each time the
/// allocator first touches memory: in a profile of the end-to-end bench the
/// ledger writer spent a quarter of its time in the kernel clearing pages
/// (docs/BENCHMARKS.md). Linux only; if the kernel refuses, nothing changes.
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
}

/// Event-driven automation for infrastructure: policies in, safe actions out.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a configuration to start from: switchyard.toml, policies/ with one example.
    Init(init_cmd::InitArgs),
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
    /// Read and act on the execution ledger (list, show, tail, undo, cancel).
    #[command(subcommand)]
    Runs(runs_cmd::RunsCommand),
    /// Hosts, their capabilities and inventory.
    #[command(subcommand)]
    Hosts(hosts_cmd::HostsCommand),
    /// Issue API tokens.
    #[command(subcommand)]
    Token(token_cmd::TokenCommand),
    /// Manage the database.
    #[command(subcommand)]
    Db(db_cmd::DbCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
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

/// A tokio runtime for a command — `None`: on this thread; `Some(n)`: `n`
/// worker threads, one per core for 0 — or, after saying why there is none,
/// the exit code to end with.
pub fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime, u8> {
    let mut builder = match workers {
        None => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if n > 0 {
                b.worker_threads(n);
            }
            b
        }
    };
    builder.enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the runtime: {e}");
        EXIT_USAGE
    })
}

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: a blocker was found.
pub const EXIT_BLOCKED: u8 = 1;
/// Exit code: bad usage or an IO error.
pub const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    without_transparent_huge_pages();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let code = match cli.command {
        Command::Init(args) => init_cmd::run(args),
        Command::Policy(cmd) => policy_cmd::run(cmd),
        Command::Driver(cmd) => driver_cmd::run(cmd),
        Command::Event(cmd) => event_cmd::run(cmd),
        Command::Db(cmd) => db_cmd::run(cmd),
        Command::Serve(args) => serve::run(args),
        Command::Runs(cmd) => runs_cmd::run(cmd),
        Command::Token(cmd) => token_cmd::run(cmd),
        Command::Hosts(cmd) => hosts_cmd::run(cmd),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "switchyard",
                &mut std::io::stdout(),
            );
            EXIT_OK
        }
    };
    ExitCode::from(code)
}
