//! Secret references in configuration: `${env:NAME}` and `${file:PATH}`.
//!
//! A string that is exactly one reference is replaced by the secret; other
//! strings are left alone (no interpolation inside text). Errors name the
//! reference, never the value. [`Resolved::redact`] removes every resolved
//! secret from text before it is logged or returned.

use serde_json::Value;
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

impl Resolved {
    /// Replace every resolved secret in `text` with `***`.
    pub fn redact(&self, text: &str) -> String {
        self.secrets
            .iter()
            .filter(|s| !s.is_empty())
            .fold(text.to_owned(), |acc, s| acc.replace(s.as_str(), "***"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
