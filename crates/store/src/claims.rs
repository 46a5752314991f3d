//! Window claims and the inbox: the race-free primitives decisions rest on.
//!
//! A claim on `(kind, key)` is taken with one statement,
//! `INSERT … ON CONFLICT (kind, claim_key) DO UPDATE … WHERE expires_at_ms <= now`,
//! so of two writers racing for the same key at most one gets a row back —
//! on SQLite and PostgreSQL alike, without a read-then-write window.

use crate::{Error, Store, epoch_ms as ms, from_epoch_ms as from_ms};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

/// What a claim is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimKind {
    /// A policy fired for a group key: later matches are suppressed until expiry.
    Suppression,
    /// An action on a target with given params: not re-run until expiry.
    Idempotency,
    /// ALL-group correlation state for a group key.
    Correlation,
    /// The aggregated `suppressed` record of a suppression window.
    SuppressedRecord,
}

impl ClaimKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ClaimKind::Suppression => "suppression",
            ClaimKind::Idempotency => "idempotency",
            ClaimKind::Correlation => "correlation",
            ClaimKind::SuppressedRecord => "suppressed_record",
        }
    }
}

impl Store {
    /// The first `n` bind placeholders.
    pub(crate) fn placeholders(&self, n: usize) -> Vec<String> {
        (1..=n).map(|i| self.placeholder(i)).collect()
    }

    /// The `i`-th (1-based) bind placeholder.
    pub(crate) fn placeholder(&self, i: usize) -> String {
        let mut out = String::new();
        self.push_placeholder(&mut out, i);
        out
    }

    /// Append the `i`-th (1-based) bind placeholder: `$i` on PostgreSQL, `?` on SQLite.
    pub(crate) fn push_placeholder(&self, out: &mut String, i: usize) {
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            use std::fmt::Write;
            let _ = write!(out, "${i}");
        } else {
            out.push('?');
        }
    }

    /// Who holds `(kind, key)` and until when, if an unexpired claim exists
    /// (a read: dry-runs use it to say what a window would decide).
    pub async fn held_claim(
        &self,
        kind: ClaimKind,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, DateTime<Utc>)>, Error> {
        let p = self.placeholders(3);
        let sql = format!(
            "SELECT holder, expires_at_ms FROM window_claims WHERE kind = {} AND claim_key = {} AND expires_at_ms > {}",
            p[0], p[1], p[2]
        );
        let backend = self.db.get_database_backend();
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                vec![kind.as_str().into(), key.into(), ms(now).into()],
            ))
            .await?;
        row.map(|r| {
            Ok((
                r.try_get::<String>("", "holder")?,
                from_ms(r.try_get::<i64>("", "expires_at_ms")?),
            ))
        })
        .transpose()
    }

    /// Forget deliveries received before `before` (the inbox recognizes a
    /// redelivery only as long as it remembers the delivery: keep it at least
    /// as long as the stream keeps events). In slices of 10,000 rows, by
    /// the `received_at_ms` index; returns how many.
    pub async fn prune_inbox(&self, before: DateTime<Utc>) -> Result<u64, Error> {
        const SLICE: u64 = 10_000;
        let p = self.placeholders(1);
        let backend = self.db.get_database_backend();
        let sql = format!(
            "DELETE FROM inbox WHERE delivery_key IN \
             (SELECT delivery_key FROM inbox WHERE received_at_ms < {} ORDER BY received_at_ms LIMIT {SLICE})",
            p[0]
        );
        let mut total = 0;
        loop {
            let n = self
                .db
                .execute_raw(Statement::from_sql_and_values(
                    backend,
                    sql.clone(),
                    vec![ms(before).into()],
                ))
                .await?
                .rows_affected();
            total += n;
            if n < SLICE {
                return Ok(total);
            }
        }
    }

    /// Remove expired claims; returns how many.
    pub async fn prune_claims(&self, now: DateTime<Utc>) -> Result<u64, Error> {
        let p = self.placeholders(1);
        let backend = self.db.get_database_backend();
        let r = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                format!("DELETE FROM window_claims WHERE expires_at_ms <= {}", p[0]),
                vec![ms(now).into()],
            ))
            .await?;
        Ok(r.rows_affected())
    }
}
