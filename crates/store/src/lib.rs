//! switchyard's storage, over SQLite (the embedded default) or PostgreSQL.
//!
//! Connecting (SQLite in WAL mode with a busy timeout, created on first
//! use) and migrations; policies with their version history — save (refusing
//! a duplicate `spec_hash`), update guarded by the expected version,
//! enable/disable, archive, versions, diff, rollback; the race-free window
//! claims and inbox that decisions rest on; the runs ledger with its
//! group-commit write path (`batch`; on SQLite on a connection of its own,
//! `lite`), guarded transitions, queries and cap;
//! the engine lease; inventory, audit events and dry-run transcripts. Only
//! this crate talks SQL.

mod batch;
mod claims;
mod entity;
mod inventory;
mod lease;
mod ledger;
mod lite;
mod policies;
mod prune;
mod wal;

pub use batch::{
    CorrelationRow, CorrelationWrite, DecisionOutcome, EventDecisions, EventOutcome,
    PlannedDecision, PlannedRun, REASON_QUEUE_FULL, SettledRun, Suppression, Transition, Window,
    Written,
};
pub use claims::ClaimKind;
pub use inventory::{AuditEvent, DiscoveredItem, InventoryQuery, InventoryRecord};
pub use lease::Lease;
pub use ledger::{
    MAX_OUTPUT_BYTES, NewDecision, NewRun, RunFilter, RunRecord, RunStatus, RunUpdate,
};
pub use policies::{
    BundleAction, BundleStep, NewPolicy, PolicyRecord, PolicyRef, Previous, RestoredStep,
    VersionDiff, VersionRecord,
};
pub use prune::PruneReport;

use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use sea_orm_migration::MigratorTrait;
use std::sync::Arc;
use std::time::Duration;
use switchyard_migrations::Migrator;
use thiserror::Error;

/// Times are stored as epoch milliseconds so both backends compare them alike.
pub(crate) fn epoch_ms(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

/// The inverse of [`epoch_ms`].
pub(crate) fn from_epoch_ms(v: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(v).unwrap_or_default()
}

/// What can go wrong in the store.
#[derive(Debug, Error)]
pub enum Error {
    #[error("a policy with the same behaviour already exists: `{name}` ({id})")]
    Duplicate { id: uuid::Uuid, name: String },
    #[error("a policy named `{0}` already exists")]
    NameTaken(String),
    #[error("policy `{name}` is managed by `{managed_by}`, not by this bundle")]
    ManagedElsewhere { name: String, managed_by: String },
    #[error("no policy `{0}`")]
    NotFound(String),
    #[error("policy `{name}` is at version {current}, not {expected}")]
    VersionMismatch {
        name: String,
        expected: i64,
        current: i64,
    },
    #[error("policy `{name}` has no version {version}")]
    NoSuchVersion { name: String, version: i64 },
    #[error(
        "the engine lease held by `{holder}` at epoch {epoch} is lost or expired; this engine must stop writing"
    )]
    LeaseLost { holder: String, epoch: i64 },
    #[error("`{0}` is not a runs cursor")]
    Cursor(String),
    #[error("unsupported database URL `{0}`: use sqlite://… or postgres://…")]
    Url(String),
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
}

impl Error {
    /// The database refused the data of a statement — a value it cannot
    /// store (PostgreSQL's data exceptions, SQLSTATE class 22, such as a NUL
    /// character in text), a constraint (class 23), SQLite's constraint,
    /// size and type errors — as opposed to failing to run it at all. The
    /// same write fails the same way on every retry; a connection, disk or
    /// server failure is not this.
    pub fn is_refused_data(&self) -> bool {
        use sea_orm::{DbErr, RuntimeErr};
        let Error::Db(DbErr::Exec(e) | DbErr::Query(e)) = self else {
            return false;
        };
        match e {
            RuntimeErr::SqlxError(e) => match &**e {
                sea_orm::sqlx::Error::Database(db) => {
                    let code = db.code().unwrap_or_default();
                    if db
                        .try_downcast_ref::<sea_orm::sqlx::postgres::PgDatabaseError>()
                        .is_some()
                    {
                        code.starts_with("22") || code.starts_with("23")
                    } else {
                        // SQLite: the extended result code; the primary one is its low byte.
                        let primary = code.parse::<i64>().unwrap_or_default() & 0xff;
                        // SQLITE_TOOBIG, SQLITE_CONSTRAINT, SQLITE_MISMATCH
                        matches!(primary, 18..=20)
                    }
                }
                _ => false,
            },
            RuntimeErr::Internal(text) => text.starts_with(lite::REFUSED),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

/// Store settings.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Versions kept per policy (the newest; at least 1). `None`: all.
    pub max_versions: Option<usize>,
}

/// The writer's page cache, as SQLite's `cache_size` (negative: KiB). At
/// SQLite's default of 2 MiB, a profile of the end-to-end bench had SQLite's
/// thread spend about a fifth of its time reading pages back from the OS
/// (`pread`); at 64 MiB those reads no longer show.
const SQLITE_CACHE_KIB: &str = "-65536";

/// Prepared statements kept per connection.
pub(crate) const STATEMENT_CACHE: usize = 256;

/// How long a SQLite write waits for another before failing.
pub(crate) const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings of both connections that write SQLite: the pool's and the
/// engine writer's own ([`lite`]).
pub(crate) const SQLITE_PRAGMAS: [(&str, &str); 7] = [
    ("journal_mode", "WAL"),
    ("synchronous", "NORMAL"),
    ("foreign_keys", "ON"),
    // Neither checkpoints on commit: a background connection does ([`wal`]).
    ("wal_autocheckpoint", "0"),
    ("journal_size_limit", wal::JOURNAL_SIZE_LIMIT),
    ("cache_size", SQLITE_CACHE_KIB),
    // A multi-row statement inside a transaction keeps a statement journal;
    // in memory it is not spilled to a temporary file (a write syscall per
    // page otherwise).
    ("temp_store", "memory"),
];

/// The store: a cheap, cloneable handle to one database.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    options: StoreOptions,
    /// SQLite: the WAL's upkeep, shared with the background checkpointer,
    /// which runs while any clone of this store lives.
    wal: Option<Arc<wal::Wal>>,
    /// SQLite: the engine writer's own connection (see [`lite`]).
    lite: Option<Arc<lite::Lite>>,
    /// What the ledger pruner remembers between passes.
    prune: Arc<std::sync::Mutex<prune::PruneState>>,
}

impl Store {
    /// Connect to `url` (`sqlite://path?mode=rwc` or `postgres://…`) without migrating.
    pub async fn connect(url: &str) -> Result<Store, Error> {
        let sqlite = url.starts_with("sqlite:");
        if !sqlite && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(Error::Url(url.to_owned()));
        }
        let mut opts = ConnectOptions::new(url.to_owned());
        // Room for every statement text the write path uses (a few kinds,
        // each in nine padded sizes) besides the API's queries, so none is
        // parsed again.
        opts.sqlx_logging(false)
            .connect_timeout(Duration::from_secs(10))
            .map_sqlx_postgres_opts(|o| {
                // A session that stops in the middle of a transaction (its
                // engine frozen, its network gone) would hold the lease row
                // it locked until the server noticed: PostgreSQL ends it
                // after 10 s idle, so a standby can take over. A statement
                // that waits for a lock that long fails, and is retried.
                o.statement_cache_capacity(STATEMENT_CACHE).options([
                    ("idle_in_transaction_session_timeout", "10s"),
                    ("lock_timeout", "10s"),
                ])
            });
        if sqlite {
            // One writer; readers do not block it (WAL); writers wait instead of
            // failing. The writer never checkpoints the WAL itself (a checkpoint
            // stalls the commit that triggers it); a background connection does.
            // An embedded file cannot go stale, so the pool does not ping it
            // before every transaction (a round trip to SQLite's thread each).
            opts.max_connections(1)
                .test_before_acquire(false)
                .map_sqlx_sqlite_opts(|o| {
                    SQLITE_PRAGMAS
                        .iter()
                        .fold(o, |o, (key, value)| o.pragma(*key, *value))
                        .busy_timeout(SQLITE_BUSY_TIMEOUT)
                        .statement_cache_capacity(STATEMENT_CACHE)
                });
        }
        let db = Database::connect(opts).await?;
        // Opened after the pool, which creates the file and puts it in WAL mode.
        let lite = match sqlite {
            true => match lite::Lite::open(url) {
                Ok(lite) => lite.map(Arc::new),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the engine writer's own SQLite connection; it writes through the pool instead");
                    None
                }
            },
            false => None,
        };
        let wal = sqlite.then(|| Arc::new(wal::Wal::default()));
        if let Some(wal) = &wal {
            match wal::connect(url).await {
                Ok(conn) => wal::Wal::checkpoint_in_background(conn, Arc::downgrade(wal)),
                Err(e) => tracing::warn!(
                    error = %e,
                    "cannot open the WAL checkpoint connection; the log is checkpointed only at close"
                ),
            }
        }
        Ok(Store {
            db,
            options: StoreOptions::default(),
            wal,
            lite,
            prune: Arc::default(),
        })
    }

    /// After a commit on the engine's write path: on SQLite, let the WAL
    /// start over when the background checkpointer asked (see [`wal`]).
    pub(crate) async fn after_commit(&self) {
        if let Some(wal) = &self.wal {
            wal.rewind_if_asked(&self.db, self.lite.as_deref()).await;
        }
    }

    /// Hand back the pool's connection if [`Store::write_batch`] kept it for
    /// a next batch (on SQLite; nothing otherwise). Call on a Tokio runtime.
    pub fn release_write_gate(&self) {
        if let Some(lite) = &self.lite {
            lite.release_gate();
        }
    }

    /// Begin a transaction of the engine's write path (see [`lite`]).
    pub(crate) async fn begin_write(&self) -> Result<lite::WriteTxn<'_>, Error> {
        Ok(lite::WriteTxn::begin(&self.db, self.lite.as_deref()).await?)
    }

    /// The same store with these settings.
    pub fn with_options(mut self, options: StoreOptions) -> Store {
        self.options = options;
        self
    }

    /// Connect and apply every pending migration.
    pub async fn open(url: &str) -> Result<Store, Error> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Apply pending migrations; returns how many ran.
    pub async fn migrate(&self) -> Result<usize, Error> {
        let pending = Migrator::get_pending_migrations(&self.db).await?.len();
        Migrator::up(&self.db, None).await?;
        Ok(pending)
    }

    /// SQLite's `PRAGMA integrity_check` (`Some("ok")` when intact); `None` on PostgreSQL.
    pub async fn integrity_check(&self) -> Result<Option<String>, Error> {
        use sea_orm::ConnectionTrait;
        if self.db.get_database_backend() != sea_orm::DatabaseBackend::Sqlite {
            return Ok(None);
        }
        let stmt = sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Sqlite,
            "PRAGMA integrity_check",
        );
        let rows = self.db.query_all_raw(stmt).await?;
        let lines: Vec<String> = rows
            .iter()
            .filter_map(|r| r.try_get_by_index::<String>(0).ok())
            .collect();
        Ok(Some(lines.join("; ")))
    }

    /// Roll back every migration (tests: up → down → up).
    pub async fn migrate_down_all(&self) -> Result<(), Error> {
        Migrator::down(&self.db, None).await?;
        Ok(())
    }
}
