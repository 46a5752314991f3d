//! `{{ JSONPath }}` placeholders in selectors and string params.
//!
//! A template is parsed once at compile time; filling it evaluates each path on
//! the event, which must yield exactly one scalar. The value is inserted as a
//! literal: never parsed as a glob, range or query, never passed to a shell.

use crate::jsonpath::JsonPath;
use crate::pointer::Pointer;
use serde_json::Value;
use thiserror::Error;

/// A string split into literal text and placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Path(JsonPath),
}

/// Why a template could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SyntaxError {
    #[error("unclosed `{{{{` at byte {0}")]
    Unclosed(usize),
    #[error("empty placeholder at byte {0}")]
    Empty(usize),
    #[error("placeholder at byte {offset}: {message}")]
    Path { offset: usize, message: String },
}

/// Why a placeholder could not be filled (the run fails with `placeholder_unresolved`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FillError {
    #[error("placeholder `{path}` matched nothing in the event")]
    NoMatch { path: String },
    #[error("placeholder `{path}` matched {count} values; it must match exactly one")]
    Many { path: String, count: usize },
    #[error("placeholder `{path}` matched a {kind}; it must match a string, number or boolean")]
    NotScalar { path: String, kind: &'static str },
}

impl Template {
    /// Parse `text`; a string without `{{` is a single literal.
    pub fn parse(text: &str) -> Result<Template, SyntaxError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or(SyntaxError::Unclosed(offset + open))?;
            let inner = after[..close].trim();
            if inner.is_empty() {
                return Err(SyntaxError::Empty(offset + open));
            }
            let path = JsonPath::parse(inner).map_err(|message| SyntaxError::Path {
                offset: offset + open,
                message,
            })?;
            parts.push(Part::Path(path));
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// True when the text holds at least one placeholder.
    pub fn has_placeholders(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Path(_)))
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Fill every placeholder from `event` and return the text.
    pub fn fill(&self, event: &Value) -> Result<String, FillError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Path(p) => out.push_str(&fill_path(p, event)?),
            }
        }
        Ok(out)
    }

    /// Fill a param value: a string that is exactly one placeholder keeps the
    /// scalar's JSON type (`"{{ $.data.timeout }}"` stays a number); otherwise
    /// the result is a string.
    pub fn fill_value(&self, event: &Value) -> Result<Value, FillError> {
        if let [Part::Path(p)] = self.parts.as_slice() {
            return resolve_one(p, event);
        }
        self.fill(event).map(Value::String)
    }
}

/// The text of the one scalar `path` selects in `event` (a placeholder already parsed).
pub fn fill_path(path: &JsonPath, event: &Value) -> Result<String, FillError> {
    resolve_one(path, event).map(|v| scalar_text(&v))
}

fn resolve_one(path: &JsonPath, event: &Value) -> Result<Value, FillError> {
    let nodes = path.select(event);
    match nodes.as_slice() {
        [] => Err(FillError::NoMatch {
            path: path.as_str().to_owned(),
        }),
        [one] => match one {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok((*one).clone()),
            other => Err(FillError::NotScalar {
                path: path.as_str().to_owned(),
                kind: crate::condition::type_name(other),
            }),
        },
        many => Err(FillError::Many {
            path: path.as_str().to_owned(),
            count: many.len(),
        }),
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An action's params with their strings parsed once: filling them for an
/// event evaluates the placeholders and copies the rest.
#[derive(Debug, Clone)]
pub struct Params(ParamNode);

#[derive(Debug, Clone)]
enum ParamNode {
    /// No placeholder anywhere below: copied as it is.
    Fixed(Value),
    /// A string holding placeholders.
    Template(Template),
    Array(Vec<ParamNode>),
    Object(Vec<(String, ParamNode)>),
}

impl Params {
    /// Parse every string in `params`. A string that is not a valid template
    /// (`"a {{ b"`) is kept as literal text, as it is when filled.
    pub fn new(params: &Value) -> Params {
        Params(ParamNode::new(params))
    }

    /// The params for `event`: a string that is exactly one placeholder keeps
    /// the scalar's JSON type, as [`Template::fill_value`] says.
    pub fn fill(&self, event: &Value) -> Result<Value, FillError> {
        self.0.fill(event)
    }

    /// The JSON pointers, in `filled` (what [`Params::fill`] returned), of
    /// the strings that start with `-` where that `-` came from a
    /// placeholder: event text that a program would read as an option.
    /// `--name={{ $.x }}` (the option written in the policy) is not one.
    pub fn option_like(&self, filled: &Value) -> Vec<String> {
        let mut out = Vec::new();
        self.0.option_like(filled, Pointer::root(), &mut out);
        out
    }
}

impl ParamNode {
    fn new(v: &Value) -> ParamNode {
        let node = match v {
            Value::String(s) => match Template::parse(s) {
                Ok(t) if t.has_placeholders() => ParamNode::Template(t),
                _ => ParamNode::Fixed(v.clone()),
            },
            Value::Array(items) => ParamNode::Array(items.iter().map(ParamNode::new).collect()),
            Value::Object(map) => ParamNode::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), ParamNode::new(v)))
                    .collect(),
            ),
            other => ParamNode::Fixed(other.clone()),
        };
        // A container with nothing to fill is copied whole.
        let fixed = match &node {
            ParamNode::Array(items) => items.iter().all(|i| matches!(i, ParamNode::Fixed(_))),
            ParamNode::Object(members) => members
                .iter()
                .all(|(_, m)| matches!(m, ParamNode::Fixed(_))),
            _ => false,
        };
        if fixed {
            ParamNode::Fixed(v.clone())
        } else {
            node
        }
    }

    fn option_like(&self, filled: &Value, at: Pointer, out: &mut Vec<String>) {
        match (self, filled) {
            (ParamNode::Template(t), Value::String(s))
                if matches!(t.parts.first(), Some(Part::Path(_))) && s.starts_with('-') =>
            {
                out.push(at.to_string());
            }
            (ParamNode::Array(items), Value::Array(values)) => {
                for (i, (n, v)) in items.iter().zip(values).enumerate() {
                    n.option_like(v, at.index(i), out);
                }
            }
            (ParamNode::Object(members), Value::Object(map)) => {
                for (k, n) in members {
                    if let Some(v) = map.get(k) {
                        n.option_like(v, at.key(k), out);
                    }
                }
            }
            _ => {}
        }
    }

    fn fill(&self, event: &Value) -> Result<Value, FillError> {
        Ok(match self {
            ParamNode::Fixed(v) => v.clone(),
            ParamNode::Template(t) => t.fill_value(event)?,
            ParamNode::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| i.fill(event))
                    .collect::<Result<_, _>>()?,
            ),
            ParamNode::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.fill(event)?)))
                    .collect::<Result<_, FillError>>()?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fill_literal_and_typed() {
        let ev = json!({"host": "nut-01", "data": {"ups": "ups1", "t": 120, "l": [1, 2], "o": {}}});
        let t = Template::parse("{{ $.data.ups }} on battery at {{$.host}}").unwrap();
        assert_eq!(t.fill(&ev).unwrap(), "ups1 on battery at nut-01");
        assert_eq!(
            Template::parse("{{ $.data.t }}")
                .unwrap()
                .fill_value(&ev)
                .unwrap(),
            json!(120)
        );
        assert_eq!(
            Template::parse("t={{ $.data.t }}")
                .unwrap()
                .fill_value(&ev)
                .unwrap(),
            json!("t=120")
        );
        assert!(matches!(
            Template::parse("{{ $.nope }}").unwrap().fill(&ev),
            Err(FillError::NoMatch { .. })
        ));
        assert!(matches!(
            Template::parse("{{ $.data.l[*] }}").unwrap().fill(&ev),
            Err(FillError::Many { count: 2, .. })
        ));
        assert!(matches!(
            Template::parse("{{ $.data.o }}").unwrap().fill(&ev),
            Err(FillError::NotScalar { .. })
        ));
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(
            Template::parse("a {{ $.x").unwrap_err(),
            SyntaxError::Unclosed(2)
        );
        assert_eq!(
            Template::parse("{{  }}").unwrap_err(),
            SyntaxError::Empty(0)
        );
        assert!(matches!(
            Template::parse("{{ host }}").unwrap_err(),
            SyntaxError::Path { .. }
        ));
        assert!(!Template::parse("plain").unwrap().has_placeholders());
    }

    #[test]
    fn params_parsed_once_fill_like_templates() {
        let ev = json!({"host": "h1", "data": {"n": 7, "name": "ups1"}});
        let params = json!({
            "argv": ["echo", "{{ $.data.n }}", "n={{ $.data.n }}"],
            "fixed": {"a": [1, "two", null], "b": "a {{ b"},
            "timeout": "{{ $.data.n }}",
            "nested": {"on": "{{ $.host }}", "keep": true},
        });
        let compiled = Params::new(&params);
        let want = json!({
            "argv": ["echo", 7, "n=7"],
            "fixed": {"a": [1, "two", null], "b": "a {{ b"},
            "timeout": 7,
            "nested": {"on": "h1", "keep": true},
        });
        assert_eq!(compiled.fill(&ev).unwrap(), want);
        // The same compiled params serve every event.
        let other = json!({"host": "h2", "data": {"n": "x"}});
        assert_eq!(compiled.fill(&other).unwrap()["nested"]["on"], "h2");
        assert_eq!(compiled.fill(&other).unwrap()["argv"][1], "x");
        assert!(matches!(
            compiled.fill(&json!({"host": "h3", "data": {}})),
            Err(FillError::NoMatch { .. })
        ));
        assert!(matches!(
            Params::new(&json!({"a": ["{{ $.data.l[*] }}"]})).fill(&json!({"data": {"l": [1, 2]}})),
            Err(FillError::Many { count: 2, .. })
        ));
        assert_eq!(Params::new(&json!(null)).fill(&ev).unwrap(), json!(null));
    }

    #[test]
    fn option_like_values_from_placeholders_are_found() {
        let p = Params::new(
            &json!({"argv": ["ping", "-c", "1", "{{ $.data.a }}", "--to={{ $.data.a }}", "{{ $.data.b }}"],
                                    "env": {"X": "{{ $.data.a }}"}}),
        );
        let ev = json!({"data": {"a": "--output=/etc/passwd", "b": "host-1"}});
        let filled = p.fill(&ev).unwrap();
        assert_eq!(p.option_like(&filled), vec!["/argv/3", "/env/X"]);
        let ev = json!({"data": {"a": "fine", "b": "-x"}});
        let filled = p.fill(&ev).unwrap();
        assert_eq!(p.option_like(&filled), vec!["/argv/5"]);
    }
}
