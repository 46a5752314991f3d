//! Dry-run of one policy against a sample event (DESIGN §9): what would
//! happen now, with nothing recorded in the ledger and nothing claimed. The
//! transcript shows, per target and action, the resolution, the condition
//! results, the window decisions, the queue placement and the driver's own
//! dry-run; its findings (codes `dryrun.*`) count into the summary that
//! gates enabling.

use crate::decide::{group_key, idempotency_key};
use crate::fleet::Fleet;
use crate::policies::ActivePolicy;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use switchyard_plugin::protocol::{DiscoverMode, Target};
use switchyard_spec::event::Event;
use switchyard_spec::finding::{Finding, Severity, codes};
use switchyard_spec::selector::{Inventory, TargetRef};
use switchyard_store::{ClaimKind, InventoryQuery, Store};

/// A finished dry-run.
#[derive(Debug, Clone)]
pub struct DryRun {
    /// The whole transcript (stored; `transcript_id` is added by the caller).
    pub transcript: Value,
    /// `{errors, warnings, targets, actions, would_fire}`.
    pub summary: Value,
}

/// What the dry-run needs besides the policy.
#[derive(Debug)]
pub struct DryRunInput<'a> {
    pub fleet: &'a Fleet,
    pub store: &'a Store,
    /// The sample event, and whether the caller gave it (else it was synthesized).
    pub event: Event,
    pub given: bool,
    /// Runs waiting and running per host now (the engine's queues).
    pub queues: Vec<(String, usize, usize)>,
    /// The global `max_event_age` (a policy's own window wins).
    pub max_event_age: Duration,
}

/// A sample event for a policy when the caller gave none: the first trigger's
/// kind when it is a plain kind (wildcards become `sample`), no data.
pub fn sample_event(p: &ActivePolicy) -> Event {
    let kind =
        p.ir.trigger_group
            .triggers
            .iter()
            .find_map(|t| match t {
                switchyard_spec::ir::TriggerIr::Kind { kind, .. } => Some(
                    kind.split('.')
                        .map(|tok| {
                            if tok == "*" || tok == ">" {
                                "sample"
                            } else {
                                tok
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("."),
                ),
                switchyard_spec::ir::TriggerIr::Schedule { .. } => None,
            })
            .unwrap_or_else(|| "schedule".into());
    Event {
        id: Some(format!("dry-run-{}", uuid::Uuid::now_v7())),
        kind,
        source: Some("switchyard.dry-run".into()),
        host: None,
        time: None,
        severity: None,
        data: serde_json::Map::new(),
        extensions: Default::default(),
    }
}

fn finding(out: &mut Vec<Finding>, severity: Severity, code: &str, path: String, message: String) {
    out.push(Finding::new(severity, code, path, message));
}

/// Dry-run `policy` (enabled or not) against `input.event`.
pub async fn dry_run(policy: &ActivePolicy, input: DryRunInput<'_>) -> DryRun {
    let now = crate::clock::now();
    let mut findings = Vec::new();
    let envelope = input.event.to_envelope(now);
    let ir = &policy.ir;

    // Triggers and conditions.
    let matched = policy
        .runtime
        .matching_triggers(&input.event.kind, &envelope);
    let triggers: Vec<Value> = ir
        .trigger_group
        .triggers
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"index": i, "trigger": t, "matched": matched.contains(&i)}))
        .collect();
    let conditions: Vec<Value> = ir
        .conditions
        .iter()
        .zip(&policy.runtime.conditions)
        .enumerate()
        .map(|(i, (c_ir, c))| json!({"index": i, "condition": c_ir, "holds": c.eval(&envelope)}))
        .collect();
    let all_group = ir.trigger_group.logic == switchyard_spec::ir::Logic::All;
    let conditions_hold = policy.runtime.conditions_hold(&envelope);
    let would_fire = !matched.is_empty() && conditions_hold;
    if matched.is_empty() {
        finding(
            &mut findings,
            Severity::Warn,
            codes::DRYRUN_NO_MATCH,
            "/trigger_group/triggers".into(),
            format!(
                "the sample event (kind `{}`) matches no trigger",
                input.event.kind
            ),
        );
    } else if !conditions_hold {
        finding(
            &mut findings,
            Severity::Warn,
            codes::DRYRUN_NO_MATCH,
            "/conditions".into(),
            "the conditions do not hold for the sample event".into(),
        );
    }
    let max_age = ir
        .windows
        .max_event_age_ms
        .map(Duration::from_millis)
        .unwrap_or(input.max_event_age);
    let age = input
        .event
        .time
        .map(|t| (now - t).to_std().unwrap_or_default())
        .unwrap_or_default();
    if age > max_age {
        finding(
            &mut findings,
            Severity::Warn,
            codes::DRYRUN_STALE_EVENT,
            "/windows".into(),
            format!(
                "the sample event is {}s old; events older than {}s are skipped as stale",
                age.as_secs(),
                max_age.as_secs()
            ),
        );
    }

    // Suppression window.
    let suppression = if ir.windows.suppression_ms > 0 {
        let key = group_key(policy, &envelope);
        let held = input
            .store
            .held_claim(ClaimKind::Suppression, &key, now)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading a suppression window failed");
                None
            });
        if let Some((_, until)) = &held {
            finding(
                &mut findings,
                Severity::Info,
                codes::DRYRUN_SUPPRESSED,
                "/windows/suppression".into(),
                format!(
                    "the suppression window for this event's group is held until {until}; the decision would be suppressed"
                ),
            );
        }
        json!({
            "key": key,
            "window_ms": ir.windows.suppression_ms,
            "decision": if held.is_some() { "suppressed" } else { "claim" },
            "held_until": held.map(|(_, until)| until),
        })
    } else {
        Value::Null
    };

    // Targets: resolve, refresh the hosts involved (fast), resolve again.
    let resolve = |snapshot: &crate::InventorySnapshot| {
        policy
            .selectors
            .iter()
            .map(|sel| {
                sel.resolve(
                    Some(&envelope),
                    &Inventory {
                        hosts: &snapshot.hosts,
                        items: &snapshot.items,
                    },
                )
            })
            .collect::<Vec<_>>()
    };
    let before = input.fleet.snapshot(input.store).await.unwrap_or_default();
    let hosts: BTreeSet<String> = resolve(&before)
        .into_iter()
        .flatten()
        .flat_map(|r| r.targets.into_iter().chain(r.missing).map(|t| t.host))
        .collect();
    let mut refresh = Vec::new();
    for h in &hosts {
        if let Some(host) = input.fleet.host(h) {
            refresh.extend(
                input
                    .fleet
                    .discover(input.store, host, DiscoverMode::Fast)
                    .await,
            );
        }
    }
    let snapshot = input.fleet.snapshot(input.store).await.unwrap_or_default();
    let items = input
        .store
        .inventory(&InventoryQuery::default(), now, input.fleet.stale_after)
        .await
        .unwrap_or_default();
    let resolutions = resolve(&snapshot);

    let mut targets_out = Vec::new();
    let mut actions_out = Vec::new();
    let mut used: Vec<(DateTime<Utc>, bool)> = Vec::new();
    let idem_window = ir.windows.idempotency_ms;
    let mut target_count = 0usize;
    // Without a sample from the caller, an unfilled placeholder says more
    // about the made-up event than about the policy: a warning.
    let placeholder_severity = if input.given {
        Severity::Error
    } else {
        Severity::Warn
    };
    for (ti, (t_ir, resolution)) in ir.targets.iter().zip(resolutions).enumerate() {
        let at = format!("/targets/{ti}/selector");
        let resolution = match resolution {
            Ok(r) => r,
            Err(e) => {
                finding(
                    &mut findings,
                    placeholder_severity,
                    codes::DRYRUN_PLACEHOLDER,
                    at,
                    e.to_string(),
                );
                targets_out.push(json!({"selector": t_ir.selector, "error": e.to_string()}));
                continue;
            }
        };
        for m in &resolution.missing {
            finding(
                &mut findings,
                Severity::Error,
                codes::DRYRUN_TARGET_NOT_FOUND,
                at.clone(),
                format!(
                    "target {}/{}:{} is not in the inventory",
                    m.host, m.target_type, m.id
                ),
            );
        }
        targets_out.push(json!({
            "selector": t_ir.selector,
            "resolved": resolution.targets,
            "missing": resolution.missing,
            "dropped": resolution.dropped,
        }));
        target_count += resolution.targets.len();
        for target in &resolution.targets {
            let item = items.iter().find(|i| {
                i.host == target.host && i.item_type == target.target_type && i.id == target.id
            });
            if let Some(i) = item {
                used.push((i.refreshed_at, i.stale));
                if i.stale {
                    finding(
                        &mut findings,
                        Severity::Warn,
                        codes::DRYRUN_STALE_INVENTORY,
                        at.clone(),
                        format!(
                            "{}/{}:{} was last refreshed at {}; it is stale",
                            target.host, target.target_type, target.id, i.refreshed_at
                        ),
                    );
                }
            }
            for (ai, a) in ir.actions.iter().enumerate() {
                actions_out.push(
                    action(
                        policy,
                        &input,
                        &envelope,
                        target,
                        ai,
                        a,
                        (idem_window, placeholder_severity),
                        now,
                        &mut findings,
                    )
                    .await,
                );
            }
        }
    }
    if target_count == 0 && !findings.iter().any(|f| f.severity == Severity::Error) {
        finding(
            &mut findings,
            Severity::Warn,
            codes::DRYRUN_NO_TARGETS,
            "/targets".into(),
            "the selectors resolve to no target now".into(),
        );
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let summary = json!({
        "errors": count(Severity::Error),
        "warnings": count(Severity::Warn),
        "targets": target_count,
        "actions": actions_out.len(),
        "would_fire": would_fire,
    });
    let transcript = json!({
        "policy": {"id": policy.id, "name": policy.name, "version": policy.version},
        "at": now,
        "event": {"given": input.given, "envelope": envelope},
        "logic": ir.trigger_group.logic,
        "triggers": triggers,
        "all_group_note": all_group.then_some(
            "logic ALL: the policy fires when every trigger has matched within the window; each trigger is shown against this one event"
        ),
        "conditions": conditions,
        "would_fire": would_fire,
        "suppression": suppression,
        "used_inventory": {
            "refreshed_at": used.iter().map(|(t, _)| *t).min(),
            "stale": used.iter().any(|(_, s)| *s),
            "refresh": refresh.iter().map(|d| match &d.result {
                Ok((n, complete)) => json!({"host": d.host, "driver": d.driver, "ok": true, "items": n, "complete": complete}),
                Err(e) => json!({"host": d.host, "driver": d.driver, "ok": false, "error": e}),
            }).collect::<Vec<_>>(),
        },
        "targets": targets_out,
        "actions": actions_out,
        "findings": findings,
        "summary": summary,
    });
    DryRun {
        transcript,
        summary,
    }
}

/// One action on one target: route, params, idempotency, queue, driver dry-run.
#[allow(clippy::too_many_arguments)]
async fn action(
    policy: &ActivePolicy,
    input: &DryRunInput<'_>,
    envelope: &Value,
    target: &TargetRef,
    ai: usize,
    a: &switchyard_spec::ir::ActionIr,
    (idem_window, placeholder_severity): (u64, Severity),
    now: DateTime<Utc>,
    findings: &mut Vec<Finding>,
) -> Value {
    let at = format!("/actions/{ai}");
    let mut out = json!({
        "target": target,
        "action": ai,
        "capability": a.capability,
        "verb": a.verb,
    });
    // The params the engine would fill: the policy's, parsed when it was loaded.
    let params = match policy.params[ai].fill(envelope) {
        Ok(p) => p,
        Err(e) => {
            finding(
                findings,
                placeholder_severity,
                codes::DRYRUN_PLACEHOLDER,
                format!("{at}/params"),
                e.to_string(),
            );
            out["error"] = e.to_string().into();
            return out;
        }
    };
    out["params"] = params.clone();
    let (driver, info) = match input.fleet.routing().route(
        &target.host,
        &target.target_type,
        &a.capability,
        &a.verb,
        a.driver.as_deref(),
    ) {
        Ok(r) => r,
        Err(e) => {
            finding(
                findings,
                Severity::Error,
                codes::DRYRUN_NO_DRIVER,
                at.clone(),
                format!(
                    "no driver of host `{}` provides {}.{} for `{}` targets ({})",
                    target.host,
                    a.capability,
                    a.verb,
                    target.target_type,
                    e.reason()
                ),
            );
            out["error"] = e.reason().into();
            return out;
        }
    };
    out["driver"] = driver.clone().into();
    // Shown as the ledger would keep them; the driver's dry run gets the values.
    let (shown, secret_params, secrets) =
        crate::decide::split_secrets(info.params.as_deref(), params.clone());
    if secret_params.is_some() {
        out["params"] = shown.clone();
    }
    // The engine checks the filled params before dispatch (decide.rs); say
    // here what it would refuse.
    if let Some(rules) = &info.params
        && let Err(e) = rules.check(&params, &policy.params[ai].option_like(&params))
    {
        // A schema error quotes the value: not a secret one.
        let e = switchyard_plugin::secrets::redact(&e, &secrets);
        finding(
            findings,
            Severity::Error,
            codes::DRYRUN_DRIVER_REFUSED,
            format!("{at}/params"),
            format!("the run would fail with `params_invalid`: {e}"),
        );
        out["error"] = "params_invalid".into();
        return out;
    }
    let key = idempotency_key(
        policy.id,
        &a.capability,
        &a.verb,
        target,
        &input.fleet.routing().key_params(&shown, &secrets),
    );
    let held = if idem_window > 0 {
        input
            .store
            .held_claim(ClaimKind::Idempotency, &key, now)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading an idempotency window failed");
                None
            })
    } else {
        None
    };
    if let Some((_, until)) = &held {
        finding(
            findings,
            Severity::Info,
            codes::DRYRUN_DEDUPLICATED,
            at.clone(),
            format!(
                "{}.{} on {}/{}:{} with these params ran within the idempotency window (until {until}); it would be deduplicated",
                a.capability, a.verb, target.host, target.target_type, target.id
            ),
        );
    }
    out["idempotency"] = json!({
        "key": key,
        "window_ms": idem_window,
        "decision": if held.is_some() { "deduplicated" } else { "run" },
        "held_until": held.map(|(_, until)| until),
    });
    let (waiting, running) = input
        .queues
        .iter()
        .find(|(h, ..)| h == &target.host)
        .map_or((0, 0), |(_, w, r)| (*w, *r));
    out["queue"] = json!({
        "host": target.host,
        "lane": if info.per_target { "target" } else { "host" },
        "waiting": waiting,
        "running": running,
        "position": waiting + 1,
    });
    let supports = input
        .fleet
        .registry()
        .get(&driver)
        .and_then(|d| d.manifest().capability(&a.capability))
        .and_then(|c| c.verb(&a.verb))
        .is_some_and(|v| v.dry_run);
    let Some(host) = input.fleet.host(&target.host) else {
        out["driver_dry_run"] = json!({"supported": supports, "called": false});
        return out;
    };
    if !supports {
        out["driver_dry_run"] = json!({"supported": false, "called": false});
        return out;
    }
    let sla = input
        .fleet
        .registry()
        .get(&driver)
        .map_or(5, |d| d.manifest().defaults.dry_run_refresh_sla_s);
    let called = input
        .fleet
        .supervisor()
        .dry_run(
            &driver,
            &host.spec,
            &format!("dry-run-{}", uuid::Uuid::now_v7()),
            Target {
                target_type: target.target_type.clone(),
                id: target.id.clone(),
            },
            &a.capability,
            &a.verb,
            params,
            Duration::from_secs(sla.max(1)),
            &secrets,
        )
        .await;
    let what = format!(
        "{}.{} on {}/{}:{}",
        a.capability, a.verb, target.host, target.target_type, target.id
    );
    out["driver_dry_run"] = match called.result {
        Ok(r) => {
            if !r.ok || r.severity >= Severity::Error {
                finding(
                    findings,
                    Severity::Error,
                    codes::DRYRUN_DRIVER_REFUSED,
                    at,
                    format!(
                        "driver `{driver}` says {what} would fail: {}",
                        r.reason.clone().unwrap_or_else(|| "no reason given".into())
                    ),
                );
            } else if r.severity == Severity::Warn {
                finding(
                    findings,
                    Severity::Warn,
                    codes::DRYRUN_DRIVER_WARNING,
                    at,
                    format!(
                        "driver `{driver}` warns about {what}: {}",
                        r.reason.clone().unwrap_or_else(|| "no reason given".into())
                    ),
                );
            }
            json!({"supported": true, "called": true, "result": r})
        }
        Err(e) => {
            finding(
                findings,
                Severity::Error,
                codes::DRYRUN_DRIVER_UNREACHABLE,
                at,
                format!("driver `{driver}` could not dry-run {what}: {e}"),
            );
            json!({"supported": true, "called": true, "error": e.to_string(), "reason": e.reason()})
        }
    };
    out
}
