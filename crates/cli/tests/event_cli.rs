//! `switchyard event publish` against a real nats-server.

use std::process::{Command, Output, Stdio};
use switchyard_intake::{IntakeOptions, provision};
use switchyard_test_support::NatsServer;

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run switchyard")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn publish_as_a_producer_would() {
    let nats = NatsServer::start();
    let url = nats.url();

    // Before anything created the stream, the failure says what to do.
    let out = switchyard(&[
        "event",
        "publish",
        "--nats-url",
        &url,
        "--kind",
        "ups.on_battery",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("switchyard serve"),
        "{}",
        text(&out.stderr)
    );

    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    provision::provision(&js, &IntakeOptions::default())
        .await
        .unwrap();

    let args = [
        "event",
        "publish",
        "--nats-url",
        &url,
        "--kind",
        "ups.on_battery",
        "--host",
        "nut-01",
        "--id",
        "evt-7",
        "--data",
        r#"{"ups":"ups1","charge":87}"#,
        "-o",
        "json",
    ];
    let out = switchyard(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            v["seq"].as_u64(),
            v["duplicate"].as_bool(),
            v["id"].as_str()
        ),
        (Some(1), Some(false), Some("evt-7"))
    );
    let again: serde_json::Value = serde_json::from_slice(&switchyard(&args).stdout).unwrap();
    assert_eq!(again["duplicate"], true, "the same id is de-duplicated");

    let stream = js.get_stream("SWITCHYARD_EVENTS").await.unwrap();
    let m = stream.get_raw_message(1).await.unwrap();
    assert_eq!(m.subject.as_str(), "switchyard.events.ups.on_battery");
    let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(
        (body["host"].as_str(), body["data"]["charge"].as_i64()),
        (Some("nut-01"), Some(87))
    );

    let dir = tempfile::tempdir().unwrap();
    let ce = dir.path().join("ce.json");
    std::fs::write(&ce, r#"{"specversion":"1.0","type":"host.down","source":"/probe","id":"ce-9","subject":"web-01"}"#).unwrap();
    let out = switchyard(&[
        "event",
        "publish",
        "--nats-url",
        &url,
        "--event",
        ce.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("published host.down id=ce-9"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn bad_input_is_refused_before_publishing() {
    for args in [
        vec!["event", "publish", "--kind", "UPS.OnBattery"],
        vec!["event", "publish", "--kind", "schedule"],
        vec!["event", "publish", "--kind", "a.b", "--data", "[1,2]"],
        vec!["event", "publish"],
    ] {
        let out = switchyard(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = switchyard(&[
        "event",
        "publish",
        "--kind",
        "a.b",
        "--nats-url",
        "nats://127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("NATS"), "{}", text(&out.stderr));
}
