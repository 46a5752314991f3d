//! Invariants over arbitrary input: nothing panics, selectors round-trip, and
//! the direct JSONPath walk agrees with jsonpath-rust.

use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use switchyard_spec::event::{self, Limits};
use switchyard_spec::jsonpath::JsonPath;
use switchyard_spec::policy::{self, Format};
use switchyard_spec::selector;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1.0e6f64..1.0e6).prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "$.host",
            "{{ $.host }}",
            "pve-[01:04]",
            "10m",
            "ALL",
            "eq",
            "* * * * *"
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "version",
                    "name",
                    "trigger_group",
                    "triggers",
                    "kind",
                    "schedule",
                    "tz",
                    "where",
                    "logic",
                    "within",
                    "conditions",
                    "path",
                    "op",
                    "value",
                    "all",
                    "any",
                    "not",
                    "targets",
                    "selector",
                    "actions",
                    "capability",
                    "verb",
                    "params",
                    "timeout",
                    "windows",
                    "group_by",
                    "suppression",
                    "x",
                ])
                .prop_map(str::to_owned),
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn selector_parser_never_panics(text in "\\PC{0,40}") {
        let _ = selector::parse(&text);
    }

    #[test]
    fn selector_parser_never_panics_on_grammar_soup(text in "[a-z0-9,!/:@&=~?*\\[\\]\\-\". {}$]{0,40}") {
        if let Ok(sel) = selector::parse(&text) {
            // Whatever parses renders to text that parses to the same rendering.
            let rendered = sel.to_string();
            let again = selector::parse(&rendered).unwrap_or_else(|e| panic!("{text:?} rendered {rendered:?}: {e}"));
            prop_assert_eq!(again.to_string(), rendered);
            let _ = sel.expand_text();
        }
    }

    #[test]
    fn policy_loaders_never_panic(text in "\\PC{0,200}") {
        for format in [Format::Yaml, Format::Json, Format::Toml] {
            let _ = policy::validate_text(&text, format, None);
        }
    }

    #[test]
    fn policy_walker_never_panics(doc in json_value()) {
        let c = policy::validate_value(&doc, None);
        // A document is either compiled or blocked, never both or neither.
        prop_assert_eq!(c.ir.is_some(), !c.is_blocked());
    }

    #[test]
    fn event_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = event::parse(&bytes, Limits::default());
    }

    #[test]
    fn event_parser_never_panics_on_json(doc in json_value()) {
        let _ = event::parse(doc.to_string().as_bytes(), Limits::default());
    }

    #[test]
    fn direct_jsonpath_agrees_with_jsonpath_rust(doc in json_value(), steps in prop::collection::vec(prop_oneof![
        prop::sample::select(vec!["version", "name", "kind", "x", "all", "value"]).prop_map(|k| format!(".{k}")),
        prop::sample::select(vec!["version", "na me", "x"]).prop_map(|k| format!("['{k}']")),
        (0usize..4).prop_map(|i| format!("[{i}]")),
    ], 0..4)) {
        let path = format!("${}", steps.concat());
        let p = JsonPath::parse(&path).unwrap();
        prop_assert!(p.is_direct(), "{} should take the direct walk", path);
        prop_assert_eq!(p.select(&doc), p.select_general(&doc));
    }
}

/// A generated host-and-items selector with the set it must expand to.
fn selector_model() -> impl Strategy<Value = (String, BTreeSet<String>)> {
    let host_term = prop_oneof![
        "[a-z]{1,4}-[0-9]{2}".prop_map(|h| (h.clone(), vec![h])),
        ("[a-z]{1,3}", 0u64..20, 0u64..6, 1u64..4, any::<bool>()).prop_map(
            |(p, a, len, step, pad)| {
                let b = a + len;
                let (sa, sb) = if pad {
                    (format!("{a:03}"), format!("{b:03}"))
                } else {
                    (a.to_string(), b.to_string())
                };
                let members = (a..=b)
                    .step_by(step as usize)
                    .map(|n| {
                        if pad {
                            format!("{p}{n:03}")
                        } else {
                            format!("{p}{n}")
                        }
                    })
                    .collect();
                let text = if step == 1 {
                    format!("{p}[{sa}:{sb}]")
                } else {
                    format!("{p}[{sa}:{sb}:{step}]")
                };
                (text, members)
            }
        ),
    ];
    let item_term = prop_oneof![
        "[a-z]{1,3}[0-9]{0,2}".prop_map(|i| (i.clone(), vec![i])),
        ("[A-Z]{0,2}", 0u64..50, 0u64..5).prop_map(|(p, a, len)| {
            let b = a + len;
            (
                format!("{p}{a}-{p}{b}"),
                (a..=b).map(|n| format!("{p}{n}")).collect(),
            )
        }),
    ];
    (
        prop::collection::vec(host_term, 1..4),
        prop::collection::vec(any::<bool>(), 4),
        prop::option::of(prop::collection::vec(item_term, 1..4)),
    )
        .prop_map(|(hosts, excl, items)| {
            let mut parts = Vec::new();
            let mut host_set: Vec<String> = Vec::new();
            let mut excluded = BTreeSet::new();
            for (i, (text, members)) in hosts.iter().enumerate() {
                // The first term always includes, so the selector is never only exclusions.
                if i > 0 && excl[i] {
                    parts.push(format!("!{text}"));
                    excluded.extend(members.iter().cloned());
                } else {
                    parts.push(text.clone());
                    for m in members {
                        if !host_set.contains(m) {
                            host_set.push(m.clone());
                        }
                    }
                }
            }
            host_set.retain(|h| !excluded.contains(h));
            let mut text = parts.join(",");
            let mut want = BTreeSet::new();
            match items {
                None => want.extend(host_set.iter().cloned()),
                Some(items) => {
                    text.push_str("/vm:");
                    text.push_str(
                        &items
                            .iter()
                            .map(|(t, _)| t.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                    );
                    for h in &host_set {
                        for (_, ids) in &items {
                            want.extend(ids.iter().map(|id| format!("{h}/vm:{id}")));
                        }
                    }
                }
            }
            (text, want)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn selector_expansion_round_trips((text, want) in selector_model()) {
        let sel = selector::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let show = |t: &selector::TargetRef| if t.target_type == selector::HOST_TYPE { t.host.clone() } else { format!("{}/{}:{}", t.host, t.target_type, t.id) };
        let got: BTreeSet<String> = sel.expand_text().expect("text-only").iter().map(show).collect();
        prop_assert_eq!(&got, &want, "{}", text);
        // The canonical rendering expands to the same set.
        let rendered = selector::parse(&sel.to_string()).unwrap();
        let again: BTreeSet<String> = rendered.expand_text().unwrap().iter().map(show).collect();
        prop_assert_eq!(again, want);
    }
}
