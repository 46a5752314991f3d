//! The consumer loop: pull, parse, hand to the engine, ack only once the
//! decision is durable.

use crate::{IntakeOptions, dlq};
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchyard_spec::event::{self, Event};
use switchyard_spec::metric_names as m;
use thiserror::Error;
use tokio::sync::Semaphore;

/// Which message this is: the same for every redelivery of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryId {
    pub stream: String,
    /// When the stream was created: a recreated stream restarts its sequence.
    pub stream_created: DateTime<Utc>,
    pub stream_seq: u64,
}

/// An event handed to the engine.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: DeliveryId,
    pub event: Event,
    /// The producer's id, or a UUIDv5 of the delivery identity.
    pub event_id: String,
    pub subject: String,
    pub received_at: DateTime<Utc>,
    /// How many times the server has delivered this message (1 the first time).
    pub delivered: i64,
}

/// Why a handler could not make the decision durable.
#[derive(Debug, Clone, Error)]
pub enum HandlerError {
    /// Try again later: the message is redelivered with backoff.
    #[error("transient: {0}")]
    Transient(String),
    /// The store is failing: the message is redelivered, intake stops
    /// pulling (one probe at a time) and reports not ready until it recovers.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// This event can never be handled: it is dead-lettered with `reason`.
    #[error("rejected ({reason}): {message}")]
    Rejected {
        reason: &'static str,
        message: String,
    },
}

/// What intake hands events to (the engine's handle). `Ok` means the decision
/// the event caused is durable; only then is the message acknowledged.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// Shared readiness: NATS connected and the handler's store not failing.
#[derive(Debug, Clone)]
pub struct Readiness {
    client: async_nats::Client,
    store_ok: Arc<AtomicBool>,
}

impl Readiness {
    /// Ready to take events.
    pub fn is_ready(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
            && self.store_ok.load(Ordering::SeqCst)
    }

    /// Why not ready, if not.
    pub fn reason(&self) -> Option<&'static str> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            Some("NATS is not connected")
        } else if !self.store_ok.load(Ordering::SeqCst) {
            Some("the store is failing")
        } else {
            None
        }
    }
}

/// The running intake: a cheap, cloneable handle.
#[derive(Debug, Clone)]
pub struct Intake {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    opts: Arc<IntakeOptions>,
    stream_created: DateTime<Utc>,
    store_ok: Arc<AtomicBool>,
}

/// Why intake could not start or continue.
#[derive(Debug, Error)]
pub enum IntakeError {
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error(transparent)]
    Provision(#[from] crate::provision::ProvisionError),
    #[error("JetStream: {0}")]
    JetStream(String),
}

impl Intake {
    /// Connect, provision the stream, DLQ and consumer.
    pub async fn start(url: &str, opts: IntakeOptions) -> Result<Intake, IntakeError> {
        let client = async_nats::ConnectOptions::new()
            .name("switchyard")
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|e| IntakeError::Connect {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        let js = jetstream::new(client.clone());
        let (mut stream, report) = crate::provision::provision(&js, &opts).await?;
        for what in &report.created {
            tracing::info!(what = %what, "created");
        }
        for what in &report.updated {
            tracing::info!(what = %what, "updated to match configuration");
        }
        let stream_created = stream
            .info()
            .await
            .map_err(|e| IntakeError::JetStream(e.to_string()))?
            .created;
        Ok(Intake {
            inner: Arc::new(Inner {
                client,
                js,
                opts: Arc::new(opts),
                stream_created,
                store_ok: Arc::new(AtomicBool::new(true)),
            }),
        })
    }

    /// A readiness handle for /readyz.
    pub fn readiness(&self) -> Readiness {
        Readiness {
            client: self.inner.client.clone(),
            store_ok: Arc::clone(&self.inner.store_ok),
        }
    }

    /// A publisher of events sharing this connection.
    pub fn publisher(&self) -> crate::Publisher {
        crate::Publisher::new(self.inner.client.clone())
    }

    /// Publish every notice `notices` receives on the subject `subject(n)`
    /// over this connection, until the sender side closes
    /// ([`crate::notify::forward`]).
    pub fn notifications<T, F>(
        &self,
        notices: tokio::sync::broadcast::Receiver<T>,
        subject: F,
    ) -> impl Future<Output = ()> + use<T, F>
    where
        T: serde::Serialize + Clone,
        F: Fn(&T) -> String,
    {
        crate::notify::forward(self.inner.client.clone(), notices, subject)
    }

    /// Consume until `shutdown` resolves; then stop pulling and wait for the
    /// events in flight to be decided (or nak'ed).
    pub async fn run<H: EventHandler>(
        &self,
        handler: Arc<H>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), IntakeError> {
        let stream = self
            .inner
            .js
            .get_stream(&self.inner.opts.stream)
            .await
            .map_err(|e| IntakeError::JetStream(e.to_string()))?;
        let consumer: PullConsumer = stream
            .get_consumer(&self.inner.opts.consumer)
            .await
            .map_err(|e| IntakeError::JetStream(e.to_string()))?;
        if self.inner.opts.max_deliver.is_some() {
            tokio::spawn(dlq::watch_max_deliveries(
                self.inner.js.clone(),
                stream.clone(),
                self.inner.opts.clone(),
            ));
        }
        let permits = Arc::new(Semaphore::new(self.inner.opts.max_in_flight));
        let mut tasks = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        let mut retry = Duration::from_millis(200);
        'outer: loop {
            let messages = consumer
                .stream()
                .max_messages_per_batch(self.inner.opts.batch)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await;
            let mut messages = match messages {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot pull from JetStream; retrying");
                    tokio::select! {
                        () = &mut shutdown => break 'outer,
                        () = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            loop {
                // While the store fails, let one event through per probe interval.
                if !self.inner.store_ok.load(Ordering::SeqCst) {
                    tokio::select! {
                        () = &mut shutdown => break 'outer,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                let permit = tokio::select! {
                    () = &mut shutdown => break 'outer,
                    // Never closed; were it, nothing more could be taken.
                    p = Arc::clone(&permits).acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break 'outer,
                    },
                };
                let next = tokio::select! {
                    () = &mut shutdown => break 'outer,
                    n = messages.next() => n,
                };
                match next {
                    None => break,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "JetStream pull interrupted; resuming");
                        tokio::time::sleep(retry).await;
                        retry = (retry * 2).min(Duration::from_secs(10));
                        break;
                    }
                    Some(Ok(msg)) => {
                        retry = Duration::from_millis(200);
                        let this = self.clone();
                        let handler = Arc::clone(&handler);
                        let mut work = Box::pin(async move {
                            this.handle_message(msg, handler.as_ref()).await;
                            drop(permit);
                        });
                        // A decision that completes at once is finished here, without a
                        // hand-off to another thread; one that waits runs as its own task.
                        if futures::poll!(&mut work).is_pending() {
                            tasks.spawn(work);
                        }
                    }
                }
                while tasks.try_join_next().is_some() {}
            }
        }
        // Events in flight get a bounded time to be decided; one that is not
        // (the database is away) stays unacknowledged and is redelivered.
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(self.inner.opts.drain_timeout, drain)
            .await
            .is_err()
        {
            tracing::warn!(
                left = tasks.len(),
                "events still being decided at shutdown are left unacknowledged; they will be redelivered"
            );
            tasks.abort_all();
        }
        Ok(())
    }

    async fn handle_message<H: EventHandler>(&self, msg: jetstream::Message, handler: &H) {
        metrics::counter!(m::INTAKE_RECEIVED).increment(1);
        let received_at = Utc::now();
        let (seq, delivered) = match msg.info() {
            Ok(i) => (i.stream_sequence, i.delivered),
            Err(e) => {
                tracing::warn!(error = %e, "a message without JetStream metadata; leaving it to redelivery");
                return;
            }
        };
        let subject = msg.subject.to_string();
        let event = match event::parse(&msg.payload, self.inner.opts.limits) {
            Ok(e) => e,
            Err(e) => {
                self.dead_letter(&msg, e.reason(), &e.to_string(), seq)
                    .await;
                return;
            }
        };
        let id = DeliveryId {
            stream: self.inner.opts.stream.clone(),
            stream_created: self.inner.stream_created,
            stream_seq: seq,
        };
        let event_id = event.id.clone().unwrap_or_else(|| {
            event::delivery_event_id(&id.stream, id.stream_created, id.stream_seq)
        });
        let delivery = Delivery {
            id,
            event,
            event_id,
            subject,
            received_at,
            delivered,
        };
        // Tell the server we are still working while the handler runs.
        let progress_every = (self.inner.opts.ack_wait / 3).max(Duration::from_millis(100));
        let work = handler.handle(delivery);
        tokio::pin!(work);
        // Most decisions finish on the first poll: arm the progress timer only when one does not.
        let result = match futures::poll!(&mut work) {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => loop {
                tokio::select! {
                    r = &mut work => break r,
                    () = tokio::time::sleep(progress_every) => {
                        let _ = msg.ack_with(AckKind::Progress).await;
                    }
                }
            },
        };
        match result {
            Ok(()) => {
                self.inner.store_ok.store(true, Ordering::SeqCst);
                // The decision is durable: now, and only now, acknowledge. A lost
                // ack means a redelivery, which the engine's inbox recognizes by
                // the delivery identity, so the ack need not be confirmed.
                if let Err(e) = msg.ack().await {
                    tracing::warn!(seq, error = %e, "ack not sent; the event will be redelivered and deduplicated by the inbox");
                }
                metrics::counter!(m::INTAKE_ACKED).increment(1);
            }
            Err(HandlerError::Transient(why)) => {
                tracing::warn!(seq, delivered, why = %why, "handler failed transiently; redelivering");
                self.nak(&msg, delivered, "transient").await;
            }
            Err(HandlerError::Unavailable(why)) => {
                if self.inner.store_ok.swap(false, Ordering::SeqCst) {
                    tracing::error!(why = %why, "store unavailable: intake pauses and reports not ready");
                }
                self.nak(&msg, delivered, "unavailable").await;
            }
            Err(HandlerError::Rejected { reason, message }) => {
                self.dead_letter(&msg, reason, &message, seq).await
            }
        }
    }

    async fn nak(&self, msg: &jetstream::Message, delivered: i64, kind: &'static str) {
        let exp = u32::try_from(delivered.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
        let delay = self
            .inner
            .opts
            .nak_delay
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.inner.opts.nak_delay_max);
        let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
        metrics::counter!(m::INTAKE_NAKED, "kind" => kind).increment(1);
    }

    async fn dead_letter(
        &self,
        msg: &jetstream::Message,
        reason: &'static str,
        detail: &str,
        seq: u64,
    ) {
        match dlq::publish(
            &self.inner.client,
            &self.inner.js,
            &self.inner.opts,
            reason,
            detail,
            msg.subject.as_str(),
            seq,
            &msg.payload,
        )
        .await
        {
            Ok(()) => {
                tracing::warn!(seq, reason, detail, "event dead-lettered");
                // Terminate: never redelivered.
                let _ = msg.ack_with(AckKind::Term).await;
            }
            Err(e) => {
                tracing::error!(seq, reason, error = %e, "cannot dead-letter; redelivering instead of losing it");
                let _ = msg
                    .ack_with(AckKind::Nak(Some(self.inner.opts.nak_delay)))
                    .await;
            }
        }
    }
}
