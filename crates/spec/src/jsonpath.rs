//! JSONPath (RFC 9535, as jsonpath-rust 1.x parses it), compiled once.
//!
//! Paths that are a plain chain of member names and non-negative indexes
//! (`$.data.charge`, `$.data['ups'][0]`) — nearly every condition — are
//! evaluated by a direct walk; anything else goes through jsonpath-rust. Both
//! are parsed by jsonpath-rust, so the two forms accept exactly the same text.

use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;
use serde_json::Value;
use std::fmt;

/// A parsed JSONPath, ready to evaluate many times.
#[derive(Clone)]
pub struct JsonPath {
    text: String,
    plan: Plan,
}

#[derive(Clone)]
enum Plan {
    Direct(Vec<Step>),
    General(Box<JpQuery>),
}

#[derive(Clone)]
enum Step {
    Name(String),
    Index(usize),
}

impl fmt::Debug for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JsonPath").field(&self.text).finish()
    }
}

impl PartialEq for JsonPath {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl JsonPath {
    /// Parse a path; the error is a one-line description of what is wrong.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        if !text.starts_with('$') {
            return Err(format!("`{text}`: a JSONPath starts with `$`"));
        }
        if let Some(steps) = simple_steps(text) {
            return Ok(JsonPath {
                text: text.to_owned(),
                plan: Plan::Direct(steps),
            });
        }
        let query =
            parse_json_path(text).map_err(|e| format!("`{text}`: {}", one_line(&e.to_string())))?;
        let plan = match direct_steps(&query) {
            Some(steps) => Plan::Direct(steps),
            None => Plan::General(Box::new(query)),
        };
        Ok(JsonPath {
            text: text.to_owned(),
            plan,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The nodes the path selects in `root`, in document order.
    pub fn select<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        match &self.plan {
            Plan::Direct(steps) => {
                let mut node = root;
                for step in steps {
                    let next = match (step, node) {
                        (Step::Name(name), Value::Object(map)) => map.get(name),
                        (Step::Index(i), Value::Array(items)) => items.get(*i),
                        _ => None,
                    };
                    match next {
                        Some(n) => node = n,
                        None => return Vec::new(),
                    }
                }
                vec![node]
            }
            Plan::General(query) => js_path_process(query, root)
                .map(|refs| refs.into_iter().map(|r| r.val()).collect())
                .unwrap_or_default(),
        }
    }

    /// True when the path is evaluated by the direct walk (for tests and benches).
    pub fn is_direct(&self) -> bool {
        matches!(self.plan, Plan::Direct(_))
    }

    /// Evaluate always through jsonpath-rust (reference semantics for tests).
    pub fn select_general<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        // Parsed when the path was made: it parses again.
        let Ok(query) = parse_json_path(&self.text) else {
            return Vec::new();
        };
        js_path_process(&query, root)
            .map(|refs| refs.into_iter().map(|r| r.val()).collect())
            .unwrap_or_default()
    }
}

/// Parse `$` followed by `.name` (ASCII member-name shorthand) and `[n]`
/// (non-negative index without leading zeros) without the general parser.
/// Anything else returns `None` and goes through jsonpath-rust.
fn simple_steps(text: &str) -> Option<Vec<Step>> {
    let b = text.as_bytes();
    let mut i = 1;
    let mut steps = Vec::new();
    while i < b.len() {
        match b[i] {
            b'.' => {
                let start = i + 1;
                let first = *b.get(start)?;
                if !(first.is_ascii_alphabetic() || first == b'_') {
                    return None;
                }
                i = start + 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                steps.push(Step::Name(text[start..i].to_owned()));
            }
            b'[' => {
                let start = i + 1;
                i = start;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let digits = &text[start..i];
                if digits.is_empty()
                    || (digits.len() > 1 && digits.starts_with('0'))
                    || b.get(i) != Some(&b']')
                {
                    return None;
                }
                steps.push(Step::Index(digits.parse().ok()?));
                i += 1;
            }
            _ => return None,
        }
    }
    Some(steps)
}

fn direct_steps(query: &JpQuery) -> Option<Vec<Step>> {
    query
        .segments
        .iter()
        .map(|segment| match segment {
            Segment::Selector(Selector::Name(name)) => Some(Step::Name(name.clone())),
            Segment::Selector(Selector::Index(i)) if *i >= 0 => {
                usize::try_from(*i).ok().map(Step::Index)
            }
            _ => None,
        })
        .collect()
}

/// Collapse a multi-line parser message into one line.
pub(crate) fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && *l != "|" && !l.chars().all(|c| c == '|' || c == '^' || c == ' ')
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn direct_and_general_agree() {
        let doc =
            json!({"host": "a", "data": {"ups": "ups1", "list": [1, {"x": 2}], "m": {"k": null}}});
        for path in [
            "$.host",
            "$.data.ups",
            "$.data.list[1].x",
            "$.data['list'][0]",
            "$.data.m.k",
            "$.missing",
            "$.data.list[5]",
            "$.data.list[*]",
            "$..x",
            "$.data.list[-1]",
        ] {
            let p = JsonPath::parse(path).unwrap();
            assert_eq!(p.select(&doc), p.select_general(&doc), "{path}");
        }
        assert!(JsonPath::parse("$.data.ups").unwrap().is_direct());
        assert!(!JsonPath::parse("$..x").unwrap().is_direct());
    }

    #[test]
    fn simple_paths_are_valid_for_jsonpath_rust_too() {
        for p in ["$", "$.a", "$.data.charge", "$._x9[0].y[12]", "$.a[10]"] {
            assert!(simple_steps(p).is_some(), "{p}");
            assert!(parse_json_path(p).is_ok(), "{p}");
        }
        for p in ["$.9a", "$[01]", "$.a.", "$[-1]", "$['a']", "$..a", "$.a b"] {
            assert!(simple_steps(p).is_none(), "{p}");
        }
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in ["data.ups", "$.", "$[", "$.data[?", ""] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }
}
