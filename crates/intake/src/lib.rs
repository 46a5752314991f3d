//! Event intake: the NATS JetStream side of switchyard.
//!
//! [`Intake::start`] connects and reconciles the events stream, the dead-letter
//! stream and the durable pull consumer with configuration; [`Intake::run`]
//! pulls events, parses them (`spec::event`), hands each to an
//! [`EventHandler`] (the engine) and acknowledges a message only after the
//! handler reports the decision durable. Malformed events are dead-lettered
//! with a reason on their first delivery; transient failures are redelivered
//! with backoff; a failing store pauses intake. [`Publisher`] publishes events
//! with `Nats-Msg-Id` set, and [`alertmanager`] maps webhook payloads to events.
//!
//! Only this crate talks to NATS.

pub mod alertmanager;
mod consumer;
pub mod dlq;
pub mod notify;
mod options;
pub mod provision;
mod publisher;

pub use consumer::{
    Delivery, DeliveryId, EventHandler, HandlerError, Intake, IntakeError, Readiness,
};
pub use options::IntakeOptions;
pub use publisher::{PublishError, Published, Publisher};
