//! Hot reload: a file of the watched policy directory changes → the new
//! version is the one the engine evaluates. A real `switchyard serve` (the
//! binary this bench builds), a real nats-server, SQLite, a directory of
//! 100 policy files; one file is edited per round and the engine's active
//! version is read from `/metrics` (`switchyard_policy_active_version`).
//!
//! `cargo bench -p switchyard-cli --bench policy_reload`
//! (`SWITCHYARD_BENCH_ROUNDS`, default 100; the debounce is 100 ms).
//!
//! Reported: file write → active, and the same minus the debounce delay.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use switchyard_test_support::NatsServer;

const FILES: usize = 100;
const DEBOUNCE_MS: u64 = 100;

fn policy(i: usize, word: &str) -> String {
    format!(
        "version: 1\nname: p{i:03}\nenabled: true\ntrigger_group: {{ triggers: [ {{ kind: bench.p{i:03} }} ] }}\ntargets: [ {{ selector: lab-01 }} ]\nactions: [ {{ capability: command.run, verb: run, params: {{ argv: [\"echo\", \"{word}\"] }} }} ]\nwindows: {{ idempotency: 1m }}\n"
    )
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

fn active_version(port: u16, name: &str) -> Option<i64> {
    let text = get(port, "/metrics")?;
    let prefix = format!("switchyard_policy_active_version{{policy=\"{name}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as i64)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let rounds: usize = std::env::var("SWITCHYARD_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let nats = NatsServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let port = switchyard_test_support::free_port();
    let drivers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../drivers");
    std::fs::create_dir_all(d.join("policies")).unwrap();
    for i in 0..FILES {
        std::fs::write(d.join(format!("policies/p{i:03}.yaml")), policy(i, "v1")).unwrap();
    }
    std::fs::write(
        d.join("switchyard.toml"),
        format!(
            "[database]\nurl = \"sqlite://ledger.db?mode=rwc\"\n[nats]\nurl = \"{}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n[drivers]\npaths = [\"{}\"]\n[policies]\ndir = \"policies\"\ndebounce = \"{DEBOUNCE_MS}ms\"\n[[hosts]]\nid = \"lab-01\"\ndriver = \"exec\"\n",
            nats.url(),
            drivers.display()
        ),
    )
    .unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--config"])
        .arg(d.join("switchyard.toml"))
        .env("SWITCHYARD_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start switchyard serve");
    let started = Instant::now();
    while active_version(port, "p000") != Some(1) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("policy_reload: {FILES} policy files, debounce {DEBOUNCE_MS} ms, {rounds} edits");
    let mut total = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let i = round % FILES;
        let name = format!("p{i:03}");
        // Let the previous round's last events drain, so no late event of
        // it carries this round's change in early.
        std::thread::sleep(Duration::from_millis(3 * DEBOUNCE_MS));
        let expected = active_version(port, &name).unwrap_or(0) + 1;
        let t0 = Instant::now();
        std::fs::write(
            d.join(format!("policies/{name}.yaml")),
            policy(i, &format!("round-{round}")),
        )
        .unwrap();
        while active_version(port, &name) != Some(expected) {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{name} never became version {expected}"
            );
            // Each poll reads the store (`/metrics`); polling harder than
            // this measures the polling.
            std::thread::sleep(Duration::from_millis(5));
        }
        total.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    // serve's own view: from the debounced change to the engine holding it.
    if let Some(metrics) = get(port, "/metrics") {
        for l in metrics
            .lines()
            .filter(|l| l.starts_with("switchyard_policy_reload"))
        {
            println!("  {l}");
        }
    }
    let _ = serve.kill();
    let _ = serve.wait();
    total.sort_by(f64::total_cmp);
    let beyond: Vec<f64> = total.iter().map(|t| t - DEBOUNCE_MS as f64).collect();
    println!("                         p50        p90        p99        max   (ms)");
    for (label, v) in [("write → active", &total), ("beyond the debounce", &beyond)] {
        println!(
            "{label:<20} {:>9.1}  {:>9.1}  {:>9.1}  {:>9.1}",
            percentile(v, 0.5),
            percentile(v, 0.9),
            percentile(v, 0.99),
            v[v.len() - 1]
        );
    }
}
