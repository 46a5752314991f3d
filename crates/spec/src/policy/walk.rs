//! Helpers for walking a submitted document and recording findings.
//!
//! Policies are walked by hand rather than deserialized with serde so that a
//! document with several mistakes reports all of them, each with the exact
//! JSON pointer, instead of stopping at the first.

use crate::condition::type_name;
use crate::finding::{Finding, Severity, codes};
use crate::pointer::Pointer;
use serde_json::{Map, Value};

/// Findings collected during one walk.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    pub findings: Vec<Finding>,
}

fn article(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'e', 'i', 'o']) {
        "an"
    } else {
        "a"
    }
}

impl Walk {
    pub fn push(
        &mut self,
        severity: Severity,
        code: &str,
        at: &Pointer,
        message: impl Into<String>,
    ) {
        self.findings
            .push(Finding::new(severity, code, at, message));
    }

    pub fn blocker(&mut self, code: &str, at: &Pointer, message: impl Into<String>) {
        self.push(Severity::Blocker, code, at, message);
    }

    pub fn warn(&mut self, code: &str, at: &Pointer, message: impl Into<String>) {
        self.push(Severity::Warn, code, at, message);
    }

    pub fn type_error(&mut self, at: &Pointer, expected: &str, found: &Value) {
        let found = type_name(found);
        self.blocker(
            codes::SCHEMA_TYPE,
            at,
            format!(
                "expected {} {expected}, found {} {found}",
                article(expected),
                article(found)
            ),
        );
    }

    /// Check that `v` is an object holding only `allowed` keys.
    pub fn object<'v>(
        &mut self,
        v: &'v Value,
        at: &Pointer,
        what: &str,
        allowed: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(map) = v else {
            self.type_error(at, "object", v);
            return None;
        };
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                let hint = match closest(key, allowed) {
                    Some(near) => format!("; did you mean `{near}`?"),
                    None => format!("; expected one of {}", allowed.join(", ")),
                };
                self.blocker(
                    codes::SCHEMA_UNKNOWN_FIELD,
                    &at.key(key),
                    format!("unknown field `{key}` in {what}{hint}"),
                );
            }
        }
        Some(map)
    }

    /// A required member: reports `schema.required` at the parent when missing.
    pub fn required<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        at: &Pointer,
        key: &str,
        what: &str,
    ) -> Option<&'v Value> {
        let v = map.get(key);
        if v.is_none() {
            self.blocker(
                codes::SCHEMA_REQUIRED,
                at,
                format!("{what} is missing required field `{key}`"),
            );
        }
        v
    }

    pub fn string<'v>(&mut self, v: &'v Value, at: &Pointer) -> Option<&'v str> {
        match v {
            Value::String(s) => Some(s),
            other => {
                self.type_error(at, "string", other);
                None
            }
        }
    }

    pub fn boolean(&mut self, v: &Value, at: &Pointer) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            other => {
                self.type_error(at, "boolean", other);
                None
            }
        }
    }

    /// An integer; integral floats (`1.0`) are accepted.
    pub fn integer(&mut self, v: &Value, at: &Pointer) -> Option<i64> {
        let n = match v {
            Value::Number(n) => n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            }),
            _ => None,
        };
        if n.is_none() {
            self.type_error(at, "integer", v);
        }
        n
    }

    /// A non-empty array (`min_items` 1 when `non_empty`).
    pub fn array<'v>(
        &mut self,
        v: &'v Value,
        at: &Pointer,
        non_empty: bool,
        what: &str,
    ) -> Option<&'v [Value]> {
        match v {
            Value::Array(items) => {
                if non_empty && items.is_empty() {
                    self.blocker(
                        codes::SCHEMA_MIN_ITEMS,
                        at,
                        format!("{what} needs at least one entry"),
                    );
                    return None;
                }
                Some(items)
            }
            other => {
                self.type_error(at, "array", other);
                None
            }
        }
    }

    /// A duration string in milliseconds.
    pub fn duration(&mut self, v: &Value, at: &Pointer) -> Option<u64> {
        match v {
            Value::String(s) => match crate::duration::parse_ms(s) {
                Ok(ms) => Some(ms),
                Err(e) => {
                    self.blocker(codes::DURATION_SYNTAX, at, e.to_string());
                    None
                }
            },
            Value::Number(n) if n.as_u64() == Some(0) => Some(0),
            other => {
                self.blocker(
                    codes::DURATION_SYNTAX,
                    at,
                    format!(
                        "expected a duration string such as `10m`, found {} {}",
                        article(type_name(other)),
                        type_name(other)
                    ),
                );
                None
            }
        }
    }
}

/// The allowed key nearest to `key` by edit distance, if it is close.
fn closest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (levenshtein(key, a), *a))
        .filter(|(d, a)| *d <= 2 && *d < a.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_keys() {
        assert_eq!(closest("verbb", &["verb", "capability"]), Some("verb"));
        assert_eq!(closest("xyz", &["verb", "capability"]), None);
    }
}
