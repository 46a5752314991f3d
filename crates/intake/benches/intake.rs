//! Intake throughput against a real nats-server: events consumed, parsed,
//! handed to a no-op handler and acked per second, next to the raw JetStream
//! consume rate (pull, ack, nothing else) measured in the same run.
//!
//! `cargo bench -p switchyard-intake --bench intake` (set `SWITCHYARD_BENCH_EVENTS` to change N).

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchyard_intake::{Delivery, EventHandler, HandlerError, Intake, IntakeOptions};
use switchyard_test_support::NatsServer;

struct Count(Arc<AtomicU64>);

impl EventHandler for Count {
    async fn handle(&self, _d: Delivery) -> Result<(), HandlerError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn publish(js: &jetstream::Context, n: u64) {
    let mut pending = Vec::with_capacity(1000);
    for i in 0..n {
        let payload = format!(
            r#"{{"id":"bench-{i}","kind":"ups.on_battery","source":"nut://ups1@nut-01","host":"nut-01","time":"2026-11-23T08:00:00Z","severity":"warning","data":{{"ups":"ups1","charge":87,"runtime_s":1800}}}}"#
        );
        pending.push(
            js.publish("switchyard.events.ups.on_battery", payload.into())
                .await
                .expect("publish"),
        );
        if pending.len() == 1000 {
            for ack in pending.drain(..) {
                ack.await.expect("publish ack");
            }
        }
    }
    for ack in pending {
        ack.await.expect("publish ack");
    }
}

async fn raw_rate(js: &jetstream::Context, n: u64, name: &str) -> f64 {
    let stream = js.get_stream("SWITCHYARD_EVENTS").await.unwrap();
    let consumer: PullConsumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some(name.into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let started = Instant::now();
    let mut msgs = consumer
        .stream()
        .max_messages_per_batch(64)
        .messages()
        .await
        .unwrap();
    let mut got = 0;
    while got < n {
        let m = msgs.next().await.unwrap().unwrap();
        m.ack().await.unwrap();
        got += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn intake_rate(url: &str, n: u64, consumer: &str) -> f64 {
    let opts = IntakeOptions {
        consumer: consumer.into(),
        max_ack_pending: 1000,
        ..IntakeOptions::default()
    };
    let intake = Intake::start(url, opts).await.unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let runner = {
        let intake = intake.clone();
        let handler = Arc::new(Count(Arc::clone(&count)));
        tokio::spawn(async move {
            intake
                .run(handler, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        })
    };
    while count.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _ = tx.send(());
    runner.await.unwrap();
    rate
}

fn main() {
    let n: u64 = std::env::var("SWITCHYARD_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let nats = NatsServer::start();
        let url = nats.url();
        let js = jetstream::new(async_nats::connect(&url).await.unwrap());
        switchyard_intake::provision::provision(&js, &IntakeOptions::default()).await.unwrap();
        publish(&js, n).await;
        println!("intake benchmark: {n} events (231 bytes each) in SWITCHYARD_EVENTS, nats-server on loopback");
        println!("{:<6} {:>14} {:>14} {:>7}", "round", "raw events/s", "intake ev/s", "ratio");
        let mut ratios = Vec::new();
        for round in 1..=3 {
            // Alternate the order so neither side always runs on a warmer machine.
            let (raw, intake) = if round % 2 == 1 {
                let r = raw_rate(&js, n, &format!("raw-{round}")).await;
                (r, intake_rate(&url, n, &format!("intake-{round}")).await)
            } else {
                let i = intake_rate(&url, n, &format!("intake-{round}")).await;
                (raw_rate(&js, n, &format!("raw-{round}")).await, i)
            };
            ratios.push(intake / raw);
            println!("{round:<6} {raw:>14.0} {intake:>14.0} {:>6.0}%", 100.0 * intake / raw);
        }
        ratios.sort_by(f64::total_cmp);
        println!("median ratio: {:.0}% of raw", 100.0 * ratios[1]);
    });
}
