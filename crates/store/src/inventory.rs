//! Inventory items (what drivers discovered under hosts), audit events and
//! dry-run transcripts.

use crate::entity::{audit_event, inventory_item, policy, transcript};
use crate::{Error, PolicyRef, Store};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// One discovered item.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryRecord {
    pub host: String,
    pub item_type: String,
    pub id: String,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub state: Option<Value>,
    pub refreshed_at: DateTime<Utc>,
    /// From a partly failed refresh, or older than `stale_after`.
    pub stale: bool,
}

/// One item as a driver's `discover` reported it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DiscoveredItem {
    pub item_type: String,
    pub id: String,
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub state: Option<Value>,
}

/// Inventory search (all optional, combined with AND).
#[derive(Debug, Clone, Default)]
pub struct InventoryQuery {
    pub host: Option<String>,
    pub item_type: Option<String>,
    pub id: Option<String>,
    /// Substring of the name.
    pub name_contains: Option<String>,
    /// `key=value` on labels.
    pub label: Option<(String, String)>,
}

/// An audit event: who did what to what.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub subject: String,
    pub action: String,
    pub target: String,
    pub correlation_id: String,
    pub detail: Value,
}

impl Store {
    /// Store a host's discovery result. A complete refresh replaces the host's
    /// items of the types it returned; a partial one updates what it returned
    /// and marks it stale, removing nothing.
    pub async fn record_discovery(
        &self,
        host: &str,
        items: &[DiscoveredItem],
        complete: bool,
        now: DateTime<Utc>,
    ) -> Result<usize, Error> {
        let txn = self.db.begin().await?;
        if complete {
            let mut types: Vec<&str> = items.iter().map(|i| i.item_type.as_str()).collect();
            types.sort_unstable();
            types.dedup();
            for ty in types {
                inventory_item::Entity::delete_many()
                    .filter(inventory_item::Column::Host.eq(host))
                    .filter(inventory_item::Column::ItemType.eq(ty))
                    .exec(&txn)
                    .await?;
            }
        }
        for item in items {
            inventory_item::Entity::delete_by_id((
                host.to_owned(),
                item.item_type.clone(),
                item.id.clone(),
            ))
            .exec(&txn)
            .await?;
            inventory_item::ActiveModel {
                host: Set(host.to_owned()),
                item_type: Set(item.item_type.clone()),
                item_id: Set(item.id.clone()),
                name: Set(item.name.clone()),
                // A map of strings: it always serializes.
                labels: Set(serde_json::to_value(&item.labels).unwrap_or_default()),
                state: Set(item.state.clone()),
                refreshed_at_ms: Set(now.timestamp_millis()),
                partial: Set(!complete),
            }
            .insert(&txn)
            .await?;
        }
        txn.commit().await?;
        Ok(items.len())
    }

    /// Items matching `q`; `stale_after` decides which are stale at `now`.
    pub async fn inventory(
        &self,
        q: &InventoryQuery,
        now: DateTime<Utc>,
        stale_after: std::time::Duration,
    ) -> Result<Vec<InventoryRecord>, Error> {
        let mut find = inventory_item::Entity::find();
        if let Some(h) = &q.host {
            find = find.filter(inventory_item::Column::Host.eq(h.as_str()));
        }
        if let Some(t) = &q.item_type {
            find = find.filter(inventory_item::Column::ItemType.eq(t.as_str()));
        }
        if let Some(id) = &q.id {
            find = find.filter(inventory_item::Column::ItemId.eq(id.as_str()));
        }
        if let Some(n) = &q.name_contains {
            find = find.filter(inventory_item::Column::Name.contains(n.as_str()));
        }
        let horizon =
            now.timestamp_millis() - i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX);
        let rows = find
            .order_by_asc(inventory_item::Column::Host)
            .order_by_asc(inventory_item::Column::ItemType)
            .order_by_asc(inventory_item::Column::ItemId)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|m| InventoryRecord {
                stale: m.partial || m.refreshed_at_ms < horizon,
                labels: serde_json::from_value(m.labels).unwrap_or_default(),
                host: m.host,
                item_type: m.item_type,
                id: m.item_id,
                name: m.name,
                state: m.state,
                refreshed_at: DateTime::from_timestamp_millis(m.refreshed_at_ms)
                    .unwrap_or_default(),
            })
            .filter(|r| {
                q.label
                    .as_ref()
                    .is_none_or(|(k, v)| r.labels.get(k) == Some(v))
            })
            .collect())
    }

    /// Record an audit event (every state change writes one).
    pub async fn audit(&self, e: &AuditEvent) -> Result<(), Error> {
        audit_event::ActiveModel {
            id: Set(e.id),
            at_ms: Set(e.at.timestamp_millis()),
            subject: Set(e.subject.clone()),
            action: Set(e.action.clone()),
            target: Set(e.target.clone()),
            correlation_id: Set(e.correlation_id.clone()),
            detail: Set(e.detail.clone()),
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    /// The newest audit events first.
    pub async fn audit_events(&self, limit: u64) -> Result<Vec<AuditEvent>, Error> {
        Ok(audit_event::Entity::find()
            .order_by_desc(audit_event::Column::AtMs)
            .order_by_desc(audit_event::Column::Id)
            .limit(limit.clamp(1, 1000))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| AuditEvent {
                id: m.id,
                at: DateTime::from_timestamp_millis(m.at_ms).unwrap_or_default(),
                subject: m.subject,
                action: m.action,
                target: m.target,
                correlation_id: m.correlation_id,
                detail: m.detail,
            })
            .collect())
    }

    /// Store a dry-run transcript and make it the policy's `last_dry_run`
    /// (`{transcript_id, at, summary}`); returns the transcript id.
    pub async fn save_transcript(
        &self,
        r: &PolicyRef,
        transcript: Value,
        summary: Value,
        now: DateTime<Utc>,
    ) -> Result<Uuid, Error> {
        let txn = self.db.begin().await?;
        let p = crate::policies::live_by_ref(&txn, r).await?;
        let id = Uuid::now_v7();
        transcript::ActiveModel {
            id: Set(id),
            policy_id: Set(p.id),
            created_at_ms: Set(now.timestamp_millis()),
            transcript: Set(transcript),
        }
        .insert(&txn)
        .await?;
        let mut model: policy::ActiveModel = p.into();
        model.last_dry_run = Set(Some(
            serde_json::json!({"transcript_id": id, "at": now.to_rfc3339(), "summary": summary}),
        ));
        model.update(&txn).await?;
        txn.commit().await?;
        Ok(id)
    }

    /// A stored transcript.
    pub async fn transcript(&self, id: Uuid) -> Result<Value, Error> {
        transcript::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(|m| m.transcript)
            .ok_or_else(|| Error::NotFound(format!("transcript {id}")))
    }
}
