//! Publishing events to JetStream with de-duplication by event id.

use crate::IntakeOptions;
use async_nats::HeaderMap;
use async_nats::jetstream;
use switchyard_spec::event::Event;
use switchyard_spec::metric_names as m;
use thiserror::Error;

/// Why a publish failed.
#[derive(Debug, Error)]
pub enum PublishError {
    #[error("the event cannot be published as a native envelope: {0}")]
    Envelope(String),
    #[error("publishing to {subject}: {reason}")]
    Nats { subject: String, reason: String },
    /// No connection to NATS (the reason names no credentials; the URL is
    /// the caller's to show, redacted).
    #[error("{0}")]
    Connect(String),
}

/// The server's answer to a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub stream: String,
    pub seq: u64,
    /// The server already had a message with this `Nats-Msg-Id` in its duplicate window.
    pub duplicate: bool,
    pub event_id: String,
}

/// Publishes events to `switchyard.events.<kind>`.
#[derive(Debug, Clone)]
pub struct Publisher {
    js: jetstream::Context,
}

impl Publisher {
    /// Connect to NATS at `url` for publishing, giving up after `within`.
    pub async fn connect(
        url: &str,
        within: std::time::Duration,
    ) -> Result<Publisher, PublishError> {
        match tokio::time::timeout(within, async_nats::connect(url)).await {
            Err(_) => Err(PublishError::Connect(format!(
                "no answer within {} s",
                within.as_secs()
            ))),
            Ok(Err(e)) => Err(PublishError::Connect(e.to_string())),
            Ok(Ok(client)) => Ok(Publisher::new(client)),
        }
    }

    /// A publisher on an existing connection.
    pub fn new(client: async_nats::Client) -> Publisher {
        Publisher {
            js: jetstream::new(client),
        }
    }

    /// Publish an event and wait for the stream's ack. An event without an id
    /// gets a UUIDv7, so a retried publish of this call is de-duplicated.
    pub async fn publish(&self, event: &Event) -> Result<Published, PublishError> {
        if !event.extensions.is_empty() {
            return Err(PublishError::Envelope("CloudEvents extensions have no place in the native envelope; publish the CloudEvent itself".into()));
        }
        let mut event = event.clone();
        let id = event
            .id
            .get_or_insert_with(|| uuid::Uuid::now_v7().to_string())
            .clone();
        let payload =
            serde_json::to_vec(&event).map_err(|e| PublishError::Envelope(e.to_string()))?;
        self.publish_payload(&event.kind, &id, payload).await
    }

    /// Publish an already-serialized payload (native or CloudEvents JSON) for `kind` with `Nats-Msg-Id: id`.
    pub async fn publish_payload(
        &self,
        kind: &str,
        id: &str,
        payload: Vec<u8>,
    ) -> Result<Published, PublishError> {
        let subject = IntakeOptions::subject_for(kind);
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        let nats = |reason: String| PublishError::Nats {
            subject: subject.clone(),
            reason,
        };
        let ack = self
            .js
            .publish_with_headers(subject.clone(), headers, payload.into())
            .await
            .map_err(|e| nats(e.to_string()))?
            .await
            .map_err(|e| nats(e.to_string()))?;
        metrics::counter!(m::INTAKE_PUBLISHED).increment(1);
        Ok(Published {
            stream: ack.stream,
            seq: ack.sequence,
            duplicate: ack.duplicate,
            event_id: id.to_owned(),
        })
    }
}
