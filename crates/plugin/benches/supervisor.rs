//! An execute round trip through the supervisor to a trivial adapter: what
//! switchyard itself adds to every action (serialize, pipe, multiplex, decode).

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;
use switchyard_plugin::protocol::Target;
use switchyard_plugin::supervisor::{AdapterSpec, HostSpec, Supervisor, SupervisorOptions};

fn roundtrip(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sup = Supervisor::new(
        SupervisorOptions::default(),
        vec![AdapterSpec {
            driver: "echo".into(),
            argv: vec![env!("CARGO_BIN_EXE_switchyard-echo-adapter").into()],
            cwd: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            instances: 1,
            driver_config: json!({}),
        }],
    );
    let host = HostSpec {
        id: "h1".into(),
        address: Some("127.0.0.1".into()),
        ..HostSpec::default()
    };
    let target = Target {
        target_type: "host".into(),
        id: "h1".into(),
    };
    let params = json!({"argv": ["true"], "reason": "bench"});
    let once = || {
        rt.block_on(sup.execute(
            "echo",
            &host,
            "run-1",
            target.clone(),
            "command.run",
            "run",
            params.clone(),
            "key",
            Duration::from_secs(10),
            &[],
        ))
    };
    assert!(once().result.unwrap().ok, "the adapter answers");
    c.bench_function("supervisor/execute_roundtrip", |b| {
        b.iter(|| black_box(once().result.unwrap().ok))
    });
    rt.block_on(sup.shutdown());

    // The floor on this machine, measured in the same run: one JSON line
    // through `cat` and back over the same kind of pipes, no protocol at all.
    let (child, mut stdin, mut stdout) = rt.block_on(async {
        let mut child = tokio::process::Command::new("cat")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("cat");
        let stdin = child.stdin.take().unwrap();
        let stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
        (child, stdin, stdout)
    });
    let line =
        br#"{"jsonrpc":"2.0","id":1,"result":{"ok":true,"effects":[],"output":"{}"}}"#.to_vec();
    let mut buf = String::new();
    c.bench_function("supervisor/raw_pipe_pingpong_floor", |b| {
        b.iter(|| {
            rt.block_on(async {
                use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
                stdin.write_all(&line).await.unwrap();
                stdin.write_all(b"\n").await.unwrap();
                buf.clear();
                stdout.read_line(&mut buf).await.unwrap();
            });
            black_box(buf.len())
        })
    });
    drop(child); // kill_on_drop
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
