//! Metric names, in one place (Prometheus conventions).

/// Messages pulled from JetStream.
pub const RECEIVED: &str = "switchyard_intake_received_total";
/// Messages acknowledged after their decision was durable.
pub const ACKED: &str = "switchyard_intake_acked_total";
/// Messages negatively acknowledged for redelivery (label `kind`: transient, unavailable).
pub const NAKED: &str = "switchyard_intake_naked_total";
/// Messages copied to the dead-letter stream (label `reason`).
pub const DEAD_LETTERED: &str = "switchyard_intake_dead_lettered_total";
/// Events published (CLI, HTTP and Alertmanager ingest).
pub const PUBLISHED: &str = "switchyard_intake_published_total";
