//! `plugin.yaml`: what a driver declares — its adapter, target types,
//! capabilities and verbs with their params schemas — and its validation.
//!
//! The file form is parsed with unknown fields refused, then checked as a
//! whole ([`Manifest::load`]): every problem is reported with a path into the
//! file (`capabilities[0].verbs[1].inverse`), not just the first.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The manifest format this switchyard reads.
pub const SCHEMA_VERSION: u32 = 1;
/// The target type every driver may act on without declaring it: the host itself.
pub const HOST_TARGET_TYPE: &str = "host";

/// A driver's plugin.yaml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema_version: u32,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: Option<String>,
    pub adapter: Adapter,
    /// JSON Schema of `[drivers.config.<name>]`, sent with `initialize`.
    #[serde(default)]
    pub driver_config_schema: Option<Value>,
    /// JSON Schema of a host's `config`.
    #[serde(default)]
    pub host_config_schema: Option<Value>,
    #[serde(default)]
    pub target_types: Vec<TargetType>,
    pub capabilities: Vec<Capability>,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub discovery: Discovery,
}

/// How to start the adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adapter {
    /// argv; `command[0]` is resolved next to plugin.yaml, then on PATH. Never run through a shell.
    pub command: Vec<String>,
    /// Adapter processes; each host is pinned to one.
    #[serde(default = "one")]
    pub instances: u32,
}

fn one() -> u32 {
    1
}

/// A kind of item under a host (`vm`, `port`, `service`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetType {
    pub name: String,
    /// Regex every id of this type matches.
    #[serde(default)]
    pub id_pattern: Option<String>,
}

/// How runs of a capability share a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Serialization {
    /// One run at a time per host (the default).
    #[default]
    Host,
    /// Runs on different targets of one host may overlap.
    Target,
}

/// A named set of verbs on one target type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capability {
    pub name: String,
    pub target_type: String,
    #[serde(default)]
    pub serialize: Serialization,
    #[serde(default)]
    pub description: Option<String>,
    pub verbs: Vec<Verb>,
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verb {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// JSON Schema of the action's params; absent means no params.
    #[serde(default)]
    pub params_schema: Option<Value>,
    /// The verb that undoes this one.
    #[serde(default)]
    pub inverse: Option<String>,
    /// Safe to retry and re-run.
    #[serde(default)]
    pub idempotent: bool,
    /// The adapter implements `dry_run` for this verb.
    #[serde(default)]
    pub dry_run: bool,
    /// Inputs for `switchyard driver check`.
    #[serde(default)]
    pub examples: Vec<Example>,
}

/// One conformance example for a verb.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    #[serde(default)]
    pub description: Option<String>,
    /// The host to send; default `{id: "localhost", address: "127.0.0.1"}`.
    #[serde(default)]
    pub host: Option<Value>,
    /// The target; default the host itself.
    #[serde(default)]
    pub target: Option<ExampleTarget>,
    #[serde(default = "empty_object")]
    pub params: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// A target in an example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExampleTarget {
    #[serde(rename = "type")]
    pub target_type: String,
    pub id: String,
}

/// Defaults applied at dispatch (never part of a policy's IR).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    #[serde(default = "default_sla_s")]
    pub dry_run_refresh_sla_s: u64,
    #[serde(default)]
    pub rate_limit: RateLimits,
}

fn default_timeout_s() -> u64 {
    300
}

fn default_sla_s() -> u64 {
    5
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            timeout_s: default_timeout_s(),
            dry_run_refresh_sla_s: default_sla_s(),
            rate_limit: RateLimits::default(),
        }
    }
}

/// Rate limits as `N/unit` (`30/min`, `5/s`, `100/h`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    #[serde(default)]
    pub per_host: Option<String>,
    #[serde(default)]
    pub per_driver: Option<String>,
}

/// A parsed rate: `count` per `per_ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per_ms: u64,
}

impl Rate {
    /// Parse `N/s`, `N/min` or `N/h`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let (n, unit) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a rate like `30/min`"))?;
        let count: u32 = n
            .trim()
            .parse()
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| format!("`{text}`: the count must be a positive integer"))?;
        let per_ms = match unit.trim() {
            "s" | "sec" => 1_000,
            "min" => 60_000,
            "h" => 3_600_000,
            other => return Err(format!("`{text}`: unknown unit `{other}`; use s, min or h")),
        };
        Ok(Rate { count, per_ms })
    }
}

/// What discovery modes the adapter supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    #[serde(default)]
    pub fast: bool,
    #[serde(default)]
    pub full: bool,
}

/// One problem with a manifest, located by a path into the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {} problem(s):\n  {}", problems.len(), problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// A manifest with where it was found.
#[derive(Debug, Clone)]
pub struct LoadedManifest {
    pub manifest: Manifest,
    /// The folder holding plugin.yaml.
    pub dir: PathBuf,
}

fn is_name(s: &str, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b))
}

impl Manifest {
    /// Parse plugin.yaml text (no semantic checks).
    pub fn parse(text: &str) -> Result<Manifest, String> {
        serde_saphyr::from_str(text).map_err(|e| {
            let loc = e
                .location()
                .map(|l| format!("line {}, column {}: ", l.line(), l.column()))
                .unwrap_or_default();
            let msg = e.to_string();
            format!("{loc}{}", msg.split(" --> ").next().unwrap_or(&msg).trim())
        })
    }

    /// Read, parse and validate `dir/plugin.yaml`.
    pub fn load(dir: &Path) -> Result<LoadedManifest, Error> {
        let path = dir.join("plugin.yaml");
        let text = std::fs::read_to_string(&path).map_err(|cause| Error::Io {
            path: path.clone(),
            cause,
        })?;
        let manifest = Manifest::parse(&text).map_err(|message| Error::Parse {
            path: path.clone(),
            message,
        })?;
        let problems = manifest.problems();
        if !problems.is_empty() {
            return Err(Error::Invalid { path, problems });
        }
        Ok(LoadedManifest {
            manifest,
            dir: dir.to_path_buf(),
        })
    }

    /// Every semantic problem with the manifest.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut p = |path: String, message: String| out.push(Problem { path, message });
        if self.schema_version != SCHEMA_VERSION {
            p(
                "schema_version".into(),
                format!(
                    "schema_version {} is not supported; this switchyard reads {SCHEMA_VERSION}",
                    self.schema_version
                ),
            );
        }
        if !is_name(&self.name, b"_-") {
            p(
                "name".into(),
                format!(
                    "`{}` is not a driver name (lowercase letters, digits, `_` and `-`)",
                    self.name
                ),
            );
        }
        if self.adapter.command.is_empty() || self.adapter.command[0].trim().is_empty() {
            p(
                "adapter.command".into(),
                "the adapter command is an argv list with the program first".into(),
            );
        }
        if self.adapter.instances == 0 {
            p(
                "adapter.instances".into(),
                "at least one adapter instance is needed".into(),
            );
        }
        for (key, schema) in [
            ("driver_config_schema", &self.driver_config_schema),
            ("host_config_schema", &self.host_config_schema),
        ] {
            if let Some(s) = schema
                && let Err(e) = jsonschema::validator_for(s)
            {
                p(key.into(), format!("not a valid JSON Schema: {e}"));
            }
        }
        let mut types: HashSet<&str> = HashSet::new();
        types.insert(HOST_TARGET_TYPE);
        for (i, t) in self.target_types.iter().enumerate() {
            if !is_name(&t.name, b"_") {
                p(
                    format!("target_types[{i}].name"),
                    format!("`{}` is not a target type name", t.name),
                );
            }
            if !types.insert(&t.name) {
                p(
                    format!("target_types[{i}].name"),
                    format!(
                        "target type `{}` is declared twice (or shadows `host`)",
                        t.name
                    ),
                );
            }
            if let Some(pattern) = &t.id_pattern
                && let Err(e) = regex::Regex::new(pattern)
            {
                p(
                    format!("target_types[{i}].id_pattern"),
                    format!("invalid regex: {e}"),
                );
            }
        }
        if self.capabilities.is_empty() {
            p(
                "capabilities".into(),
                "a driver declares at least one capability".into(),
            );
        }
        let mut cap_names = HashSet::new();
        for (ci, cap) in self.capabilities.iter().enumerate() {
            let at = format!("capabilities[{ci}]");
            if !switchyard_spec::event::is_valid_kind(&cap.name) {
                p(
                    format!("{at}.name"),
                    format!(
                        "`{}` is not a capability name (dotted lowercase tokens)",
                        cap.name
                    ),
                );
            }
            if !cap_names.insert(cap.name.as_str()) {
                p(
                    format!("{at}.name"),
                    format!("capability `{}` is declared twice", cap.name),
                );
            }
            if !types.contains(cap.target_type.as_str()) {
                p(
                    format!("{at}.target_type"),
                    format!(
                        "target type `{}` is not declared in target_types",
                        cap.target_type
                    ),
                );
            }
            if cap.verbs.is_empty() {
                p(
                    format!("{at}.verbs"),
                    "a capability has at least one verb".into(),
                );
            }
            let verb_names: HashSet<&str> = cap.verbs.iter().map(|v| v.name.as_str()).collect();
            let mut seen = HashSet::new();
            for (vi, verb) in cap.verbs.iter().enumerate() {
                let vat = format!("{at}.verbs[{vi}]");
                if !is_name(&verb.name, b"_") {
                    p(
                        format!("{vat}.name"),
                        format!(
                            "`{}` is not a verb name (lowercase letters, digits and `_`)",
                            verb.name
                        ),
                    );
                }
                if !seen.insert(verb.name.as_str()) {
                    p(
                        format!("{vat}.name"),
                        format!("verb `{}` is declared twice", verb.name),
                    );
                }
                if let Some(inv) = &verb.inverse
                    && !verb_names.contains(inv.as_str())
                {
                    p(
                        format!("{vat}.inverse"),
                        format!("inverse `{inv}` is not a verb of capability `{}`", cap.name),
                    );
                }
                let validator = match &verb.params_schema {
                    Some(s) => match jsonschema::validator_for(s) {
                        Ok(v) => Some(v),
                        Err(e) => {
                            p(
                                format!("{vat}.params_schema"),
                                format!("not a valid JSON Schema: {e}"),
                            );
                            None
                        }
                    },
                    None => None,
                };
                for (ei, ex) in verb.examples.iter().enumerate() {
                    let eat = format!("{vat}.examples[{ei}]");
                    if let Some(v) = &validator {
                        for e in v.iter_errors(&ex.params) {
                            p(
                                format!("{eat}.params{}", e.instance_path().as_str()),
                                format!("breaks params_schema: {e}"),
                            );
                        }
                    }
                    if let Some(t) = &ex.target
                        && t.target_type != cap.target_type
                    {
                        p(
                            format!("{eat}.target.type"),
                            format!(
                                "`{}` is not this capability's target type `{}`",
                                t.target_type, cap.target_type
                            ),
                        );
                    }
                }
            }
        }
        for (key, rate) in [
            ("per_host", &self.defaults.rate_limit.per_host),
            ("per_driver", &self.defaults.rate_limit.per_driver),
        ] {
            if let Some(r) = rate
                && let Err(e) = Rate::parse(r)
            {
                p(format!("defaults.rate_limit.{key}"), e);
            }
        }
        if self.defaults.timeout_s == 0 {
            p(
                "defaults.timeout_s".into(),
                "the default timeout must be at least 1 second".into(),
            );
        }
        out
    }

    /// The capability with this name.
    pub fn capability(&self, name: &str) -> Option<&Capability> {
        self.capabilities.iter().find(|c| c.name == name)
    }

    /// Target types by name, `host` included.
    pub fn target_type_names(&self) -> BTreeMap<&str, Option<&str>> {
        let mut m: BTreeMap<&str, Option<&str>> = self
            .target_types
            .iter()
            .map(|t| (t.name.as_str(), t.id_pattern.as_deref()))
            .collect();
        m.insert(HOST_TARGET_TYPE, None);
        m
    }
}

impl Capability {
    /// The verb with this name.
    pub fn verb(&self, name: &str) -> Option<&Verb> {
        self.verbs.iter().find(|v| v.name == name)
    }
}

#[cfg(test)]
mod tests;
