//! Conditions: `{path, op, value}` leaves nested with `all` / `any` / `not`.
//!
//! Semantics (DESIGN §4): positive ops hold if any node the path yields
//! satisfies them; `ne` and `not_in` need at least one node and hold only if
//! every node does; a path that yields nothing makes every op false except
//! `absent`. Numbers compare by value, strings by code point, and values of
//! different JSON types are unequal and unordered — never an error.

use crate::jsonpath::JsonPath;
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};
use std::cmp::Ordering;

/// Regexes in `matches` are compiled with this size limit.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
    Matches,
    Exists,
    Absent,
}

impl Op {
    /// Every operator, in documentation order.
    pub const ALL: [Op; 14] = [
        Op::Eq,
        Op::Ne,
        Op::Lt,
        Op::Le,
        Op::Gt,
        Op::Ge,
        Op::In,
        Op::NotIn,
        Op::Contains,
        Op::StartsWith,
        Op::EndsWith,
        Op::Matches,
        Op::Exists,
        Op::Absent,
    ];

    /// The name as policies write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Lt => "lt",
            Op::Le => "le",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::In => "in",
            Op::NotIn => "not_in",
            Op::Contains => "contains",
            Op::StartsWith => "starts_with",
            Op::EndsWith => "ends_with",
            Op::Matches => "matches",
            Op::Exists => "exists",
            Op::Absent => "absent",
        }
    }

    /// Parse an operator name.
    pub fn from_name(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == s)
    }

    /// True for `exists` and `absent`, which take no value.
    pub fn takes_value(self) -> bool {
        !matches!(self, Op::Exists | Op::Absent)
    }
}

/// A condition as kept in the IR (plain data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConditionIr {
    All { all: Vec<ConditionIr> },
    Any { any: Vec<ConditionIr> },
    Not { not: Vec<ConditionIr> },
    Leaf(LeafIr),
}

/// A `{path, op, value}` leaf in the IR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeafIr {
    pub path: String,
    pub op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// A condition ready to evaluate: paths and regexes compiled once.
#[derive(Debug, Clone)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Vec<Condition>),
    Leaf(Leaf),
}

/// A compiled leaf.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub path: JsonPath,
    pub op: Op,
    pub value: Value,
    regex: Option<regex::Regex>,
}

/// Build a size-limited regex.
pub fn compile_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| crate::jsonpath::one_line(&e.to_string()))
}

impl Condition {
    /// Compile from IR. The IR was validated when it was made, so failures here
    /// mean a corrupted IR; they are reported, not panicked on.
    pub fn from_ir(ir: &ConditionIr) -> Result<Condition, String> {
        Ok(match ir {
            ConditionIr::All { all } => Condition::All(Self::list_from_ir(all)?),
            ConditionIr::Any { any } => Condition::Any(Self::list_from_ir(any)?),
            ConditionIr::Not { not } => Condition::Not(Self::list_from_ir(not)?),
            ConditionIr::Leaf(leaf) => {
                let path = JsonPath::parse(&leaf.path)?;
                let value = leaf.value.clone().unwrap_or(Value::Null);
                let regex = match (leaf.op, &value) {
                    (Op::Matches, Value::String(p)) => Some(compile_regex(p)?),
                    (Op::Matches, _) => return Err("`matches` needs a string pattern".into()),
                    _ => None,
                };
                Condition::Leaf(Leaf {
                    path,
                    op: leaf.op,
                    value,
                    regex,
                })
            }
        })
    }

    /// Compile a list of IR conditions.
    pub fn list_from_ir(list: &[ConditionIr]) -> Result<Vec<Condition>, String> {
        list.iter().map(Condition::from_ir).collect()
    }

    /// Evaluate against a normalized envelope.
    pub fn eval(&self, doc: &Value) -> bool {
        match self {
            Condition::All(list) => all(list, doc),
            Condition::Any(list) => list.iter().any(|c| c.eval(doc)),
            Condition::Not(list) => !all(list, doc),
            Condition::Leaf(leaf) => leaf.eval(doc),
        }
    }
}

/// A list of conditions holds when every member holds (an empty list holds).
pub fn all(list: &[Condition], doc: &Value) -> bool {
    list.iter().all(|c| c.eval(doc))
}

impl Leaf {
    /// Evaluate this leaf.
    pub fn eval(&self, doc: &Value) -> bool {
        let nodes = self.path.select(doc);
        match self.op {
            Op::Exists => !nodes.is_empty(),
            Op::Absent => nodes.is_empty(),
            Op::Ne | Op::NotIn => !nodes.is_empty() && nodes.iter().all(|n| self.test(n)),
            _ => nodes.iter().any(|n| self.test(n)),
        }
    }

    fn test(&self, node: &Value) -> bool {
        let v = &self.value;
        match self.op {
            Op::Eq => json_eq(node, v),
            Op::Ne => !json_eq(node, v),
            Op::Lt => compare(node, v) == Some(Ordering::Less),
            Op::Le => matches!(compare(node, v), Some(Ordering::Less | Ordering::Equal)),
            Op::Gt => compare(node, v) == Some(Ordering::Greater),
            Op::Ge => matches!(compare(node, v), Some(Ordering::Greater | Ordering::Equal)),
            Op::In => v
                .as_array()
                .is_some_and(|a| a.iter().any(|x| json_eq(node, x))),
            Op::NotIn => v
                .as_array()
                .is_some_and(|a| !a.iter().any(|x| json_eq(node, x))),
            Op::Contains => match (node, v) {
                (Value::String(s), Value::String(sub)) => s.contains(sub.as_str()),
                (Value::Array(items), _) => items.iter().any(|x| json_eq(x, v)),
                _ => false,
            },
            Op::StartsWith => {
                matches!((node, v), (Value::String(s), Value::String(p)) if s.starts_with(p.as_str()))
            }
            Op::EndsWith => {
                matches!((node, v), (Value::String(s), Value::String(p)) if s.ends_with(p.as_str()))
            }
            Op::Matches => match (node, &self.regex) {
                (Value::String(s), Some(re)) => re.is_match(s),
                _ => false,
            },
            Op::Exists | Op::Absent => unreachable!("handled in eval"),
        }
    }
}

/// Compare two numbers by value (`1` equals `1.0`).
pub fn num_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    let as_i128 = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    if let (Some(x), Some(y)) = (as_i128(a), as_i128(b)) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// Deep equality with numbers by value; different types are unequal.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Order two values of the same scalar type; `None` when unordered.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y),
        // UTF-8 byte order is Unicode code point order.
        (Value::String(x), Value::String(y)) => Some(x.as_str().cmp(y.as_str())),
        _ => None,
    }
}

/// The JSON type name of a value, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
