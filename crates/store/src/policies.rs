//! Policies and their versions.

use crate::entity::{policy, policy_version};
use crate::{Error, Store};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use switchyard_spec::PolicyIr;
use uuid::Uuid;

/// A policy to save: the compiled IR with the document it came from.
#[derive(Debug, Clone)]
pub struct NewPolicy {
    pub ir: PolicyIr,
    pub spec_hash: String,
    /// The document as submitted.
    pub source: String,
    /// `yaml`, `json` or `toml`.
    pub format: String,
    /// `api` or `dir`.
    pub managed_by: String,
    pub author: String,
    pub comment: String,
}

/// A stored policy (the newest version).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRecord {
    pub id: Uuid,
    pub name: String,
    pub version_int: i64,
    pub enabled: bool,
    pub priority: i32,
    pub spec_hash: String,
    pub ir: PolicyIr,
    pub source: String,
    pub format: String,
    pub managed_by: String,
    pub last_validation: Option<Value>,
    pub last_dry_run: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The difference between two versions of a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionDiff {
    pub from: i64,
    pub to: i64,
    /// IR changes, by JSON pointer.
    pub changes: Vec<switchyard_spec::diff::Change>,
    pub source_from: String,
    pub source_to: String,
}

/// One kept version of a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRecord {
    pub policy_id: Uuid,
    pub version_int: i64,
    pub spec_hash: String,
    pub ir: PolicyIr,
    pub source: String,
    pub format: String,
    pub author: String,
    pub comment: String,
    /// SHA-256 of `source`.
    pub checksum: String,
    pub created_at: DateTime<Utc>,
}

/// A policy named by UUID or by name (names are never UUID-shaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyRef {
    Id(Uuid),
    Name(String),
}

impl PolicyRef {
    /// `{id}` as the API takes it: a UUID or a name.
    pub fn parse(s: &str) -> PolicyRef {
        Uuid::try_parse(s).map_or_else(|_| PolicyRef::Name(s.to_owned()), PolicyRef::Id)
    }
}

impl std::fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyRef::Id(id) => write!(f, "{id}"),
            PolicyRef::Name(n) => f.write_str(n),
        }
    }
}

fn decode_ir(v: Value) -> Result<PolicyIr, Error> {
    serde_json::from_value(v).map_err(|e| {
        Error::Db(sea_orm::DbErr::Custom(format!(
            "a stored IR does not decode: {e}"
        )))
    })
}

fn record(m: policy::Model) -> Result<PolicyRecord, Error> {
    Ok(PolicyRecord {
        id: m.id,
        name: m.name,
        version_int: m.version_int,
        enabled: m.enabled,
        priority: m.priority,
        spec_hash: m.spec_hash,
        ir: decode_ir(m.ir)?,
        source: m.source,
        format: m.format,
        managed_by: m.managed_by,
        last_validation: m.last_validation,
        last_dry_run: m.last_dry_run,
        created_at: m.created_at.with_timezone(&Utc),
        updated_at: m.updated_at.with_timezone(&Utc),
    })
}

fn version_record(m: policy_version::Model) -> Result<VersionRecord, Error> {
    Ok(VersionRecord {
        policy_id: m.policy_id,
        version_int: m.version_int,
        spec_hash: m.spec_hash,
        ir: decode_ir(m.ir)?,
        source: m.source,
        format: m.format,
        author: m.author,
        comment: m.comment,
        checksum: m.checksum,
        created_at: m.created_at.with_timezone(&Utc),
    })
}

fn ir_value(ir: &PolicyIr) -> Value {
    ir.to_value()
}

fn priority_of(ir: &PolicyIr) -> i32 {
    // Validation bounds priority to ±1,000,000.
    i32::try_from(ir.priority).unwrap_or(if ir.priority < 0 { i32::MIN } else { i32::MAX })
}

pub(crate) async fn live_by_ref<C: ConnectionTrait>(
    db: &C,
    r: &PolicyRef,
) -> Result<policy::Model, Error> {
    let q = policy::Entity::find().filter(policy::Column::ArchivedAt.is_null());
    let q = match r {
        PolicyRef::Id(id) => q.filter(policy::Column::Id.eq(*id)),
        PolicyRef::Name(n) => q.filter(policy::Column::Name.eq(n.as_str())),
    };
    q.one(db)
        .await?
        .ok_or_else(|| Error::NotFound(r.to_string()))
}

/// Refuse a name or a behaviour another live policy already has.
async fn check_unique<C: ConnectionTrait>(
    db: &C,
    name: &str,
    spec_hash: &str,
    except: Option<Uuid>,
) -> Result<(), Error> {
    let live = || {
        let q = policy::Entity::find().filter(policy::Column::ArchivedAt.is_null());
        match except {
            Some(id) => q.filter(policy::Column::Id.ne(id)),
            None => q,
        }
    };
    if live()
        .filter(policy::Column::Name.eq(name))
        .one(db)
        .await?
        .is_some()
    {
        return Err(Error::NameTaken(name.to_owned()));
    }
    if let Some(other) = live()
        .filter(policy::Column::SpecHash.eq(spec_hash))
        .one(db)
        .await?
    {
        return Err(Error::Duplicate {
            id: other.id,
            name: other.name,
        });
    }
    Ok(())
}

async fn insert_version<C: ConnectionTrait>(
    db: &C,
    policy_id: Uuid,
    version: i64,
    p: &NewPolicy,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    policy_version::ActiveModel {
        policy_id: Set(policy_id),
        version_int: Set(version),
        spec_hash: Set(p.spec_hash.clone()),
        ir: Set(ir_value(&p.ir)),
        source: Set(p.source.clone()),
        format: Set(p.format.clone()),
        author: Set(p.author.clone()),
        comment: Set(p.comment.clone()),
        checksum: Set(hex::encode(Sha256::digest(p.source.as_bytes()))),
        created_at: Set(now.into()),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// What a bundle did to one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleAction {
    Created,
    Updated,
    Unchanged,
    /// Pruned: no longer in the bundle.
    Disabled,
}

impl BundleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BundleAction::Created => "created",
            BundleAction::Updated => "updated",
            BundleAction::Unchanged => "unchanged",
            BundleAction::Disabled => "disabled",
        }
    }
}

/// One policy of an applied bundle, as it is (or would be) afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleStep {
    pub action: BundleAction,
    pub policy: PolicyRecord,
    /// Where the policy stood before the bundle (`None` when it was created).
    pub previous: Option<Previous>,
}

/// A policy's version and `enabled` before a bundle changed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Previous {
    pub version_int: i64,
    pub enabled: bool,
}

/// What an automatic rollback did to one policy of a bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoredStep {
    /// `restored` (a new version with the previous content), `archived` (the
    /// bundle created it), `reenabled` / `redisabled` (only `enabled` changed).
    pub action: &'static str,
    pub policy: PolicyRecord,
}

async fn create_on<C: ConnectionTrait>(db: &C, p: NewPolicy) -> Result<policy::Model, Error> {
    check_unique(db, &p.ir.name, &p.spec_hash, None).await?;
    let now = Utc::now();
    let id = Uuid::now_v7();
    let model = policy::ActiveModel {
        id: Set(id),
        name: Set(p.ir.name.clone()),
        version_int: Set(1),
        enabled: Set(p.ir.enabled),
        priority: Set(priority_of(&p.ir)),
        spec_hash: Set(p.spec_hash.clone()),
        ir: Set(ir_value(&p.ir)),
        source: Set(p.source.clone()),
        format: Set(p.format.clone()),
        managed_by: Set(p.managed_by.clone()),
        last_validation: Set(None),
        last_dry_run: Set(None),
        created_at: Set(now.into()),
        updated_at: Set(now.into()),
        archived_at: Set(None),
    }
    .insert(db)
    .await?;
    insert_version(db, id, 1, &p, now).await?;
    Ok(model)
}

async fn update_on<C: ConnectionTrait>(
    db: &C,
    current: policy::Model,
    p: NewPolicy,
    max_versions: Option<usize>,
) -> Result<policy::Model, Error> {
    check_unique(db, &p.ir.name, &p.spec_hash, Some(current.id)).await?;
    let now = Utc::now();
    let new_version = content(&decode_ir(current.ir.clone())?) != content(&p.ir);
    let version = if new_version {
        current.version_int + 1
    } else {
        current.version_int
    };
    let mut model: policy::ActiveModel = current.into();
    model.name = Set(p.ir.name.clone());
    model.version_int = Set(version);
    model.enabled = Set(p.ir.enabled);
    model.priority = Set(priority_of(&p.ir));
    model.spec_hash = Set(p.spec_hash.clone());
    model.ir = Set(ir_value(&p.ir));
    model.source = Set(p.source.clone());
    model.format = Set(p.format.clone());
    model.updated_at = Set(now.into());
    if new_version {
        // A dry-run speaks for the version it ran against.
        model.last_dry_run = Set(None);
    }
    let saved = model.update(db).await?;
    if new_version {
        insert_version(db, saved.id, version, &p, now).await?;
        if let Some(keep) = max_versions {
            // The cap never removes the current version.
            let oldest_kept = version - i64::try_from(keep.max(1)).unwrap_or(i64::MAX) + 1;
            policy_version::Entity::delete_many()
                .filter(policy_version::Column::PolicyId.eq(saved.id))
                .filter(policy_version::Column::VersionInt.lt(oldest_kept))
                .exec(db)
                .await?;
        }
    }
    Ok(saved)
}

/// The IR with `enabled` ignored: what decides whether a save is a new version.
fn content(ir: &PolicyIr) -> Value {
    let mut v = ir_value(ir);
    v["enabled"] = Value::Bool(false);
    v
}

impl Store {
    /// Save a new policy as version 1.
    pub async fn create_policy(&self, p: NewPolicy) -> Result<PolicyRecord, Error> {
        let txn = self.db.begin().await?;
        let saved = create_on(&txn, p).await?;
        txn.commit().await?;
        record(saved)
    }

    /// Replace a policy's document. `expected_version` is the version the
    /// caller last saw (HTTP `If-Match`). A change to anything but `enabled`
    /// creates a new version (and clears `last_dry_run`, which spoke for the
    /// previous one); the previous one is kept.
    pub async fn update_policy(
        &self,
        r: &PolicyRef,
        expected_version: i64,
        p: NewPolicy,
    ) -> Result<PolicyRecord, Error> {
        let txn = self.db.begin().await?;
        let current = live_by_ref(&txn, r).await?;
        if current.version_int != expected_version {
            return Err(Error::VersionMismatch {
                name: current.name,
                expected: expected_version,
                current: current.version_int,
            });
        }
        let saved = update_on(&txn, current, p, self.options.max_versions).await?;
        txn.commit().await?;
        record(saved)
    }

    /// Apply a bundle of policies (a directory) in one transaction: each is
    /// created, updated (a new version when its content changed) or left
    /// unchanged; with `prune`, live `managed_by` policies missing from the
    /// bundle are disabled. A bundle naming a policy another source manages,
    /// or any store error, applies nothing. With `dry_run` the same work is
    /// done and rolled back: the plan is exact.
    pub async fn apply_bundle(
        &self,
        bundle: Vec<NewPolicy>,
        managed_by: &str,
        prune: bool,
        dry_run: bool,
    ) -> Result<Vec<BundleStep>, Error> {
        let txn = self.db.begin().await?;
        let mut steps = Vec::new();
        // Every live policy in one query: a bundle is usually most of them.
        let mut live: std::collections::HashMap<String, policy::Model> = policy::Entity::find()
            .filter(policy::Column::ArchivedAt.is_null())
            .all(&txn)
            .await?
            .into_iter()
            .map(|m| (m.name.clone(), m))
            .collect();
        for p in bundle {
            let existing = live.remove(&p.ir.name);
            let previous = existing.as_ref().map(|m| Previous {
                version_int: m.version_int,
                enabled: m.enabled,
            });
            let (action, saved) = match existing {
                None => (BundleAction::Created, create_on(&txn, p).await?),
                Some(current) if current.managed_by != managed_by => {
                    return Err(Error::ManagedElsewhere {
                        name: current.name,
                        managed_by: current.managed_by,
                    });
                }
                Some(current) => {
                    if current.spec_hash == p.spec_hash && decode_ir(current.ir.clone())? == p.ir {
                        (BundleAction::Unchanged, current)
                    } else {
                        (
                            BundleAction::Updated,
                            update_on(&txn, current, p, self.options.max_versions).await?,
                        )
                    }
                }
            };
            steps.push(BundleStep {
                action,
                policy: record(saved)?,
                previous,
            });
        }
        if prune {
            // What is left of `live` is not in the bundle.
            let mut stale: Vec<policy::Model> = live
                .into_values()
                .filter(|m| m.managed_by == managed_by && m.enabled)
                .collect();
            stale.sort_by(|a, b| a.name.cmp(&b.name));
            for m in stale {
                let previous = Some(Previous {
                    version_int: m.version_int,
                    enabled: m.enabled,
                });
                let mut model: policy::ActiveModel = m.into();
                model.enabled = Set(false);
                model.updated_at = Set(Utc::now().into());
                let saved = model.update(&txn).await?;
                steps.push(BundleStep {
                    action: BundleAction::Disabled,
                    policy: record(saved)?,
                    previous,
                });
            }
        }
        if dry_run {
            txn.rollback().await?;
        } else {
            txn.commit().await?;
        }
        Ok(steps)
    }

    /// Undo an applied bundle in one transaction: every policy it changed
    /// returns to where it stood before. A policy the bundle updated gets a
    /// new version with its previous content and `enabled`, commented with
    /// `reason` (so the history says why); one it created is archived; one
    /// whose `enabled` alone changed gets it back.
    pub async fn rollback_bundle(
        &self,
        steps: &[BundleStep],
        reason: &str,
        author: &str,
    ) -> Result<Vec<RestoredStep>, Error> {
        let txn = self.db.begin().await?;
        let mut restored = Vec::new();
        for step in steps {
            let Ok(current) = live_by_ref(&txn, &PolicyRef::Id(step.policy.id)).await else {
                continue;
            };
            let now = Utc::now();
            let (action, saved) = match (step.action, step.previous) {
                (BundleAction::Created, _) | (_, None) => {
                    let mut model: policy::ActiveModel = current.into();
                    model.enabled = Set(false);
                    model.archived_at = Set(Some(now.into()));
                    model.updated_at = Set(now.into());
                    ("archived", model.update(&txn).await?)
                }
                (BundleAction::Updated, Some(prev)) if prev.version_int != current.version_int => {
                    let old = policy_version::Entity::find_by_id((current.id, prev.version_int))
                        .one(&txn)
                        .await?
                        .ok_or_else(|| Error::NoSuchVersion {
                            name: current.name.clone(),
                            version: prev.version_int,
                        })?;
                    let mut ir = decode_ir(old.ir)?;
                    ir.enabled = prev.enabled;
                    let p = NewPolicy {
                        ir,
                        spec_hash: old.spec_hash,
                        source: old.source,
                        format: old.format,
                        managed_by: current.managed_by.clone(),
                        author: author.to_owned(),
                        comment: format!(
                            "automatic rollback to version {}: {reason}",
                            prev.version_int
                        ),
                    };
                    (
                        "restored",
                        update_on(&txn, current, p, self.options.max_versions).await?,
                    )
                }
                (_, Some(prev)) if prev.enabled != current.enabled => {
                    let mut model: policy::ActiveModel = current.into();
                    model.enabled = Set(prev.enabled);
                    model.updated_at = Set(now.into());
                    let action = if prev.enabled {
                        "reenabled"
                    } else {
                        "redisabled"
                    };
                    (action, model.update(&txn).await?)
                }
                _ => continue,
            };
            restored.push(RestoredStep {
                action,
                policy: record(saved)?,
            });
        }
        txn.commit().await?;
        Ok(restored)
    }

    /// Enable or disable without creating a version.
    pub async fn set_enabled(&self, r: &PolicyRef, enabled: bool) -> Result<PolicyRecord, Error> {
        let txn = self.db.begin().await?;
        let current = live_by_ref(&txn, r).await?;
        let mut model: policy::ActiveModel = current.into();
        model.enabled = Set(enabled);
        model.updated_at = Set(Utc::now().into());
        let saved = model.update(&txn).await?;
        txn.commit().await?;
        record(saved)
    }

    /// Archive: disabled, hidden from lists and lookups, history kept.
    pub async fn archive_policy(&self, r: &PolicyRef) -> Result<PolicyRecord, Error> {
        let txn = self.db.begin().await?;
        let current = live_by_ref(&txn, r).await?;
        let mut model: policy::ActiveModel = current.into();
        model.enabled = Set(false);
        let now = Utc::now();
        model.archived_at = Set(Some(now.into()));
        model.updated_at = Set(now.into());
        let saved = model.update(&txn).await?;
        txn.commit().await?;
        record(saved)
    }

    /// A live policy by id or name.
    pub async fn get_policy(&self, r: &PolicyRef) -> Result<PolicyRecord, Error> {
        record(live_by_ref(&self.db, r).await?)
    }

    /// Live policies, in evaluation order: priority, then id.
    pub async fn list_policies(&self) -> Result<Vec<PolicyRecord>, Error> {
        policy::Entity::find()
            .filter(policy::Column::ArchivedAt.is_null())
            .order_by_asc(policy::Column::Priority)
            .order_by_asc(policy::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(record)
            .collect()
    }

    /// Every kept version, oldest first.
    pub async fn list_versions(&self, r: &PolicyRef) -> Result<Vec<VersionRecord>, Error> {
        let p = live_by_ref(&self.db, r).await?;
        policy_version::Entity::find()
            .filter(policy_version::Column::PolicyId.eq(p.id))
            .order_by_asc(policy_version::Column::VersionInt)
            .all(&self.db)
            .await?
            .into_iter()
            .map(version_record)
            .collect()
    }

    /// One version.
    pub async fn get_version(&self, r: &PolicyRef, version: i64) -> Result<VersionRecord, Error> {
        let p = live_by_ref(&self.db, r).await?;
        policy_version::Entity::find_by_id((p.id, version))
            .one(&self.db)
            .await?
            .ok_or(Error::NoSuchVersion {
                name: p.name,
                version,
            })
            .and_then(version_record)
    }

    /// What changed from version `from` to version `to`: the IR field by field
    /// (JSON pointers into the IR) and both documents as submitted.
    pub async fn diff_versions(
        &self,
        r: &PolicyRef,
        from: i64,
        to: i64,
    ) -> Result<VersionDiff, Error> {
        let a = self.get_version(r, from).await?;
        let b = self.get_version(r, to).await?;
        Ok(VersionDiff {
            from,
            to,
            changes: switchyard_spec::diff::json_diff(&a.ir.to_value(), &b.ir.to_value()),
            source_from: a.source,
            source_to: b.source,
        })
    }

    /// Record the outcome of the latest validation (findings, when, by whom).
    pub async fn set_last_validation(
        &self,
        r: &PolicyRef,
        validation: Value,
    ) -> Result<PolicyRecord, Error> {
        let txn = self.db.begin().await?;
        let current = live_by_ref(&txn, r).await?;
        let mut model: policy::ActiveModel = current.into();
        model.last_validation = Set(Some(validation));
        let saved = model.update(&txn).await?;
        txn.commit().await?;
        record(saved)
    }

    /// Roll back: a new version whose content equals version `to`.
    pub async fn rollback(
        &self,
        r: &PolicyRef,
        to: i64,
        expected_version: i64,
        author: &str,
    ) -> Result<PolicyRecord, Error> {
        let old = self.get_version(r, to).await?;
        let current = self.get_policy(r).await?;
        let mut ir = old.ir;
        ir.enabled = current.enabled;
        self.update_policy(
            r,
            expected_version,
            NewPolicy {
                ir,
                spec_hash: old.spec_hash,
                source: old.source,
                format: old.format,
                managed_by: current.managed_by,
                author: author.to_owned(),
                comment: format!("rollback to version {to}"),
            },
        )
        .await
    }
}
