//! Format and spelling independence of the IR and `spec_hash`.
//!
//! A generated policy is spelled three times — YAML, JSON and TOML, each with
//! its own key order and its own way of writing equal values (`60m`/`1h`,
//! `120`/`120.0`, extra spaces in cron and selectors) — and all three must
//! compile to byte-identical IR with the same hash.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use switchyard_spec::duration::format_ms;
use switchyard_spec::policy::{self, Format};

/// A tiny deterministic generator for spelling and ordering choices.
struct Choices(u64);

impl Choices {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn shuffled<'a>(&mut self, map: &'a Map<String, Value>) -> Vec<(&'a String, &'a Value)> {
        let mut entries: Vec<_> = map.iter().collect();
        for i in (1..entries.len()).rev() {
            let j = self.next(i + 1);
            entries.swap(i, j);
        }
        entries
    }
}

/// Replace `{"$dur": ms}`, `{"$cron": s}`, `{"$sel": s}` markers and integers with one of their spellings.
fn spell(v: &Value, c: &mut Choices) -> Value {
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("$dur") => {
            let ms = m["$dur"].as_u64().unwrap();
            let mut options = vec![format_ms(ms), format!("{ms}ms")];
            if ms == 0 {
                options.push("0".into());
            }
            for (unit, f) in [("s", 1000), ("m", 60_000), ("h", 3_600_000)] {
                if ms % f == 0 {
                    options.push(format!("{}{unit}", ms / f));
                }
            }
            Value::String(options.swap_remove(c.next(options.len())))
        }
        Value::Object(m) if m.len() == 1 && m.contains_key("$cron") => {
            let s = m["$cron"].as_str().unwrap();
            let sep = ["  ", "\t", " "][c.next(3)];
            Value::String(format!(
                "{}{}",
                if c.next(2) == 0 { " " } else { "" },
                s.split(' ').collect::<Vec<_>>().join(sep)
            ))
        }
        Value::Object(m) if m.len() == 1 && m.contains_key("$sel") => {
            let s = m["$sel"].as_str().unwrap();
            Value::String(if c.next(2) == 0 {
                s.replace(',', ", ")
            } else {
                s.to_owned()
            })
        }
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), spell(v, c))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| spell(v, c)).collect()),
        Value::Number(n) if n.is_i64() && c.next(2) == 0 => {
            Value::Number(serde_json::Number::from_f64(n.as_i64().unwrap() as f64).unwrap())
        }
        other => other.clone(),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap();
            if f.fract() == 0.0 {
                format!("{f:.1}")
            } else {
                n.to_string()
            }
        }
        other => other.to_string(),
    }
}

fn emit_json(v: &Value, c: &mut Choices) -> String {
    match v {
        Value::Object(m) => {
            let parts: Vec<String> = c
                .shuffled(m)
                .into_iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), emit_json(v, c)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter()
                .map(|v| emit_json(v, c))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => scalar(other),
    }
}

fn emit_toml_inline(v: &Value, c: &mut Choices) -> String {
    match v {
        Value::Object(m) => {
            let parts: Vec<String> = c
                .shuffled(m)
                .into_iter()
                .map(|(k, v)| format!("{} = {}", Value::String(k.clone()), emit_toml_inline(v, c)))
                .collect();
            format!("{{ {} }}", parts.join(", "))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter()
                .map(|v| emit_toml_inline(v, c))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => scalar(other),
    }
}

fn emit_toml(v: &Value, c: &mut Choices) -> String {
    let m = v.as_object().unwrap();
    let mut out = String::new();
    let mut tables = String::new();
    for (k, v) in c.shuffled(m) {
        match v {
            // Top-level tables as [headers] half the time, inline otherwise.
            Value::Object(inner) if c.next(2) == 0 => {
                tables.push_str(&format!("\n[{}]\n", Value::String(k.clone())));
                for (ik, iv) in c.shuffled(inner) {
                    tables.push_str(&format!(
                        "{} = {}\n",
                        Value::String(ik.clone()),
                        emit_toml_inline(iv, c)
                    ));
                }
            }
            _ => out.push_str(&format!(
                "{} = {}\n",
                Value::String(k.clone()),
                emit_toml_inline(v, c)
            )),
        }
    }
    out + &tables
}

fn emit_yaml(v: &Value, indent: usize, c: &mut Choices, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in c.shuffled(m) {
                let key = if k.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                    && c.next(2) == 0
                {
                    k.clone()
                } else {
                    Value::String(k.clone()).to_string()
                };
                match v {
                    Value::Object(inner) if !inner.is_empty() => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        emit_yaml(v, indent + 2, c, out);
                    }
                    Value::Array(items) if !items.is_empty() => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        for item in items {
                            // Flow style (JSON) items: valid YAML 1.2 inside a block sequence.
                            out.push_str(&format!("{pad}  - {}\n", emit_json(item, c)));
                        }
                    }
                    other => out.push_str(&format!("{pad}{key}: {}\n", emit_json(other, c))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", emit_json(other, c))),
    }
}

fn render(model: &Value, format: Format, seed: u64) -> String {
    let mut c = Choices(seed | 1);
    let doc = spell(model, &mut c);
    match format {
        Format::Json => emit_json(&doc, &mut c),
        Format::Toml => emit_toml(&doc, &mut c),
        Format::Yaml => {
            let mut out = String::from("# generated\n");
            emit_yaml(&doc, 0, &mut c, &mut out);
            out
        }
    }
}

fn compile_one(text: &str, format: Format) -> (String, String) {
    let results = policy::compile_text(text, format);
    assert_eq!(results.len(), 1);
    let r = &results[0];
    let ir =
        r.ir.as_ref()
            .unwrap_or_else(|| panic!("{format:?} did not compile: {:?}\n{text}", r.findings));
    (ir.to_canonical_string(), r.spec_hash.clone().unwrap())
}

fn scalar_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-1000i64..1000).prop_map(Value::from),
        (-400i64..400).prop_map(|n| json!(n as f64 / 8.0)),
        "[a-z0-9 _.-]{0,12}".prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
    ]
}

fn leaf_strategy() -> impl Strategy<Value = Value> {
    let path = prop::sample::select(vec![
        "$.data.charge",
        "$.host",
        "$.data.ups",
        "$.data['labels'].severity",
        "$.data.list[0]",
        "$..name",
    ]);
    let op_value = prop_oneof![
        (
            prop::sample::select(vec!["eq", "ne", "contains"]),
            scalar_strategy()
        )
            .prop_map(|(o, v)| (o, Some(v))),
        (
            prop::sample::select(vec!["lt", "le", "gt", "ge"]),
            prop_oneof![
                (-1000i64..1000).prop_map(Value::from),
                "[a-z]{1,6}".prop_map(Value::from)
            ]
        )
            .prop_map(|(o, v)| (o, Some(v))),
        (
            prop::sample::select(vec!["in", "not_in"]),
            prop::collection::vec(scalar_strategy(), 0..4)
        )
            .prop_map(|(o, v)| (o, Some(Value::Array(v)))),
        (
            prop::sample::select(vec!["starts_with", "ends_with"]),
            "[a-z]{0,5}"
        )
            .prop_map(|(o, v)| (o, Some(Value::from(v)))),
        prop::sample::select(vec!["^ups[0-9]+$", "(?i)crit", "a|b"])
            .prop_map(|v| ("matches", Some(Value::from(v)))),
        prop::sample::select(vec!["exists", "absent"]).prop_map(|o| (o, None)),
    ];
    (path, op_value).prop_map(|(path, (op, value))| {
        let mut m = json!({"path": path, "op": op});
        if let Some(v) = value {
            m["value"] = v;
        }
        m
    })
}

fn condition_strategy() -> impl Strategy<Value = Value> {
    leaf_strategy().prop_recursive(3, 12, 3, |inner| {
        (
            prop::sample::select(vec!["all", "any", "not"]),
            prop::collection::vec(inner, 0..3),
        )
            .prop_map(|(k, list)| json!({ k: list }))
    })
}

fn params_strategy() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        scalar_strategy(),
        Just(json!("{{ $.data.ups }} on battery")),
        Just(json!("{{ $.data.timeout }}")),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .prop_map(|v| {
        if v.is_object() {
            v
        } else {
            json!({ "value": v })
        }
    })
}

fn duration_strategy() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        0u64, 250, 30_000, 600_000, 3_600_000, 5_400_000, 86_400_000,
    ])
    .prop_map(|ms| json!({ "$dur": ms }))
}

fn policy_strategy() -> impl Strategy<Value = Value> {
    let trigger = prop_oneof![
        (
            prop::sample::select(vec![
                "ups.on_battery",
                "ups.*",
                "alertmanager.>",
                "switch.link_flap"
            ]),
            prop::collection::vec(condition_strategy(), 0..2)
        )
            .prop_map(|(k, w)| if w.is_empty() {
                json!({"kind": k})
            } else {
                json!({"kind": k, "where": w})
            }),
        (
            prop::sample::select(vec!["*/15 * * * *", "30 2 * * *", "0 0 1 * MON"]),
            prop::sample::select(vec!["UTC", "Europe/Berlin"])
        )
            .prop_map(|(s, tz)| json!({"schedule": {"$cron": s}, "tz": tz})),
    ];
    let target = (
        prop::sample::select(vec![
            "pve-[01:04],!pve-03/vm:100-199,!150",
            "web-01,web-02",
            "{{ $.host }}/service:nginx",
            "sw-*/port:1/1-1/24",
            "@role=hypervisor&site=fra/vm?name~\"^db-\"",
        ]),
        any::<bool>(),
    )
        .prop_map(|(s, d)| json!({"selector": {"$sel": s}, "dynamic_resolution": d}));
    let action = (
        prop::sample::select(vec!["vm.power", "service", "command.run"]),
        prop::sample::select(vec!["shutdown", "restart", "run"]),
        params_strategy(),
        prop::option::of(prop::sample::select(vec![1000u64, 60_000, 180_000])),
        prop::sample::select(vec!["stop", "continue"]),
    )
        .prop_map(|(cap, verb, params, timeout, on_error)| {
            let mut a =
                json!({"capability": cap, "verb": verb, "params": params, "on_error": on_error});
            if let Some(t) = timeout {
                a["timeout"] = json!({"$dur": t});
            }
            a
        });
    (
        prop::collection::vec(trigger, 1..3),
        prop::collection::vec(condition_strategy(), 0..4),
        prop::collection::vec(target, 1..3),
        prop::collection::vec(action, 1..3),
        duration_strategy(),
        duration_strategy(),
        -5i64..500,
    )
        .prop_map(
            |(triggers, conditions, targets, actions, sup, idem, priority)| {
                json!({
                    "version": 1,
                    "name": "generated-policy",
                    "priority": priority,
                    "trigger_group": {"logic": "ANY", "triggers": triggers},
                    "conditions": conditions,
                    "targets": targets,
                    "actions": actions,
                    "windows": {"suppression": sup, "idempotency": idem, "group_by": ["$.host"]}
                })
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn yaml_json_toml_compile_to_identical_ir(model in policy_strategy(), seeds in any::<(u64, u64, u64)>()) {
        let (ir_y, hash_y) = compile_one(&render(&model, Format::Yaml, seeds.0), Format::Yaml);
        let (ir_j, hash_j) = compile_one(&render(&model, Format::Json, seeds.1), Format::Json);
        let (ir_t, hash_t) = compile_one(&render(&model, Format::Toml, seeds.2), Format::Toml);
        prop_assert_eq!(&ir_y, &ir_j);
        prop_assert_eq!(&ir_y, &ir_t);
        prop_assert_eq!(&hash_y, &hash_j);
        prop_assert_eq!(&hash_y, &hash_t);
    }
}

const UPS_YAML: &str = include_str!("../../../examples/policies/ups-on-battery-shutdown.yaml");

const UPS_TOML: &str = include_str!("../../../examples/spellings/ups-on-battery-shutdown.toml");

/// The hash of the example is pinned: a change here changes every stored
/// policy's `spec_hash`, so re-recording it is a review event.
const UPS_SPEC_HASH: &str = "a80390db623c4117ea15067080ac737ebffbc38f816efe4b8c1d3332cfdfe99f";

#[test]
fn example_in_two_formats_has_the_pinned_hash() {
    let (ir_y, hash_y) = compile_one(UPS_YAML, Format::Yaml);
    let (ir_t, hash_t) = compile_one(UPS_TOML, Format::Toml);
    assert_eq!(ir_y, ir_t);
    assert_eq!(hash_y, hash_t);
    assert_eq!(hash_y, UPS_SPEC_HASH);
}

#[test]
fn hash_ignores_name_description_enabled_priority_only() {
    let base = policy::compile_text(UPS_YAML, Format::Yaml).remove(0);
    let hash = base.spec_hash.unwrap();
    let renamed = UPS_YAML
        .replace("name: ups-on-battery-shutdown", "name: other-name")
        .replace("priority: 50", "priority: 7")
        .replace("enabled: false", "enabled: true")
        .replace("description: Shut down", "description: Power off");
    assert_eq!(
        policy::compile_text(&renamed, Format::Yaml)[0]
            .spec_hash
            .as_deref(),
        Some(hash.as_str())
    );
    let changed = UPS_YAML.replace("suppression: 10m", "suppression: 11m");
    assert_ne!(
        policy::compile_text(&changed, Format::Yaml)[0]
            .spec_hash
            .as_deref(),
        Some(hash.as_str())
    );
}
