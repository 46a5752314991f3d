//! The engine lease: one active engine per database.
//!
//! Taking over an expired lease bumps its epoch; ledger writes carry the
//! holder's [`Lease`] and fail once a newer epoch exists, so an engine that
//! lost its lease (paused, partitioned) cannot overwrite its successor's work.
//!
//! Expiry is judged on the database's clock, never on an engine's: two
//! engines on machines whose clocks disagree still agree on when a lease
//! ends. Every ledger write reads the lease row in its own transaction; on
//! PostgreSQL it locks it `FOR SHARE`, so a takeover (an `UPDATE` of that
//! row) waits for the write to commit, and the new holder's recovery, which
//! reads after its takeover, sees everything the old holder wrote.

use crate::lite::Tx;
use crate::{Error, Store};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

const NAME: &str = "engine";

/// A held lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub epoch: i64,
    pub expires_at: DateTime<Utc>,
}

/// The database's clock in epoch milliseconds, as SQL.
fn db_now_ms(backend: DatabaseBackend) -> &'static str {
    match backend {
        DatabaseBackend::Postgres => "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint",
        _ => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    }
}

impl Store {
    /// Take the lease for `holder` for `ttl` if it is free, expired, or
    /// already theirs (then it is renewed with the same epoch). `None`:
    /// another holder has it. Expiry is judged on the database's clock.
    pub async fn acquire_lease(
        &self,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<Lease>, Error> {
        let backend = self.db.get_database_backend();
        let now = db_now_ms(backend);
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4);
        let p = self.placeholders(4);
        // Same holder: keep the epoch. Another holder after expiry: epoch + 1.
        let sql = format!(
            "INSERT INTO engine_lease (name, holder, epoch, expires_at_ms) VALUES ({p0}, {p1}, 1, {now} + {p2}) \
             ON CONFLICT (name) DO UPDATE SET \
               epoch = CASE WHEN engine_lease.holder = excluded.holder THEN engine_lease.epoch ELSE engine_lease.epoch + 1 END, \
               holder = excluded.holder, expires_at_ms = excluded.expires_at_ms \
             WHERE engine_lease.holder = {p3} OR engine_lease.expires_at_ms <= {now} RETURNING epoch, expires_at_ms",
            p0 = p[0],
            p1 = p[1],
            p2 = p[2],
            p3 = p[3],
        );
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                vec![NAME.into(), holder.into(), ttl_ms.into(), holder.into()],
            ))
            .await?;
        match row {
            Some(r) => Ok(Some(Lease {
                holder: holder.to_owned(),
                epoch: r.try_get::<i64>("", "epoch")?,
                expires_at: crate::from_epoch_ms(r.try_get::<i64>("", "expires_at_ms")?),
            })),
            None => Ok(None),
        }
    }

    /// Give the lease up at a graceful stop, so a standby takes over at its
    /// next attempt instead of after the TTL. Only the current holder's
    /// epoch is released; a lease someone else took is left alone.
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), Error> {
        let p = self.placeholders(3);
        let sql = format!(
            "UPDATE engine_lease SET expires_at_ms = 0 WHERE name = {} AND holder = {} AND epoch = {}",
            p[0], p[1], p[2]
        );
        let backend = self.db.get_database_backend();
        self.db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql,
                vec![
                    NAME.into(),
                    lease.holder.as_str().into(),
                    lease.epoch.into(),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Fail with `LeaseLost` unless `lease` is still the current lease and
    /// unexpired by the database's clock, read inside `tx` (a pool
    /// transaction, or the engine's write path). On PostgreSQL the row stays
    /// locked `FOR SHARE` until `tx` ends: no takeover commits in between.
    pub(crate) async fn check_lease(&self, tx: &Tx<'_>, lease: &Lease) -> Result<(), Error> {
        let backend = tx.get_database_backend();
        let p = self.placeholders(3);
        let lock = match backend {
            DatabaseBackend::Postgres => " FOR SHARE",
            // SQLite: the write transaction already holds the database.
            _ => "",
        };
        let sql = format!(
            "SELECT epoch FROM engine_lease WHERE name = {} AND holder = {} AND epoch = {} AND expires_at_ms > {}{lock}",
            p[0],
            p[1],
            p[2],
            db_now_ms(backend)
        );
        let found = tx
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                vec![
                    NAME.into(),
                    lease.holder.as_str().into(),
                    lease.epoch.into(),
                ],
            ))
            .await?;
        if found.is_some() {
            return Ok(());
        }
        Err(Error::LeaseLost {
            holder: lease.holder.clone(),
            epoch: lease.epoch,
        })
    }
}
