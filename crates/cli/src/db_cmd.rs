//! `switchyard db …`: schema management.

use crate::{EXIT_BLOCKED, EXIT_OK};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply pending migrations (a new SQLite file is created). `serve` does this at start too.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Database URL: `sqlite://switchyard.db?mode=rwc` or `postgres://user@host/db`.
    #[arg(
        long,
        env = "SWITCHYARD_DATABASE__URL",
        default_value = "sqlite://switchyard.db?mode=rwc"
    )]
    database_url: String,
}

pub fn run(cmd: DbCommand) -> u8 {
    match cmd {
        DbCommand::Migrate(args) => migrate(&args),
    }
}

fn migrate(args: &MigrateArgs) -> u8 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let result = runtime.block_on(async {
        let store = switchyard_store::Store::connect(&args.database_url).await?;
        store.migrate().await
    });
    match result {
        Ok(0) => {
            println!("database is up to date");
            EXIT_OK
        }
        Ok(n) => {
            println!("applied {n} migration(s)");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_BLOCKED
        }
    }
}
