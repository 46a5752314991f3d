//! `ALL` trigger groups (DESIGN §5 step 4): state per (policy, group key) —
//! for each trigger, the latest event whose trigger matched and when it was
//! seen. The group fires when every trigger has an entry within `within`
//! and the policy's conditions hold on the completing event; the decision
//! lists the other events, and firing clears the state.
//!
//! The engine (one writer, under the lease) keeps the state in memory and
//! writes every change with the event's inbox row, so it survives restarts:
//! [`Correlations::load`] rebuilds it from the store at start.

use crate::policies::ActivePolicy;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use switchyard_store::{CorrelationRow, CorrelationWrite};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    event_id: String,
    at: DateTime<Utc>,
}

/// Open `ALL` groups.
#[derive(Debug, Default)]
pub struct Correlations {
    groups: Mutex<HashMap<(Uuid, String), HashMap<usize, Seen>>>,
}

/// The stored key of one trigger's entry: `<group key>#<trigger index>`
/// (the group key starts with the policy id).
fn row_key(group: &str, trigger: usize) -> String {
    format!("{group}#{trigger}")
}

impl Correlations {
    /// Rebuild from stored rows.
    pub fn load(rows: Vec<CorrelationRow>) -> Correlations {
        let mut groups: HashMap<(Uuid, String), HashMap<usize, Seen>> = HashMap::new();
        for r in rows {
            let Some((group, trigger)) = r.key.rsplit_once('#') else {
                continue;
            };
            let policy = group
                .split('|')
                .next()
                .and_then(|p| Uuid::try_parse(p).ok());
            let (Some(policy), Ok(trigger)) = (policy, trigger.parse::<usize>()) else {
                continue;
            };
            groups
                .entry((policy, group.to_owned()))
                .or_default()
                .insert(
                    trigger,
                    Seen {
                        event_id: r.event_id,
                        at: r.seen_at,
                    },
                );
        }
        Correlations {
            groups: Mutex::new(groups),
        }
    }

    /// Record that an event matched `matched` triggers of `policy` for
    /// `group`. Returns the other events of the group when it is complete
    /// and `conditions_hold` (the group then fires and is cleared), and the
    /// state changes to persist with the event.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &self,
        policy: &ActivePolicy,
        group: &str,
        matched: &[usize],
        event_id: &str,
        at: DateTime<Utc>,
        within: Duration,
        conditions_hold: bool,
    ) -> (Option<Vec<String>>, Vec<CorrelationWrite>) {
        let within = chrono::Duration::from_std(within).unwrap_or(chrono::Duration::MAX);
        let triggers = policy.runtime.triggers.len();
        let mut groups = crate::sync::lock(&self.groups);
        let key = (policy.id, group.to_owned());
        let entry = groups.entry(key.clone()).or_default();
        entry.retain(|_, seen| seen.at + within >= at);
        let mut writes = Vec::new();
        for &t in matched {
            entry.insert(
                t,
                Seen {
                    event_id: event_id.to_owned(),
                    at,
                },
            );
            writes.push(CorrelationWrite::Seen {
                key: row_key(group, t),
                event_id: event_id.to_owned(),
                seen_at: at,
                expires_at: at + within,
            });
        }
        if entry.len() < triggers || !conditions_hold {
            return (None, writes);
        }
        let mut others: Vec<String> = entry
            .values()
            .filter(|s| s.event_id != event_id)
            .map(|s| s.event_id.clone())
            .collect();
        others.sort();
        others.dedup();
        groups.remove(&key);
        let clears = (0..triggers)
            .map(|t| CorrelationWrite::Clear {
                key: row_key(group, t),
            })
            .collect();
        (Some(others), clears)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> ActivePolicy {
        let doc = json!({
            "version": 1, "name": "both", "enabled": true,
            "trigger_group": {"logic": "ALL", "within": "5m", "triggers": [{"kind": "a.x"}, {"kind": "b.y"}]},
            "targets": [{"selector": "h1"}],
            "actions": [{"capability": "command.run", "verb": "run", "params": {"argv": ["true"]}}],
        });
        let c = switchyard_spec::policy::validate_value(&doc, None);
        ActivePolicy::new(Uuid::from_u128(9), "both", 1, c.ir.expect("compiles")).unwrap()
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn fires_when_every_trigger_is_seen_within_the_window() {
        let p = policy();
        let c = Correlations::default();
        let w = Duration::from_secs(300);
        let g = format!("{}", p.id);
        assert_eq!(c.observe(&p, &g, &[0], "e1", t(0), w, true).0, None);
        assert_eq!(
            c.observe(&p, &g, &[0], "e2", t(10), w, true).0,
            None,
            "the latest a.x replaces e1"
        );
        let (fired, writes) = c.observe(&p, &g, &[1], "e3", t(20), w, true);
        assert_eq!(fired, Some(vec!["e2".to_owned()]));
        assert!(
            writes
                .iter()
                .all(|w| matches!(w, CorrelationWrite::Clear { .. }))
        );
        // Cleared: the next b.y alone does not fire.
        assert_eq!(c.observe(&p, &g, &[1], "e4", t(30), w, true).0, None);
        // Too late: e4 expired by the time a.x comes.
        assert_eq!(c.observe(&p, &g, &[0], "e5", t(400), w, true).0, None);
    }

    #[test]
    fn conditions_decide_on_the_completing_event_and_state_survives_a_reload() {
        let p = policy();
        let c = Correlations::default();
        let w = Duration::from_secs(300);
        let g = format!("{}", p.id);
        let (_, writes) = c.observe(&p, &g, &[0], "e1", t(0), w, true);
        assert_eq!(
            c.observe(&p, &g, &[1], "e2", t(5), w, false).0,
            None,
            "conditions false"
        );
        // What was written is what a restarted engine loads.
        let rows = writes
            .into_iter()
            .filter_map(|w| match w {
                CorrelationWrite::Seen {
                    key,
                    event_id,
                    seen_at,
                    expires_at,
                } => Some(CorrelationRow {
                    key,
                    event_id,
                    seen_at,
                    expires_at,
                }),
                CorrelationWrite::Clear { .. } => None,
            })
            .collect();
        let reloaded = Correlations::load(rows);
        assert_eq!(
            reloaded.observe(&p, &g, &[1], "e3", t(10), w, true).0,
            Some(vec!["e1".to_owned()])
        );
    }
}
