//! The multi-row statements of the write path: status changes in waves,
//! the inbox, window claims and their records, decisions and runs — each a
//! handful of padded `VALUES` statements whatever the batch size.

use super::*;

/// Most rows in one multi-row statement (well under both backends'
/// bind-parameter limits).
const MAX_ROWS: usize = 256;

/// `items` cut into statements of at most [`MAX_ROWS`] rows, each with the
/// number of rows its statement is written for: the chunk's length rounded
/// up to a power of two, the rest filled with NULL rows ([`pad_rows`]) that
/// the statement skips. So a batch of any size costs one statement per
/// [`MAX_ROWS`] rows — each statement is a round trip to the database, and
/// on SQLite a thread hand-over each way — while a handful of statement
/// texts (nine sizes) cover every batch and stay in the connection's
/// prepared-statement cache.
fn padded_chunks<T>(items: &[T]) -> impl Iterator<Item = (&[T], usize)> {
    items
        .chunks(MAX_ROWS)
        .map(|chunk| (chunk, chunk.len().next_power_of_two()))
}

/// Fill `values`, whole rows of `width` values, up to `rows` rows with NULL
/// rows typed as the first row is (PostgreSQL resolves a VALUES column's
/// type from every row).
fn pad_rows(values: &mut Vec<Value>, width: usize, rows: usize) {
    let nulls: Vec<Value> = values[..width].iter().map(Value::as_null).collect();
    values.reserve(rows * width - values.len());
    while values.len() < rows * width {
        values.extend(nulls.iter().cloned());
    }
}

impl Store {
    /// Guarded updates, a few statements for many changes: changes are taken
    /// in waves of distinct runs (a run changed twice goes to the next wave,
    /// so order holds), and each wave in one `UPDATE … FROM (VALUES …)`
    /// joined on the primary key — one index lookup per change — whose
    /// `RETURNING id` says which applied. Every row carries the target status
    /// and all of [`TRANSITION_COLUMNS`]; a NULL keeps the column as it is, so
    /// changes of any kind share one statement.
    pub(super) async fn apply_transitions(
        &self,
        txn: &Tx<'_>,
        changes: &[Transition],
    ) -> Result<Vec<bool>, Error> {
        let backend = txn.get_database_backend();
        let width = 2 + TRANSITION_COLUMNS.len();
        let assigns: Vec<String> = std::iter::once("status = v.column2".to_owned())
            .chain(
                TRANSITION_COLUMNS
                    .iter()
                    .enumerate()
                    .map(|(i, col)| format!("{col} = COALESCE(v.column{}, {col})", i + 3)),
            )
            .collect();
        let mut applied = vec![false; changes.len()];
        let mut i = 0;
        while i < changes.len() {
            let mut ids = HashSet::new();
            let mut j = i;
            while j < changes.len() && j - i < 200 && ids.insert(changes[j].run_id) {
                j += 1;
            }
            let wave: Vec<usize> = (i..j).collect();
            for (chunk, rows) in padded_chunks(&wave) {
                let mut values: Vec<Value> = Vec::with_capacity(rows * width);
                for &k in chunk {
                    values.push(changes[k].run_id.into());
                    values.push(changes[k].to.as_str().into());
                    values.extend(transition_values(&changes[k].update));
                }
                pad_rows(&mut values, width, rows);
                // A padding row's NULL id joins no run.
                let sql = format!(
                    "UPDATE runs SET {} FROM (VALUES {}) AS v WHERE runs.id = v.column1 \
                     AND runs.status IN ('queued', 'running') RETURNING runs.id",
                    assigns.join(", "),
                    self.rows(rows, width)
                );
                let done: HashSet<uuid::Uuid> = txn
                    .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
                    .await?
                    .into_iter()
                    .map(|r| r.try_get::<uuid::Uuid>("", "id"))
                    .collect::<Result<_, _>>()?;
                for &k in chunk {
                    applied[k] = done.contains(&changes[k].run_id);
                }
            }
            i = j;
        }
        Ok(applied)
    }

    pub(super) async fn insert_inbox(
        &self,
        txn: &Tx<'_>,
        items: &[EventDecisions],
    ) -> Result<HashSet<String>, Error> {
        let mut unique: Vec<&EventDecisions> = Vec::with_capacity(items.len());
        let mut seen = HashSet::new();
        for i in items {
            if seen.insert(i.delivery_key.as_str()) {
                unique.push(i);
            }
        }
        let backend = txn.get_database_backend();
        let mut fresh = HashSet::new();
        for (chunk, rows) in padded_chunks(&unique) {
            let sql = format!(
                "INSERT INTO inbox (delivery_key, event_id, received_at_ms) {} \
                 ON CONFLICT (delivery_key) DO NOTHING RETURNING delivery_key",
                self.padded_values(rows, 3)
            );
            let mut values: Vec<Value> = chunk
                .iter()
                .flat_map(|i| {
                    [
                        i.delivery_key.as_str().into(),
                        i.event_id.as_str().into(),
                        ms(i.received_at).into(),
                    ]
                })
                .collect();
            pad_rows(&mut values, 3, rows);
            for row in txn
                .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?
            {
                fresh.insert(row.try_get::<String>("", "delivery_key")?);
            }
        }
        Ok(fresh)
    }

    /// Claim many `(key, expires_at_ms)` at once; returns the keys claimed.
    pub(super) async fn claim_many(
        &self,
        txn: &Tx<'_>,
        kind: ClaimKind,
        wanted: &[(String, i64)],
        holders: &[String],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>, Error> {
        let backend = txn.get_database_backend();
        let mut claimed = HashSet::new();
        for ((chunk, rows), (holders, _)) in padded_chunks(wanted).zip(padded_chunks(holders)) {
            let sql = format!(
                "INSERT INTO window_claims (kind, claim_key, holder, claimed_at_ms, expires_at_ms) {} \
                 ON CONFLICT (kind, claim_key) DO UPDATE SET holder = excluded.holder, \
                 claimed_at_ms = excluded.claimed_at_ms, expires_at_ms = excluded.expires_at_ms \
                 WHERE window_claims.expires_at_ms <= {} RETURNING claim_key",
                self.padded_values(rows, 5),
                self.placeholder(rows * 5 + 1)
            );
            let mut values: Vec<Value> = Vec::with_capacity(rows * 5 + 1);
            for ((key, expires), holder) in chunk.iter().zip(holders) {
                values.extend([
                    kind.as_str().into(),
                    key.as_str().into(),
                    holder.as_str().into(),
                    ms(now).into(),
                    (*expires).into(),
                ]);
            }
            pad_rows(&mut values, 5, rows);
            values.push(ms(now).into());
            for row in txn
                .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?
            {
                claimed.insert(row.try_get::<String>("", "claim_key")?);
            }
        }
        Ok(claimed)
    }

    /// When each wanted window ends: our own expiry if claimed, the holder's otherwise.
    pub(super) async fn claim_expiries(
        &self,
        txn: &Tx<'_>,
        kind: ClaimKind,
        wanted: &[(String, i64)],
        claimed: &HashSet<String>,
    ) -> Result<HashMap<String, i64>, Error> {
        let mut ends: HashMap<String, i64> = wanted
            .iter()
            .filter(|(k, _)| claimed.contains(k))
            .cloned()
            .collect();
        let held: Vec<&str> = wanted
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !claimed.contains(*k))
            .collect();
        let backend = txn.get_database_backend();
        for (chunk, rows) in padded_chunks(&held) {
            let p = self.placeholders(rows + 1);
            let sql = format!(
                "SELECT claim_key, expires_at_ms FROM window_claims WHERE kind = {} AND claim_key IN ({})",
                p[0],
                p[1..].join(", ")
            );
            let mut values: Vec<Value> = vec![kind.as_str().into()];
            values.extend(chunk.iter().map(|k| Value::from(*k)));
            values.resize(rows + 1, Value::String(None)); // NULL is in no IN list
            for row in txn
                .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?
            {
                ends.insert(
                    row.try_get("", "claim_key")?,
                    row.try_get("", "expires_at_ms")?,
                );
            }
        }
        Ok(ends)
    }

    /// The aggregated `suppressed` records of windows still open.
    pub(super) async fn live_records(
        &self,
        txn: &Tx<'_>,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, Uuid>, Error> {
        let backend = txn.get_database_backend();
        let mut found = HashMap::new();
        for (chunk, rows) in padded_chunks(keys) {
            let p = self.placeholders(rows + 2);
            let sql = format!(
                "SELECT claim_key, holder FROM window_claims WHERE kind = {} AND expires_at_ms > {} AND claim_key IN ({})",
                p[0],
                p[1],
                p[2..].join(", ")
            );
            let mut values: Vec<Value> =
                vec![ClaimKind::SuppressedRecord.as_str().into(), ms(now).into()];
            values.extend(chunk.iter().map(|k| Value::from(k.as_str())));
            values.resize(rows + 2, Value::String(None)); // NULL is in no IN list
            for row in txn
                .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?
            {
                let holder: String = row.try_get("", "holder")?;
                if let Ok(id) = Uuid::try_parse(&holder) {
                    found.insert(row.try_get("", "claim_key")?, id);
                }
            }
        }
        Ok(found)
    }

    pub(super) async fn add_count(&self, txn: &Tx<'_>, run: Uuid, n: i64) -> Result<(), Error> {
        let p = self.placeholders(2);
        let backend = txn.get_database_backend();
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "UPDATE runs SET count = count + {} WHERE id = {}",
                p[0], p[1]
            ),
            vec![n.into(), run.into()],
        ))
        .await?;
        Ok(())
    }

    pub(super) async fn upsert_records(
        &self,
        txn: &Tx<'_>,
        records: &[(String, i64)],
        ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let backend = txn.get_database_backend();
        for ((chunk, rows), (ids, _)) in padded_chunks(records).zip(padded_chunks(ids)) {
            let sql = format!(
                "INSERT INTO window_claims (kind, claim_key, holder, claimed_at_ms, expires_at_ms) {} \
                 ON CONFLICT (kind, claim_key) DO UPDATE SET holder = excluded.holder, \
                 claimed_at_ms = excluded.claimed_at_ms, expires_at_ms = excluded.expires_at_ms",
                self.padded_values(rows, 5)
            );
            let mut values: Vec<Value> = Vec::with_capacity(rows * 5);
            for ((key, until), id) in chunk.iter().zip(ids) {
                values.extend([
                    ClaimKind::SuppressedRecord.as_str().into(),
                    key.as_str().into(),
                    id.as_str().into(),
                    ms(now).into(),
                    (*until).into(),
                ]);
            }
            pad_rows(&mut values, 5, rows);
            txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?;
        }
        Ok(())
    }

    pub(super) async fn insert_decisions(
        &self,
        txn: &Tx<'_>,
        decisions: &[&NewDecision],
    ) -> Result<(), Error> {
        let backend = txn.get_database_backend();
        for (chunk, rows) in padded_chunks(decisions) {
            let sql = format!(
                "INSERT INTO decisions (id, policy_id, policy_name, policy_version, event_id, event_kind, correlation_id, decided_at_ms, correlated_event_ids) {}",
                self.padded_values(rows, 9)
            );
            let mut values: Vec<Value> = chunk
                .iter()
                .flat_map(|d| {
                    [
                        d.id.into(),
                        d.policy_id.into(),
                        d.policy_name.as_str().into(),
                        d.policy_version.into(),
                        d.event_id.as_str().into(),
                        d.event_kind.as_str().into(),
                        d.correlation_id.as_str().into(),
                        ms(d.decided_at).into(),
                        crate::ledger::correlated(&d.correlated_event_ids).into(),
                    ]
                })
                .collect();
            pad_rows(&mut values, 9, rows);
            txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?;
        }
        Ok(())
    }

    pub(super) async fn insert_runs(
        &self,
        txn: &Tx<'_>,
        runs: &[(Uuid, Uuid, Cow<'_, NewRun>)],
    ) -> Result<(), Error> {
        let backend = txn.get_database_backend();
        // SQLite keeps JSON as text: serialized once here, rather than the
        // tree cloned through the driver's argument list and serialized there.
        let params = |v: &serde_json::Value| match backend {
            sea_orm::DatabaseBackend::Sqlite => Value::String(Some(v.to_string())),
            _ => Value::Json(Some(Box::new(v.clone()))),
        };
        for (chunk, rows) in padded_chunks(runs) {
            let sql = format!(
                "INSERT INTO runs (id, decision_id, policy_id, host, target_type, target_id, driver, capability, verb, \
                 params, idempotency_key, status, severity, reason, attempt, count, queued_at_ms, inverse_of) {}",
                self.padded_values(rows, 18)
            );
            let mut values: Vec<Value> = Vec::with_capacity(rows * 18);
            for (decision, policy, r) in chunk {
                values.extend([
                    r.id.into(),
                    (*decision).into(),
                    (*policy).into(),
                    r.host.as_str().into(),
                    r.target_type.as_str().into(),
                    r.target_id.as_str().into(),
                    r.driver.clone().into(),
                    r.capability.as_str().into(),
                    r.verb.as_str().into(),
                    params(&r.params),
                    r.idempotency_key.clone().into(),
                    r.status.as_str().into(),
                    r.severity.clone().into(),
                    r.reason.clone().into(),
                    1i32.into(),
                    r.count.into(),
                    ms(r.queued_at).into(),
                    r.inverse_of.into(),
                ]);
            }
            pad_rows(&mut values, 18, rows);
            txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?;
        }
        Ok(())
    }

    /// `(?, ?, ?), (?, ?, ?)` — `n` rows of `width` placeholders.
    pub(super) fn rows(&self, n: usize, width: usize) -> String {
        // Written into one string: a 256-row insert has thousands of placeholders.
        let mut out = String::with_capacity(n * width * 7 + n * 4);
        for row in 0..n {
            out.push_str(if row == 0 { "(" } else { ", (" });
            for col in 0..width {
                if col > 0 {
                    out.push_str(", ");
                }
                self.push_placeholder(&mut out, row * width + col + 1);
            }
            out.push(')');
        }
        out
    }

    /// The row source of a padded multi-row `INSERT`: `n` rows of `width`
    /// placeholders, skipping the NULL rows of [`pad_rows`] (every real row's
    /// first column is set).
    pub(super) fn padded_values(&self, n: usize, width: usize) -> String {
        format!(
            "SELECT * FROM (VALUES {}) AS v WHERE v.column1 IS NOT NULL",
            self.rows(n, width)
        )
    }
}

/// The columns a status change may write besides `status`, in the order
/// [`transition_values`] gives their values.
const TRANSITION_COLUMNS: [&str; 8] = [
    "started_at_ms",
    "finished_at_ms",
    "severity",
    "reason",
    "effects",
    "output",
    "attempt",
    "deadline_at_ms",
];

/// A status change's values for [`TRANSITION_COLUMNS`]; NULL where it keeps
/// the column. Typed NULLs, so PostgreSQL knows each VALUES column's type.
fn transition_values(u: &crate::RunUpdate) -> [Value; 8] {
    [
        Value::BigInt(u.started_at.map(ms)),
        Value::BigInt(u.finished_at.map(ms)),
        Value::String(u.severity.clone()),
        Value::String(u.reason.clone().map(crate::ledger::without_nul)),
        Value::Json(u.effects.clone().map(Box::new)),
        Value::String(u.output.clone().map(crate::ledger::truncate)),
        Value::Int(u.attempt),
        Value::BigInt(u.deadline_at.map(ms)),
    ]
}

#[cfg(test)]
mod tests {
    use super::{pad_rows, padded_chunks};
    use sea_orm::Value;

    #[test]
    fn batches_cut_into_few_statement_shapes() {
        let items: Vec<u32> = (0..600).collect();
        let shapes: Vec<(usize, usize)> = padded_chunks(&items)
            .map(|(c, rows)| (c.len(), rows))
            .collect();
        assert_eq!(shapes, [(256, 256), (256, 256), (88, 128)]);
        let flat: Vec<u32> = padded_chunks(&items)
            .flat_map(|(c, _)| c.to_vec())
            .collect();
        assert_eq!(flat, items, "order and content kept");
        let small: Vec<usize> = [1, 2, 3, 5, 17]
            .iter()
            .map(|n| padded_chunks(&items[..*n]).next().unwrap().1)
            .collect();
        assert_eq!(small, [1, 2, 4, 8, 32]);
        assert_eq!(padded_chunks::<u32>(&[]).count(), 0);
    }

    #[test]
    fn padding_rows_are_typed_nulls() {
        let mut values: Vec<Value> = vec![7i64.into(), "a".into(), 8i64.into(), "b".into()];
        pad_rows(&mut values, 2, 4);
        assert_eq!(values.len(), 8);
        assert_eq!(
            values[4..],
            [
                Value::BigInt(None),
                Value::String(None),
                Value::BigInt(None),
                Value::String(None)
            ]
        );
        assert_eq!(
            values[..4],
            [7i64.into(), "a".into(), 8i64.into(), "b".into()]
        );
    }
}
