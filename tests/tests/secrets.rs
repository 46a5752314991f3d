//! Secret canaries: a value set as the API's JWT secret, as a driver's
//! config secret and as a host's config secret, all by reference, and one
//! sent in an event into a param the driver marks secret; then used: a
//! driver that prints and returns every secret, API calls with tokens,
//! policy changes. None of the values may appear in the log (at trace
//! level), the ledger's files, any API answer or any NATS message (the
//! event's own copy on its way in excepted).

use futures::StreamExt;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;
use switchyard_system_tests::{Backend, Rig, RigOptions, bin};

const JWT: &str = "canary-jwt-4e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b";
const DRIVER: &str = "canary-driver-9d8c7b6a5f4e";
const HOST: &str = "canary-host-1a2b3c4d5e6f";
/// Sent in an event, into a param the driver marks secret.
const EVENT: &str = "canary-event-5c6d7e8f9a0b";

/// One HTTP/1.1 request with a bearer token: (status, body).
fn call(port: u16, method: &str, path: &str, token: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

fn leaks(text: &str) -> Vec<&'static str> {
    [JWT, DRIVER, HOST, EVENT]
        .into_iter()
        .filter(|c| text.contains(c))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_appear_in_no_log_ledger_answer_or_notification() {
    let opts = RigOptions::new(Backend::Sqlite, 1)
        .env("SY_JWT", JWT)
        .env("SY_DRIVER", DRIVER)
        .env("SY_HOST", HOST)
        .env("SWITCHYARD_LOG", "trace")
        .recorder("secret = \"${env:SY_DRIVER}\"")
        .raw("[[hosts]]\nid = \"s-01\"\ndriver = \"recorder\"\nconfig = { token = \"${env:SY_HOST}\" }\n")
        .raw("[auth]\njwt_hs256_secret = \"${env:SY_JWT}\"\n");
    let mut rig = Rig::new(opts);
    rig.policy(
        "leak",
        "version: 1\nname: leak\nenabled: true\ntrigger_group: {triggers: [{kind: s.leak}]}\n\
         targets: [{selector: s-01}]\n\
         actions: [{capability: effect, verb: apply, driver: recorder, params: {ms: 0, tag: x, misbehave: leak, secret: \"{{ $.data.s }}\"}}]\n",
    );
    rig.policy(
        "plain",
        "version: 1\nname: plain\nenabled: true\ntrigger_group: {triggers: [{kind: s.plain}]}\n\
         targets: [{selector: h-00}]\n\
         actions: [{capability: effect, verb: apply, driver: recorder, params: {ms: 0, tag: p}}]\n",
    );
    // Every NATS message while the test runs.
    let watcher = async_nats::connect(rig.nats.url()).await.unwrap();
    let mut all = watcher.subscribe(">").await.unwrap();
    rig.start().await;

    let out = Command::new(bin("switchyard"))
        .args([
            "token", "issue", "--role", "admin", "--ttl", "10m", "--config",
        ])
        .arg(rig.path("switchyard.toml"))
        .env("SY_JWT", JWT)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let js = rig.publisher().await;
    for (i, kind) in ["s.leak", "s.plain", "s.leak"].iter().enumerate() {
        let ev = serde_json::json!({"id": format!("ev-{i}"), "kind": kind, "host": "s-01",
                                    "data": {"n": i.to_string(), "s": EVENT}});
        js.publish(
            &format!("switchyard.events.{kind}"),
            ev.to_string().into_bytes(),
        )
        .await
        .unwrap();
    }
    assert!(
        rig.settle(3, Duration::from_secs(60)).await,
        "{}",
        rig.log()
    );

    // Use the API as an operator would, state changes included (audited).
    let mut answers = String::new();
    for (method, path) in [
        ("POST", "/api/policies/plain/disable"),
        ("POST", "/api/policies/plain/enable"),
        ("GET", "/api/runs?limit=100"),
        ("GET", "/api/hosts"),
        ("GET", "/api/hosts/s-01"),
        ("GET", "/api/hosts/s-01/capabilities"),
        ("GET", "/api/hosts/s-01/inventory"),
        ("POST", "/api/hosts/s-01/inventory/refresh"),
        ("GET", "/api/policies"),
        ("GET", "/api/policies/leak"),
        ("GET", "/api/directory"),
        ("GET", "/metrics"),
        ("GET", "/readyz"),
    ] {
        let (status, text) = call(rig.api, method, path, &token);
        assert!(status < 500 || status == 503, "{method} {path}: {text}");
        answers.push_str(&text);
    }
    let (_, runs) = call(rig.api, "GET", "/api/runs?policy=leak", &token);
    assert!(
        runs.contains("failed on purpose; the secret is ***"),
        "the driver did return the secret, redacted: {runs}"
    );
    assert!(
        runs.contains("got a secret param: ***") && runs.contains(r#""secret":"***""#),
        "the driver got the event's secret and echoed it; the ledger keeps it masked: {runs}"
    );
    for run_id in runs
        .split("\"id\":\"")
        .skip(1)
        .filter_map(|s| s.get(..36))
        .filter(|s| s.chars().nth(8) == Some('-'))
    {
        answers.push_str(&call(rig.api, "GET", &format!("/api/runs/{run_id}"), &token).1);
    }
    assert_eq!(leaks(&answers), Vec::<&str>::new(), "in an API answer");

    // NATS: run notifications, policy notices, dead letters, everything.
    let mut messages = 0;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), all.next()).await {
        messages += 1;
        let text = String::from_utf8_lossy(&m.payload);
        // The event itself, published and delivered to the consumer.
        let the_event = text.contains(r#""kind":"s."#) && text.contains(r#""id":"ev-"#);
        if !the_event {
            assert_eq!(leaks(&text), Vec::<&str>::new(), "on {}: {text}", m.subject);
        }
    }
    assert!(messages > 0, "the watcher saw the traffic");

    rig.stop().await;
    let log = rig.log();
    assert!(log.contains("TRACE"), "the log is at trace level");
    assert!(
        log.contains("leaking the driver secret ***") && log.contains("got a secret param: ***"),
        "the adapter's stderr reached the log, redacted"
    );
    let leaked: Vec<String> = log
        .lines()
        .filter(|l| !leaks(l).is_empty())
        .map(|l| l.chars().take(400).collect())
        .collect();
    assert!(leaked.is_empty(), "in the log:\n{}", leaked.join("\n"));
    for file in ["ledger.db", "ledger.db-wal"] {
        let bytes = std::fs::read(rig.path(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(
            leaks(&text),
            Vec::<&str>::new(),
            "in {file} (ledger, audit, transcripts)"
        );
    }
    println!(
        "log {} bytes, {messages} NATS messages, {} bytes of API answers: no canary",
        log.len(),
        answers.len()
    );
}

/// With `engine.idempotency_secret` set, the idempotency window over a
/// secret param holds across a restart: the same secret again is
/// deduplicated, another secret runs, and no key in the ledger is a plain
/// hash of the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_idempotency_secret_keeps_the_window_across_restarts() {
    let opts = RigOptions::new(Backend::Sqlite, 1)
        .env("SY_IDEM", "idempotency-key-for-every-instance")
        .engine("idempotency_secret = \"${env:SY_IDEM}\"");
    let mut rig = Rig::new(opts);
    rig.policy(
        "rotate",
        "version: 1\nname: rotate\nenabled: true\ntrigger_group: {triggers: [{kind: s.rotate}]}\n\
         targets: [{selector: h-00}]\n\
         actions: [{capability: effect, verb: apply, driver: recorder, params: {ms: 0, tag: r, secret: \"{{ $.data.s }}\"}}]\n\
         windows: {idempotency: 1h}\n",
    );
    let publish = |rig: &Rig, id: &'static str, secret: &'static str| {
        let url = rig.nats.url();
        async move {
            let js = switchyard_system_tests::nats::Js::connect(&url).await;
            let ev = serde_json::json!({"id": id, "kind": "s.rotate", "host": "h-00", "data": {"s": secret}});
            js.publish_with_id(
                "switchyard.events.s.rotate",
                ev.to_string().into_bytes(),
                id,
            )
            .await
            .expect("published");
        }
    };
    rig.start().await;
    publish(&rig, "r-1", "canary-rotate-alpha").await;
    assert!(
        rig.settle(1, Duration::from_secs(30)).await,
        "{}",
        rig.log()
    );
    rig.stop().await;
    rig.start().await;
    publish(&rig, "r-2", "canary-rotate-alpha").await;
    publish(&rig, "r-3", "canary-rotate-beta").await;
    assert!(
        rig.settle(3, Duration::from_secs(30)).await,
        "{}",
        rig.log()
    );
    let runs = rig.ledger().await.runs().await;
    let status = |event: &str| {
        runs.iter()
            .find(|r| r.event_id == event)
            .map(|r| r.status.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        (status("r-1"), status("r-2"), status("r-3")),
        (
            "succeeded".into(),
            "deduplicated".into(),
            "succeeded".into()
        ),
        "{runs:?}"
    );
    rig.stop().await;
    for file in ["ledger.db", "ledger.db-wal"] {
        let text = String::from_utf8_lossy(&std::fs::read(rig.path(file)).unwrap_or_default())
            .into_owned();
        assert!(!text.contains("canary-rotate"), "{file} holds a secret");
    }
}
