//! One bad input per finding code, asserting the code, severity and JSON pointer.

use serde_json::{Value, json};
use switchyard_spec::finding::{Severity, codes};
use switchyard_spec::policy::{self, Format};

fn base() -> Value {
    json!({
        "version": 1,
        "name": "base-policy",
        "trigger_group": { "triggers": [ { "kind": "ups.on_battery" } ] },
        "conditions": [ { "path": "$.data.charge", "op": "lt", "value": 50 } ],
        "targets": [ { "selector": "pve-01/vm:100" } ],
        "actions": [ { "capability": "vm.power", "verb": "shutdown" } ],
        "windows": { "suppression": "10m" }
    })
}

/// Set (or, with `None`, remove) the member a pointer names; parents must exist.
fn edit(mut doc: Value, pointer: &str, value: Option<Value>) -> Value {
    let (parent, last) = pointer.rsplit_once('/').expect("pointer has a slash");
    let target = doc
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no parent at {parent}"));
    match (target, value) {
        (Value::Object(m), Some(v)) => {
            m.insert(last.to_owned(), v);
        }
        (Value::Object(m), None) => {
            m.remove(last);
        }
        (Value::Array(a), Some(v)) => {
            let i: usize = last.parse().expect("index");
            if i == a.len() {
                a.push(v);
            } else {
                a[i] = v;
            }
        }
        (Value::Array(a), None) => {
            a.remove(last.parse::<usize>().expect("index"));
        }
        _ => panic!("cannot edit {pointer}"),
    }
    doc
}

struct Case {
    what: &'static str,
    doc: Value,
    code: &'static str,
    severity: Severity,
    path: String,
}

fn b(what: &'static str, doc: Value, code: &'static str, path: impl Into<String>) -> Case {
    Case {
        what,
        doc,
        code,
        severity: Severity::Blocker,
        path: path.into(),
    }
}

fn w(what: &'static str, doc: Value, code: &'static str, path: impl Into<String>) -> Case {
    Case {
        what,
        doc,
        code,
        severity: Severity::Warn,
        path: path.into(),
    }
}

fn cases() -> Vec<Case> {
    let e = |p: &str, v: Value| edit(base(), p, Some(v));
    let rm = |p: &str| edit(base(), p, None);
    let all_group = |triggers: Value| {
        e(
            "/trigger_group",
            json!({"logic": "ALL", "within": "5m", "triggers": triggers}),
        )
    };
    vec![
        b(
            "unknown top-level field",
            e("/enabeld", json!(true)),
            codes::SCHEMA_UNKNOWN_FIELD,
            "/enabeld",
        ),
        b(
            "unknown nested field",
            e("/actions/0/verbb", json!("x")),
            codes::SCHEMA_UNKNOWN_FIELD,
            "/actions/0/verbb",
        ),
        b("missing name", rm("/name"), codes::SCHEMA_REQUIRED, ""),
        b(
            "missing verb",
            rm("/actions/0/verb"),
            codes::SCHEMA_REQUIRED,
            "/actions/0",
        ),
        b(
            "missing selector",
            rm("/targets/0/selector"),
            codes::SCHEMA_REQUIRED,
            "/targets/0",
        ),
        b(
            "enabled not a boolean",
            e("/enabled", json!("yes")),
            codes::SCHEMA_TYPE,
            "/enabled",
        ),
        b(
            "policy not an object",
            json!([1, 2]),
            codes::SCHEMA_TYPE,
            "",
        ),
        b(
            "params not an object",
            e("/actions/0/params", json!([1])),
            codes::SCHEMA_TYPE,
            "/actions/0/params",
        ),
        b(
            "logic not ANY/ALL",
            e("/trigger_group/logic", json!("SOME")),
            codes::SCHEMA_ENUM,
            "/trigger_group/logic",
        ),
        b(
            "on_error unknown",
            e("/actions/0/on_error", json!("retry")),
            codes::SCHEMA_ENUM,
            "/actions/0/on_error",
        ),
        b(
            "no actions",
            e("/actions", json!([])),
            codes::SCHEMA_MIN_ITEMS,
            "/actions",
        ),
        b(
            "no triggers",
            e("/trigger_group/triggers", json!([])),
            codes::SCHEMA_MIN_ITEMS,
            "/trigger_group/triggers",
        ),
        b(
            "priority out of range",
            e("/priority", json!(5_000_000)),
            codes::SCHEMA_RANGE,
            "/priority",
        ),
        b(
            "version 2",
            e("/version", json!(2)),
            codes::SPEC_VERSION,
            "/version",
        ),
        b(
            "name with capitals",
            e("/name", json!("Base_Policy")),
            codes::NAME_INVALID,
            "/name",
        ),
        b(
            "name too long",
            e("/name", json!("a".repeat(64))),
            codes::NAME_INVALID,
            "/name",
        ),
        b(
            "name shaped like a UUID",
            e("/name", json!("01937c9e-6b1a-7cc1-9f1e-2f4c2b8d0a11")),
            codes::NAME_UUID,
            "/name",
        ),
        b(
            "bad kind",
            e("/trigger_group/triggers/0/kind", json!("UPS.OnBattery")),
            codes::TRIGGER_KIND,
            "/trigger_group/triggers/0/kind",
        ),
        b(
            "> not last",
            e("/trigger_group/triggers/0/kind", json!("ups.>.x")),
            codes::TRIGGER_KIND,
            "/trigger_group/triggers/0/kind",
        ),
        b(
            "reserved kind",
            e("/trigger_group/triggers/0/kind", json!("schedule")),
            codes::TRIGGER_RESERVED_KIND,
            "/trigger_group/triggers/0/kind",
        ),
        b(
            "kind and schedule",
            e("/trigger_group/triggers/0/schedule", json!("* * * * *")),
            codes::TRIGGER_SHAPE,
            "/trigger_group/triggers/0",
        ),
        b(
            "neither kind nor schedule",
            e("/trigger_group/triggers/0", json!({})),
            codes::TRIGGER_SHAPE,
            "/trigger_group/triggers/0",
        ),
        b(
            "tz on a kind trigger",
            e("/trigger_group/triggers/0/tz", json!("UTC")),
            codes::TRIGGER_SHAPE,
            "/trigger_group/triggers/0/tz",
        ),
        b(
            "where on a schedule",
            e(
                "/trigger_group/triggers/0",
                json!({"schedule": "* * * * *", "where": []}),
            ),
            codes::TRIGGER_SHAPE,
            "/trigger_group/triggers/0/where",
        ),
        b(
            "ALL without within",
            e("/trigger_group/logic", json!("ALL")),
            codes::TRIGGER_WITHIN_REQUIRED,
            "/trigger_group",
        ),
        w(
            "within with ANY",
            e("/trigger_group/within", json!("5m")),
            codes::TRIGGER_WITHIN_IGNORED,
            "/trigger_group/within",
        ),
        b(
            "schedule in ALL",
            all_group(json!([{"kind": "a.b"}, {"schedule": "0 * * * *"}])),
            codes::TRIGGER_SCHEDULE_IN_ALL,
            "/trigger_group/triggers/1",
        ),
        w(
            "duplicate trigger",
            e(
                "/trigger_group/triggers/1",
                json!({"kind": "ups.on_battery"}),
            ),
            codes::TRIGGER_DUPLICATE,
            "/trigger_group/triggers/1",
        ),
        b(
            "cron with 4 fields",
            e(
                "/trigger_group/triggers/0",
                json!({"schedule": "*/15 * * *"}),
            ),
            codes::CRON_SYNTAX,
            "/trigger_group/triggers/0/schedule",
        ),
        b(
            "cron minute 61",
            e(
                "/trigger_group/triggers/0",
                json!({"schedule": "61 * * * *"}),
            ),
            codes::CRON_SYNTAX,
            "/trigger_group/triggers/0/schedule",
        ),
        b(
            "unknown time zone",
            e(
                "/trigger_group/triggers/0",
                json!({"schedule": "0 2 * * *", "tz": "Mars/Olympus"}),
            ),
            codes::CRON_TIMEZONE,
            "/trigger_group/triggers/0/tz",
        ),
        b(
            "duration without unit",
            e("/windows/suppression", json!("10")),
            codes::DURATION_SYNTAX,
            "/windows/suppression",
        ),
        b(
            "duration as number",
            e("/actions/0/timeout", json!(30)),
            codes::DURATION_SYNTAX,
            "/actions/0/timeout",
        ),
        b(
            "units out of order",
            e("/windows/idempotency", json!("30m1h")),
            codes::DURATION_SYNTAX,
            "/windows/idempotency",
        ),
        b(
            "zero within for ALL",
            e(
                "/trigger_group",
                json!({"logic": "ALL", "within": "0s", "triggers": [{"kind": "a"}]}),
            ),
            codes::DURATION_RANGE,
            "/trigger_group/within",
        ),
        b(
            "zero timeout",
            e("/actions/0/timeout", json!("0s")),
            codes::DURATION_RANGE,
            "/actions/0/timeout",
        ),
        b(
            "condition mixing all and path",
            e("/conditions/0/all", json!([])),
            codes::CONDITION_SHAPE,
            "/conditions/0",
        ),
        b(
            "condition with all and any",
            e("/conditions/0", json!({"all": [], "any": []})),
            codes::CONDITION_SHAPE,
            "/conditions/0",
        ),
        b(
            "unknown operator",
            e("/conditions/0/op", json!("lessthan")),
            codes::CONDITION_OP,
            "/conditions/0/op",
        ),
        b(
            "lt without value",
            rm("/conditions/0/value"),
            codes::CONDITION_VALUE_MISSING,
            "/conditions/0",
        ),
        b(
            "exists with value",
            e(
                "/conditions/0",
                json!({"path": "$.x", "op": "exists", "value": 1}),
            ),
            codes::CONDITION_VALUE_UNEXPECTED,
            "/conditions/0/value",
        ),
        b(
            "in with a string",
            e(
                "/conditions/0",
                json!({"path": "$.x", "op": "in", "value": "a"}),
            ),
            codes::CONDITION_VALUE_TYPE,
            "/conditions/0/value",
        ),
        b(
            "lt with a boolean",
            e("/conditions/0/value", json!(true)),
            codes::CONDITION_VALUE_TYPE,
            "/conditions/0/value",
        ),
        b(
            "bad regex",
            e(
                "/conditions/0",
                json!({"path": "$.x", "op": "matches", "value": "(unclosed"}),
            ),
            codes::CONDITION_REGEX,
            "/conditions/0/value",
        ),
        b(
            "nested too deep",
            e("/conditions", json!([deep(20)])),
            codes::CONDITION_DEPTH,
            format!("/conditions/0{}", "/all/0".repeat(16) + "/all"),
        ),
        b(
            "JSONPath without $",
            e("/conditions/0/path", json!("data.charge")),
            codes::JSONPATH_SYNTAX,
            "/conditions/0/path",
        ),
        b(
            "broken JSONPath in where",
            e(
                "/trigger_group/triggers/0/where",
                json!([{"path": "$[", "op": "exists"}]),
            ),
            codes::JSONPATH_SYNTAX,
            "/trigger_group/triggers/0/where/0/path",
        ),
        b(
            "broken group_by",
            e("/windows/group_by", json!(["$.data.ups", "$.["])),
            codes::JSONPATH_SYNTAX,
            "/windows/group_by/1",
        ),
        b(
            "unclosed placeholder in params",
            e(
                "/actions/0/params",
                json!({"reason": {"text": ["{{ $.data.ups"]}}),
            ),
            codes::PLACEHOLDER_SYNTAX,
            "/actions/0/params/reason/text/0",
        ),
        b(
            "placeholder with bad path in selector",
            e("/targets/0/selector", json!("{{ host }}/vm:1")),
            codes::PLACEHOLDER_SYNTAX,
            "/targets/0/selector",
        ),
        b(
            "selector syntax",
            e("/targets/0/selector", json!("pve-01/vm")),
            codes::SELECTOR_SYNTAX,
            "/targets/0/selector",
        ),
        b(
            "range start after end",
            e("/targets/0/selector", json!("pve-[04:01]")),
            codes::SELECTOR_RANGE,
            "/targets/0/selector",
        ),
        b(
            "range too large",
            e("/targets/0/selector", json!("h[1:200]/vm:1-100")),
            codes::SELECTOR_TOO_LARGE,
            "/targets/0/selector",
        ),
        b(
            "only exclusions",
            e("/targets/0/selector", json!("!pve-01")),
            codes::SELECTOR_ONLY_EXCLUSIONS,
            "/targets/0/selector",
        ),
        b(
            "bad query regex",
            e("/targets/0/selector", json!("pve-01/vm?name~\"(\"")),
            codes::SELECTOR_REGEX,
            "/targets/0/selector",
        ),
        b(
            "bad capability",
            e("/actions/0/capability", json!("VM Power")),
            codes::ACTION_CAPABILITY,
            "/actions/0/capability",
        ),
        b(
            "bad verb",
            e("/actions/0/verb", json!("Shut-Down")),
            codes::ACTION_VERB,
            "/actions/0/verb",
        ),
        b(
            "bad driver",
            e("/actions/0/driver", json!("Prox Mox")),
            codes::ACTION_DRIVER,
            "/actions/0/driver",
        ),
        w(
            "group_by without suppression",
            e("/windows", json!({"group_by": ["$.host"]})),
            codes::WINDOW_GROUP_BY_UNUSED,
            "/windows/group_by",
        ),
    ]
}

fn deep(n: usize) -> Value {
    let mut v = json!({"path": "$.x", "op": "exists"});
    for _ in 0..n {
        v = json!({"all": [v]});
    }
    v
}

#[test]
fn base_policy_is_clean() {
    let c = policy::validate_value(&base(), None);
    assert!(c.findings.is_empty(), "{:?}", c.findings);
    assert!(c.ir.is_some());
}

#[test]
fn every_case_reports_its_code_at_its_path() {
    let mut failures = Vec::new();
    for case in cases() {
        let c = policy::validate_value(&case.doc, None);
        let hit = c
            .findings
            .iter()
            .any(|f| f.code == case.code && f.path == case.path && f.severity == case.severity);
        if !hit {
            failures.push(format!(
                "{}: wanted {} {} at {:?}, got {:?}",
                case.what, case.severity, case.code, case.path, c.findings
            ));
        }
        if case.severity == Severity::Blocker {
            assert!(
                c.ir.is_none(),
                "{}: a blocker must withhold the IR",
                case.what
            );
        } else {
            assert!(
                c.ir.is_some(),
                "{}: a warning must not withhold the IR",
                case.what
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_code_is_exercised_by_a_case() {
    let cases = cases();
    let parse_codes = [codes::PARSE_SYNTAX, codes::PARSE_EMPTY];
    for code in codes::ALL {
        if parse_codes.contains(code)
            || codes::DRIVER_CHECKS.contains(code)
            || codes::DRY_RUN_CHECKS.contains(code)
        {
            // parse codes: `parse_errors_have_positions`; driver checks: the
            // plugin registry's tests; dry-run codes: the API's dry-run tests
            continue;
        }
        assert!(
            cases.iter().any(|c| c.code == *code),
            "no table case for {code}"
        );
    }
}

#[test]
fn several_mistakes_are_all_reported() {
    let doc = edit(
        edit(base(), "/name", Some(json!("Bad"))),
        "/windows/suppression",
        Some(json!("x")),
    );
    let c = policy::validate_value(&doc, None);
    let got: Vec<&str> = c.findings.iter().map(|f| f.code.as_str()).collect();
    assert!(
        got.contains(&codes::NAME_INVALID) && got.contains(&codes::DURATION_SYNTAX),
        "{got:?}"
    );
}

#[test]
fn parse_errors_have_positions() {
    let cases = [
        ("version: 1\nname: x\n  bad: [\n", Format::Yaml, 3),
        ("a: 1\na: 2\n", Format::Yaml, 2),
        ("{\"version\": 1,\n \"name\": \"x\",,}", Format::Json, 2),
        (
            "version = 1\nname = \"x\"\n[trigger_group\n",
            Format::Toml,
            3,
        ),
    ];
    for (text, format, line) in cases {
        let results = policy::validate_text(text, format, None);
        let f = &results[0].findings[0];
        assert_eq!(f.code, codes::PARSE_SYNTAX, "{text:?}");
        assert_eq!(f.line, Some(line), "{text:?}: {f}");
        assert!(f.column.is_some());
        assert!(!f.message.contains('\n'), "one-line message: {}", f.message);
    }
    for empty in ["", "# only a comment\n", "---\n"] {
        let results = policy::validate_text(empty, Format::Yaml, None);
        assert_eq!(results[0].findings[0].code, codes::PARSE_EMPTY, "{empty:?}");
    }
}

#[test]
fn yaml_stream_holds_several_policies() {
    let text = "version: 1\nname: one\ntrigger_group: {triggers: [{kind: a}]}\ntargets: [{selector: h1}]\nactions: [{capability: c, verb: v}]\n---\nversion: 1\nname: Two\ntrigger_group: {triggers: [{kind: a}]}\ntargets: [{selector: h1}]\nactions: [{capability: c, verb: v}]\n";
    let results = policy::validate_text(text, Format::Yaml, None);
    assert_eq!(results.len(), 2);
    assert!(!results[0].is_blocked());
    assert_eq!(results[1].document, 1);
    assert_eq!(results[1].findings[0].code, codes::NAME_INVALID);
}

#[test]
fn findings_doc_lists_exactly_the_codes() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/FINDINGS.md"
    ))
    .expect("docs/FINDINGS.md");
    let documented: std::collections::BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect();
    let known: std::collections::BTreeSet<String> =
        codes::ALL.iter().map(|c| (*c).to_owned()).collect();
    assert_eq!(documented, known, "docs/FINDINGS.md and codes::ALL differ");
}
