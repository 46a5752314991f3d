use super::*;
use serde_json::json;

fn parse_str(s: &str) -> Result<Event, Error> {
    parse(s.as_bytes(), Limits::default())
}

#[test]
fn native_envelope() {
    let e = parse_str(
        r#"{"id":"01937c9e","kind":"ups.on_battery","source":"nut://ups1@nut-01","host":"nut-01",
            "time":"2026-11-23T09:00:00+01:00","severity":"warning","data":{"ups":"ups1","charge":87}}"#,
    )
    .unwrap();
    assert_eq!(e.kind, "ups.on_battery");
    assert_eq!(e.host.as_deref(), Some("nut-01"));
    assert_eq!(e.time.unwrap().to_rfc3339(), "2026-11-23T08:00:00+00:00");
    assert_eq!(e.data["charge"], json!(87));
    let received = DateTime::parse_from_rfc3339("2026-11-23T08:00:05Z")
        .unwrap()
        .with_timezone(&Utc);
    let env = e.to_envelope(received);
    assert_eq!(env["time"], json!("2026-11-23T08:00:00Z"));
    assert_eq!(env["received_at"], json!("2026-11-23T08:00:05Z"));
}

#[test]
fn missing_time_uses_receive_time() {
    let e = parse_str(r#"{"kind":"a"}"#).unwrap();
    let received = DateTime::parse_from_rfc3339("2026-11-23T08:00:05Z")
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(
        e.to_envelope(received)["time"],
        json!("2026-11-23T08:00:05Z")
    );
    assert!(e.data.is_empty());
}

#[test]
fn cloudevents_are_normalized() {
    let e = parse_str(
        r#"{"specversion":"1.0","type":"host.down","source":"/probe/fra","id":"c-1","subject":"web-01",
            "time":"2026-11-23T08:00:00Z","datacontenttype":"application/json","site":"fra","data":{"rtt_ms":0}}"#,
    )
    .unwrap();
    assert_eq!(e.kind, "host.down");
    assert_eq!(e.id.as_deref(), Some("c-1"));
    assert_eq!(e.host.as_deref(), Some("web-01"), "subject becomes host");
    assert_eq!(e.extensions["site"], json!("fra"));

    let e = parse_str(r#"{"specversion":"1.0","type":"a","source":"s","id":"1","subject":"disk-3","host":"web-02"}"#).unwrap();
    assert_eq!(
        e.host.as_deref(),
        Some("web-02"),
        "a host extension wins over subject"
    );
    assert_eq!(e.extensions["subject"], json!("disk-3"));
}

#[test]
fn refusals_have_stable_reasons() {
    let deep = format!(
        "{{\"kind\":\"a\",\"data\":{}{}}}",
        "[".repeat(70),
        "]".repeat(70)
    );
    let big = format!(
        "{{\"kind\":\"a\",\"data\":{{\"x\":\"{}\"}}}}",
        "x".repeat(2_000_000)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (big.into_bytes(), "too_large"),
        (b"{\"kind\":\"a\xff\"}".to_vec(), "invalid_utf8"),
        (deep.into_bytes(), "too_deep"),
        // Past serde_json's own nesting limit, and nested too deep while malformed.
        (
            format!(
                "{{\"kind\":\"a\",\"data\":{}{}}}",
                "[".repeat(500),
                "]".repeat(500)
            )
            .into_bytes(),
            "too_deep",
        ),
        (
            format!("{{\"kind\":\"a\",\"data\":{}", "{\"x\":".repeat(100)).into_bytes(),
            "too_deep",
        ),
        (b"{\"kind\":".to_vec(), "invalid_json"),
        (b"[1,2]".to_vec(), "not_object"),
        (b"{\"data\":{}}".to_vec(), "missing_kind"),
        (b"{\"kind\":\"Ups.On\"}".to_vec(), "invalid_kind"),
        (b"{\"kind\":\"a..b\"}".to_vec(), "invalid_kind"),
        (b"{\"kind\":\"schedule\"}".to_vec(), "reserved_kind"),
        (
            b"{\"kind\":\"a\",\"time\":\"yesterday\"}".to_vec(),
            "invalid_field",
        ),
        (b"{\"kind\":\"a\",\"data\":5}".to_vec(), "invalid_field"),
        (
            b"{\"kind\":\"a\",\"host\":\"a\\nb\"}".to_vec(),
            "invalid_field",
        ),
        (b"{\"kind\":\"a\",\"kidn\":\"b\"}".to_vec(), "unknown_field"),
        (
            b"{\"specversion\":\"1.0\",\"source\":\"s\"}".to_vec(),
            "missing_kind",
        ),
        (
            b"{\"specversion\":\"1.0\",\"type\":\"a\",\"datacontenttype\":\"text/plain\"}".to_vec(),
            "invalid_field",
        ),
        (
            br#"{"kind":"a","data":{"n":"x\u0000y"}}"#.to_vec(),
            "nul_character",
        ),
        (
            br#"{"kind":"a","data":{"deep":[1,{"k\u0000":2}]}}"#.to_vec(),
            "nul_character",
        ),
        (
            br#"{"specversion":"1.0","type":"a","source":"s","id":"1","note":"\u0000"}"#.to_vec(),
            "nul_character",
        ),
        (
            br#"{"kind":"a","host":"x\u0000"}"#.to_vec(),
            "invalid_field",
        ),
    ];
    for (bytes, reason) in cases {
        let err = parse(&bytes, Limits::default()).expect_err(reason);
        assert_eq!(err.reason(), reason, "{err}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn a_nul_character_is_refused_with_its_path_and_an_escaped_backslash_is_not() {
    let err = parse_str(r#"{"kind":"a","data":{"list":["ok","a\u0000"]}}"#).unwrap_err();
    assert_eq!(
        err,
        Error::NulCharacter {
            path: "data.list.1".into()
        }
    );
    // `\\u0000` is a backslash followed by `u0000`: ordinary text.
    let ok = parse_str(r#"{"kind":"a","data":{"path":"C:\\u0000"}}"#).unwrap();
    assert_eq!(ok.data["path"], "C:\\u0000");
}

#[test]
fn depth_on_the_tree_matches_depth_on_the_text() {
    for text in [
        r#"{"kind":"a"}"#,
        r#"{"kind":"a","data":{}}"#,
        r#"{"kind":"a","data":{"x":[1,{"y":[[]]}],"z":"[[{{"}}"#,
        r#"{"kind":"a","data":{"l":[[],[[[]]],[]]}}"#,
    ] {
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(value_depth(&value), json_depth(text.as_bytes()), "{text}");
    }
}

#[test]
fn limits_are_configurable() {
    let limits = Limits {
        max_bytes: 20,
        max_depth: 2,
    };
    assert_eq!(
        parse(br#"{"kind":"a","data":{"x":1}}"#, limits)
            .unwrap_err()
            .reason(),
        "too_large"
    );
    assert_eq!(
        parse(
            br#"{"kind":"a","data":{"x":[1]}}"#,
            Limits {
                max_bytes: 100,
                max_depth: 2
            }
        )
        .unwrap_err()
        .reason(),
        "too_deep"
    );
    // Brackets inside strings do not count.
    assert!(
        parse(
            br#"{"kind":"a","data":{"x":"[[[[["}}"#,
            Limits {
                max_bytes: 100,
                max_depth: 2
            }
        )
        .is_ok()
    );
}

#[test]
fn delivery_ids_are_deterministic() {
    let created = DateTime::parse_from_rfc3339("2026-11-01T00:00:00.123456789Z")
        .unwrap()
        .with_timezone(&Utc);
    let a = delivery_event_id("SWITCHYARD_EVENTS", created, 42);
    assert_eq!(a, delivery_event_id("SWITCHYARD_EVENTS", created, 42));
    assert_ne!(a, delivery_event_id("SWITCHYARD_EVENTS", created, 43));
    assert_ne!(a, delivery_event_id("OTHER", created, 42));
    assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 5);
}

mod both_paths {
    use super::*;
    use proptest::prelude::*;

    /// A member's value: absent, null, a string (valid or not for any
    /// member), or another JSON type.
    fn member() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            3 => Just(None),
            1 => Just(Some("null".to_owned())),
            1 => Just(Some("\"\"".to_owned())),
            3 => "[a-z]{1,6}(\\.[a-z]{1,6}){0,2}".prop_map(|s| Some(format!("\"{s}\""))),
            1 => Just(Some("\"ups\\u0001\"".to_owned())),
            1 => Just(Some(format!("\"{}\"", "x".repeat(MAX_FIELD_LEN + 1)))),
            1 => Just(Some("\"2026-11-23T09:00:00+01:00\"".to_owned())),
            1 => Just(Some("\"yesterday\"".to_owned())),
            1 => Just(Some("\"__switchyard.tick\"".to_owned())),
            1 => Just(Some("42".to_owned())),
            1 => Just(Some("[1, 2]".to_owned())),
            2 => Just(Some("{\"charge\": 87, \"ups\": {\"name\": \"ups1\"}}".to_owned())),
            1 => Just(Some("{\"a\": [[[[[[1]]]]]]}".to_owned())),
        ]
    }

    /// Native members, each maybe present; now and then one the fast path
    /// leaves to the general path (unknown, CloudEvents, `kind` twice).
    fn payload() -> impl Strategy<Value = String> {
        let usual = ["id", "kind", "source", "host", "time", "severity", "data"];
        let rare = ["extra", "specversion", "type", "kind"];
        (
            proptest::collection::vec(member(), usual.len()),
            proptest::collection::vec(proptest::option::weighted(0.05, member()), rare.len()),
            proptest::bool::weighted(0.05),
            any::<bool>(),
        )
            .prop_map(move |(values, extras, array, spaced)| {
                let members: Vec<String> = usual
                    .iter()
                    .zip(values)
                    .chain(rare.iter().zip(extras.into_iter().map(Option::flatten)))
                    .filter_map(|(n, v)| v.map(|v| format!("\"{n}\": {v}")))
                    .collect();
                let body = members.join(", ");
                let doc = if array {
                    format!("[{body}]")
                } else {
                    format!("{{{body}}}")
                };
                if spaced { format!("  \n{doc} ") } else { doc }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// Whatever the payload, reading a native event in place gives the
        /// event, or the error, that the general path gives.
        #[test]
        fn the_fast_path_agrees_with_the_general_one(text in payload(), depth in 2usize..8) {
            let limits = Limits { max_depth: depth, ..Limits::default() };
            prop_assert_eq!(parse(text.as_bytes(), limits), parse_tree(&text, limits));
        }
    }

    #[test]
    fn the_usual_event_takes_the_fast_path() {
        let text = r#"{"id":"e1","kind":"ups.on_battery","host":"nut-01","data":{"charge":87}}"#;
        let fast = fast_native(text, Limits::default()).expect("read in place");
        assert_eq!(fast, parse_tree(text, Limits::default()));
    }
}
