//! Secret references in configuration: `${env:NAME}` and `${file:PATH}`.
//!
//! A string that is exactly one reference is replaced by the secret; other
//! strings are left alone (no interpolation inside text). Errors name the
//! reference, never the value. [`Resolved::redact`] removes every resolved
//! secret from text before it is logged or returned.

use serde_json::Value;
use switchyard_spec::pointer::Pointer;
use thiserror::Error;

/// Why a reference could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    #[error("`${{env:{0}}}`: the environment variable is not set")]
    EnvMissing(String),
    #[error("`${{file:{path}}}`: {reason}")]
    File { path: String, reason: String },
    #[error("`{0}`: unknown secret reference; use `${{env:NAME}}` or `${{file:PATH}}`")]
    Unknown(String),
}

/// A value with its references resolved, and the secrets it now holds.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub value: Value,
    secrets: Vec<String>,
}

/// `text` with every one of `secrets` replaced by `***`, the longest
/// first (a secret holding another is replaced whole, not left as
/// `***rest`). Every non-empty value counts, however short: a short secret
/// mangles some output, which is better than showing it.
///
/// A value is also replaced as it appears quoted in JSON (`k"x` as
/// `k\"x`): adapters' results and schema errors quote values that way.
pub fn redact(text: &str, secrets: &[String]) -> String {
    Redactor::new(secrets).redact(text)
}

/// [`redact`] prepared once for many texts (every string of a result).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Every form of every secret, the longest first.
    forms: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: &[String]) -> Redactor {
        let mut forms: Vec<String> = Vec::new();
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            let quoted = Value::String(s.clone()).to_string();
            let escaped = &quoted[1..quoted.len() - 1];
            if escaped != s {
                forms.push(escaped.to_owned());
            }
            forms.push(s.clone());
        }
        forms.sort_by_key(|s| std::cmp::Reverse(s.len()));
        forms.dedup();
        Redactor { forms }
    }

    /// No secret to remove: texts pass as they are.
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    pub fn redact(&self, text: &str) -> String {
        self.forms
            .iter()
            .fold(text.to_owned(), |acc, s| acc.replace(s.as_str(), "***"))
    }
}

impl Resolved {
    /// Replace every resolved secret in `text` with `***`.
    pub fn redact(&self, text: &str) -> String {
        redact(text, &self.secrets)
    }

    /// A redactor of these secrets and `more` (a call's secret params).
    pub fn redactor(&self, more: &[String]) -> Redactor {
        let mut all = self.secrets.clone();
        all.extend_from_slice(more);
        Redactor::new(&all)
    }

    /// The secret values resolved (for redaction elsewhere).
    pub fn secret_values(&self) -> Vec<String> {
        self.secrets.clone()
    }
}

/// Parse `${kind:arg}` when `s` is exactly one reference.
fn reference(s: &str) -> Option<(&str, &str)> {
    s.strip_prefix("${")?.strip_suffix('}')?.split_once(':')
}

/// True when `s` is a secret reference.
pub fn is_reference(s: &str) -> bool {
    reference(s).is_some()
}

/// Resolve every reference inside `value` (at use time: read the environment and files now).
pub fn resolve(value: &Value) -> Result<Resolved, Error> {
    let mut secrets = Vec::new();
    let value = walk(value, &mut secrets)?;
    Ok(Resolved { value, secrets })
}

fn walk(value: &Value, secrets: &mut Vec<String>) -> Result<Value, Error> {
    Ok(match value {
        Value::String(s) => match reference(s) {
            Some(("env", name)) => {
                let v = std::env::var(name).map_err(|_| Error::EnvMissing(name.to_owned()))?;
                secrets.push(v.clone());
                Value::String(v)
            }
            Some(("file", path)) => {
                let v = std::fs::read_to_string(path).map_err(|e| Error::File {
                    path: path.to_owned(),
                    reason: e.kind().to_string(),
                })?;
                // A trailing newline in a secret file is never part of the secret.
                let v = v
                    .strip_suffix('\n')
                    .map(|v| v.strip_suffix('\r').unwrap_or(v))
                    .unwrap_or(&v)
                    .to_owned();
                secrets.push(v.clone());
                Value::String(v)
            }
            Some(_) => return Err(Error::Unknown(s.clone())),
            None => value.clone(),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| walk(v, secrets))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), walk(v, secrets)?)))
                .collect::<Result<_, Error>>()?,
        ),
        other => other.clone(),
    })
}

/// The members of `value` that `schema` marks secret with `writeOnly:
/// true`, with their JSON pointers: the one walk behind
/// [`literal_secrets`] and [`mask_secret_members`]. Sub-schemas are
/// followed through `properties`, `additionalProperties` and `items`.
pub fn secret_members<'v>(schema: &Value, value: &'v Value) -> Vec<(Pointer, &'v Value)> {
    let mut found = Vec::new();
    walk_secret(schema, value, Pointer::root(), &mut found);
    found
}

fn walk_secret<'v>(
    schema: &Value,
    value: &'v Value,
    at: Pointer,
    found: &mut Vec<(Pointer, &'v Value)>,
) {
    if schema.get("writeOnly") == Some(&Value::Bool(true)) {
        found.push((at, value));
        return;
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let sub = schema
                    .get("properties")
                    .and_then(|p| p.get(k))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                if let Some(sub) = sub {
                    walk_secret(sub, v, at.key(k), found);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items").filter(|s| s.is_object()) {
                for (i, v) in items.iter().enumerate() {
                    walk_secret(sub, v, at.index(i), found);
                }
            }
        }
        _ => {}
    }
}

/// Whether `schema` marks any member secret (`writeOnly: true`), so that
/// values checked against it may need masking at all.
pub fn has_secret_members(schema: &Value) -> bool {
    if schema.get("writeOnly") == Some(&Value::Bool(true)) {
        return true;
    }
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|p| p.values());
    let nested = ["additionalProperties", "items"]
        .iter()
        .filter_map(|k| schema.get(*k));
    properties.chain(nested).any(has_secret_members)
}

/// Where `value` holds a literal secret: a non-empty string that is not a
/// reference, at (or below) a member `schema` marks secret (JSON pointers).
/// Driver authors mark passwords, keys and tokens so; a literal there is
/// refused at start unless `allow_literal_secrets` is set.
pub fn literal_secrets(schema: &Value, value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for (at, v) in secret_members(schema, value) {
        literal_leaves(v, at, &mut found);
    }
    found
}

fn literal_leaves(value: &Value, at: Pointer, found: &mut Vec<String>) {
    match value {
        Value::String(s) if !s.is_empty() && !is_reference(s) => found.push(at.to_string()),
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| literal_leaves(v, at.key(k), found)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| literal_leaves(v, at.index(i), found)),
        _ => {}
    }
}

/// `value` with the members `schema` marks secret replaced by `***` (what
/// may be stored and shown of it), and the secret values they held.
pub fn mask_secret_members(schema: &Value, value: &Value) -> (Value, Vec<String>) {
    let members = secret_members(schema, value);
    if members.is_empty() {
        return (value.clone(), Vec::new());
    }
    let mut secrets = Vec::new();
    let mut masked = value.clone();
    for (at, v) in members {
        collect_strings(v, &mut secrets);
        if let Some(slot) = masked.pointer_mut(at.as_str()) {
            *slot = Value::String("***".into());
        }
    }
    (masked, secrets)
}

fn collect_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if !s.is_empty() => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// A URL as it may be logged, shown or used as a metric label: a password
/// (or a lone user token) replaced by `***`, the query string and fragment
/// dropped. Text that is not a URL is returned whole.
pub fn redact_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut u) if u.has_host() => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            } else if !u.username().is_empty()
                && matches!(u.scheme(), "nats" | "tls" | "ws" | "wss")
            {
                // nats://TOKEN@host: the user part is the credential.
                let _ = u.set_username("***");
            }
            if u.query().is_some() {
                u.set_query(None);
            }
            u.set_fragment(None);
            u.to_string()
        }
        _ => text.to_owned(),
    }
}

/// Every URL in a comma-separated list (NATS server lists) redacted.
pub fn redact_urls(text: &str) -> String {
    text.split(',')
        .map(|u| redact_url(u.trim()))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_whole_and_as_json_quotes_them() {
        let secrets = vec!["abc".to_owned(), "abcdef".to_owned(), "k\"\\x".to_owned()];
        assert_eq!(redact("abcdef abc", &secrets), "*** ***");
        let quoted = Value::String("k\"\\x".into()).to_string();
        assert_eq!(
            redact(&format!("value {quoted} is too long"), &secrets),
            "value \"***\" is too long"
        );
        assert_eq!(redact("k\"\\x", &secrets), "***");
    }

    #[test]
    fn resolves_env_and_file_and_redacts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cr3t-file\n").unwrap();
        // Cargo and nextest set CARGO_PKG_NAME for test processes; it stands in for a secret.
        let secret = env!("CARGO_PKG_NAME");
        assert_eq!(std::env::var("CARGO_PKG_NAME").as_deref(), Ok(secret));
        let v = json!({
            "token_id": "switchyard@pve!engine",
            "token_secret": "${env:CARGO_PKG_NAME}",
            "nested": [format!("${{file:{}}}", file.display())],
            "text": "prefix ${env:CARGO_PKG_NAME} is not interpolated"
        });
        let r = resolve(&v).unwrap();
        assert_eq!(r.value["token_secret"], json!(secret));
        assert_eq!(r.value["nested"][0], json!("s3cr3t-file"));
        assert_eq!(r.value["text"], v["text"]);
        assert_eq!(
            r.redact(&format!("auth failed for {secret} and s3cr3t-file")),
            "auth failed for *** and ***"
        );
    }

    #[test]
    fn errors_name_the_reference_not_a_value() {
        let e = resolve(&json!({"a": "${env:SWITCHYARD_TEST_SURELY_UNSET}"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`${env:SWITCHYARD_TEST_SURELY_UNSET}`: the environment variable is not set"
        );
        let e = resolve(&json!("${file:/nonexistent/secret}")).unwrap_err();
        assert!(
            e.to_string().starts_with("`${file:/nonexistent/secret}`:"),
            "{e}"
        );
        let e = resolve(&json!("${vault:x}")).unwrap_err();
        assert!(matches!(e, Error::Unknown(_)));
    }

    #[test]
    fn literal_secrets_are_found_where_the_schema_marks_them() {
        let schema = json!({"type": "object", "properties": {
            "user": {"type": "string"},
            "password": {"type": "string", "writeOnly": true},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "tokens": {"type": "array", "items": {"type": "string", "writeOnly": true}},
        }});
        let v = json!({"user": "u", "password": "hunter2", "headers": {"a": "b"},
                       "tokens": ["${env:T}", "plain"]});
        assert_eq!(literal_secrets(&schema, &v), vec!["/password", "/tokens/1"]);
        let (masked, found) = mask_secret_members(&schema, &v);
        assert_eq!(masked["password"], "***");
        assert_eq!(masked["tokens"], json!(["***", "***"]));
        assert_eq!(masked["user"], "u");
        assert_eq!(found, vec!["hunter2", "${env:T}", "plain"]);
        assert!(has_secret_members(&schema));
        assert!(!has_secret_members(
            &json!({"type": "object", "properties": {"a": {"type": "string"}}})
        ));
        let (same, none) = mask_secret_members(&schema, &json!({"user": "u"}));
        assert_eq!((same, none.len()), (json!({"user": "u"}), 0));
    }

    #[test]
    fn urls_lose_their_credentials_and_queries() {
        assert_eq!(
            redact_url("nats://alice:pw@nats.lab:4222"),
            "nats://alice:***@nats.lab:4222"
        );
        assert_eq!(
            redact_url("nats://s3cr3ttoken@nats.lab:4222"),
            "nats://***@nats.lab:4222"
        );
        assert_eq!(
            redact_url("https://hooks.example/services/T0/B1?token=abc#x"),
            "https://hooks.example/services/T0/B1"
        );
        assert_eq!(
            redact_urls("nats://a:b@n1:4222, nats://n2:4222"),
            "nats://a:***@n1:4222,nats://n2:4222"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
