//! Engine settings (`[engine]` in switchyard.toml).

use std::time::Duration;

/// How the engine decides and dispatches.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Adapter calls in flight across every host and driver.
    pub global_concurrency: usize,
    /// Runs waiting per host; beyond it a new run is `failed`, reason `queue_full`.
    pub host_queue_depth: usize,
    /// Events older than this by receive time are `skipped` (`stale_event`),
    /// unless a policy sets its own `max_event_age`.
    pub max_event_age: Duration,
    /// A run still queued after this long is `cancelled`, reason `expired`.
    pub max_queue_time: Duration,
    /// Attempts per run of an idempotent verb on transient errors (at least 1).
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub retry_backoff: Duration,
    /// The engine lease's time to live; renewed every third of it.
    pub lease_ttl: Duration,
    /// Largest number of events' decisions committed in one transaction.
    pub batch_max: usize,
    /// This instance's name in the lease row.
    pub holder: String,
    /// Consecutive transient failures that open a (host, driver) circuit.
    pub breaker_failures: u32,
    /// How long an open circuit waits before a `health` probe.
    pub breaker_open_for: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            global_concurrency: 32,
            host_queue_depth: 1000,
            max_event_age: Duration::from_secs(15 * 60),
            max_queue_time: Duration::from_secs(3600),
            max_attempts: 3,
            retry_backoff: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(30),
            batch_max: 500,
            holder: default_holder(),
            breaker_failures: 5,
            breaker_open_for: Duration::from_secs(30),
        }
    }
}

/// `hostname:pid`, unique enough among the engines sharing one database.
pub fn default_holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "switchyard".into());
    format!("{host}:{}", std::process::id())
}
