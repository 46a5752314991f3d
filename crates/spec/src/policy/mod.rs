//! Policy spec v1: load YAML (several documents per file), JSON or TOML,
//! validate into findings, and compile into the IR.
//!
//! ```
//! use switchyard_spec::policy::{self, Format};
//! let text = r#"
//! version: 1
//! name: restart-nginx
//! trigger_group: { triggers: [ { kind: alertmanager.firing } ] }
//! targets: [ { selector: "{{ $.host }}/service:nginx" } ]
//! actions: [ { capability: service, verb: restart } ]
//! "#;
//! let results = policy::compile_text(text, Format::Yaml);
//! assert!(results[0].ir.is_some());
//! ```

mod compile;
mod walk;

pub use compile::{kind_pattern_problem, name_problem};

use crate::catalog::DriverCatalog;
use crate::finding::{Finding, codes, has_blocker};
use crate::ir::PolicyIr;
use crate::pointer::Pointer;
use serde_json::Value;
use std::path::Path;

/// Largest policy document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// A file format for policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Toml,
}

impl Format {
    /// The format named by a file extension (`.yaml`, `.yml`, `.json`, `.toml`).
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }

    /// The format named by a media type (`application/json`, `application/yaml`, `text/yaml`, `application/toml`).
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let essence = content_type.split(';').next()?.trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Some(Format::Json),
            "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
                Some(Format::Yaml)
            }
            "application/toml" | "text/toml" => Some(Format::Toml),
            _ => None,
        }
    }

    /// The format's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
            Format::Toml => "toml",
        }
    }
}

/// The outcome of validating one policy document.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// 0-based index of the document within its file (YAML may hold several).
    pub document: usize,
    /// The policy name, when one could be read.
    pub name: Option<String>,
    /// Every finding, blockers first.
    pub findings: Vec<Finding>,
    /// The IR, present when there is no blocker.
    pub ir: Option<PolicyIr>,
    /// `spec_hash` of the IR.
    pub spec_hash: Option<String>,
}

impl Compiled {
    /// True when a blocker refuses the save.
    pub fn is_blocked(&self) -> bool {
        has_blocker(&self.findings)
    }

    fn parse_failure(finding: Finding) -> Compiled {
        Compiled {
            document: 0,
            name: None,
            findings: vec![finding],
            ir: None,
            spec_hash: None,
        }
    }
}

/// Parse a file's text into one JSON value per policy document.
pub fn load(text: &str, format: Format) -> Result<Vec<Value>, Finding> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(Finding::blocker(
            codes::PARSE_SYNTAX,
            "",
            format!(
                "document is {} bytes; the limit is {MAX_DOCUMENT_BYTES}",
                text.len()
            ),
        ));
    }
    let docs = match format {
        Format::Json => {
            let v: Value = serde_json::from_str(text).map_err(|e| {
                Finding::blocker(
                    codes::PARSE_SYNTAX,
                    "",
                    format!("invalid JSON: {}", strip_at_line(&e.to_string())),
                )
                .at(e.line() as u64, e.column() as u64)
            })?;
            vec![v]
        }
        Format::Toml => {
            let v: Value = toml::from_str(text).map_err(|e| {
                let mut f = Finding::blocker(
                    codes::PARSE_SYNTAX,
                    "",
                    format!("invalid TOML: {}", e.message()),
                );
                if let Some(span) = e.span() {
                    let (line, col) = line_col(text, span.start);
                    f = f.at(line, col);
                }
                f
            })?;
            vec![v]
        }
        Format::Yaml => serde_saphyr::from_multiple::<Value>(text).map_err(|e| {
            let message = yaml_message(&e.to_string());
            let mut f =
                Finding::blocker(codes::PARSE_SYNTAX, "", format!("invalid YAML: {message}"));
            if let Some(loc) = e.location() {
                f = f.at(loc.line(), loc.column());
            }
            f
        })?,
    };
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    if docs.is_empty() {
        return Err(Finding::blocker(
            codes::PARSE_EMPTY,
            "",
            "the document is empty",
        ));
    }
    Ok(docs)
}

/// The YAML parser's message without its source snippet and repeated position.
fn yaml_message(full: &str) -> String {
    let first = full.split(" --> ").next().unwrap_or(full);
    let first = crate::jsonpath::one_line(first);
    let mut msg = first.strip_prefix("error: ").unwrap_or(&first);
    if let Some(rest) = msg.strip_prefix("line ")
        && let Some((_, after)) = rest.split_once(": ")
    {
        msg = after;
    }
    // Drop the parser's advice about its own options.
    msg.split(", set ").next().unwrap_or(msg).to_owned()
}

fn strip_at_line(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (u64, u64) {
    let offset = text.floor_char_boundary(offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line as u64, col as u64)
}

/// Validate one parsed document, checking actions against installed drivers when a catalog is given.
pub fn validate_value(doc: &Value, catalog: Option<&dyn DriverCatalog>) -> Compiled {
    let mut w = walk::Walk::default();
    let ir = compile::compile(doc, &mut w);
    if let (Some(ir), Some(catalog)) = (&ir, catalog) {
        for (i, action) in ir.actions.iter().enumerate() {
            catalog.check_action(
                ir,
                action,
                &Pointer::root().key("actions").index(i),
                &mut w.findings,
            );
        }
    }
    let mut findings = w.findings;
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let blocked = has_blocker(&findings);
    let ir = ir.filter(|_| !blocked);
    Compiled {
        document: 0,
        name: doc.get("name").and_then(Value::as_str).map(str::to_owned),
        spec_hash: ir.as_ref().map(PolicyIr::spec_hash),
        ir,
        findings,
    }
}

/// Parse and validate every document in `text`.
pub fn validate_text(
    text: &str,
    format: Format,
    catalog: Option<&dyn DriverCatalog>,
) -> Vec<Compiled> {
    match load(text, format) {
        Err(finding) => vec![Compiled::parse_failure(finding)],
        Ok(docs) => docs
            .iter()
            .enumerate()
            .map(|(i, d)| Compiled {
                document: i,
                ..validate_value(d, catalog)
            })
            .collect(),
    }
}

/// Parse and compile every document in `text` without driver checks.
pub fn compile_text(text: &str, format: Format) -> Vec<Compiled> {
    validate_text(text, format, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_extension_and_media_type() {
        assert_eq!(Format::from_path(Path::new("a/p.YML")), Some(Format::Yaml));
        assert_eq!(Format::from_path(Path::new("p.toml")), Some(Format::Toml));
        assert_eq!(Format::from_path(Path::new("p.txt")), None);
        assert_eq!(
            Format::from_content_type("application/json; charset=utf-8"),
            Some(Format::Json)
        );
        assert_eq!(Format::from_content_type("text/yaml"), Some(Format::Yaml));
        assert_eq!(
            Format::from_content_type("application/toml"),
            Some(Format::Toml)
        );
        assert_eq!(Format::from_content_type("text/plain"), None);
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncdé f", 8), (2, 5));
        assert_eq!(line_col("x", 99), (1, 2));
    }
}
