//! The execution ledger: decisions and their runs, written in one transaction
//! with the inbox row and window claims, then moved through guarded status
//! transitions and queried with cursor paging.

use crate::claims::{Claim, ClaimKind};
use crate::entity::{decision, run};
use crate::lite::Tx;
use crate::{Error, Store, epoch_ms as ms, from_epoch_ms as at};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};
use serde_json::Value;
use uuid::Uuid;

/// Run statuses (DESIGN §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    Interrupted,
    Suppressed,
    Deduplicated,
    Skipped,
}

impl RunStatus {
    pub const ALL: [RunStatus; 10] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::TimedOut,
        RunStatus::Cancelled,
        RunStatus::Interrupted,
        RunStatus::Suppressed,
        RunStatus::Deduplicated,
        RunStatus::Skipped,
    ];

    /// The name in the ledger and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Suppressed => "suppressed",
            RunStatus::Deduplicated => "deduplicated",
            RunStatus::Skipped => "skipped",
        }
    }

    /// Parse a status name.
    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Nothing leaves a terminal status.
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

/// A decision to record.
#[derive(Debug, Clone)]
pub struct NewDecision {
    pub id: Uuid,
    pub policy_id: Uuid,
    pub policy_name: String,
    pub policy_version: i64,
    pub event_id: String,
    pub event_kind: String,
    pub correlation_id: String,
    pub decided_at: DateTime<Utc>,
    /// The other events that completed an `ALL` group (empty otherwise).
    pub correlated_event_ids: Vec<String>,
}

/// A run to record with its decision.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: Uuid,
    pub host: String,
    pub target_type: String,
    pub target_id: String,
    pub driver: Option<String>,
    pub capability: String,
    pub verb: String,
    /// Secrets already redacted.
    pub params: Value,
    pub idempotency_key: Option<String>,
    pub status: RunStatus,
    pub severity: Option<String>,
    pub reason: Option<String>,
    /// Aggregated suppressions count here.
    pub count: i64,
    pub queued_at: DateTime<Utc>,
    pub inverse_of: Option<Uuid>,
}

/// A run as the ledger shows it, with its decision's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: Uuid,
    pub decision_id: Uuid,
    pub policy_id: Uuid,
    pub policy_name: String,
    pub policy_version: i64,
    pub event_id: String,
    pub event_kind: String,
    pub correlation_id: String,
    /// The other events that completed an `ALL` group.
    pub correlated_event_ids: Vec<String>,
    pub host: String,
    pub target_type: String,
    pub target_id: String,
    pub driver: Option<String>,
    pub capability: String,
    pub verb: String,
    pub params: Value,
    pub idempotency_key: Option<String>,
    pub status: RunStatus,
    pub severity: Option<String>,
    pub reason: Option<String>,
    pub effects: Option<Value>,
    pub output: Option<String>,
    pub attempt: i32,
    pub count: i64,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub inverse_of: Option<Uuid>,
    /// When the current (or last) attempt had to be over.
    pub deadline_at: Option<DateTime<Utc>>,
}

/// What a status change writes besides the status.
#[derive(Debug, Clone, Default)]
pub struct RunUpdate {
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub severity: Option<String>,
    pub reason: Option<String>,
    pub effects: Option<Value>,
    /// Truncated to 64 KiB by the store.
    pub output: Option<String>,
    pub attempt: Option<i32>,
    /// When this attempt must be over (set as a run starts an attempt).
    pub deadline_at: Option<DateTime<Utc>>,
}

/// Ledger query filters (all optional, combined with AND).
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub policy_id: Option<Uuid>,
    pub host: Option<String>,
    pub target_id: Option<String>,
    pub status: Option<RunStatus>,
    pub event_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// The stored form of `correlated_event_ids`: a JSON array, or NULL when empty.
pub(crate) fn correlated(ids: &[String]) -> Option<String> {
    (!ids.is_empty()).then(|| serde_json::to_string(ids).unwrap_or_default())
}

/// Largest output kept on a run.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// Text as stored: NUL characters replaced by U+FFFD (PostgreSQL cannot
/// store them in text, and both backends keep the same text).
pub(crate) fn without_nul(s: String) -> String {
    match s.contains('\0') {
        true => s.replace('\0', "\u{FFFD}"),
        false => s,
    }
}

/// Output as stored: without NUL characters, truncated.
pub(crate) fn truncate(s: String) -> String {
    let mut s = without_nul(s);
    if s.len() > MAX_OUTPUT_BYTES {
        s.truncate(s.floor_char_boundary(MAX_OUTPUT_BYTES));
        s.push_str("\n[truncated]");
    }
    s
}

fn to_record(r: run::Model, d: &decision::Model) -> Result<RunRecord, Error> {
    let status = RunStatus::parse(&r.status).ok_or_else(|| {
        Error::Db(sea_orm::DbErr::Custom(format!(
            "unknown run status `{}`",
            r.status
        )))
    })?;
    Ok(RunRecord {
        id: r.id,
        decision_id: r.decision_id,
        policy_id: r.policy_id,
        policy_name: d.policy_name.clone(),
        policy_version: d.policy_version,
        event_id: d.event_id.clone(),
        event_kind: d.event_kind.clone(),
        correlation_id: d.correlation_id.clone(),
        correlated_event_ids: d
            .correlated_event_ids
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default(),
        host: r.host,
        target_type: r.target_type,
        target_id: r.target_id,
        driver: r.driver,
        capability: r.capability,
        verb: r.verb,
        params: r.params,
        idempotency_key: r.idempotency_key,
        status,
        severity: r.severity,
        reason: r.reason,
        effects: r.effects,
        output: r.output,
        attempt: r.attempt,
        count: r.count,
        queued_at: at(r.queued_at_ms),
        started_at: r.started_at_ms.map(at),
        finished_at: r.finished_at_ms.map(at),
        duration_ms: match (r.started_at_ms, r.finished_at_ms) {
            (Some(s), Some(f)) => Some(f - s),
            _ => None,
        },
        inverse_of: r.inverse_of,
        deadline_at: r.deadline_at_ms.map(at),
    })
}

/// One decision being recorded: inbox row, claims, the decision and its runs
/// commit together or not at all.
#[derive(Debug)]
pub struct DecisionTx<'s> {
    store: &'s Store,
    txn: DatabaseTransaction,
}

impl DecisionTx<'_> {
    /// Record the delivery identity; `false` means this message was decided before.
    pub async fn record_delivery(
        &self,
        delivery_key: &str,
        event_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        self.store
            .record_delivery_on(&self.txn, delivery_key, event_id, now)
            .await
    }

    /// Claim a window inside this transaction.
    pub async fn claim(
        &self,
        kind: ClaimKind,
        key: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<Claim, Error> {
        self.store
            .claim_on(&self.txn, kind, key, holder, now, ttl)
            .await
    }

    /// Write the decision and its runs.
    pub async fn insert(&self, d: &NewDecision, runs: &[NewRun]) -> Result<(), Error> {
        decision::ActiveModel {
            id: Set(d.id),
            policy_id: Set(d.policy_id),
            policy_name: Set(d.policy_name.clone()),
            policy_version: Set(d.policy_version),
            event_id: Set(d.event_id.clone()),
            event_kind: Set(d.event_kind.clone()),
            correlation_id: Set(d.correlation_id.clone()),
            decided_at_ms: Set(ms(d.decided_at)),
            correlated_event_ids: Set(correlated(&d.correlated_event_ids)),
        }
        .insert(&self.txn)
        .await?;
        if runs.is_empty() {
            return Ok(());
        }
        let models = runs.iter().map(|r| run::ActiveModel {
            id: Set(r.id),
            decision_id: Set(d.id),
            policy_id: Set(d.policy_id),
            host: Set(r.host.clone()),
            target_type: Set(r.target_type.clone()),
            target_id: Set(r.target_id.clone()),
            driver: Set(r.driver.clone()),
            capability: Set(r.capability.clone()),
            verb: Set(r.verb.clone()),
            params: Set(r.params.clone()),
            idempotency_key: Set(r.idempotency_key.clone()),
            status: Set(r.status.as_str().to_owned()),
            severity: Set(r.severity.clone()),
            reason: Set(r.reason.clone()),
            effects: Set(None),
            output: Set(None),
            attempt: Set(1),
            count: Set(r.count),
            queued_at_ms: Set(ms(r.queued_at)),
            started_at_ms: Set(None),
            finished_at_ms: Set(None),
            inverse_of: Set(r.inverse_of),
            deadline_at_ms: Set(None),
        });
        run::Entity::insert_many(models).exec(&self.txn).await?;
        Ok(())
    }

    /// Make everything durable, if `lease` is still current.
    pub async fn commit(self, lease: &crate::Lease) -> Result<(), Error> {
        self.store.check_lease(&Tx::Orm(&self.txn), lease).await?;
        self.txn.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Start recording a decision.
    pub async fn begin_decision(&self) -> Result<DecisionTx<'_>, Error> {
        Ok(DecisionTx {
            store: self,
            txn: self.db.begin().await?,
        })
    }

    /// Move a run to `to`, as the holder of `lease`. Refused when the run is
    /// already terminal (`TerminalRun`: a guarded UPDATE, so two writers cannot
    /// both finish a run) or when the lease is lost (`LeaseLost`).
    pub async fn transition(
        &self,
        lease: &crate::Lease,
        run_id: Uuid,
        to: RunStatus,
        u: RunUpdate,
    ) -> Result<RunRecord, Error> {
        let txn = self.db.begin().await?;
        self.check_lease(&Tx::Orm(&txn), lease).await?;
        let non_terminal = [RunStatus::Queued.as_str(), RunStatus::Running.as_str()];
        let mut set = run::ActiveModel {
            status: Set(to.as_str().to_owned()),
            ..Default::default()
        };
        if let Some(t) = u.started_at {
            set.started_at_ms = Set(Some(ms(t)));
        }
        if let Some(t) = u.finished_at {
            set.finished_at_ms = Set(Some(ms(t)));
        }
        if let Some(s) = u.severity {
            set.severity = Set(Some(s));
        }
        if let Some(r) = u.reason {
            set.reason = Set(Some(r));
        }
        if let Some(e) = u.effects {
            set.effects = Set(Some(e));
        }
        if let Some(o) = u.output {
            set.output = Set(Some(truncate(o)));
        }
        if let Some(a) = u.attempt {
            set.attempt = Set(a);
        }
        if let Some(t) = u.deadline_at {
            set.deadline_at_ms = Set(Some(ms(t)));
        }
        let res = run::Entity::update_many()
            .set(set)
            .filter(run::Column::Id.eq(run_id))
            .filter(run::Column::Status.is_in(non_terminal))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        if res.rows_affected == 0 {
            let current = self.get_run(run_id).await?;
            return Err(Error::TerminalRun {
                id: run_id,
                status: current.status.as_str(),
            });
        }
        self.get_run(run_id).await
    }

    /// True when the decision is recorded.
    pub async fn decision_exists(&self, id: Uuid) -> Result<bool, Error> {
        Ok(decision::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .is_some())
    }

    /// One run.
    pub async fn get_run(&self, id: Uuid) -> Result<RunRecord, Error> {
        let r = run::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::NotFound(format!("run {id}")))?;
        let d = decision::Entity::find_by_id(r.decision_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::NotFound(format!("decision {}", r.decision_id)))?;
        to_record(r, &d)
    }

    /// The status of each of these runs that exists.
    pub async fn run_statuses(
        &self,
        ids: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, RunStatus>, Error> {
        let mut out = std::collections::HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let rows = run::Entity::find()
                .filter(run::Column::Id.is_in(chunk.iter().copied()))
                .all(&self.db)
                .await?;
            for r in rows {
                if let Some(status) = RunStatus::parse(&r.status) {
                    out.insert(r.id, status);
                }
            }
        }
        Ok(out)
    }

    /// A page of runs, newest first, and the cursor of the next page.
    pub async fn list_runs(
        &self,
        f: &RunFilter,
        cursor: Option<&str>,
        limit: u64,
    ) -> Result<(Vec<RunRecord>, Option<String>), Error> {
        let limit = limit.clamp(1, 1000);
        let mut cond = Condition::all();
        if let Some(p) = f.policy_id {
            cond = cond.add(run::Column::PolicyId.eq(p));
        }
        if let Some(h) = &f.host {
            cond = cond.add(run::Column::Host.eq(h.as_str()));
        }
        if let Some(t) = &f.target_id {
            cond = cond.add(run::Column::TargetId.eq(t.as_str()));
        }
        if let Some(s) = f.status {
            cond = cond.add(run::Column::Status.eq(s.as_str()));
        }
        if let Some(t) = f.since {
            cond = cond.add(run::Column::QueuedAtMs.gte(ms(t)));
        }
        if let Some(t) = f.until {
            cond = cond.add(run::Column::QueuedAtMs.lt(ms(t)));
        }
        if let Some(e) = &f.event_id {
            let ids: Vec<Uuid> = decision::Entity::find()
                .select_only()
                .column(decision::Column::Id)
                .filter(decision::Column::EventId.eq(e.as_str()))
                .into_tuple()
                .all(&self.db)
                .await?;
            cond = cond.add(run::Column::DecisionId.is_in(ids));
        }
        if let Some(c) = cursor {
            let (t, id) = c
                .split_once(':')
                .and_then(|(t, id)| Some((t.parse::<i64>().ok()?, Uuid::try_parse(id).ok()?)))
                .ok_or_else(|| Error::Cursor(c.to_owned()))?;
            cond = cond.add(
                Condition::any().add(run::Column::QueuedAtMs.lt(t)).add(
                    Condition::all()
                        .add(run::Column::QueuedAtMs.eq(t))
                        .add(run::Column::Id.lt(id)),
                ),
            );
        }
        let rows = run::Entity::find()
            .filter(cond)
            .order_by_desc(run::Column::QueuedAtMs)
            .order_by_desc(run::Column::Id)
            .limit(limit + 1)
            .all(&self.db)
            .await?;
        let more = rows.len() as u64 > limit;
        let rows: Vec<run::Model> = rows.into_iter().take(limit as usize).collect();
        let decision_ids: Vec<Uuid> = rows.iter().map(|r| r.decision_id).collect();
        let decisions: std::collections::HashMap<Uuid, decision::Model> = decision::Entity::find()
            .filter(decision::Column::Id.is_in(decision_ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|d| (d.id, d))
            .collect();
        let next = if more {
            rows.last().map(|r| format!("{}:{}", r.queued_at_ms, r.id))
        } else {
            None
        };
        let records = rows
            .into_iter()
            .map(|r| {
                let d = decisions
                    .get(&r.decision_id)
                    .ok_or_else(|| Error::NotFound(format!("decision {}", r.decision_id)))?;
                to_record(r, d)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok((records, next))
    }
}
