//! The engine lease: one active engine per database.
//!
//! Taking over an expired lease bumps its epoch; ledger writes carry the
//! holder's [`Lease`] and fail once a newer epoch exists, so an engine that
//! lost its lease (paused, partitioned) cannot overwrite its successor's work.

use crate::lite::Tx;
use crate::{Error, Store, epoch_ms as ms};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Statement};

const NAME: &str = "engine";

/// A held lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub epoch: i64,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Take the lease for `holder` if it is free, expired, or already theirs
    /// (then it is renewed with the same epoch). `None`: another holder has it.
    pub async fn acquire_lease(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<Option<Lease>, Error> {
        let expires = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let p = self.placeholders(5);
        // Same holder: keep the epoch. Another holder after expiry: epoch + 1.
        let sql = format!(
            "INSERT INTO engine_lease (name, holder, epoch, expires_at_ms) VALUES ({}, {}, 1, {}) \
             ON CONFLICT (name) DO UPDATE SET \
               epoch = CASE WHEN engine_lease.holder = excluded.holder THEN engine_lease.epoch ELSE engine_lease.epoch + 1 END, \
               holder = excluded.holder, expires_at_ms = excluded.expires_at_ms \
             WHERE engine_lease.holder = {} OR engine_lease.expires_at_ms <= {} RETURNING epoch",
            p[0], p[1], p[2], p[3], p[4]
        );
        let backend = self.db.get_database_backend();
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                vec![
                    NAME.into(),
                    holder.into(),
                    ms(expires).into(),
                    holder.into(),
                    ms(now).into(),
                ],
            ))
            .await?;
        match row {
            Some(r) => Ok(Some(Lease {
                holder: holder.to_owned(),
                epoch: r.try_get::<i64>("", "epoch")?,
                expires_at: expires,
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

    /// Fail with `LeaseLost` unless `lease` is still the current, unexpired
    /// lease, read inside `tx` (a pool transaction, or the engine's write path).
    pub(crate) async fn check_lease(
        &self,
        tx: &Tx<'_>,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let p = self.placeholders(4);
        let sql = format!(
            "SELECT epoch FROM engine_lease WHERE name = {} AND holder = {} AND epoch = {} AND expires_at_ms > {}",
            p[0], p[1], p[2], p[3]
        );
        let found = tx
            .query_one_raw(Statement::from_sql_and_values(
                tx.get_database_backend(),
                sql,
                vec![
                    NAME.into(),
                    lease.holder.as_str().into(),
                    lease.epoch.into(),
                    ms(now).into(),
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
