//! From one event to the decisions it causes, as data: which policies match,
//! their windows, the resolved targets and the runs to queue. Pure — nothing
//! here waits or writes; the writer settles windows and persists.

use crate::correlate::Correlations;
use crate::policies::{ActivePolicy, PolicySet};
use crate::routing::Routing;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::time::Duration;
use switchyard_spec::canonical;
use switchyard_spec::event::Event;
use switchyard_spec::ir::OnError;
use switchyard_spec::selector::{Inventory, InventoryHost, InventoryItem, TargetRef};
use switchyard_store::{
    EventDecisions, NewDecision, NewRun, PlannedDecision, PlannedRun, RunStatus, Window,
};
use uuid::Uuid;

/// The inventory decisions resolve selectors against.
#[derive(Debug, Clone, Default)]
pub struct InventorySnapshot {
    pub hosts: Vec<InventoryHost>,
    pub items: Vec<InventoryItem>,
}

/// An event as the engine receives it.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The delivery identity the inbox deduplicates on.
    pub delivery_key: String,
    pub event_id: String,
    pub event: Event,
    pub received_at: DateTime<Utc>,
}

/// What dispatch needs of a queued run beyond its ledger row.
#[derive(Debug, Clone)]
pub struct DispatchMeta {
    pub timeout: Duration,
    pub idempotent: bool,
    pub per_target: bool,
    pub stop_on_error: bool,
    /// The params as the driver gets them, when the ledger keeps them with
    /// the members the verb's schema marks secret (`writeOnly`) masked.
    /// Held in memory only: after a restart such a run is interrupted.
    pub secret_params: Option<serde_json::Value>,
    /// The values of those secret members: removed from the driver's
    /// output, errors and stderr for this run.
    pub secret_values: Vec<String>,
}

/// The decisions of one event, with dispatch facts per run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub decisions: EventDecisions,
    /// Dispatch facts of each run planned `queued`, in the order of those
    /// runs across `decisions` (the writer re-stamps run ids at commit).
    pub dispatch: Vec<DispatchMeta>,
}

/// `params` as the ledger keeps them (secret members `***`), the params
/// as the driver gets them when they differ, and the secret values.
pub(crate) fn split_secrets(
    rules: Option<&crate::routing::ParamsRules>,
    params: Value,
) -> (Value, Option<Value>, Vec<String>) {
    match rules.and_then(|r| r.mask_secrets(&params)) {
        Some((masked, values)) => (masked, Some(params), values),
        None => (params, None, Vec::new()),
    }
}

/// The idempotency key of DESIGN §5 step 7.
pub fn idempotency_key(
    policy: Uuid,
    capability: &str,
    verb: &str,
    target: &TargetRef,
    params: &Value,
) -> String {
    use canonical::Member::{Json, Str};
    // The canonical JSON of {policy, capability, verb, host, target_type,
    // target_id, params}, members in canonical (sorted) order.
    let mut buf = Uuid::encode_buffer();
    let policy = &*policy.hyphenated().encode_lower(&mut buf);
    canonical::sha256_hex_of_members(&[
        ("capability", Str(capability)),
        ("host", Str(&target.host)),
        ("params", Json(params)),
        ("policy", Str(policy)),
        ("target_id", Str(&target.id)),
        ("target_type", Str(&target.target_type)),
        ("verb", Str(verb)),
    ])
}

/// The group key of an event for a policy: the `group_by` values, or the whole policy.
pub fn group_key(p: &ActivePolicy, envelope: &Value) -> String {
    if p.group_by.is_empty() {
        return p.id.to_string();
    }
    let values: Vec<Value> = p
        .group_by
        .iter()
        .map(|path| match path.select(envelope).as_slice() {
            [one] => (*one).clone(),
            [] => Value::Null,
            many => Value::Array(many.iter().map(|v| (*v).clone()).collect()),
        })
        .collect();
    format!("{}|{}", p.id, canonical::sha256_hex(&Value::Array(values)))
}

/// Decide one event against the enabled policies. Returns `None` when no
/// policy matches (nothing to record).
pub fn plan(
    incoming: Incoming,
    policies: &PolicySet,
    correlations: &Correlations,
    routing: &Routing,
    inventory: &InventorySnapshot,
    max_event_age: Duration,
) -> Option<Plan> {
    let shortlist = policies.shortlist(&incoming.event.kind);
    if shortlist.is_empty() {
        return None;
    }
    plan_for(
        incoming,
        &shortlist,
        false,
        correlations,
        routing,
        inventory,
        max_event_age,
    )
}

/// Decide a schedule tick for the one policy whose trigger fired: no kind
/// index, no trigger matching — only its conditions.
pub fn plan_tick(
    incoming: Incoming,
    policy: &std::sync::Arc<ActivePolicy>,
    routing: &Routing,
    inventory: &InventorySnapshot,
    max_event_age: Duration,
) -> Option<Plan> {
    plan_for(
        incoming,
        &[policy],
        true,
        &Correlations::default(),
        routing,
        inventory,
        max_event_age,
    )
}

fn plan_for(
    incoming: Incoming,
    shortlist: &[&std::sync::Arc<ActivePolicy>],
    tick: bool,
    correlations: &Correlations,
    routing: &Routing,
    inventory: &InventorySnapshot,
    max_event_age: Duration,
) -> Option<Plan> {
    let Incoming {
        delivery_key,
        event_id,
        event,
        received_at,
    } = incoming;
    let event_time = event.time.unwrap_or(received_at);
    let kind = event.kind.clone();
    let correlation_id = event
        .extensions
        .get("correlation_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| event_id.clone());
    // The event is taken apart into the envelope, not copied.
    let envelope = event.into_envelope(received_at);
    let inv = Inventory {
        hosts: &inventory.hosts,
        items: &inventory.items,
    };
    let mut decisions = Vec::with_capacity(shortlist.len());
    let mut dispatch = Vec::with_capacity(shortlist.len());
    let mut correlation_writes = Vec::new();
    for p in shortlist.iter().copied() {
        let all_group = p.ir.trigger_group.logic == switchyard_spec::ir::Logic::All;
        let matched = if tick {
            Vec::new()
        } else {
            p.runtime.matching_triggers(&kind, &envelope)
        };
        if !tick && matched.is_empty() {
            continue;
        }
        // ALL groups evaluate `conditions` on the completing event only.
        if !all_group && !p.runtime.conditions_hold(&envelope) {
            continue;
        }
        let now = received_at;
        let mut decision = NewDecision {
            id: Uuid::now_v7(),
            policy_id: p.id,
            policy_name: p.name.clone(),
            policy_version: p.version,
            event_id: event_id.clone(),
            event_kind: kind.clone(),
            correlation_id: correlation_id.clone(),
            decided_at: now,
            correlated_event_ids: Vec::new(),
        };
        let max_age =
            p.ir.windows
                .max_event_age_ms
                .map(Duration::from_millis)
                .unwrap_or(max_event_age);
        let age = (received_at - event_time).to_std().unwrap_or_default();
        if age > max_age {
            decisions.push(PlannedDecision {
                decision,
                suppression: None,
                runs: vec![PlannedRun {
                    run: note_run(p, RunStatus::Skipped, "stale_event", now),
                    idempotency_ttl: None,
                }],
            });
            continue;
        }
        if all_group {
            let within = Duration::from_millis(p.ir.trigger_group.within_ms.unwrap_or(0));
            let (fired, writes) = correlations.observe(
                p,
                &group_key(p, &envelope),
                &matched,
                &event_id,
                now,
                within,
                p.runtime.conditions_hold(&envelope),
            );
            correlation_writes.extend(writes);
            match fired {
                Some(others) => decision.correlated_event_ids = others,
                None => continue,
            }
        }
        let suppression = (p.ir.windows.suppression_ms > 0).then(|| Window {
            key: group_key(p, &envelope),
            ttl: Duration::from_millis(p.ir.windows.suppression_ms),
        });
        let idem_ttl = (p.ir.windows.idempotency_ms > 0)
            .then(|| Duration::from_millis(p.ir.windows.idempotency_ms));
        let mut runs = Vec::with_capacity(p.ir.targets.len() * p.ir.actions.len());
        for (t, sel) in p.ir.targets.iter().zip(&p.selectors) {
            let resolution = match &t.resolved_ids {
                Some(ids) if !t.dynamic_resolution => Ok(switchyard_spec::selector::Resolution {
                    targets: ids.clone(),
                    ..Default::default()
                }),
                _ => sel.resolve(Some(&envelope), &inv),
            };
            let resolution = match resolution {
                Ok(r) => r,
                Err(e) => {
                    let mut run = note_run(p, RunStatus::Failed, "placeholder_unresolved", now);
                    run.target_type = "selector".into();
                    run.target_id = t.selector.clone();
                    run.severity = Some("error".into());
                    run.params = json!({"error": e.to_string()});
                    runs.push(PlannedRun {
                        run,
                        idempotency_ttl: None,
                    });
                    continue;
                }
            };
            for target in &resolution.missing {
                for a in &p.ir.actions {
                    runs.push(PlannedRun {
                        run: failed_run(a, target, "target_not_found", now),
                        idempotency_ttl: None,
                    });
                }
            }
            for target in &resolution.targets {
                for (a, template) in p.ir.actions.iter().zip(&p.params) {
                    let params = match template.fill(&envelope) {
                        Ok(v) => v,
                        Err(e) => {
                            let mut run = failed_run(a, target, "placeholder_unresolved", now);
                            run.params = json!({"error": e.to_string()});
                            runs.push(PlannedRun {
                                run,
                                idempotency_ttl: None,
                            });
                            continue;
                        }
                    };
                    let (driver, info) = match routing.route(
                        &target.host,
                        &target.target_type,
                        &a.capability,
                        &a.verb,
                        a.driver.as_deref(),
                    ) {
                        Ok(r) => r,
                        Err(e) => {
                            runs.push(PlannedRun {
                                run: failed_run(a, target, e.reason(), now),
                                idempotency_ttl: None,
                            });
                            continue;
                        }
                    };
                    // The filled params must fit the verb before anything
                    // runs: event text cannot smuggle in another shape or an option.
                    if let Some(rules) = &info.params
                        && let Err(e) = rules.check(&params, &template.option_like(&params))
                    {
                        let mut run = failed_run(a, target, "params_invalid", now);
                        // A schema error quotes the value: not a secret one.
                        let (_, _, secrets) = split_secrets(Some(rules), params.clone());
                        let e = switchyard_plugin::secrets::redact(&e, &secrets);
                        run.params = json!({"error": e});
                        runs.push(PlannedRun {
                            run,
                            idempotency_ttl: None,
                        });
                        continue;
                    }
                    // Secret members are never stored: the ledger gets `***`,
                    // the driver the value, the idempotency key a keyed hash.
                    let (params, secret_params, secret_values) =
                        split_secrets(info.params.as_deref(), params);
                    let key = idempotency_key(
                        p.id,
                        &a.capability,
                        &a.verb,
                        target,
                        &routing.key_params(&params, &secret_values),
                    );
                    let id = Uuid::now_v7();
                    dispatch.push(DispatchMeta {
                        timeout: a
                            .timeout_ms
                            .map(Duration::from_millis)
                            .unwrap_or(info.timeout),
                        idempotent: info.idempotent,
                        per_target: info.per_target,
                        stop_on_error: a.on_error == OnError::Stop,
                        secret_params,
                        secret_values,
                    });
                    runs.push(PlannedRun {
                        run: NewRun {
                            id,
                            host: target.host.clone(),
                            target_type: target.target_type.clone(),
                            target_id: target.id.clone(),
                            driver: Some(driver),
                            capability: a.capability.clone(),
                            verb: a.verb.clone(),
                            params,
                            idempotency_key: Some(key),
                            status: RunStatus::Queued,
                            severity: None,
                            reason: None,
                            count: 1,
                            queued_at: now,
                            inverse_of: None,
                        },
                        idempotency_ttl: idem_ttl,
                    });
                }
            }
        }
        if runs.is_empty() {
            let mut run = note_run(p, RunStatus::Skipped, "no_targets", now);
            run.severity = Some("warn".into());
            runs.push(PlannedRun {
                run,
                idempotency_ttl: None,
            });
        }
        decisions.push(PlannedDecision {
            decision,
            suppression,
            runs,
        });
    }
    if decisions.is_empty() && correlation_writes.is_empty() {
        return None;
    }
    Some(Plan {
        decisions: EventDecisions {
            delivery_key,
            event_id,
            received_at,
            decisions,
            correlation: correlation_writes,
        },
        dispatch,
    })
}

/// A decision-level record (stale event, nothing resolved): no host or target.
fn note_run(p: &ActivePolicy, status: RunStatus, reason: &str, now: DateTime<Utc>) -> NewRun {
    let first = p.ir.actions.first();
    NewRun {
        id: Uuid::now_v7(),
        host: String::new(),
        target_type: String::new(),
        target_id: String::new(),
        driver: first.and_then(|a| a.driver.clone()),
        capability: first.map(|a| a.capability.clone()).unwrap_or_default(),
        verb: first.map(|a| a.verb.clone()).unwrap_or_default(),
        params: Value::Null,
        idempotency_key: None,
        status,
        severity: None,
        reason: Some(reason.to_owned()),
        count: 1,
        queued_at: now,
        inverse_of: None,
    }
}

fn failed_run(
    a: &switchyard_spec::ir::ActionIr,
    target: &TargetRef,
    reason: &str,
    now: DateTime<Utc>,
) -> NewRun {
    NewRun {
        id: Uuid::now_v7(),
        host: target.host.clone(),
        target_type: target.target_type.clone(),
        target_id: target.id.clone(),
        driver: a.driver.clone(),
        capability: a.capability.clone(),
        verb: a.verb.clone(),
        params: a.params.clone(),
        idempotency_key: None,
        status: RunStatus::Failed,
        severity: Some("error".into()),
        reason: Some(reason.to_owned()),
        count: 1,
        queued_at: now,
        inverse_of: None,
    }
}
