//! Keeping SQLite's write-ahead log bounded while writes never pause.
//!
//! The writer does not checkpoint on commit (a checkpoint stalls the commit
//! that runs it); a connection of its own checkpoints `PASSIVE`ly every
//! [`PERIOD`]. That alone cannot bound the log under a steady stream of writes.
//! SQLite starts the log over only when a write transaction begins with every
//! frame already copied into the database, and a passive checkpoint copies
//! the frames that were there when it began while the writer appends more.
//! So while writes go on the log only grows: in the end-to-end benchmark by
//! about 2.7 KB per event recorded when hundreds share a commit, and by about
//! 21 KB when each is committed on its own (1,000 events/s): gigabytes an
//! hour.
//!
//! When a background pass finds the log past [`REWIND_FRAMES`], it asks the
//! writer to finish the job. After its next commit the writer checkpoints
//! from its own connection, between its transactions, where no write can slip
//! in and only the frames since that pass began are left to copy. Its next
//! transaction then starts the log over, and the file is rewritten from the
//! start instead of grown.

use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr,
    Statement,
};
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Frames in the log (4 KiB pages: 64 MiB) past which the writer is asked to
/// let it start over. The writer's step pauses it for a few milliseconds; at
/// 1,000 events/s, each committed on its own, the log grows by about 5,400
/// frames a second, so this comes every three seconds or so. At 16 MiB it
/// came every second, and the paced benchmark's p99 showed it.
pub(crate) const REWIND_FRAMES: i64 = 16_384;

/// The size SQLite trims the log file back to when it starts over: above
/// what it reaches under sustained writes ([`REWIND_FRAMES`] plus what is
/// written while a pass and the writer's step run), so the file is not
/// trimmed and grown again each time, while a burst that outran the
/// checkpoints does not leave a large file.
pub(crate) const JOURNAL_SIZE_LIMIT: &str = "134217728";

/// How often the background connection checkpoints. Decisions committed while
/// a pass copies the log are delayed; short passes often delay fewer than
/// long ones seldom. In the paced benchmark (1,000 events/s, measured while
/// the writer still went through the pool) the p99 was 3.0–4.3 ms in 10 of
/// 11 runs at 100 ms (8.7 once), 3.5–6.6 ms in 10 of 11 at 500 ms (13.0
/// once), and worse at 2 s; throughput did not move.
const PERIOD: Duration = Duration::from_millis(100);

/// Shared by a store's clones and its background checkpointer, which stops
/// once every clone is gone.
#[derive(Debug)]
pub(crate) struct Wal {
    /// Set by a background pass that found the log long; taken by the writer.
    rewind: AtomicBool,
    /// [`REWIND_FRAMES`], but for tests.
    rewind_frames: i64,
}

impl Default for Wal {
    fn default() -> Wal {
        Wal {
            rewind: AtomicBool::new(false),
            rewind_frames: REWIND_FRAMES,
        }
    }
}

/// The background checkpointer's connection to the SQLite database at `url`.
pub(crate) async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .max_connections(1)
        .connect_timeout(Duration::from_secs(10))
        // Opened on a file not yet in WAL mode, a connection that only ever
        // runs `wal_checkpoint` was seen to report -1 frames and copy
        // nothing; asking for WAL itself keeps it in WAL mode whichever
        // connection opens the file first.
        .map_sqlx_sqlite_opts(|o| {
            o.busy_timeout(Duration::from_millis(100))
                .journal_mode(SqliteJournalMode::Wal)
        });
    Database::connect(opts).await
}

fn checkpoint() -> Statement {
    Statement::from_string(DatabaseBackend::Sqlite, "PRAGMA wal_checkpoint(PASSIVE)")
}

impl Wal {
    /// Checkpoint from `conn` every [`PERIOD`] while `wal` lives.
    pub(crate) fn checkpoint_in_background(conn: DatabaseConnection, wal: Weak<Wal>) {
        tokio::spawn(async move {
            let mut warned = false;
            loop {
                tokio::time::sleep(PERIOD).await;
                let Some(wal) = wal.upgrade() else { break };
                match wal.pass(&conn).await {
                    Ok(Some(frames)) if frames < 0 && !warned => {
                        warned = true;
                        tracing::warn!(
                            "the WAL checkpoint connection does not see the database in WAL mode; the log is not checkpointed and will grow"
                        );
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => tracing::debug!("WAL checkpoint skipped: another one was running"),
                    Err(e) => tracing::debug!(error = %e, "WAL checkpoint skipped"),
                }
            }
            let _ = conn.close().await;
        });
    }

    /// One background pass: checkpoint from `conn`, and ask the writer to
    /// rewind the log when it is past [`REWIND_FRAMES`]. Returns the frames
    /// in the log (-1 when the connection does not see WAL mode), or `None`
    /// when another checkpoint (the writer's step) was running.
    async fn pass(&self, conn: &DatabaseConnection) -> Result<Option<i64>, DbErr> {
        // One row: (busy, frames in the log, frames copied); the frames are
        // -1 when not in WAL mode, and when busy.
        let Some(row) = conn.query_one_raw(checkpoint()).await? else {
            return Ok(Some(0));
        };
        let busy: i64 = row.try_get_by_index(0)?;
        if busy != 0 {
            return Ok(None);
        }
        let frames: i64 = row.try_get_by_index(1)?;
        if frames >= self.rewind_frames {
            self.rewind.store(true, Ordering::Relaxed);
        }
        Ok(Some(frames))
    }

    /// Called by the writer after a commit: when a background pass asked for
    /// it, copy the rest of the log from the writer's connection, so that its
    /// next transaction starts the log over.
    pub(crate) async fn rewind_if_asked(
        &self,
        db: &DatabaseConnection,
        writer: Option<&crate::lite::Lite>,
    ) {
        if !self.rewind.swap(false, Ordering::Relaxed) {
            return;
        }
        let done = match writer {
            Some(lite) => lite.run(&checkpoint().sql),
            None => db.execute_raw(checkpoint()).await.map(drop),
        };
        if let Err(e) = done {
            tracing::debug!(error = %e, "WAL checkpoint on the writer's connection skipped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use sea_orm::TransactionTrait;
    use std::sync::Arc;

    /// A pass that ran: the store's own checkpointer may be mid-pass, and a
    /// second checkpoint meanwhile is refused as busy.
    async fn ran(wal: &Wal, conn: &DatabaseConnection) -> i64 {
        for _ in 0..100 {
            if let Some(frames) = wal.pass(conn).await.unwrap() {
                return frames;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("every checkpoint for a second was refused as busy");
    }

    async fn open() -> (tempfile::TempDir, String, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
        let store = Store::open(&url).await.unwrap();
        (dir, url, store)
    }

    /// Inbox rows `from..from + n`, ten to a transaction: each commit appends
    /// the pages it changed to the log again, as the engine's writer does.
    async fn write(store: &Store, from: u64, n: u64) {
        for start in (from..from + n).step_by(10) {
            let rows: Vec<String> = (start..(start + 10).min(from + n))
                .map(|i| format!("('delivery-{i:08}', 'event-{i}', {i})"))
                .collect();
            let txn = store.db.begin().await.unwrap();
            txn.execute_unprepared(&format!(
                "INSERT INTO inbox (delivery_key, event_id, received_at_ms) VALUES {}",
                rows.join(", ")
            ))
            .await
            .unwrap();
            txn.commit().await.unwrap();
        }
    }

    #[tokio::test]
    async fn the_background_checkpointer_copies_the_log_into_the_database() {
        let (dir, _url, store) = open().await;
        let file = dir.path().join("s.db");
        let before = std::fs::metadata(&file).unwrap().len();
        write(&store, 0, 5_000).await;
        // The rows are in the log; a checkpoint (every PERIOD) copies
        // their pages into the database file, which grows. A generous bound,
        // so a failure says "never", not "slow".
        let mut grown = false;
        for _ in 0..600 {
            if std::fs::metadata(&file).unwrap().len() > before {
                grown = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            grown,
            "no checkpoint copied the log into {}",
            file.display()
        );
    }

    #[tokio::test]
    async fn a_long_log_starts_over_after_the_writers_next_commit() {
        let (_dir, url, store) = open().await;
        // The store's own checkpointer runs too; whatever it copies can only
        // let the log start over sooner.
        let wal = Arc::new(Wal {
            rewind: AtomicBool::new(false),
            rewind_frames: 50,
        });
        let other = connect(&url).await.unwrap();
        write(&store, 0, 2_000).await;
        let frames = ran(&wal, &other).await;
        assert!(frames >= 50, "{frames} frames: too few to ask for a rewind");
        // Fifty commits after that pass, as a busy writer's are: not yet
        // copied, so the log could not start over on its own.
        write(&store, 2_000, 500).await;
        wal.rewind_if_asked(&store.db, store.lite.as_deref()).await;
        // The writer copied them, so its next commit starts the log over. Had
        // the log gone on, it would hold at least a frame per commit since.
        write(&store, 2_500, 10).await;
        let after = ran(&wal, &other).await;
        assert!(
            after < 50,
            "{after} frames: the log went on instead of starting over"
        );
    }

    #[tokio::test]
    async fn a_short_log_is_left_to_the_background() {
        let (_dir, url, store) = open().await;
        let wal = Wal::default();
        let other = connect(&url).await.unwrap();
        write(&store, 0, 100).await;
        let frames = ran(&wal, &other).await;
        assert!((1..REWIND_FRAMES).contains(&frames), "{frames} frames");
        assert!(!wal.rewind.load(Ordering::Relaxed));
    }
}
