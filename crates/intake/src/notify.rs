//! Notifications out: status changes published on plain NATS subjects
//! (`switchyard.runs.<status>`, `switchyard.policies.<event>`), fire and
//! forget — they announce what the ledger already holds.

use serde::Serialize;
use tokio::sync::broadcast;

/// Publish everything received on `notices` to the subject `subject(n)`
/// returns, until the sender side closes. A slow NATS connection makes the
/// receiver lag; lagged notices are counted in the log, never block the engine.
pub async fn forward<T, F>(
    client: async_nats::Client,
    mut notices: broadcast::Receiver<T>,
    subject: F,
) where
    T: Serialize + Clone,
    F: Fn(&T) -> String,
{
    loop {
        match notices.recv().await {
            Ok(n) => match serde_json::to_vec(&n) {
                Ok(body) => {
                    if let Err(e) = client.publish(subject(&n), body.into()).await {
                        tracing::warn!(error = %e, "publishing a notification failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "encoding a notification failed"),
            },
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "notifications fell behind; some were not published"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
