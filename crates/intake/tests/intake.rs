//! Intake against a real nats-server with JetStream, handing events to a recording handler.

use async_nats::jetstream;
use futures::StreamExt;
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_intake::{
    Delivery, EventHandler, HandlerError, Intake, IntakeOptions, Publisher, dlq, provision,
};
use switchyard_spec::event::Event;
use switchyard_test_support::NatsServer;
use tokio::sync::oneshot;

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Delivery>>,
    /// Event ids to fail transiently once.
    fail_once: Mutex<HashSet<String>>,
    /// Fail everything as "store unavailable" while set.
    store_down: std::sync::atomic::AtomicBool,
    /// Take this long per event.
    delay: Mutex<Duration>,
}

impl EventHandler for Recorder {
    async fn handle(&self, d: Delivery) -> Result<(), HandlerError> {
        let delay = *self.delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        if self.store_down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(HandlerError::Unavailable("database is down".into()));
        }
        let id = d.event_id.clone();
        self.seen.lock().unwrap().push(d);
        if self.fail_once.lock().unwrap().remove(&id) {
            return Err(HandlerError::Transient("try again".into()));
        }
        Ok(())
    }
}

fn opts() -> IntakeOptions {
    IntakeOptions {
        ack_wait: Duration::from_secs(2),
        nak_delay: Duration::from_millis(100),
        ..IntakeOptions::default()
    }
}

struct Running {
    intake: Intake,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn run(url: &str, o: IntakeOptions, handler: Arc<Recorder>) -> Running {
    let intake = Intake::start(url, o).await.expect("intake starts");
    let (tx, rx) = oneshot::channel::<()>();
    let i = intake.clone();
    let task = tokio::spawn(async move {
        i.run(handler, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Running {
        intake,
        stop: Some(tx),
        task,
    }
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn event(kind: &str, id: Option<&str>) -> Event {
    switchyard_spec::event::from_value(
        json!({"kind": kind, "host": "nut-01", "data": {"charge": 87}}),
    )
    .map(|mut e| {
        e.id = id.map(str::to_owned);
        e
    })
    .unwrap()
}

async fn js(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.unwrap())
}

#[tokio::test]
async fn provisioning_creates_updates_and_refuses_immutable_changes() {
    let nats = NatsServer::start();
    let js = js(&nats.url()).await;
    let (_, r) = provision::provision(&js, &opts()).await.unwrap();
    assert_eq!(
        r.created,
        [
            "stream SWITCHYARD_EVENTS",
            "stream SWITCHYARD_DLQ",
            "consumer switchyard-engine"
        ]
    );
    let (_, r) = provision::provision(&js, &opts()).await.unwrap();
    assert_eq!(
        r,
        provision::Report::default(),
        "a second run changes nothing"
    );
    let changed = IntakeOptions {
        ack_wait: Duration::from_secs(9),
        max_age: Duration::from_secs(3600),
        ..opts()
    };
    let (mut s, r) = provision::provision(&js, &changed).await.unwrap();
    // The dead-letter stream keeps at least 30 days, so a shorter max_age leaves it as it is.
    assert_eq!(
        r.updated,
        ["stream SWITCHYARD_EVENTS", "consumer switchyard-engine"]
    );
    assert_eq!(
        s.info().await.unwrap().config.max_age,
        Duration::from_secs(3600)
    );
    assert_eq!(
        s.consumer_info("switchyard-engine")
            .await
            .unwrap()
            .config
            .ack_wait,
        Duration::from_secs(9)
    );

    // A stream someone created in memory cannot become a file stream in place.
    js.create_stream(jetstream::stream::Config {
        name: "OTHER_EVENTS".into(),
        subjects: vec!["other.>".into()],
        storage: jetstream::stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();
    let clash = IntakeOptions {
        stream: "OTHER_EVENTS".into(),
        subjects: vec!["other.>".into()],
        ..opts()
    };
    let e = provision::provision(&js, &clash)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("`storage`") && e.contains("OTHER_EVENTS"), "{e}");
}

#[tokio::test]
async fn events_are_handed_over_and_acked_after_the_handler() {
    let nats = NatsServer::start();
    let rec = Arc::new(Recorder::default());
    let running = run(&nats.url(), opts(), Arc::clone(&rec)).await;
    let publisher = running.intake.publisher();
    let a = publisher
        .publish(&event("ups.on_battery", Some("evt-1")))
        .await
        .unwrap();
    assert!(!a.duplicate);
    let again = publisher
        .publish(&event("ups.on_battery", Some("evt-1")))
        .await
        .unwrap();
    assert!(
        again.duplicate,
        "the same id inside the duplicate window is dropped by the server"
    );
    publisher
        .publish(&event("ups.on_line", None))
        .await
        .unwrap();
    wait_for("two events", Duration::from_secs(10), || {
        rec.seen.lock().unwrap().len() == 2
    })
    .await;
    let seen = rec.seen.lock().unwrap().clone();
    assert_eq!(seen[0].event_id, "evt-1");
    assert_eq!(seen[0].subject, "switchyard.events.ups.on_battery");
    assert_eq!(seen[0].id.stream_seq, 1);
    assert_eq!(seen[0].delivered, 1);
    assert_eq!(seen[1].event.kind, "ups.on_line");
    let stream = js(&nats.url())
        .await
        .get_stream("SWITCHYARD_EVENTS")
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let info = stream.consumer_info("switchyard-engine").await.unwrap();
        if (info.num_ack_pending, info.num_pending) == (0, 0) {
            break; // everything acknowledged
        }
        assert!(Instant::now() < until, "still pending: {info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.stop().await;
}

#[tokio::test]
async fn an_event_without_id_gets_a_delivery_derived_id() {
    let nats = NatsServer::start();
    let rec = Arc::new(Recorder::default());
    let running = run(&nats.url(), opts(), Arc::clone(&rec)).await;
    // Published without an id by a producer that does not set one.
    let producer = async_nats::connect(nats.url()).await.unwrap();
    producer
        .publish(
            "switchyard.events.host.down",
            br#"{"kind":"host.down","host":"web-01"}"#.as_ref().into(),
        )
        .await
        .unwrap();
    producer.flush().await.unwrap();
    wait_for("first delivery", Duration::from_secs(10), || {
        rec.seen.lock().unwrap().len() == 1
    })
    .await;
    let first = rec.seen.lock().unwrap()[0].clone();
    assert_eq!(
        uuid::Uuid::parse_str(&first.event_id)
            .unwrap()
            .get_version_num(),
        5
    );
    running.stop().await;
    // A UUIDv5 of (stream, stream creation time, sequence): every redelivery computes the same.
    let expected = switchyard_spec::event::delivery_event_id(
        &first.id.stream,
        first.id.stream_created,
        first.id.stream_seq,
    );
    assert_eq!(first.event_id, expected);
}

#[tokio::test]
async fn transient_failures_are_redelivered_until_decided() {
    let nats = NatsServer::start();
    let rec = Arc::new(Recorder::default());
    rec.fail_once.lock().unwrap().insert("flaky".into());
    let running = run(&nats.url(), opts(), Arc::clone(&rec)).await;
    running
        .intake
        .publisher()
        .publish(&event("a.b", Some("flaky")))
        .await
        .unwrap();
    wait_for("the redelivery", Duration::from_secs(10), || {
        rec.seen.lock().unwrap().len() == 2
    })
    .await;
    let seen = rec.seen.lock().unwrap().clone();
    assert_eq!((seen[0].delivered, seen[1].delivered), (1, 2));
    assert_eq!(
        seen[0].id, seen[1].id,
        "the same delivery identity both times"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_slow_decision_is_not_redelivered() {
    let nats = NatsServer::start();
    let rec = Arc::new(Recorder::default());
    // Longer than ack_wait (2 s): progress acks keep the message ours.
    *rec.delay.lock().unwrap() = Duration::from_millis(4500);
    let running = run(&nats.url(), opts(), Arc::clone(&rec)).await;
    running
        .intake
        .publisher()
        .publish(&event("a.b", Some("slow")))
        .await
        .unwrap();
    wait_for("the slow decision", Duration::from_secs(15), || {
        !rec.seen.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = rec.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "handled once");
    assert_eq!(seen[0].delivered, 1, "never redelivered while in progress");
    running.stop().await;
}

#[tokio::test]
async fn malformed_events_are_dead_lettered_with_reasons() {
    let nats = NatsServer::start();
    let rec = Arc::new(Recorder::default());
    let running = run(&nats.url(), opts(), Arc::clone(&rec)).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let bad: [(&str, &[u8]); 4] = [
        ("invalid_json", b"{not json"),
        ("reserved_kind", br#"{"kind":"schedule"}"#),
        ("missing_kind", br#"{"data":{}}"#),
        ("invalid_utf8", b"{\"kind\":\"a\xff\"}"),
    ];
    for (_, payload) in bad {
        client
            .publish("switchyard.events.x", payload.to_vec().into())
            .await
            .unwrap();
    }
    Publisher::new(client.clone())
        .publish(&event("a.b", Some("good")))
        .await
        .unwrap();
    wait_for("the good event", Duration::from_secs(10), || {
        rec.seen.lock().unwrap().len() == 1
    })
    .await;
    assert_eq!(
        rec.seen.lock().unwrap()[0].event_id,
        "good",
        "bad messages do not block the stream"
    );

    let js = js(&nats.url()).await;
    let dlq_stream = js.get_stream("SWITCHYARD_DLQ").await.unwrap();
    let consumer: jetstream::consumer::PullConsumer = dlq_stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("inspect".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(Ok(m)) = msgs.next().await {
        let h = m.headers.clone().unwrap();
        got.push((
            m.subject.to_string(),
            h.get(dlq::REASON).unwrap().to_string(),
            h.get(dlq::ORIGINAL_SUBJECT).unwrap().to_string(),
            h.get(dlq::STREAM_SEQ).unwrap().to_string(),
            m.payload.to_vec(),
        ));
    }
    assert_eq!(
        got.len(),
        bad.len(),
        "exactly the bad messages are dead-lettered"
    );
    for ((reason, payload), (subject, header_reason, original, seq)) in bad.iter().zip(
        got.iter()
            .map(|g| (g.0.clone(), g.1.clone(), g.2.clone(), g.3.clone())),
    ) {
        assert_eq!(subject, format!("switchyard.dlq.{reason}"));
        assert_eq!(header_reason, *reason);
        assert_eq!(original, "switchyard.events.x");
        assert!(seq.parse::<u64>().is_ok());
        assert!(
            got.iter().any(|g| g.4 == *payload),
            "the original payload is kept"
        );
    }
    let events = js.get_stream("SWITCHYARD_EVENTS").await.unwrap();
    let info = events.consumer_info("switchyard-engine").await.unwrap();
    assert_eq!(
        info.num_ack_pending, 0,
        "dead letters are terminated, not redelivered"
    );
    running.stop().await;
}

#[tokio::test]
async fn messages_past_max_deliver_are_dead_lettered() {
    let nats = NatsServer::start();
    let rec = Arc::new(Recorder::default());
    rec.store_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let o = IntakeOptions {
        max_deliver: Some(2),
        ..opts()
    };
    let running = run(&nats.url(), o, Arc::clone(&rec)).await;
    running
        .intake
        .publisher()
        .publish(&event("a.b", Some("doomed")))
        .await
        .unwrap();
    let js = js(&nats.url()).await;
    let mut dlq_stream = js.get_stream("SWITCHYARD_DLQ").await.unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if dlq_stream.info().await.unwrap().state.messages == 1 {
            break;
        }
        assert!(Instant::now() < until, "no max_deliver dead letter");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let m = dlq_stream.get_raw_message(1).await.unwrap();
    assert_eq!(m.subject.as_str(), "switchyard.dlq.max_deliver");
    running.stop().await;
}

#[tokio::test]
async fn a_failing_store_pauses_intake_and_nothing_is_lost() {
    let nats = NatsServer::start();
    let rec = Arc::new(Recorder::default());
    rec.store_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let running = run(&nats.url(), opts(), Arc::clone(&rec)).await;
    let readiness = running.intake.readiness();
    assert!(readiness.is_ready());
    running
        .intake
        .publisher()
        .publish(&event("a.b", Some("e1")))
        .await
        .unwrap();
    wait_for("not ready", Duration::from_secs(10), || {
        !readiness.is_ready()
    })
    .await;
    assert_eq!(readiness.reason(), Some("the store is failing"));
    rec.store_down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    wait_for("the event after recovery", Duration::from_secs(20), || {
        rec.seen.lock().unwrap().len() == 1
    })
    .await;
    wait_for("ready again", Duration::from_secs(5), || {
        readiness.is_ready()
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn survives_a_nats_server_restart() {
    let mut nats = NatsServer::start();
    let rec = Arc::new(Recorder::default());
    let running = run(&nats.url(), opts(), Arc::clone(&rec)).await;
    let publisher = running.intake.publisher();
    publisher
        .publish(&event("a.b", Some("before")))
        .await
        .unwrap();
    wait_for("the first event", Duration::from_secs(10), || {
        rec.seen.lock().unwrap().len() == 1
    })
    .await;
    let readiness = running.intake.readiness();
    nats.stop();
    wait_for(
        "not ready while NATS is down",
        Duration::from_secs(10),
        || !readiness.is_ready(),
    )
    .await;
    nats.restart();
    wait_for("reconnected", Duration::from_secs(30), || {
        readiness.is_ready()
    })
    .await;
    // Published after the restart, to the durable consumer's stream on disk.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if publisher
            .publish(&event("a.b", Some("after")))
            .await
            .is_ok()
        {
            break;
        }
        assert!(Instant::now() < until, "cannot publish after the restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for(
        "the event after the restart",
        Duration::from_secs(30),
        || {
            rec.seen
                .lock()
                .unwrap()
                .iter()
                .any(|d| d.event_id == "after")
        },
    )
    .await;
    let ids: Vec<String> = rec
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|d| d.event_id.clone())
        .collect();
    assert_eq!(
        ids.iter().filter(|i| *i == "before").count(),
        1,
        "the acked event is not redelivered: {ids:?}"
    );
    running.stop().await;
}

#[tokio::test]
async fn cloudevents_are_accepted() {
    let nats = NatsServer::start();
    let rec = Arc::new(Recorder::default());
    let running = run(&nats.url(), opts(), Arc::clone(&rec)).await;
    let ce = br#"{"specversion":"1.0","type":"host.down","source":"/probe/fra","id":"ce-1","subject":"web-01","time":"2026-11-23T08:00:00Z","datacontenttype":"application/json","data":{"rtt_ms":0}}"#;
    running
        .intake
        .publisher()
        .publish_payload("host.down", "ce-1", ce.to_vec())
        .await
        .unwrap();
    wait_for("the CloudEvent", Duration::from_secs(10), || {
        rec.seen.lock().unwrap().len() == 1
    })
    .await;
    let d = rec.seen.lock().unwrap()[0].clone();
    assert_eq!(
        (
            d.event_id.as_str(),
            d.event.kind.as_str(),
            d.event.host.as_deref()
        ),
        ("ce-1", "host.down", Some("web-01"))
    );
    running.stop().await;
}

#[tokio::test]
async fn every_acked_publish_is_processed_across_a_kill_9() {
    let mut nats = NatsServer::start();
    let rec = Arc::new(Recorder::default());
    let running = run(&nats.url(), opts(), Arc::clone(&rec)).await;
    let publisher = running.intake.publisher();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let producer = {
        let acked = Arc::clone(&acked);
        tokio::spawn(async move {
            for i in 0..400 {
                let id = format!("e-{i}");
                // A publish that is not acked (server down) may or may not be stored; only acked ones count.
                if let Ok(Ok(p)) = tokio::time::timeout(
                    Duration::from_secs(2),
                    publisher.publish(&event("a.b", Some(&id))),
                )
                .await
                {
                    acked.lock().unwrap().push(p.event_id);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    wait_for("traffic", Duration::from_secs(10), || {
        rec.seen.lock().unwrap().len() > 50
    })
    .await;
    nats.stop(); // SIGKILL mid-stream
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.restart();
    producer.await.unwrap();
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "most publishes were acked: {}",
        acked.len()
    );
    wait_for(
        "every acked publish processed",
        Duration::from_secs(60),
        || {
            let seen: HashSet<String> = rec
                .seen
                .lock()
                .unwrap()
                .iter()
                .map(|d| d.event_id.clone())
                .collect();
            acked.iter().all(|id| seen.contains(id))
        },
    )
    .await;
    running.stop().await;
}
