//! The dispatch gates a run passes before its adapter call (DESIGN §5 step 9),
//! in order: the circuit breaker of its (host, driver), then the driver's and
//! the host's rate limits. The global permit comes last, in `dispatch`.

use crate::routing::Routing;
use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

/// A breaker's state, as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls wait until `open_until`; then one `health` probe decides.
    Open,
    /// A probe is in flight.
    HalfOpen,
}

/// One breaker, for the API and logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerView {
    pub host: String,
    pub driver: String,
    pub state: BreakerState,
    /// Consecutive transient failures counted.
    pub failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct Breaker {
    state: BreakerState,
    failures: u32,
    open_until: Option<DateTime<Utc>>,
}

/// What the breaker says to a run at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Wait this long, then ask again.
    Wait(Duration),
    /// Probe `health` now; report with [`Breakers::probed`].
    Probe,
}

/// Circuit breakers per (host, driver). Only transient failures (adapter
/// error -32003, timeouts, crashes) count; anything else resets the count.
#[derive(Debug)]
pub struct Breakers {
    threshold: u32,
    open_for: Duration,
    states: Mutex<HashMap<(String, String), Breaker>>,
}

impl Breakers {
    pub fn new(threshold: u32, open_for: Duration) -> Breakers {
        Breakers {
            threshold: threshold.max(1),
            open_for,
            states: Mutex::default(),
        }
    }

    fn key(host: &str, driver: &str) -> (String, String) {
        (host.to_owned(), driver.to_owned())
    }

    /// May a call go to `driver` on `host` now?
    pub fn check(&self, host: &str, driver: &str, now: DateTime<Utc>) -> Verdict {
        let mut states = crate::sync::lock(&self.states);
        let Some(b) = states.get_mut(&Self::key(host, driver)) else {
            return Verdict::Pass;
        };
        match b.state {
            BreakerState::Closed => Verdict::Pass,
            BreakerState::HalfOpen => Verdict::Wait(Duration::from_millis(100)),
            BreakerState::Open => {
                let until = b.open_until.unwrap_or(now);
                if until > now {
                    Verdict::Wait((until - now).to_std().unwrap_or_default())
                } else {
                    b.state = BreakerState::HalfOpen;
                    Verdict::Probe
                }
            }
        }
    }

    /// The outcome of a half-open probe.
    pub fn probed(&self, host: &str, driver: &str, healthy: bool, now: DateTime<Utc>) {
        let mut states = crate::sync::lock(&self.states);
        let b = states.entry(Self::key(host, driver)).or_insert(Breaker {
            state: BreakerState::Closed,
            failures: 0,
            open_until: None,
        });
        if healthy {
            tracing::info!(host, driver, "circuit closed: the health probe passed");
            *b = Breaker {
                state: BreakerState::Closed,
                failures: 0,
                open_until: None,
            };
        } else {
            b.state = BreakerState::Open;
            b.open_until =
                Some(now + chrono::Duration::from_std(self.open_for).unwrap_or_default());
            tracing::warn!(host, driver, "circuit stays open: the health probe failed");
        }
    }

    /// The outcome of an adapter call.
    pub fn record(&self, host: &str, driver: &str, transient_failure: bool, now: DateTime<Utc>) {
        let mut states = crate::sync::lock(&self.states);
        let b = states.entry(Self::key(host, driver)).or_insert(Breaker {
            state: BreakerState::Closed,
            failures: 0,
            open_until: None,
        });
        if !transient_failure {
            b.failures = 0;
            return;
        }
        b.failures += 1;
        if b.failures >= self.threshold && b.state == BreakerState::Closed {
            b.state = BreakerState::Open;
            b.open_until =
                Some(now + chrono::Duration::from_std(self.open_for).unwrap_or_default());
            tracing::warn!(
                host,
                driver,
                failures = b.failures,
                "circuit opened after consecutive transient failures"
            );
        }
    }

    /// Every breaker that has seen a call.
    pub fn view(&self) -> Vec<BreakerView> {
        let states = crate::sync::lock(&self.states);
        let mut v: Vec<BreakerView> = states
            .iter()
            .map(|((host, driver), b)| BreakerView {
                host: host.clone(),
                driver: driver.clone(),
                state: b.state,
                failures: b.failures,
                open_until: b.open_until,
            })
            .collect();
        v.sort_by(|a, b| (&a.host, &a.driver).cmp(&(&b.host, &b.driver)));
        v
    }
}

/// A rate as `count` per `per_ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per_ms: u64,
}

fn quota(r: Rate) -> Option<Quota> {
    let burst = NonZeroU32::new(r.count)?;
    let period = Duration::from_millis(r.per_ms.max(1)) / r.count;
    Quota::with_period(period.max(Duration::from_micros(1))).map(|q| q.allow_burst(burst))
}

/// Rate limits per driver and per (driver, host).
#[derive(Debug, Default)]
pub struct Limits {
    per_driver: HashMap<String, DefaultDirectRateLimiter>,
    per_host: HashMap<String, DefaultKeyedRateLimiter<String>>,
}

impl Limits {
    /// From each driver's plugin.yaml defaults (already in `routing`).
    pub fn new(routing: &Routing) -> Limits {
        let mut l = Limits::default();
        for (driver, (per_driver, per_host)) in routing.rate_limits() {
            if let Some(q) = per_driver.and_then(quota) {
                l.per_driver.insert(driver.clone(), RateLimiter::direct(q));
            }
            if let Some(q) = per_host.and_then(quota) {
                l.per_host.insert(driver.clone(), RateLimiter::keyed(q));
            }
        }
        l
    }

    /// Wait until both limits let one call to `driver` on `host` through.
    pub async fn until_ready(&self, driver: &str, host: &str) {
        if let Some(l) = self.per_driver.get(driver) {
            l.until_ready().await;
        }
        if let Some(l) = self.per_host.get(driver) {
            l.until_key_ready(&host.to_owned()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn opens_after_consecutive_transient_failures_and_probes_after_the_wait() {
        let b = Breakers::new(3, Duration::from_secs(30));
        assert_eq!(b.check("h", "d", t(0)), Verdict::Pass);
        b.record("h", "d", true, t(0));
        b.record("h", "d", true, t(1));
        b.record("h", "d", false, t(2)); // a success resets the count
        b.record("h", "d", true, t(3));
        b.record("h", "d", true, t(4));
        assert_eq!(b.check("h", "d", t(4)), Verdict::Pass);
        b.record("h", "d", true, t(5));
        assert_eq!(
            b.check("h", "d", t(5)),
            Verdict::Wait(Duration::from_secs(30))
        );
        assert_eq!(b.check("h", "other", t(5)), Verdict::Pass, "per driver");
        assert_eq!(b.check("h", "d", t(35)), Verdict::Probe);
        assert!(
            matches!(b.check("h", "d", t(35)), Verdict::Wait(_)),
            "one probe at a time"
        );
        b.probed("h", "d", false, t(36));
        assert_eq!(
            b.check("h", "d", t(40)),
            Verdict::Wait(Duration::from_secs(26))
        );
        assert_eq!(b.check("h", "d", t(66)), Verdict::Probe);
        b.probed("h", "d", true, t(66));
        assert_eq!(b.check("h", "d", t(66)), Verdict::Pass);
        assert_eq!(b.view()[0].state, BreakerState::Closed);
    }

    #[test]
    fn quotas_from_rates() {
        assert!(
            quota(Rate {
                count: 30,
                per_ms: 60_000
            })
            .is_some()
        );
        assert!(
            quota(Rate {
                count: 0,
                per_ms: 1000
            })
            .is_none()
        );
    }
}
