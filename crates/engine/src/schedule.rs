//! Schedule triggers (DESIGN §5): each tick goes only to its own policy and
//! trigger, as a synthetic event of the reserved kind `schedule` with
//! `data.policy`, `data.fired_at` and the id UUIDv5(policy, trigger, local
//! scheduled time). That id is also the tick's inbox key, so a tick is
//! decided once — across restarts, and when a repeated local time (a DST
//! fall-back) offers the same wall-clock minute twice. A local time skipped by
//! DST fires right after the gap. Ticks missed while switchyard was down are
//! fired only if they are within the catch-up window.

use crate::policies::ActivePolicy;
use chrono::{DateTime, Utc};
use std::str::FromStr;
use std::sync::Arc;
use switchyard_spec::runtime::Trigger;
use uuid::Uuid;

/// Namespace of tick ids.
pub const TICK_NAMESPACE: Uuid = Uuid::from_u128(0x3b0e_62c1_5d8f_4a27_b1c4_9e0f_7a6d_2c58);

/// One scheduled firing.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub policy: Uuid,
    pub trigger: usize,
    /// The scheduled instant.
    pub at: DateTime<Utc>,
    /// UUIDv5 of (policy, trigger, local scheduled time).
    pub id: Uuid,
}

/// A policy's schedule trigger, parsed.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub policy: Uuid,
    pub trigger: usize,
    cron: croner::Cron,
    tz: chrono_tz::Tz,
}

impl Schedule {
    /// The schedule triggers of a policy (ones that do not parse are logged and skipped;
    /// validation refuses them at save).
    pub fn of(p: &ActivePolicy) -> Vec<Schedule> {
        p.runtime
            .triggers
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match t {
                Trigger::Schedule { schedule, tz } => {
                    let cron = croner::Cron::from_str(schedule)
                        .map_err(|e| tracing::error!(policy = %p.name, error = %e, "schedule does not parse"))
                        .ok()?;
                    let tz = chrono_tz::Tz::from_str(tz)
                        .map_err(|e| tracing::error!(policy = %p.name, error = %e, "time zone unknown"))
                        .ok()?;
                    Some(Schedule {
                        policy: p.id,
                        trigger: i,
                        cron,
                        tz,
                    })
                }
                Trigger::Kind { .. } => None,
            })
            .collect()
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<Tick> {
        let local = after.with_timezone(&self.tz);
        let next = self.cron.find_next_occurrence(&local, false).ok()?;
        let wall = next.naive_local().format("%Y-%m-%dT%H:%M").to_string();
        let id = Uuid::new_v5(
            &TICK_NAMESPACE,
            format!("{}\n{}\n{wall}", self.policy, self.trigger).as_bytes(),
        );
        Some(Tick {
            policy: self.policy,
            trigger: self.trigger,
            at: next.with_timezone(&Utc),
            id,
        })
    }

    /// Every tick in `(from, to]`.
    pub fn ticks_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Tick> {
        let mut out = Vec::new();
        let mut cursor = from;
        while let Some(t) = self.next_after(cursor) {
            if t.at > to || out.len() > 10_000 {
                break;
            }
            cursor = t.at;
            out.push(t);
        }
        out
    }
}

/// The schedules of a set of policies.
pub fn schedules<'a>(policies: impl IntoIterator<Item = &'a Arc<ActivePolicy>>) -> Vec<Schedule> {
    policies.into_iter().flat_map(|p| Schedule::of(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(schedule: &str, tz: &str) -> ActivePolicy {
        let doc = json!({
            "version": 1, "name": "tick", "enabled": true,
            "trigger_group": {"triggers": [{"schedule": schedule, "tz": tz}]},
            "targets": [{"selector": "h1"}],
            "actions": [{"capability": "command.run", "verb": "run", "params": {"argv": ["true"]}}],
        });
        let c = switchyard_spec::policy::validate_value(&doc, None);
        ActivePolicy::new(Uuid::from_u128(7), "tick", 1, c.ir.expect("compiles")).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_time_skipped_by_dst_fires_right_after_the_gap() {
        // Europe/Berlin springs forward on 2026-03-29: 02:00 → 03:00 local (01:00 UTC).
        let s = &Schedule::of(&policy("30 2 * * *", "Europe/Berlin"))[0];
        let t = s.next_after(utc("2026-03-29T00:00:00Z")).unwrap();
        assert_eq!(
            t.at,
            utc("2026-03-29T01:00:00Z"),
            "03:00 local, right after the gap"
        );
        let t = s.next_after(utc("2026-03-30T00:00:00Z")).unwrap();
        assert_eq!(t.at, utc("2026-03-30T00:30:00Z"), "02:30 CEST the next day");
    }

    #[test]
    fn a_repeated_local_time_fires_once() {
        // Europe/Berlin falls back on 2026-10-25: 03:00 CEST → 02:00 CET; 02:30 happens twice.
        let fixed = &Schedule::of(&policy("30 2 * * *", "Europe/Berlin"))[0];
        let ticks = fixed.ticks_between(utc("2026-10-24T22:00:00Z"), utc("2026-10-25T04:00:00Z"));
        assert_eq!(ticks.len(), 1);
        assert_eq!(
            ticks[0].at,
            utc("2026-10-25T00:30:00Z"),
            "the earlier 02:30"
        );
        // An interval schedule meets 02:30 twice; both carry the same id, so the inbox decides it once.
        let every = &Schedule::of(&policy("*/30 * * * *", "Europe/Berlin"))[0];
        let ticks = every.ticks_between(utc("2026-10-24T23:59:00Z"), utc("2026-10-25T01:45:00Z"));
        let ids: std::collections::HashSet<Uuid> = ticks.iter().map(|t| t.id).collect();
        assert_eq!(ticks.len(), 4, "{ticks:?}");
        assert_eq!(ids.len(), 2, "02:00 and 02:30 local, each twice");
    }

    #[test]
    fn ticks_have_stable_ids_in_utc() {
        let s = &Schedule::of(&policy("*/15 * * * *", "UTC"))[0];
        let a = s.ticks_between(utc("2026-01-01T00:00:00Z"), utc("2026-01-01T01:00:00Z"));
        let b = s.ticks_between(utc("2026-01-01T00:00:00Z"), utc("2026-01-01T01:00:00Z"));
        assert_eq!(a.len(), 4);
        assert_eq!(a, b);
        assert_eq!(a[3].at, utc("2026-01-01T01:00:00Z"));
    }
}
