use super::*;
use crate::finding::codes;
use serde_json::json;
use std::collections::BTreeMap;

fn ids(text: &str) -> Vec<String> {
    parse(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .expand_text()
        .unwrap_or_else(|| panic!("{text} is not text-only"))
        .into_iter()
        .map(|t| {
            if t.target_type == HOST_TYPE {
                t.host
            } else {
                format!("{}/{}:{}", t.host, t.target_type, t.id)
            }
        })
        .collect()
}

#[test]
fn text_expansion_table() {
    let cases: &[(&str, &[&str])] = &[
        ("pve-01", &["pve-01"]),
        ("pve-01,pve-02", &["pve-01", "pve-02"]),
        ("pve-01, pve-02 ,pve-01", &["pve-01", "pve-02"]),
        ("pve-[01:04]", &["pve-01", "pve-02", "pve-03", "pve-04"]),
        ("pve-[1:3]", &["pve-1", "pve-2", "pve-3"]),
        ("n[001:010:4].lab", &["n001.lab", "n005.lab", "n009.lab"]),
        ("pve-[08:11]", &["pve-08", "pve-09", "pve-10", "pve-11"]),
        ("pve-[01:04],!pve-03", &["pve-01", "pve-02", "pve-04"]),
        ("pve-[01:04],!pve-0[2:3]", &["pve-01", "pve-04"]),
        ("pve-[01:04],!pve-0?", &[]),
        (
            "pve-[01:10],!*-1*",
            &[
                "pve-01", "pve-02", "pve-03", "pve-04", "pve-05", "pve-06", "pve-07", "pve-08",
                "pve-09",
            ],
        ),
        ("h1/vm:100-102", &["h1/vm:100", "h1/vm:101", "h1/vm:102"]),
        (
            "h1/vm:100-103,!101",
            &["h1/vm:100", "h1/vm:102", "h1/vm:103"],
        ),
        ("h1/vm:100-103,!101-102", &["h1/vm:100", "h1/vm:103"]),
        ("h1/port:A1-A3", &["h1/port:A1", "h1/port:A2", "h1/port:A3"]),
        (
            "h1/port:1/1-1/3",
            &["h1/port:1/1", "h1/port:1/2", "h1/port:1/3"],
        ),
        (
            "h1/port:1/01-1/03",
            &["h1/port:1/01", "h1/port:1/02", "h1/port:1/03"],
        ),
        ("h1/svc:a-b", &["h1/svc:a-b"]),
        ("h1/svc:nginx-1-2", &["h1/svc:nginx-1-2"]),
        (
            "h1/svc:nginx-1-nginx-2",
            &["h1/svc:nginx-1", "h1/svc:nginx-2"],
        ),
        ("h1/svc:\"A1-A3\"", &["h1/svc:A1-A3"]),
        ("h1/port:A1-B3", &["h1/port:A1-B3"]),
        (
            "h1,h2/vm:1,2",
            &["h1/vm:1", "h1/vm:2", "h2/vm:1", "h2/vm:2"],
        ),
        ("h1/service:nginx", &["h1/service:nginx"]),
    ];
    for (text, want) in cases {
        assert_eq!(ids(text), *want, "{text}");
    }
}

#[test]
fn ranges_keep_the_ranged_flag() {
    let t = parse("h1/vm:100-101,7").unwrap().expand_text().unwrap();
    assert!(t[0].ranged && t[1].ranged && !t[2].ranged);
}

#[test]
fn not_text_only() {
    for text in [
        "pve-*",
        "@role=hypervisor",
        "h1/vm?name~\"^db\"",
        "{{ $.host }}",
        "h1/vm:{{ $.data.vm }}",
        "h1,!@role=x",
    ] {
        assert!(parse(text).unwrap().expand_text().is_none(), "{text}");
    }
}

#[test]
fn errors_have_codes_and_offsets() {
    let cases: &[(&str, &str, usize)] = &[
        ("", codes::SELECTOR_SYNTAX, 0),
        ("pve-01,", codes::SELECTOR_SYNTAX, 7),
        ("pve-01/vm", codes::SELECTOR_SYNTAX, 9),
        ("pve-01/", codes::SELECTOR_SYNTAX, 7),
        ("pve 01", codes::SELECTOR_SYNTAX, 4),
        ("pve-[01:04", codes::SELECTOR_SYNTAX, 4),
        ("pve-[a:4]", codes::SELECTOR_SYNTAX, 5),
        ("p[1:2]-[3:4]", codes::SELECTOR_SYNTAX, 7),
        ("p[1:2]*", codes::SELECTOR_SYNTAX, 0),
        ("pve-[04:01]", codes::SELECTOR_RANGE, 0),
        ("h1,pve-[1:4:0]", codes::SELECTOR_RANGE, 12),
        ("h1/vm:9-3", codes::SELECTOR_RANGE, 6),
        ("h[1:10001]", codes::SELECTOR_TOO_LARGE, 0),
        ("h[1:101]/vm:1-100", codes::SELECTOR_TOO_LARGE, 0),
        (
            "h1/vm:1-99999999999999999999999",
            codes::SELECTOR_TOO_LARGE,
            6,
        ),
        ("!pve-01", codes::SELECTOR_ONLY_EXCLUSIONS, 0),
        ("h1/vm:!100", codes::SELECTOR_ONLY_EXCLUSIONS, 0),
        ("@name~\"(\"", codes::SELECTOR_REGEX, 6),
        ("@role", codes::SELECTOR_SYNTAX, 5),
        ("@a=b,c/vm:1 x", codes::SELECTOR_SYNTAX, 12),
        ("h1/vm?name=\"unterminated", codes::SELECTOR_SYNTAX, 11),
        ("{{ $.host", codes::PLACEHOLDER_SYNTAX, 0),
        ("h1/vm:{{ host }}", codes::PLACEHOLDER_SYNTAX, 6),
        ("web-*{{ $.x }}", codes::SELECTOR_SYNTAX, 0),
    ];
    for (text, code, offset) in cases {
        match parse(text) {
            Ok(s) => panic!("{text:?} parsed as {s}"),
            Err(e) => {
                assert_eq!(
                    (e.code, e.offset),
                    (*code, *offset),
                    "{text:?}: {}",
                    e.message
                );
            }
        }
    }
}

#[test]
fn canonical_text_is_a_fixed_point() {
    for text in [
        "pve-[01:04] , !pve-03/vm:100-199,!150",
        "@role=hypervisor&site=fra/vm?name~\"^db-.*\"",
        "@\"topology.kubernetes.io/zone\"=fra",
        "{{ $.host }}/service:nginx",
        "{{$.host}}/port:{{ $.data.port }}",
        "h1/svc:\"quoted \\\"name\\\"\"",
        "n[001:010:3].lab",
    ] {
        let once = parse(text).unwrap().to_string();
        let twice = parse(&once).unwrap().to_string();
        assert_eq!(once, twice, "{text}");
    }
    assert_eq!(
        parse("pve-01 , pve-02").unwrap().to_string(),
        "pve-01,pve-02"
    );
    assert_eq!(parse("{{$.host}}").unwrap().to_string(), "{{ $.host }}");
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn inventory() -> (Vec<InventoryHost>, Vec<InventoryItem>) {
    let hosts = vec![
        InventoryHost {
            id: "pve-01".into(),
            labels: labels(&[("role", "hypervisor"), ("site", "fra")]),
        },
        InventoryHost {
            id: "pve-02".into(),
            labels: labels(&[("role", "hypervisor"), ("site", "ber")]),
        },
        InventoryHost {
            id: "web-01".into(),
            labels: labels(&[("role", "web"), ("site", "fra")]),
        },
    ];
    let vm = |host: &str, id: &str, name: &str| InventoryItem {
        host: host.into(),
        item_type: "vm".into(),
        id: id.into(),
        name: Some(name.into()),
        labels: labels(&[(
            "env",
            if name.starts_with("db") {
                "prod"
            } else {
                "lab"
            },
        )]),
    };
    let items = vec![
        vm("pve-01", "100", "db-1"),
        vm("pve-01", "101", "web-1"),
        vm("pve-01", "103", "db-2"),
        vm("pve-02", "100", "db-3"),
        InventoryItem {
            host: "web-01".into(),
            item_type: "service".into(),
            id: "nginx".into(),
            name: None,
            labels: BTreeMap::new(),
        },
    ];
    (hosts, items)
}

fn resolve(
    text: &str,
    event: Option<&serde_json::Value>,
) -> Result<(Vec<String>, Vec<String>, usize), ResolveError> {
    let (hosts, items) = inventory();
    let inv = Inventory {
        hosts: &hosts,
        items: &items,
    };
    let r = parse(text).unwrap().resolve(event, &inv)?;
    let show = |t: &TargetRef| format!("{}/{}:{}", t.host, t.target_type, t.id);
    Ok((
        r.targets.iter().map(show).collect(),
        r.missing.iter().map(show).collect(),
        r.dropped,
    ))
}

#[test]
fn resolution_against_inventory() {
    let (t, m, d) = resolve("pve-01/vm:100-103,110", None).unwrap();
    assert_eq!(t, ["pve-01/vm:100", "pve-01/vm:101", "pve-01/vm:103"]);
    assert_eq!(m, ["pve-01/vm:110"], "listed and absent: a failed run");
    assert_eq!(d, 1, "102 is an absent range member: dropped and counted");

    let (t, _, _) = resolve("pve-*/vm?name~\"^db-\"", None).unwrap();
    assert_eq!(t, ["pve-01/vm:100", "pve-01/vm:103", "pve-02/vm:100"]);

    let (t, _, _) = resolve("@role=hypervisor&site=fra/vm?env=prod", None).unwrap();
    assert_eq!(t, ["pve-01/vm:100", "pve-01/vm:103"]);

    let (t, _, _) = resolve("@role!=web", None).unwrap();
    assert_eq!(t, ["pve-01/host:pve-01", "pve-02/host:pve-02"]);

    let (t, _, _) = resolve("*,!@site=fra", None).unwrap();
    assert_eq!(t, ["pve-02/host:pve-02"]);

    let (t, _, _) = resolve("pve-*,!pve-02/vm:100", None).unwrap();
    assert_eq!(t, ["pve-01/vm:100"]);

    let (t, _, _) = resolve("nomatch-*", None).unwrap();
    assert!(t.is_empty());
}

#[test]
fn placeholders_are_literals() {
    let ev = json!({"host": "web-01", "data": {"glob": "pve-*", "vm": "100-103"}});
    let (t, _, _) = resolve("{{ $.host }}/service:nginx", Some(&ev)).unwrap();
    assert_eq!(t, ["web-01/service:nginx"]);
    // A glob inserted through a placeholder is a literal name, never expanded.
    let (t, _, _) = resolve("{{ $.data.glob }}", Some(&ev)).unwrap();
    assert_eq!(t, ["pve-*/host:pve-*"]);
    // An id range inserted through a placeholder is one literal id: absent, so missing.
    let (t, m, _) = resolve("pve-01/vm:{{ $.data.vm }}", Some(&ev)).unwrap();
    assert!(t.is_empty());
    assert_eq!(m, ["pve-01/vm:100-103"]);
    assert!(matches!(
        resolve("{{ $.nope }}", Some(&ev)),
        Err(ResolveError::Placeholder(_))
    ));
    assert!(matches!(
        resolve("@site={{ $.nope }}", Some(&ev)),
        Err(ResolveError::Placeholder(_))
    ));
}

#[test]
fn glob_matching() {
    for (p, t, want) in [
        ("pve-*", "pve-01", true),
        ("pve-?1", "pve-01", true),
        ("pve-?", "pve-01", false),
        ("*", "", true),
        ("*-0*", "pve-01", true),
        ("a*b*c", "aXbYc", true),
        ("a*b*c", "aXbY", false),
    ] {
        assert_eq!(expand::glob_match(p, t), want, "{p} vs {t}");
    }
}
