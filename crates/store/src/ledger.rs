//! The execution ledger's records — decisions and their runs, as the write
//! path (`batch/`) records them — and their queries with cursor paging.

use crate::entity::{decision, run};
use crate::{Error, Store, epoch_ms as ms, from_epoch_ms as at};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
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

impl Store {
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
