//! Dead letters: a copy of the original message on `switchyard.dlq.<reason>`
//! (stream `SWITCHYARD_DLQ`) with headers saying why.

use crate::IntakeOptions;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream::Stream};
use futures::StreamExt;
use std::sync::Arc;
use switchyard_spec::metric_names as m;

/// Header: the reason token (`invalid_json`, `reserved_kind`, `max_deliver`, …).
pub const REASON: &str = "Switchyard-Dlq-Reason";
/// Header: the human-readable detail.
pub const DETAIL: &str = "Switchyard-Dlq-Detail";
/// Header: the subject the message was published to.
pub const ORIGINAL_SUBJECT: &str = "Switchyard-Original-Subject";
/// Header: its sequence in the events stream.
pub const STREAM_SEQ: &str = "Switchyard-Stream-Seq";
/// Header: present when the payload was truncated to fit the server's max payload.
pub const TRUNCATED: &str = "Switchyard-Dlq-Truncated";

/// Publish a dead letter and wait for the stream's ack.
#[allow(clippy::too_many_arguments)]
pub async fn publish(
    client: &async_nats::Client,
    js: &jetstream::Context,
    opts: &IntakeOptions,
    reason: &str,
    detail: &str,
    original_subject: &str,
    seq: u64,
    payload: &[u8],
) -> Result<(), String> {
    let mut headers = HeaderMap::new();
    headers.insert(REASON, reason);
    // Header values are single-line; keep the detail short and clean.
    let detail: String = detail
        .chars()
        .filter(|c| !c.is_control())
        .take(512)
        .collect();
    headers.insert(DETAIL, detail.as_str());
    headers.insert(ORIGINAL_SUBJECT, original_subject);
    headers.insert(STREAM_SEQ, seq.to_string().as_str());
    let header_room = 1024 + detail.len() + original_subject.len();
    let max = client.server_info().max_payload;
    let mut body = payload.to_vec();
    if body.len() + header_room > max {
        body.truncate(max.saturating_sub(header_room));
        headers.insert(TRUNCATED, payload.len().to_string().as_str());
    }
    let subject = format!("{}.{reason}", opts.dlq_subject_prefix);
    js.publish_with_headers(subject, headers, body.into())
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    metrics::counter!(m::INTAKE_DEAD_LETTERED, "reason" => reason.to_owned()).increment(1);
    Ok(())
}

/// Copy messages that exhausted `max_deliver` to the dead-letter stream, as
/// the server's advisory reports them.
pub async fn watch_max_deliveries(
    js: jetstream::Context,
    stream: Stream,
    opts: Arc<IntakeOptions>,
) {
    let client = js.client();
    let subject = format!(
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
        opts.stream, opts.consumer
    );
    let mut sub = match client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(subject, error = %e, "cannot watch max-deliveries advisories");
            return;
        }
    };
    while let Some(advisory) = sub.next().await {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&advisory.payload) else {
            continue;
        };
        let Some(seq) = v.get("stream_seq").and_then(serde_json::Value::as_u64) else {
            continue;
        };
        match stream.get_raw_message(seq).await {
            Ok(original) => {
                let detail = format!(
                    "delivered {} times without a decision",
                    v.get("deliveries")
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0)
                );
                if let Err(e) = publish(
                    &client,
                    &js,
                    &opts,
                    "max_deliver",
                    &detail,
                    original.subject.as_str(),
                    seq,
                    &original.payload,
                )
                .await
                {
                    tracing::error!(seq, error = %e, "cannot dead-letter a message past max_deliver");
                }
            }
            Err(e) => {
                tracing::error!(seq, error = %e, "a message past max_deliver is no longer in the stream")
            }
        }
    }
}
