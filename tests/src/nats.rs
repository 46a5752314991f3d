//! Publishing events and reading dead letters, as producers and operators do.

use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

/// A JetStream client.
#[derive(Debug, Clone)]
pub struct Js {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

/// A dead letter as `SWITCHYARD_DLQ` holds it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub subject: String,
    pub reason: String,
    pub payload: Bytes,
}

/// A native event of `kind` on `host`, with `data.n = n`.
pub fn event(kind: &str, host: &str, id: &str, n: usize) -> Vec<u8> {
    serde_json::json!({
        "id": id,
        "kind": kind,
        "host": host,
        "data": { "n": n.to_string() },
    })
    .to_string()
    .into_bytes()
}

impl Js {
    pub async fn connect(url: &str) -> Js {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(url)
            .await
            .expect("connect to nats");
        let js = jetstream::new(client.clone());
        Js { client, js }
    }

    /// Publish one payload and wait for the stream's ack.
    pub async fn publish(&self, subject: &str, payload: Vec<u8>) -> Result<u64, String> {
        let ack = self
            .js
            .publish(subject.to_owned(), payload.into())
            .await
            .map_err(|e| e.to_string())?;
        ack.await.map(|a| a.sequence).map_err(|e| e.to_string())
    }

    /// Publish with `Nats-Msg-Id` set, as switchyard's publishers do; `Ok(true)`
    /// when the stream dropped it as a duplicate.
    pub async fn publish_with_id(
        &self,
        subject: &str,
        payload: Vec<u8>,
        msg_id: &str,
    ) -> Result<bool, String> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        let ack = self
            .js
            .publish_with_headers(subject.to_owned(), headers, payload.into())
            .await
            .map_err(|e| e.to_string())?;
        ack.await.map(|a| a.duplicate).map_err(|e| e.to_string())
    }

    /// Publish many (subject, payload) pairs with up to `window` awaiting
    /// their acks at once; returns how many the stream acknowledged.
    pub async fn publish_all(&self, items: Vec<(String, Vec<u8>)>, window: usize) -> usize {
        let mut acked = 0;
        let mut pending = FuturesUnordered::new();
        for (subject, payload) in items {
            if pending.len() >= window
                && let Some(r) = pending.next().await
            {
                acked += usize::from(matches!(r, Ok(Ok(_))));
            }
            match self.js.publish(subject, payload.into()).await {
                Ok(ack) => pending.push(async move { Ok::<_, String>(ack.await) }),
                Err(e) => panic!("publish: {e}"),
            }
        }
        while let Some(r) = pending.next().await {
            acked += usize::from(matches!(r, Ok(Ok(_))));
        }
        acked
    }

    /// Every dead letter so far, in order.
    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        let Ok(mut stream) = self.js.get_stream("SWITCHYARD_DLQ").await else {
            return Vec::new();
        };
        let info = stream.info().await.expect("DLQ stream info").state.clone();
        let mut out = Vec::new();
        for seq in info.first_sequence..=info.last_sequence {
            if seq == 0 {
                continue;
            }
            let Ok(m) = stream.get_raw_message(seq).await else {
                continue;
            };
            let reason = m
                .headers
                .get("Switchyard-Dlq-Reason")
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            out.push(DeadLetter {
                subject: m.subject.to_string(),
                reason,
                payload: m.payload,
            });
        }
        out
    }
}
