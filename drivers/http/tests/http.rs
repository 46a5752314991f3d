//! The http driver through the supervisor against a real HTTP server on loopback.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_plugin::protocol::{ExecuteResult, Severity, Target};
use switchyard_plugin::supervisor::{
    AdapterSpec, CallError, HostSpec, Outcome, Supervisor, SupervisorOptions,
};

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// A real HTTP/1.1 server: `/echo` returns the request as JSON, `/status/N`
/// answers N, `/slow` waits 10 s, `/endless` sends a body without end,
/// anything else answers 200 `ok`.
fn serve() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.is_empty() {
                    return;
                }
                let mut parts = line.split_whitespace();
                let (method, target) = (
                    parts.next().unwrap_or("").to_owned(),
                    parts.next().unwrap_or("").to_owned(),
                );
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let seen = Seen {
                    method,
                    target: target.clone(),
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                log.lock().unwrap().push(seen.clone());
                if target == "/endless" {
                    // A body that never ends: only the reader's limit stops it.
                    let _ = write!(stream, "HTTP/1.1 200 X\r\nconnection: close\r\n\r\n");
                    let chunk = vec![b'z'; 64 * 1024];
                    while stream.write_all(&chunk).is_ok() {}
                    return;
                }
                let (status, text) = if target.contains("/echo") {
                    (200, json!({"method": seen.method, "target": seen.target, "headers": seen.headers, "body": seen.body}).to_string())
                } else if let Some(code) = target.strip_prefix("/status/") {
                    (code.parse().unwrap(), "status".to_owned())
                } else if target == "/slow" {
                    std::thread::sleep(Duration::from_secs(10));
                    (200, "late".to_owned())
                } else {
                    (200, "ok".to_owned())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
            });
        }
    });
    (addr, seen)
}

fn supervisor() -> Supervisor {
    Supervisor::new(
        SupervisorOptions {
            cancel_grace: Duration::from_secs(2),
            ..SupervisorOptions::default()
        },
        vec![AdapterSpec {
            driver: "http".into(),
            argv: vec![env!("CARGO_BIN_EXE_switchyard-driver-http").into()],
            cwd: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            instances: 1,
            driver_config: json!({}),
        }],
    )
}

fn host(address: &str, config: Value) -> HostSpec {
    HostSpec {
        id: "api".into(),
        address: Some(address.into()),
        config,
        ..HostSpec::default()
    }
}

fn target() -> Target {
    Target {
        target_type: "host".into(),
        id: "api".into(),
    }
}

async fn call(
    sup: &Supervisor,
    h: &HostSpec,
    verb: &str,
    params: Value,
    timeout: Duration,
) -> Outcome<ExecuteResult> {
    sup.execute(
        "http",
        h,
        "run-1",
        target(),
        "http.request",
        verb,
        params,
        "k",
        timeout,
        &[],
    )
    .await
}

#[tokio::test]
async fn get_with_query_and_secret_headers() {
    let (addr, seen) = serve();
    let sup = supervisor();
    let secret = std::env::var("CARGO_PKG_NAME").unwrap();
    let h = host(
        &format!("{addr}/api"),
        json!({"headers": {"authorization": "${env:CARGO_PKG_NAME}"}}),
    );
    let out = call(
        &sup,
        &h,
        "get",
        json!({"path": "/echo", "query": {"a": "b c", "n": 5}, "headers": {"x-run": "1"}}),
        Duration::from_secs(10),
    )
    .await;
    let r = out.result.unwrap();
    assert!(r.ok, "{r:?}");
    let req = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(req.method, "GET");
    assert_eq!(req.target, "/api/echo?a=b+c&n=5");
    assert!(
        req.headers
            .contains(&("authorization".into(), secret.clone())),
        "the secret was sent: {:?}",
        req.headers
    );
    assert!(req.headers.contains(&("x-run".into(), "1".into())));
    let output = r.output.unwrap();
    assert!(output.starts_with("200\n"), "{output}");
    assert!(
        !output.contains(&secret) && output.contains("***"),
        "the echoed secret is redacted: {output}"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn post_json_and_expected_status() {
    let (addr, seen) = serve();
    let sup = supervisor();
    let h = host(&addr, json!({}));
    let r = call(
        &sup,
        &h,
        "post",
        json!({"path": "/echo", "body": {"vm": 100}}),
        Duration::from_secs(10),
    )
    .await
    .result
    .unwrap();
    assert!(r.ok);
    let req = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(req.body, r#"{"vm":100}"#);
    assert!(
        req.headers
            .contains(&("content-type".into(), "application/json".into()))
    );

    let r = call(
        &sup,
        &h,
        "delete",
        json!({"path": "/status/404"}),
        Duration::from_secs(10),
    )
    .await
    .result
    .unwrap();
    assert!(!r.ok);
    assert!(r.reason.unwrap().contains("answered 404"));
    let r = call(
        &sup,
        &h,
        "put",
        json!({"path": "/status/404", "expect_status": [200, 404]}),
        Duration::from_secs(10),
    )
    .await
    .result
    .unwrap();
    assert!(r.ok);
    // 503 without an explicit expectation is transient: switchyard may retry idempotent verbs.
    let e = call(
        &sup,
        &h,
        "get",
        json!({"path": "/status/503"}),
        Duration::from_secs(10),
    )
    .await
    .result
    .unwrap_err();
    assert!(e.is_transient(), "{e}");
    sup.shutdown().await;
}

#[tokio::test]
async fn an_endless_body_is_read_up_to_its_limit() {
    let (addr, _) = serve();
    let sup = supervisor();
    let out = call(
        &sup,
        &host(&addr, json!({})),
        "get",
        json!({"path": "/endless"}),
        Duration::from_secs(30),
    )
    .await;
    let r = out
        .result
        .expect("answered without waiting for the end of the body");
    let output = r.output.unwrap();
    assert!(
        output.ends_with("[truncated]"),
        "{}",
        &output[output.len() - 40..]
    );
    assert!(output.len() < 70 * 1024, "{} bytes kept", output.len());
    sup.shutdown().await;
}

#[tokio::test]
async fn deadline_cancels_a_slow_request() {
    let (addr, _seen) = serve();
    let sup = supervisor();
    let out = call(
        &sup,
        &host(&addr, json!({})),
        "get",
        json!({"path": "/slow"}),
        Duration::from_millis(700),
    )
    .await;
    assert!(
        matches!(out.result, Err(CallError::Timeout { killed: false, .. })),
        "{:?}",
        out.result
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn dry_run_checks_url_and_reachability_without_sending() {
    let (addr, seen) = serve();
    let sup = supervisor();
    let dr = |h: HostSpec| {
        let sup = sup.clone();
        async move {
            sup.dry_run(
                "http",
                &h,
                "run-1",
                target(),
                "http.request",
                "post",
                json!({"path": "/echo"}),
                Duration::from_secs(10),
                &[],
            )
            .await
            .result
            .unwrap()
        }
    };
    let r = dr(host(&addr, json!({}))).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.plan, vec![format!("POST {addr}/echo")]);
    assert!(
        seen.lock().unwrap().is_empty(),
        "a dry-run sends no request"
    );

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = dr(host(&format!("http://{closed}"), json!({}))).await;
    assert!(!r.ok);
    assert_eq!(r.severity, Severity::Error);
    let r = dr(host("ftp://example", json!({}))).await;
    assert!(!r.ok && r.preconditions[0].name == "url");
    sup.shutdown().await;
}
