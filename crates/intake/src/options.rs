//! Intake settings: the `[nats]` section of switchyard.toml.

use std::time::Duration;
use switchyard_spec::event::Limits;

/// How intake names, provisions and consumes its JetStream resources.
#[derive(Debug, Clone)]
pub struct IntakeOptions {
    /// The events stream (`SWITCHYARD_EVENTS`).
    pub stream: String,
    /// Its subjects (`switchyard.events.>`).
    pub subjects: Vec<String>,
    /// The durable pull consumer the engine reads through.
    pub consumer: String,
    /// How long the server waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Deliveries before a message is given up on; `None` is unlimited (the default).
    pub max_deliver: Option<i64>,
    /// Unacknowledged messages the server lets the consumer hold.
    pub max_ack_pending: i64,
    /// Window in which a repeated `Nats-Msg-Id` is dropped by the server.
    pub duplicate_window: Duration,
    /// How long the stream keeps events.
    pub max_age: Duration,
    /// Largest message the stream accepts (bytes).
    pub max_message_size: i32,
    /// The dead-letter stream (`SWITCHYARD_DLQ`) over `switchyard.dlq.>`.
    pub dlq_stream: String,
    pub dlq_subject_prefix: String,
    /// Messages pulled per batch.
    pub batch: usize,
    /// Messages being handled at once (backpressure: beyond this, intake stops pulling).
    pub max_in_flight: usize,
    /// Envelope limits.
    pub limits: Limits,
    /// First redelivery delay after a transient handler failure; doubles per delivery.
    pub nak_delay: Duration,
    /// Upper bound of that delay.
    pub nak_delay_max: Duration,
    /// At shutdown, how long events in flight may take to be decided before
    /// they are left unacknowledged (and redelivered to the next engine).
    pub drain_timeout: Duration,
}

impl Default for IntakeOptions {
    fn default() -> Self {
        IntakeOptions {
            stream: "SWITCHYARD_EVENTS".into(),
            subjects: vec!["switchyard.events.>".into()],
            consumer: "switchyard-engine".into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: None,
            max_ack_pending: 1000,
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_message_size: 1024 * 1024,
            dlq_stream: "SWITCHYARD_DLQ".into(),
            dlq_subject_prefix: "switchyard.dlq".into(),
            batch: 64,
            max_in_flight: 1000,
            limits: Limits::default(),
            nak_delay: Duration::from_millis(500),
            nak_delay_max: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl IntakeOptions {
    /// The subject an event of `kind` is published to.
    pub fn subject_for(kind: &str) -> String {
        format!("switchyard.events.{kind}")
    }
}
