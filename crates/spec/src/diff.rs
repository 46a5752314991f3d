//! A structural diff of two JSON values, addressed by JSON pointers: what a
//! policy version changed, field by field.

use crate::pointer::Pointer;
use serde::Serialize;
use serde_json::Value;

/// One changed leaf (or subtree that exists on one side only).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// JSON pointer into both values (`/actions/0/params/timeout_s`).
    pub path: String,
    /// `None`: added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// `None`: removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// Every difference between `a` and `b`, in document order. Objects are
/// compared key by key, arrays index by index; anything else by value.
pub fn json_diff(a: &Value, b: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(&Pointer::root(), Some(a), Some(b), &mut out);
    out
}

fn walk(at: &Pointer, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<Change>) {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                walk(&at.key(k), x.get(k), y.get(k), out);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            for i in 0..x.len().max(y.len()) {
                walk(&at.index(i), x.get(i), y.get(i), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(Change {
            path: at.to_string(),
            before: a.cloned(),
            after: b.cloned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_are_addressed_by_pointer() {
        let a = json!({"windows": {"suppression_ms": 600000}, "actions": [{"verb": "shutdown"}], "x": 1});
        let b = json!({"windows": {"suppression_ms": 300000}, "actions": [{"verb": "shutdown"}, {"verb": "stop"}], "y": "a/b"});
        let d = json_diff(&a, &b);
        let paths: Vec<&str> = d.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["/actions/1", "/windows/suppression_ms", "/x", "/y"]);
        assert_eq!(d[1].before, Some(json!(600000)));
        assert_eq!(d[1].after, Some(json!(300000)));
        assert_eq!(d[2].after, None);
        assert_eq!(d[0].before, None);
        assert!(json_diff(&a, &a).is_empty());
    }
}
