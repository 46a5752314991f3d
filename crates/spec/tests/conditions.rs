//! Condition semantics (DESIGN §4), one row per rule.

use serde_json::{Value, json};
use switchyard_spec::condition::{Condition, ConditionIr};

fn event() -> Value {
    json!({
        "kind": "ups.on_battery",
        "host": "nut-01",
        "data": {
            "ups": "ups1",
            "charge": 87,
            "ratio": 0.5,
            "flag": true,
            "nothing": null,
            "tags": ["lab", "fra"],
            "ports": [{"n": 1, "up": true}, {"n": 2, "up": false}],
            "name": "ünïcode-Ω"
        }
    })
}

fn holds(cond: Value) -> bool {
    let ir: ConditionIr =
        serde_json::from_value(cond.clone()).unwrap_or_else(|e| panic!("{cond}: {e}"));
    Condition::from_ir(&ir).unwrap().eval(&event())
}

#[test]
fn semantics_table() {
    let rows = [
        // numbers by value, across integer and float spellings
        (
            json!({"path": "$.data.charge", "op": "eq", "value": 87.0}),
            true,
        ),
        (
            json!({"path": "$.data.charge", "op": "lt", "value": 87.5}),
            true,
        ),
        (
            json!({"path": "$.data.charge", "op": "ge", "value": 87}),
            true,
        ),
        (
            json!({"path": "$.data.ratio", "op": "gt", "value": 0}),
            true,
        ),
        // different types: unequal and unordered
        (
            json!({"path": "$.data.charge", "op": "eq", "value": "87"}),
            false,
        ),
        (
            json!({"path": "$.data.charge", "op": "ne", "value": "87"}),
            true,
        ),
        (
            json!({"path": "$.data.charge", "op": "lt", "value": "9"}),
            false,
        ),
        (
            json!({"path": "$.data.charge", "op": "ge", "value": "9"}),
            false,
        ),
        (
            json!({"path": "$.data.flag", "op": "eq", "value": 1}),
            false,
        ),
        // strings by code point
        (
            json!({"path": "$.data.ups", "op": "lt", "value": "ups2"}),
            true,
        ),
        (
            json!({"path": "$.data.name", "op": "gt", "value": "z"}),
            true,
        ),
        (
            json!({"path": "$.data.name", "op": "starts_with", "value": "ünï"}),
            true,
        ),
        (
            json!({"path": "$.data.name", "op": "ends_with", "value": "Ω"}),
            true,
        ),
        // in / not_in
        (
            json!({"path": "$.data.ups", "op": "in", "value": ["ups1", "ups2"]}),
            true,
        ),
        (
            json!({"path": "$.data.charge", "op": "in", "value": [87.0]}),
            true,
        ),
        (
            json!({"path": "$.data.ups", "op": "not_in", "value": ["ups2"]}),
            true,
        ),
        (
            json!({"path": "$.data.ups", "op": "not_in", "value": ["ups1"]}),
            false,
        ),
        // contains: substring and membership
        (
            json!({"path": "$.data.ups", "op": "contains", "value": "ps1"}),
            true,
        ),
        (
            json!({"path": "$.data.tags", "op": "contains", "value": "fra"}),
            true,
        ),
        (
            json!({"path": "$.data.tags", "op": "contains", "value": "ber"}),
            false,
        ),
        (
            json!({"path": "$.data.charge", "op": "contains", "value": 8}),
            false,
        ),
        // matches
        (
            json!({"path": "$.host", "op": "matches", "value": "^nut-[0-9]+$"}),
            true,
        ),
        (
            json!({"path": "$.data.charge", "op": "matches", "value": "8"}),
            false,
        ),
        // exists / absent, null included
        (json!({"path": "$.data.nothing", "op": "exists"}), true),
        (json!({"path": "$.data.nothing", "op": "absent"}), false),
        (json!({"path": "$.data.missing", "op": "absent"}), true),
        (
            json!({"path": "$.data.nothing", "op": "eq", "value": null}),
            true,
        ),
        // nothing selected: every op false except absent
        (
            json!({"path": "$.data.missing", "op": "ne", "value": 1}),
            false,
        ),
        (
            json!({"path": "$.data.missing", "op": "not_in", "value": [1]}),
            false,
        ),
        (
            json!({"path": "$.data.missing", "op": "eq", "value": null}),
            false,
        ),
        // several nodes: positive ops need one, negative ops need all
        (
            json!({"path": "$.data.ports[*].up", "op": "eq", "value": false}),
            true,
        ),
        (
            json!({"path": "$.data.ports[*].up", "op": "ne", "value": false}),
            false,
        ),
        (
            json!({"path": "$.data.ports[*].n", "op": "not_in", "value": [3, 4]}),
            true,
        ),
        (
            json!({"path": "$.data.ports[*].n", "op": "not_in", "value": [2]}),
            false,
        ),
        (
            json!({"path": "$.data.ports[?@.up == false].n", "op": "eq", "value": 2}),
            true,
        ),
        // deep equality on structures
        (
            json!({"path": "$.data.tags", "op": "eq", "value": ["lab", "fra"]}),
            true,
        ),
        (
            json!({"path": "$.data.ports[0]", "op": "eq", "value": {"up": true, "n": 1.0}}),
            true,
        ),
        // nesting
        (
            json!({"all": [{"path": "$.data.charge", "op": "gt", "value": 50}, {"path": "$.host", "op": "eq", "value": "nut-01"}]}),
            true,
        ),
        (
            json!({"any": [{"path": "$.data.charge", "op": "lt", "value": 50}, {"path": "$.data.flag", "op": "eq", "value": true}]}),
            true,
        ),
        (json!({"any": []}), false),
        (json!({"all": []}), true),
        (
            json!({"not": [{"path": "$.data.charge", "op": "gt", "value": 50}, {"path": "$.data.flag", "op": "eq", "value": false}]}),
            true,
        ),
        (
            json!({"not": [{"path": "$.data.charge", "op": "gt", "value": 50}]}),
            false,
        ),
    ];
    let mut failures = Vec::new();
    for (cond, want) in rows {
        if holds(cond.clone()) != want {
            failures.push(format!("{cond} should be {want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
