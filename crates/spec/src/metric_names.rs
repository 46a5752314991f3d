//! Every Prometheus metric switchyard exports, by name, in one place
//! (`GET /metrics`; docs/OPERATIONS.md lists them, and a test keeps the two
//! in step). Counters end in `_total`, durations are seconds.

/// Messages pulled from JetStream.
pub const INTAKE_RECEIVED: &str = "switchyard_intake_received_total";
/// Messages acknowledged after their decision was durable.
pub const INTAKE_ACKED: &str = "switchyard_intake_acked_total";
/// Messages negatively acknowledged for redelivery (label `kind`: transient, unavailable).
pub const INTAKE_NAKED: &str = "switchyard_intake_naked_total";
/// Messages copied to the dead-letter stream (label `reason`).
pub const INTAKE_DEAD_LETTERED: &str = "switchyard_intake_dead_lettered_total";
/// Events published (CLI, HTTP and Alertmanager ingest).
pub const INTAKE_PUBLISHED: &str = "switchyard_intake_published_total";

/// Policies that matched an event (label `policy`).
pub const POLICY_MATCHES: &str = "switchyard_policy_matches_total";
/// Decisions recorded (label `outcome`: queued, suppressed, deduplicated, skipped, failed).
pub const DECISIONS: &str = "switchyard_decisions_total";
/// Time from an event reaching the engine to its decision being durable.
pub const DECISION_LATENCY: &str = "switchyard_decision_latency_seconds";
/// Runs that reached a final status (labels `status`, `driver`).
pub const RUNS_FINISHED: &str = "switchyard_runs_finished_total";
/// Adapter call time of finished runs (label `driver`).
pub const RUN_DURATION: &str = "switchyard_run_duration_seconds";
/// Runs waiting in a host's queue (label `host`).
pub const HOST_QUEUE_DEPTH: &str = "switchyard_host_queue_depth";
/// Runs calling their adapter now.
pub const RUNS_IN_FLIGHT: &str = "switchyard_runs_in_flight";
/// Circuit breaker per host and driver: 0 closed, 1 half-open, 2 open (labels `host`, `driver`).
pub const CIRCUIT_STATE: &str = "switchyard_circuit_state";
/// Adapter processes restarted after a crash or protocol error (label `driver`).
pub const ADAPTER_RESTARTS: &str = "switchyard_adapter_restarts_total";
/// Live policies (label `state`: enabled, disabled).
pub const POLICIES: &str = "switchyard_policies";
/// The current version of each live policy (label `policy`).
pub const POLICY_VERSION: &str = "switchyard_policy_version";
/// Policy documents validated on save (label `result`: ok, blocked).
pub const POLICY_VALIDATIONS: &str = "switchyard_policy_validations_total";
/// Policy rollbacks (label `trigger`: operator, automatic).
pub const POLICY_ROLLBACKS: &str = "switchyard_policy_rollbacks_total";
/// The version of each policy the engine evaluates now; 0 once it is no
/// longer enabled (label `policy`).
pub const POLICY_ACTIVE_VERSION: &str = "switchyard_policy_active_version";
/// Reloads of the watched policy directory (label `result`: applied,
/// unchanged, refused, rolled_back, error).
pub const POLICY_RELOADS: &str = "switchyard_policy_reloads_total";
/// One apply of the watched directory after the debounce, until the engine
/// holds the result.
pub const POLICY_RELOAD_DURATION: &str = "switchyard_policy_reload_duration_seconds";
/// Policy notifications posted to webhooks (label `result`: delivered,
/// failed, dropped).
pub const WEBHOOK_DELIVERIES: &str = "switchyard_webhook_deliveries_total";

/// Ledger writes that failed (label `kind`: `outage` — retried until the
/// database takes them; `refused` — one event's decision or one status change
/// the database refused, split out of its batch; `lease` — written while the
/// lease was expired or lost).
pub const LEDGER_WRITE_FAILURES: &str = "switchyard_ledger_write_failures_total";
/// 1 while ledger writes fail and the engine retries them (intake paused,
/// readiness false); 0 otherwise.
pub const LEDGER_FAILING: &str = "switchyard_ledger_failing";

/// Drivers installed (0: the server decides events but no action can run).
pub const DRIVERS_INSTALLED: &str = "switchyard_drivers_installed";

/// Every name, for the documentation check.
pub const ALL: &[&str] = &[
    INTAKE_RECEIVED,
    INTAKE_ACKED,
    INTAKE_NAKED,
    INTAKE_DEAD_LETTERED,
    INTAKE_PUBLISHED,
    POLICY_MATCHES,
    DECISIONS,
    DECISION_LATENCY,
    RUNS_FINISHED,
    RUN_DURATION,
    HOST_QUEUE_DEPTH,
    RUNS_IN_FLIGHT,
    CIRCUIT_STATE,
    ADAPTER_RESTARTS,
    POLICIES,
    POLICY_VERSION,
    POLICY_VALIDATIONS,
    POLICY_ROLLBACKS,
    POLICY_ACTIVE_VERSION,
    POLICY_RELOADS,
    POLICY_RELOAD_DURATION,
    WEBHOOK_DELIVERIES,
    LEDGER_WRITE_FAILURES,
    LEDGER_FAILING,
    DRIVERS_INSTALLED,
];
