//! The ledger cap (DESIGN §6): per policy, the newest N decisions of each
//! class — with a failure, succeeded, non-runs — are kept with all their
//! runs, and nothing older than `max_age`; a decision with a queued or running
//! run is never pruned. A storm of suppressions therefore never evicts the
//! failure an operator is looking for.

use crate::{Error, Store};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Statement};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// What a pruning pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub decisions: u64,
    pub runs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Class {
    Failure,
    Success,
    NonRun,
}

/// What the pruner remembers between passes, so that a pass reads only the
/// decisions that can have changed.
#[derive(Debug, Default)]
pub(crate) struct PruneState {
    /// Decisions decided at or after this (epoch ms) are new since the last
    /// pass; `None` before the first pass, which reads every policy.
    since_ms: Option<i64>,
    /// Policies that had a decision still open at the last pass: its class
    /// is settled later, so they are read again.
    open: HashSet<Uuid>,
}

/// How far back a pass looks past the previous one: decisions are stamped
/// before they commit, so one stamped just before a pass may land after it.
const PRUNE_OVERLAP_MS: i64 = 5 * 60 * 1000;

impl Store {
    /// Apply the cap: keep the newest `max_per_policy` decisions per class per
    /// policy, drop closed decisions decided before `now - max_age`.
    ///
    /// A pass reads, through indexes, only what can have changed since the
    /// previous one: decisions older than the age limit, and the decisions of
    /// policies that recorded new ones or had open ones. The first pass of a
    /// process reads every policy once.
    pub async fn prune_ledger(
        &self,
        now: DateTime<Utc>,
        max_per_policy: usize,
        max_age: std::time::Duration,
    ) -> Result<PruneReport, Error> {
        let backend = self.db.get_database_backend();
        let cutoff = (now - chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX))
            .timestamp_millis();
        let (since, mut policies) = {
            let state = self
                .prune
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (state.since_ms, state.open.clone())
        };
        let all_policies = since.is_none();
        if let Some(since) = since {
            let p = self.placeholder(1);
            for row in self
                .db
                .query_all_raw(Statement::from_sql_and_values(
                    backend,
                    format!("SELECT DISTINCT policy_id FROM decisions WHERE decided_at_ms >= {p}"),
                    vec![since.into()],
                ))
                .await?
            {
                policies.insert(row.try_get("", "policy_id")?);
            }
        }
        const AGGREGATE: &str = "SELECT d.id AS id, d.policy_id AS policy_id, d.decided_at_ms AS decided_at_ms, \
             COALESCE(SUM(CASE WHEN r.status IN ('queued', 'running') THEN 1 ELSE 0 END), 0) AS open_n, \
             COALESCE(SUM(CASE WHEN r.status IN ('failed', 'timed_out', 'interrupted', 'cancelled') THEN 1 ELSE 0 END), 0) AS fail_n, \
             COALESCE(SUM(CASE WHEN r.status = 'succeeded' THEN 1 ELSE 0 END), 0) AS ok_n \
             FROM decisions d LEFT JOIN runs r ON r.decision_id = d.id";
        const GROUP: &str = "GROUP BY d.id, d.policy_id, d.decided_at_ms";
        let aggregate = |filter: String, values: Vec<sea_orm::Value>| {
            self.db.query_all_raw(Statement::from_sql_and_values(
                backend,
                format!("{AGGREGATE} WHERE {filter} {GROUP}"),
                values,
            ))
        };
        let p = self.placeholder(1);
        // Past the age limit (by the decided_at index).
        let mut rows = aggregate(format!("d.decided_at_ms < {p}"), vec![cutoff.into()]).await?;
        // The policies that can be over their cap (by the policy index).
        if all_policies {
            rows.extend(aggregate(format!("d.decided_at_ms >= {p}"), vec![cutoff.into()]).await?);
        } else {
            let list: Vec<Uuid> = policies.iter().copied().collect();
            for chunk in list.chunks(200) {
                let ps = self.placeholders(chunk.len() + 1);
                let mut values: Vec<sea_orm::Value> = chunk.iter().map(|id| (*id).into()).collect();
                values.push(cutoff.into());
                let filter = format!(
                    "d.policy_id IN ({}) AND d.decided_at_ms >= {}",
                    ps[..chunk.len()].join(", "),
                    ps[chunk.len()]
                );
                rows.extend(aggregate(filter, values).await?);
            }
        }
        let mut groups: HashMap<(Uuid, Class), Vec<(i64, Uuid)>> = HashMap::new();
        let mut doomed: Vec<Uuid> = Vec::new();
        let mut still_open: HashSet<Uuid> = HashSet::new();
        let mut newest = i64::MIN;
        for row in rows {
            let id: Uuid = row.try_get("", "id")?;
            let policy: Uuid = row.try_get("", "policy_id")?;
            let at: i64 = row.try_get("", "decided_at_ms")?;
            let open: i64 = row.try_get("", "open_n")?;
            let fail: i64 = row.try_get("", "fail_n")?;
            let ok: i64 = row.try_get("", "ok_n")?;
            newest = newest.max(at);
            if open > 0 {
                still_open.insert(policy);
                continue; // never pruned while a run is not finished
            }
            if at < cutoff {
                doomed.push(id);
                continue;
            }
            let class = if fail > 0 {
                Class::Failure
            } else if ok > 0 {
                Class::Success
            } else {
                Class::NonRun
            };
            groups.entry((policy, class)).or_default().push((at, id));
        }
        for (_, mut decisions) in groups {
            if decisions.len() > max_per_policy {
                decisions.sort_unstable_by(|a, b| b.cmp(a)); // newest first
                doomed.extend(decisions.into_iter().skip(max_per_policy).map(|(_, id)| id));
            }
        }
        {
            let mut state = self
                .prune
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Next time: what was decided since a little before the newest
            // decision (or the clock) seen now.
            let mark = newest.max(now.timestamp_millis()) - PRUNE_OVERLAP_MS;
            state.since_ms = Some(since.map_or(mark, |s| s.max(mark)));
            state.open = still_open;
        }
        let mut report = PruneReport::default();
        for chunk in doomed.chunks(500) {
            let p = self.placeholders(chunk.len()).join(", ");
            let ids: Vec<sea_orm::Value> = chunk.iter().map(|id| (*id).into()).collect();
            // Runs first (explicitly, not relying on cascade), then their decisions.
            let runs = self
                .db
                .execute_raw(Statement::from_sql_and_values(
                    backend,
                    format!("DELETE FROM runs WHERE decision_id IN ({p})"),
                    ids.clone(),
                ))
                .await?;
            let decisions = self
                .db
                .execute_raw(Statement::from_sql_and_values(
                    backend,
                    format!("DELETE FROM decisions WHERE id IN ({p})"),
                    ids,
                ))
                .await?;
            report.runs += runs.rows_affected();
            report.decisions += decisions.rows_affected();
        }
        Ok(report)
    }

    /// Count one more suppression on the aggregated `suppressed` run of a window.
    pub async fn bump_count(&self, run_id: Uuid) -> Result<i64, Error> {
        let backend = self.db.get_database_backend();
        let p = self.placeholders(1);
        let sql = format!(
            "UPDATE runs SET count = count + 1 WHERE id = {} AND status = 'suppressed' RETURNING count",
            p[0]
        );
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                vec![run_id.into()],
            ))
            .await?
            .ok_or_else(|| Error::NotFound(format!("suppressed run {run_id}")))?;
        Ok(row.try_get("", "count")?)
    }
}
