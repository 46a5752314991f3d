//! Reconcile the JetStream stream, dead-letter stream and durable consumer
//! with configuration: create what is absent, update mutable fields that
//! differ, refuse an immutable mismatch naming the field. Running it twice is fine.

use crate::IntakeOptions;
use async_nats::jetstream::{self, consumer, stream};
use std::time::Duration;
use thiserror::Error;

/// Why provisioning failed.
#[derive(Debug, Error)]
pub enum ProvisionError {
    #[error(
        "stream `{stream}`: `{field}` is {have} but configuration says {want}; it cannot be changed in place (delete the stream or change the configuration)"
    )]
    StreamImmutable {
        stream: String,
        field: &'static str,
        have: String,
        want: String,
    },
    #[error(
        "consumer `{consumer}` on `{stream}`: `{field}` is {have} but configuration says {want}; it cannot be changed in place (delete the consumer or change the configuration)"
    )]
    ConsumerImmutable {
        stream: String,
        consumer: String,
        field: &'static str,
        have: String,
        want: String,
    },
    #[error("JetStream: {0}")]
    JetStream(String),
}

/// What provisioning did, for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub created: Vec<String>,
    pub updated: Vec<String>,
}

fn js_err(e: impl std::fmt::Display) -> ProvisionError {
    ProvisionError::JetStream(e.to_string())
}

fn stream_config(name: &str, subjects: Vec<String>, opts: &IntakeOptions) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects,
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        max_age: opts.max_age,
        duplicate_window: opts.duplicate_window,
        max_message_size: opts.max_message_size,
        num_replicas: 1,
        ..Default::default()
    }
}

async fn reconcile_stream(
    js: &jetstream::Context,
    want: stream::Config,
    report: &mut Report,
) -> Result<stream::Stream, ProvisionError> {
    match js.get_stream(&want.name).await {
        Ok(mut s) => {
            let have = s.info().await.map_err(js_err)?.config.clone();
            if have.storage != want.storage {
                return Err(ProvisionError::StreamImmutable {
                    stream: want.name.clone(),
                    field: "storage",
                    have: format!("{:?}", have.storage),
                    want: format!("{:?}", want.storage),
                });
            }
            if have.retention != want.retention {
                return Err(ProvisionError::StreamImmutable {
                    stream: want.name.clone(),
                    field: "retention",
                    have: format!("{:?}", have.retention),
                    want: format!("{:?}", want.retention),
                });
            }
            let differs = have.subjects != want.subjects
                || have.max_age != want.max_age
                || have.duplicate_window != want.duplicate_window
                || have.max_message_size != want.max_message_size;
            if differs {
                let mut updated = have.clone();
                updated.subjects = want.subjects.clone();
                updated.max_age = want.max_age;
                updated.duplicate_window = want.duplicate_window;
                updated.max_message_size = want.max_message_size;
                js.update_stream(updated).await.map_err(js_err)?;
                report.updated.push(format!("stream {}", want.name));
            }
            js.get_stream(&want.name).await.map_err(js_err)
        }
        Err(e) if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j) if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            let s = js.create_stream(want.clone()).await.map_err(js_err)?;
            report.created.push(format!("stream {}", want.name));
            Ok(s)
        }
        Err(e) => Err(js_err(e)),
    }
}

fn consumer_config(opts: &IntakeOptions) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(opts.consumer.clone()),
        description: Some("switchyard engine intake".into()),
        deliver_policy: consumer::DeliverPolicy::All,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: opts.ack_wait,
        max_deliver: opts.max_deliver.unwrap_or(-1),
        max_ack_pending: opts.max_ack_pending,
        ..Default::default()
    }
}

/// Reconcile everything intake needs; returns the events stream.
pub async fn provision(
    js: &jetstream::Context,
    opts: &IntakeOptions,
) -> Result<(stream::Stream, Report), ProvisionError> {
    let mut report = Report::default();
    let events = reconcile_stream(
        js,
        stream_config(&opts.stream, opts.subjects.clone(), opts),
        &mut report,
    )
    .await?;
    let mut dlq = stream_config(
        &opts.dlq_stream,
        vec![format!("{}.>", opts.dlq_subject_prefix)],
        opts,
    );
    // Dead letters wait for an operator: keep them longer than events.
    dlq.max_age = opts.max_age.max(Duration::from_secs(30 * 24 * 3600));
    // A dead letter carries the original (possibly oversized) payload plus headers.
    dlq.max_message_size = -1;
    reconcile_stream(js, dlq, &mut report).await?;

    let want = consumer_config(opts);
    match events.consumer_info(&opts.consumer).await {
        Ok(info) => {
            let have = &info.config;
            let immutable: [(&'static str, String, String); 3] = [
                (
                    "deliver_policy",
                    format!("{:?}", have.deliver_policy),
                    format!("{:?}", want.deliver_policy),
                ),
                (
                    "ack_policy",
                    format!("{:?}", have.ack_policy),
                    format!("{:?}", want.ack_policy),
                ),
                (
                    "filter_subject",
                    format!("{:?}", have.filter_subject),
                    format!("{:?}", want.filter_subject),
                ),
            ];
            for (field, h, w) in immutable {
                if h != w {
                    return Err(ProvisionError::ConsumerImmutable {
                        stream: opts.stream.clone(),
                        consumer: opts.consumer.clone(),
                        field,
                        have: h,
                        want: w,
                    });
                }
            }
            let differs = have.ack_wait != want.ack_wait
                || have.max_deliver != want.max_deliver
                || have.max_ack_pending != want.max_ack_pending;
            if differs {
                events.update_consumer(want).await.map_err(js_err)?;
                report.updated.push(format!("consumer {}", opts.consumer));
            }
        }
        Err(e)
            if matches!(
                e.kind(),
                async_nats::jetstream::context::ConsumerInfoErrorKind::NotFound
            ) =>
        {
            events.create_consumer(want).await.map_err(js_err)?;
            report.created.push(format!("consumer {}", opts.consumer));
        }
        Err(e) => return Err(js_err(e)),
    }
    Ok((events, report))
}
