//! The Rust SDK over in-memory pipes: a handler's panic is an error reply, a
//! request is refused past its deadline and stopped at it, and the end of
//! stdin stops what is in flight instead of waiting for it.

use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchyard_plugin::protocol::{ExecuteParams, ExecuteResult, InitializeParams};
use switchyard_plugin::sdk::{self, Adapter, AdapterError, Context};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Requests whose handler was dropped before it finished.
static DROPPED: AtomicUsize = AtomicUsize::new(0);

struct Flag;
impl Drop for Flag {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

struct Test;

impl Adapter for Test {
    const NAME: &'static str = "test";
    const VERSION: &'static str = "0";

    fn initialize(_: InitializeParams) -> Result<Self, AdapterError> {
        Ok(Test)
    }

    async fn execute(
        &self,
        req: ExecuteParams,
        _ctx: Context,
    ) -> Result<ExecuteResult, AdapterError> {
        match req.params["do"].as_str() {
            Some("panic") => panic!("handler bug"),
            Some("sleep") => {
                let flag = Flag;
                tokio::time::sleep(Duration::from_millis(req.params["ms"].as_u64().unwrap())).await;
                std::mem::forget(flag);
                Ok(ExecuteResult {
                    ok: true,
                    effects: vec![],
                    output: Some("slept".into()),
                    reason: None,
                })
            }
            _ => Ok(ExecuteResult {
                ok: true,
                effects: vec![],
                output: None,
                reason: None,
            }),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn execute(id: u64, params: Value, deadline_ms: u64, deadline_at_ms: Option<u64>) -> String {
    let mut p = json!({
        "run_id": format!("r{id}"), "host": {"id": "h"}, "target": {"type": "host", "id": "h"},
        "capability": "c", "verb": "v", "params": params, "idempotency_key": "k",
        "deadline_ms": deadline_ms,
    });
    if let Some(at) = deadline_at_ms {
        p["deadline_at_ms"] = at.into();
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "execute", "params": p}).to_string() + "\n"
}

/// Start the SDK on pipes; returns (stdin writer, stdout lines, the SDK's task).
fn start() -> (
    tokio::io::DuplexStream,
    tokio::io::Lines<BufReader<tokio::io::DuplexStream>>,
    tokio::task::JoinHandle<()>,
) {
    let (stdin_w, stdin_r) = tokio::io::duplex(1 << 16);
    let (stdout_w, stdout_r) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn(sdk::serve_io::<Test, _, _>(stdin_r, stdout_w));
    (stdin_w, BufReader::new(stdout_r).lines(), task)
}

async fn reply(lines: &mut tokio::io::Lines<BufReader<tokio::io::DuplexStream>>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("a reply in time")
        .unwrap()
        .expect("a line");
    serde_json::from_str(&line).unwrap()
}

#[tokio::test]
async fn panics_deadlines_and_the_end_of_stdin() {
    let (mut stdin, mut out, task) = start();
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocol_version\":1,\"driver_config\":{}}}\n")
        .await
        .unwrap();
    assert_eq!(reply(&mut out).await["result"]["name"], "test");

    // A handler that panics is answered; the adapter goes on.
    stdin
        .write_all(execute(2, json!({"do": "panic"}), 5000, None).as_bytes())
        .await
        .unwrap();
    let r = reply(&mut out).await;
    assert_eq!(r["id"], 2);
    assert_eq!(r["error"]["code"], -32603, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("handler bug"),
        "{r}"
    );

    // Received past its deadline: refused, never started.
    stdin
        .write_all(execute(3, json!({"do": "ok"}), 5000, Some(now_ms() - 1000)).as_bytes())
        .await
        .unwrap();
    let r = reply(&mut out).await;
    assert_eq!(
        (r["id"].as_u64(), r["error"]["code"].as_i64()),
        (Some(3), Some(-32003)),
        "{r}"
    );

    // Still running at its deadline (as a time; the budget is longer): stopped.
    stdin
        .write_all(
            execute(
                4,
                json!({"do": "sleep", "ms": 60_000}),
                120_000,
                Some(now_ms() + 300),
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let r = reply(&mut out).await;
    assert_eq!(
        (r["id"].as_u64(), r["error"]["code"].as_i64()),
        (Some(4), Some(-32003)),
        "{r}"
    );
    assert_eq!(
        DROPPED.load(Ordering::SeqCst),
        1,
        "the stopped handler was dropped"
    );

    // The end of stdin stops what is in flight instead of waiting for it.
    stdin
        .write_all(execute(5, json!({"do": "sleep", "ms": 60_000}), 120_000, None).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the SDK returns soon after stdin closes")
        .unwrap();
    assert_eq!(
        DROPPED.load(Ordering::SeqCst),
        2,
        "the request in flight was dropped"
    );
}
