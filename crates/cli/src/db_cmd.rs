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
    /// Database URL: `sqlite://switchyard.db?mode=rwc` or `postgres://user@host/db`
    /// (default: the configuration's database.url).
    #[arg(long, env = "SWITCHYARD_DATABASE__URL")]
    database_url: Option<String>,
    /// Names database.url when --database-url is not given.
    #[command(flatten)]
    config: crate::config::ConfigFile,
}

pub fn run(cmd: DbCommand) -> u8 {
    match cmd {
        DbCommand::Migrate(args) => migrate(&args),
    }
}

fn migrate(args: &MigrateArgs) -> u8 {
    let url = match args
        .config
        .or_flag(args.database_url.as_ref(), |c| c.database_url())
    {
        Ok(url) => url,
        Err(e) => {
            eprintln!("error: {e}");
            return crate::EXIT_USAGE;
        }
    };
    let runtime = match crate::runtime(None) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let store = switchyard_store::Store::connect(&url).await?;
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
