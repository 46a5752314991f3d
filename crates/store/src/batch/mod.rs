//! The group-commit write path: the decisions of many events recorded in one
//! transaction with a handful of multi-row statements, so durability does not
//! cap throughput.
//!
//! The engine hands over its decisions as data ([`EventDecisions`]); the
//! store settles everything that depends on the database inside the
//! transaction — whether a delivery was decided before (inbox), which
//! suppression and idempotency windows are claimed, whether a host queue has
//! room — and reports the outcome of every decision and run. Items are settled
//! in the order given, so within one batch the earlier event wins a window
//! exactly as it would have in a transaction of its own.

use crate::claims::ClaimKind;
use crate::ledger::{NewDecision, NewRun, RunStatus};
use crate::lite::Tx;
use crate::{Error, Lease, Store, epoch_ms as ms, from_epoch_ms as at};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Statement, Value};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use uuid::Uuid;

mod statements;

/// Reason recorded on a run refused because its host queue was full.
pub const REASON_QUEUE_FULL: &str = "queue_full";

/// Everything one delivered event decided.
#[derive(Debug, Clone)]
pub struct EventDecisions {
    /// The delivery identity (stream and sequence) the inbox deduplicates on.
    pub delivery_key: String,
    pub event_id: String,
    pub received_at: DateTime<Utc>,
    /// One per policy that matched, in shortlist order.
    pub decisions: Vec<PlannedDecision>,
    /// `ALL`-group state this event changes, written with its inbox row.
    pub correlation: Vec<CorrelationWrite>,
}

/// A change to `ALL`-group correlation state: one row per (policy, group
/// key, trigger) holding the latest event whose trigger matched.
#[derive(Debug, Clone, PartialEq)]
pub enum CorrelationWrite {
    /// Record `event_id`, seen at `seen_at`, until `expires_at`.
    Seen {
        key: String,
        event_id: String,
        seen_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    /// The group fired: forget it.
    Clear { key: String },
}

/// One stored correlation row.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelationRow {
    pub key: String,
    pub event_id: String,
    pub seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A claimable window.
#[derive(Debug, Clone)]
pub struct Window {
    pub key: String,
    pub ttl: Duration,
}

/// One policy's decision before the windows are settled.
#[derive(Debug, Clone)]
pub struct PlannedDecision {
    pub decision: NewDecision,
    /// The (policy, group key) window; when another decision holds it this one
    /// is counted on the window's aggregated `suppressed` record instead.
    pub suppression: Option<Window>,
    pub runs: Vec<PlannedRun>,
}

/// One run before the windows are settled.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    /// `status` is `queued` for a run to dispatch; other statuses (a `failed`
    /// run with reason `no_driver`, say) are recorded as given.
    pub run: NewRun,
    /// Claim `run.idempotency_key` for this long; held → `deduplicated`.
    pub idempotency_ttl: Option<Duration>,
}

/// How a batch item was settled.
#[derive(Debug, Clone, PartialEq)]
pub enum EventOutcome {
    /// This delivery was decided before: nothing new was recorded.
    Redelivered,
    Recorded(Vec<DecisionOutcome>),
}

/// How one decision was settled.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionOutcome {
    pub decision_id: Uuid,
    /// Set when the suppression window was held by an earlier decision.
    pub suppressed: Option<Suppression>,
    /// Every recorded run with its status and reason (empty when suppressed).
    pub runs: Vec<SettledRun>,
}

/// A suppressed decision, counted on the window's aggregated record.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppression {
    /// The aggregated `suppressed` run of the window.
    pub record: Uuid,
    /// When the window ends.
    pub until: DateTime<Utc>,
}

/// A run as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct SettledRun {
    pub id: Uuid,
    pub host: String,
    pub status: RunStatus,
    pub reason: Option<String>,
}

/// What [`Store::write_batch`] reports: per change whether it applied, per item its outcome.
pub type Written = (Vec<bool>, Vec<EventOutcome>);

/// A status change for [`Store::transition_many`].
#[derive(Debug, Clone)]
pub struct Transition {
    pub run_id: Uuid,
    pub to: RunStatus,
    pub update: crate::RunUpdate,
}

impl Store {
    /// Record a batch of events' decisions in one transaction, as the holder
    /// of `lease`. `admit(run)` is asked, in order, for every run that would be
    /// queued and answers whether its host queue has room; a refused run is
    /// recorded `failed` with reason `queue_full`. All or nothing: on error no
    /// item is recorded.
    pub async fn record_batch(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        items: &[EventDecisions],
        admit: &mut (dyn FnMut(&NewRun) -> bool + Send),
    ) -> Result<Vec<EventOutcome>, Error> {
        let txn = self.begin_write().await?;
        self.check_lease(&txn.tx()?, lease).await?;
        let outcomes = self.settle(&txn.tx()?, now, items, admit).await?;
        txn.commit(&|| false).await?;
        self.after_commit().await;
        Ok(outcomes)
    }

    async fn settle(
        &self,
        txn: &Tx<'_>,
        now: DateTime<Utc>,
        items: &[EventDecisions],
        admit: &mut (dyn FnMut(&NewRun) -> bool + Send),
    ) -> Result<Vec<EventOutcome>, Error> {
        // 1. Inbox: which deliveries are new.
        let new_keys = self.insert_inbox(txn, items).await?;
        let mut first_seen = HashSet::new();
        let fresh: Vec<bool> = items
            .iter()
            .map(|i| {
                new_keys.contains(&i.delivery_key) && first_seen.insert(i.delivery_key.as_str())
            })
            .collect();
        let fresh_items = || {
            items
                .iter()
                .zip(&fresh)
                .filter(|(_, f)| **f)
                .map(|(i, _)| i)
        };

        // 2. Suppression windows, claimed in batch order.
        let mut wanted: Vec<(String, i64)> = Vec::new();
        let mut holders: Vec<String> = Vec::new();
        let mut seen = HashSet::new();
        for item in fresh_items() {
            for d in &item.decisions {
                if let Some(w) = &d.suppression
                    && seen.insert(w.key.clone())
                {
                    wanted.push((w.key.clone(), expiry(now, w.ttl)));
                    holders.push(d.decision.id.to_string());
                }
            }
        }
        let claimed_windows = self
            .claim_many(txn, ClaimKind::Suppression, &wanted, &holders, now)
            .await?;
        let window_end = self
            .claim_expiries(txn, ClaimKind::Suppression, &wanted, &claimed_windows)
            .await?;

        // 3. Decide each decision's fate; idempotency keys are claimed for the unsuppressed.
        let mut winner_of_window: HashMap<&str, Uuid> = HashMap::new();
        let mut idem_wanted: Vec<(String, i64)> = Vec::new();
        let mut idem_holders: Vec<String> = Vec::new();
        let mut idem_seen = HashSet::new();
        let mut fates: Vec<Option<Vec<bool>>> = Vec::new(); // per decision: None = suppressed
        for item in fresh_items() {
            for d in &item.decisions {
                let suppressed = match &d.suppression {
                    None => false,
                    Some(w) => {
                        let ours = claimed_windows.contains(&w.key)
                            && *winner_of_window
                                .entry(w.key.as_str())
                                .or_insert(d.decision.id)
                                == d.decision.id;
                        !ours
                    }
                };
                if suppressed {
                    fates.push(None);
                    continue;
                }
                let mut firsts = Vec::with_capacity(d.runs.len());
                for r in &d.runs {
                    let first = match (&r.run.idempotency_key, r.idempotency_ttl) {
                        (Some(k), Some(ttl)) if r.run.status == RunStatus::Queued => {
                            let first = idem_seen.insert(k.clone());
                            if first {
                                idem_wanted.push((k.clone(), expiry(now, ttl)));
                                idem_holders.push(r.run.id.to_string());
                            }
                            first
                        }
                        _ => true,
                    };
                    firsts.push(first);
                }
                fates.push(Some(firsts));
            }
        }
        let claimed_keys = self
            .claim_many(
                txn,
                ClaimKind::Idempotency,
                &idem_wanted,
                &idem_holders,
                now,
            )
            .await?;

        // 4. Build the rows.
        let mut decisions: Vec<&NewDecision> = Vec::new();
        let mut runs: Vec<(Uuid, Uuid, Cow<'_, NewRun>)> = Vec::new();
        let mut outcomes: Vec<EventOutcome> = Vec::with_capacity(items.len());
        let mut suppressed_by_key: HashMap<String, Vec<(usize, usize, &PlannedDecision)>> =
            HashMap::new();
        let mut fate = fates.into_iter();
        for (i, item) in items.iter().enumerate() {
            if !fresh[i] {
                outcomes.push(EventOutcome::Redelivered);
                continue;
            }
            let mut settled = Vec::with_capacity(item.decisions.len());
            for (j, d) in item.decisions.iter().enumerate() {
                let Some(firsts) = fate.next().flatten() else {
                    let key = d
                        .suppression
                        .as_ref()
                        .map(|w| w.key.clone())
                        .unwrap_or_default();
                    suppressed_by_key.entry(key).or_default().push((i, j, d));
                    settled.push(DecisionOutcome {
                        decision_id: d.decision.id,
                        suppressed: None, // filled below
                        runs: Vec::new(),
                    });
                    continue;
                };
                decisions.push(&d.decision);
                let mut out = Vec::with_capacity(d.runs.len());
                for (r, first) in d.runs.iter().zip(firsts) {
                    // Borrowed unless settling changes it (most runs are recorded as planned).
                    let mut run = Cow::Borrowed(&r.run);
                    let dedup = run.status == RunStatus::Queued
                        && r.idempotency_ttl.is_some()
                        && run
                            .idempotency_key
                            .as_ref()
                            .is_some_and(|k| !first || !claimed_keys.contains(k));
                    if dedup {
                        let run = run.to_mut();
                        run.status = RunStatus::Deduplicated;
                        run.reason = Some("idempotency_window".into());
                    } else if run.status == RunStatus::Queued && !admit(&run) {
                        let run = run.to_mut();
                        run.status = RunStatus::Failed;
                        run.reason = Some(REASON_QUEUE_FULL.into());
                    }
                    out.push(SettledRun {
                        id: run.id,
                        host: run.host.clone(),
                        status: run.status,
                        reason: run.reason.clone(),
                    });
                    runs.push((d.decision.id, d.decision.policy_id, run));
                }
                settled.push(DecisionOutcome {
                    decision_id: d.decision.id,
                    suppressed: None,
                    runs: out,
                });
            }
            outcomes.push(EventOutcome::Recorded(settled));
        }

        // 5. Suppressions aggregate on one record per window.
        let keys: Vec<String> = suppressed_by_key.keys().cloned().collect();
        let existing = self.live_records(txn, &keys, now).await?;
        let mut new_records: Vec<(String, i64)> = Vec::new();
        let mut new_record_ids: Vec<String> = Vec::new();
        for (key, group) in &suppressed_by_key {
            let until = window_end.get(key).copied().unwrap_or_else(|| ms(now));
            let record = match existing.get(key) {
                Some(record) => {
                    self.add_count(txn, *record, group.len() as i64).await?;
                    *record
                }
                None => {
                    let (_, _, first) = group[0];
                    let record = Uuid::now_v7();
                    decisions.push(&first.decision);
                    runs.push((
                        first.decision.id,
                        first.decision.policy_id,
                        Cow::Owned(suppressed_record(
                            first,
                            record,
                            group.len() as i64,
                            at(until),
                        )),
                    ));
                    new_records.push((key.clone(), until));
                    new_record_ids.push(record.to_string());
                    record
                }
            };
            for (i, j, _) in group {
                if let EventOutcome::Recorded(ds) = &mut outcomes[*i] {
                    ds[*j].suppressed = Some(Suppression {
                        record,
                        until: at(until),
                    });
                }
            }
        }
        self.upsert_records(txn, &new_records, &new_record_ids, now)
            .await?;

        self.insert_decisions(txn, &decisions).await?;
        self.insert_runs(txn, &runs).await?;
        let writes: Vec<&CorrelationWrite> = fresh_items().flat_map(|i| &i.correlation).collect();
        self.write_correlation(txn, &writes).await?;
        Ok(outcomes)
    }

    async fn write_correlation(
        &self,
        txn: &Tx<'_>,
        writes: &[&CorrelationWrite],
    ) -> Result<(), Error> {
        let backend = txn.get_database_backend();
        for w in writes {
            let (sql, values): (String, Vec<Value>) = match w {
                CorrelationWrite::Seen {
                    key,
                    event_id,
                    seen_at,
                    expires_at,
                } => (
                    format!(
                        "INSERT INTO window_claims (kind, claim_key, holder, claimed_at_ms, expires_at_ms) VALUES {} \
                         ON CONFLICT (kind, claim_key) DO UPDATE SET holder = excluded.holder, \
                         claimed_at_ms = excluded.claimed_at_ms, expires_at_ms = excluded.expires_at_ms",
                        self.rows(1, 5)
                    ),
                    vec![
                        ClaimKind::Correlation.as_str().into(),
                        key.as_str().into(),
                        event_id.as_str().into(),
                        ms(*seen_at).into(),
                        ms(*expires_at).into(),
                    ],
                ),
                CorrelationWrite::Clear { key } => {
                    let p = self.placeholders(2);
                    (
                        format!(
                            "DELETE FROM window_claims WHERE kind = {} AND claim_key = {}",
                            p[0], p[1]
                        ),
                        vec![ClaimKind::Correlation.as_str().into(), key.as_str().into()],
                    )
                }
            };
            txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?;
        }
        Ok(())
    }

    /// Unexpired `ALL`-group correlation rows (the engine loads them at start).
    pub async fn correlation_state(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<CorrelationRow>, Error> {
        let p = self.placeholders(2);
        let backend = self.db.get_database_backend();
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT claim_key, holder, claimed_at_ms, expires_at_ms FROM window_claims WHERE kind = {} AND expires_at_ms > {}",
                    p[0], p[1]
                ),
                vec![ClaimKind::Correlation.as_str().into(), ms(now).into()],
            ))
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(CorrelationRow {
                    key: r.try_get("", "claim_key")?,
                    event_id: r.try_get("", "holder")?,
                    seen_at: at(r.try_get("", "claimed_at_ms")?),
                    expires_at: at(r.try_get("", "expires_at_ms")?),
                })
            })
            .collect()
    }

    /// Apply several status changes in one transaction as the holder of
    /// `lease`; each is guarded as in [`Store::transition`]. Returns, per
    /// change, whether it applied (`false`: the run was already terminal).
    pub async fn transition_many(
        &self,
        lease: &Lease,
        changes: &[Transition],
    ) -> Result<Vec<bool>, Error> {
        let txn = self.begin_write().await?;
        self.check_lease(&txn.tx()?, lease).await?;
        let applied = self.apply_transitions(&txn.tx()?, changes).await?;
        txn.commit(&|| false).await?;
        self.after_commit().await;
        Ok(applied)
    }

    /// Status changes and new decisions in one transaction (the engine
    /// writer's unit of work): changes first, then the batch, as
    /// [`Store::transition_many`] and [`Store::record_batch`] would.
    ///
    /// `more` is asked after the commit whether the caller has another batch
    /// waiting. If so, on SQLite, the next call reuses the pool's connection
    /// this one held (see [`crate::lite`]); a caller that answers `true` calls
    /// [`Store::release_write_gate`] when it stops writing.
    pub async fn write_batch(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        changes: &[Transition],
        items: &[EventDecisions],
        admit: &mut (dyn FnMut(&NewRun) -> bool + Send),
        more: &(dyn Fn() -> bool + Sync),
    ) -> Result<Written, Error> {
        let txn = self.begin_write().await?;
        let tx = txn.tx()?;
        // First: on PostgreSQL the lease row stays locked until the commit.
        self.check_lease(&tx, lease).await?;
        let applied = self.apply_transitions(&tx, changes).await?;
        let outcomes = self.settle(&tx, now, items, admit).await?;
        txn.commit(more).await?;
        self.after_commit().await;
        Ok((applied, outcomes))
    }
}

fn expiry(now: DateTime<Utc>, ttl: Duration) -> i64 {
    ms(now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX))
}

/// The one ledger record a window's suppressions are counted on. It stands
/// for whole decisions, so it names the action but no host or target.
fn suppressed_record(d: &PlannedDecision, id: Uuid, count: i64, until: DateTime<Utc>) -> NewRun {
    let template = d.runs.first().map(|r| &r.run);
    NewRun {
        id,
        host: String::new(),
        target_type: String::new(),
        target_id: String::new(),
        driver: template.and_then(|r| r.driver.clone()),
        capability: template.map(|r| r.capability.clone()).unwrap_or_default(),
        verb: template.map(|r| r.verb.clone()).unwrap_or_default(),
        params: template
            .map(|r| r.params.clone())
            .unwrap_or(serde_json::Value::Null),
        idempotency_key: None,
        status: RunStatus::Suppressed,
        severity: None,
        reason: Some(format!(
            "suppression_window until {}",
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )),
        count,
        queued_at: d.decision.decided_at,
        inverse_of: None,
    }
}
