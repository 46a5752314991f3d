//! The evaluation form of a policy: the IR with paths and regexes compiled once.

use crate::condition::{Condition, all};
use crate::ir::{PolicyIr, TriggerIr};
use serde_json::Value;

/// Match a kind against a NATS-style pattern: `*` is one token, `>` the rest (one or more tokens).
pub fn kind_matches(pattern: &str, kind: &str) -> bool {
    let mut p = pattern.split('.');
    let mut k = kind.split('.');
    loop {
        match (p.next(), k.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A compiled trigger.
#[derive(Debug, Clone)]
pub enum Trigger {
    Kind {
        pattern: String,
        where_: Vec<Condition>,
    },
    Schedule {
        schedule: String,
        tz: String,
    },
}

/// A policy ready to evaluate events.
#[derive(Debug, Clone)]
pub struct PolicyRuntime {
    pub triggers: Vec<Trigger>,
    pub conditions: Vec<Condition>,
}

impl PolicyRuntime {
    /// Build from IR; fails only on a corrupted IR.
    pub fn from_ir(ir: &PolicyIr) -> Result<PolicyRuntime, String> {
        let triggers = ir
            .trigger_group
            .triggers
            .iter()
            .map(|t| {
                Ok(match t {
                    TriggerIr::Kind { kind, where_ } => Trigger::Kind {
                        pattern: kind.clone(),
                        where_: Condition::list_from_ir(where_)?,
                    },
                    TriggerIr::Schedule { schedule, tz } => Trigger::Schedule {
                        schedule: schedule.clone(),
                        tz: tz.clone(),
                    },
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(PolicyRuntime {
            triggers,
            conditions: Condition::list_from_ir(&ir.conditions)?,
        })
    }

    /// Indexes of the triggers an event of `kind` satisfies (kind and `where`).
    pub fn matching_triggers(&self, kind: &str, envelope: &Value) -> Vec<usize> {
        self.triggers
            .iter()
            .enumerate()
            .filter(|(_, t)| match t {
                Trigger::Kind { pattern, where_ } => {
                    kind_matches(pattern, kind) && all(where_, envelope)
                }
                Trigger::Schedule { .. } => false,
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// True when the policy's conditions hold for the envelope.
    pub fn conditions_hold(&self, envelope: &Value) -> bool {
        all(&self.conditions, envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_patterns() {
        let cases = [
            ("ups.on_battery", "ups.on_battery", true),
            ("ups.*", "ups.on_battery", true),
            ("ups.*", "ups.on_battery.x", false),
            ("ups.>", "ups.on_battery.x", true),
            ("ups.>", "ups", false),
            ("*", "ups", true),
            (">", "a.b.c", true),
            ("ups.on_battery", "ups.on_line", false),
            ("ups", "ups.on_line", false),
        ];
        for (p, k, want) in cases {
            assert_eq!(kind_matches(p, k), want, "{p} vs {k}");
        }
    }
}
