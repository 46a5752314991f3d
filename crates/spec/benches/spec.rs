//! Hot paths of the policy language: compiling many policies (start-up and
//! directory reloads), evaluating conditions (every event, every policy) and
//! filling an action's params (every run).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::Duration;
use switchyard_spec::event::{self, Limits};
use switchyard_spec::placeholder;
use switchyard_spec::policy::{self, Format};
use switchyard_spec::runtime::PolicyRuntime;
use switchyard_spec::selector;

fn policy_doc(i: usize) -> Value {
    json!({
        "version": 1,
        "name": format!("policy-{i}"),
        "priority": i % 200,
        "trigger_group": {"triggers": [
            {"kind": format!("ups.on_battery_{}", i % 50)},
            {"kind": "ups.battery_low", "where": [{"path": "$.data.charge", "op": "lt", "value": 30}]}
        ]},
        "conditions": [
            {"path": "$.data.ups", "op": "in", "value": ["ups1", "ups2"]},
            {"any": [
                {"path": "$.data.charge", "op": "lt", "value": 50},
                {"path": "$.data.runtime_s", "op": "lt", "value": 600}
            ]}
        ],
        "targets": [{"selector": format!("pve-[01:04],!pve-03/vm:{}-{},!150", 100 + i % 50, 120 + i % 50)}],
        "actions": [{"capability": "vm.power", "verb": "shutdown", "driver": "proxmox",
                     "params": {"timeout_s": 120, "reason": "{{ $.data.ups }} on battery"}, "timeout": "3m"}],
        "windows": {"suppression": "10m", "idempotency": "1h", "group_by": ["$.data.ups"]}
    })
}

fn compile(c: &mut Criterion) {
    let docs: Vec<Value> = (0..10_000).map(policy_doc).collect();
    let texts: Vec<String> = docs.iter().map(|d| d.to_string()).collect();
    let mut group = c.benchmark_group("compile");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(docs.len() as u64));
    group.bench_function("10k_policies_from_json_values", |b| {
        b.iter(|| {
            for d in &docs {
                let c = policy::validate_value(black_box(d), None);
                black_box(c.spec_hash);
            }
        })
    });
    group.bench_function("10k_policies_from_json_text", |b| {
        b.iter(|| {
            for t in &texts {
                let c = policy::compile_text(black_box(t), Format::Json);
                black_box(&c[0].spec_hash);
            }
        })
    });
    group.finish();
}

fn evaluate(c: &mut Criterion) {
    let doc = json!({
        "version": 1, "name": "five",
        "trigger_group": {"triggers": [{"kind": "ups.on_battery"}]},
        "conditions": [
            {"path": "$.data.ups", "op": "in", "value": ["ups1", "ups2", "ups3"]},
            {"path": "$.data.charge", "op": "lt", "value": 90},
            {"path": "$.host", "op": "starts_with", "value": "nut-"},
            {"path": "$.severity", "op": "ne", "value": "info"},
            {"path": "$.data.runtime_s", "op": "ge", "value": 60}
        ],
        "targets": [{"selector": "pve-01"}],
        "actions": [{"capability": "vm.power", "verb": "shutdown"}]
    });
    let ir = policy::validate_value(&doc, None).ir.expect("compiles");
    let runtime = PolicyRuntime::from_ir(&ir).expect("runtime");
    let envelope = json!({
        "id": "01937c9e-6b1a-7cc1-9f1e-2f4c2b8d0a11", "kind": "ups.on_battery", "source": "nut://ups1@nut-01",
        "host": "nut-01", "time": "2026-11-23T08:00:00Z", "severity": "warning",
        "data": {"ups": "ups1", "charge": 87, "runtime_s": 1800, "model": "Eaton 5P", "load_pct": 31}
    });
    assert!(runtime.conditions_hold(&envelope));
    c.bench_function("evaluate/5_conditions", |b| {
        b.iter(|| black_box(runtime.conditions_hold(black_box(&envelope))))
    });
    c.bench_function("evaluate/trigger_and_5_conditions", |b| {
        b.iter(|| {
            let t = runtime.matching_triggers(black_box("ups.on_battery"), black_box(&envelope));
            black_box(!t.is_empty() && runtime.conditions_hold(&envelope))
        })
    });
}

fn envelope(c: &mut Criterion) {
    let payload = br#"{"id":"01937c9e-6b1a-7cc1-9f1e-2f4c2b8d0a11","kind":"ups.on_battery","source":"nut://ups1@nut-01","host":"nut-01","time":"2026-11-23T08:00:00Z","severity":"warning","data":{"ups":"ups1","charge":87,"runtime_s":1800}}"#;
    c.bench_function("event/parse_envelope", |b| {
        b.iter(|| black_box(event::parse(black_box(payload), Limits::default()).unwrap()))
    });
    let parsed = event::parse(payload, Limits::default()).unwrap();
    let received = chrono::Utc::now();
    c.bench_function("event/to_envelope", |b| {
        b.iter(|| black_box(black_box(&parsed).to_envelope(received)))
    });
}

fn selectors(c: &mut Criterion) {
    c.bench_function("selector/parse_and_expand_297_ids", |b| {
        b.iter(|| {
            let s = selector::parse(black_box("pve-[01:04],!pve-03/vm:100-199,!150")).unwrap();
            black_box(s.expand_text().unwrap().len())
        })
    });
}

/// An action's params filled for an event: parsed once at load (what the
/// engine does) against parsed on every fill.
fn params(c: &mut Criterion) {
    let params = json!({"argv": ["/usr/local/bin/shed-load", "--ups", "{{ $.data.ups }}", "--charge", "{{ $.data.charge }}"],
                        "timeout_s": 120, "env": {"SITE": "dc1"}});
    let envelope =
        json!({"kind": "ups.on_battery", "host": "nut-01", "data": {"ups": "ups1", "charge": 87}});
    let compiled = placeholder::Params::new(&params);
    c.bench_function("params/fill_parsed_once", |b| {
        b.iter(|| black_box(compiled.fill(black_box(&envelope)).unwrap()))
    });
    c.bench_function("params/parse_and_fill", |b| {
        b.iter(|| {
            let parsed = placeholder::Params::new(black_box(&params));
            black_box(parsed.fill(black_box(&envelope)).unwrap())
        })
    });
}

criterion_group!(benches, compile, evaluate, envelope, selectors, params);
criterion_main!(benches);
