//! Which driver carries out an action on a target, and with what defaults:
//! built once from the installed drivers' manifests and the configured hosts.

use crate::gates::Rate;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use switchyard_plugin::manifest::{Manifest, Serialization};
use switchyard_spec::selector::InventoryHost;

/// A configured host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostEntry {
    pub id: String,
    /// The drivers that reach it, in preference order.
    pub drivers: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// One verb as dispatch needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct VerbInfo {
    pub idempotent: bool,
    /// Runs on different targets of one host may overlap.
    pub per_target: bool,
    /// The driver's default action timeout.
    pub timeout: Duration,
    /// The verb that undoes this one, when the driver declares it.
    pub inverse: Option<String>,
    /// The verb's params schema, checked when a decision fills the params.
    pub params: Option<std::sync::Arc<ParamsRules>>,
}

/// A verb's `params_schema`, compiled: every filled params object is
/// checked against it before anything runs, option-looking event text is
/// refused where the schema marks an argument vector, and members the
/// schema marks secret are masked in what is stored.
#[derive(Debug)]
pub struct ParamsRules {
    schema: serde_json::Value,
    validator: jsonschema::Validator,
    /// JSON pointers of the arrays marked `x-switchyard-argv: true`.
    argv: Vec<String>,
    /// Whether the schema marks any member secret (`writeOnly`): params of
    /// a verb without any are never walked for masking.
    secret: bool,
}

/// The schema keyword that marks an array of program arguments.
pub const ARGV_KEYWORD: &str = "x-switchyard-argv";

impl PartialEq for ParamsRules {
    fn eq(&self, other: &ParamsRules) -> bool {
        self.schema == other.schema
    }
}

impl ParamsRules {
    /// Compile `schema` (already checked when the manifest loaded).
    pub fn new(schema: &serde_json::Value) -> Option<ParamsRules> {
        let validator = jsonschema::validator_for(schema).ok()?;
        let mut argv = Vec::new();
        argv_members(schema, String::new(), &mut argv);
        Some(ParamsRules {
            schema: schema.clone(),
            validator,
            argv,
            secret: switchyard_plugin::secrets::has_secret_members(schema),
        })
    }

    /// Check filled params: the schema, and no placeholder-made option
    /// (`option_like`, from [`switchyard_spec::placeholder::Params::option_like`])
    /// inside an argument vector. The error says what and where.
    pub fn check(&self, params: &serde_json::Value, option_like: &[String]) -> Result<(), String> {
        let problems = switchyard_plugin::registry::schema_problems(&self.validator, params, 5);
        if !problems.is_empty() {
            return Err(format!(
                "the filled params do not fit the verb's schema: {}",
                problems.join("; ")
            ));
        }
        if let Some(at) = option_like
            .iter()
            .find(|p| self.argv.iter().any(|a| p.starts_with(&format!("{a}/"))))
        {
            return Err(format!(
                "{at}: a value from the event starts with `-` and would be read as an option; write the option in the policy (`--name={{{{ … }}}}`) or put `--` before it"
            ));
        }
        Ok(())
    }

    /// `params` with the members the schema marks secret (`writeOnly:
    /// true`) replaced by `***`, and the values they held (to redact from
    /// what the driver sends back); `None` when nothing in them is secret
    /// (the common case, no copy made).
    pub fn mask_secrets(
        &self,
        params: &serde_json::Value,
    ) -> Option<(serde_json::Value, Vec<String>)> {
        if !self.secret {
            return None;
        }
        let (masked, found) = switchyard_plugin::secrets::mask_secret_members(&self.schema, params);
        (!found.is_empty()).then_some((masked, found))
    }

    /// Whether `params` hold a member the schema marks secret (stored
    /// params then hold `***` there, not the value).
    pub fn has_secrets(&self, params: &serde_json::Value) -> bool {
        self.secret && !switchyard_plugin::secrets::secret_members(&self.schema, params).is_empty()
    }
}

fn argv_members(schema: &serde_json::Value, at: String, out: &mut Vec<String>) {
    if schema.get(ARGV_KEYWORD) == Some(&serde_json::Value::Bool(true)) {
        out.push(at);
        return;
    }
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        for (k, sub) in props {
            argv_members(sub, format!("{at}/{k}"), out);
        }
    }
}

#[derive(Debug, Clone)]
struct CapabilityInfo {
    target_type: String,
    verbs: HashMap<String, VerbInfo>,
}

/// Hosts and driver capabilities.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    salt: SecretSalt,
    hosts: BTreeMap<String, HostEntry>,
    /// (driver, capability) → what it offers.
    capabilities: HashMap<(String, String), CapabilityInfo>,
    /// driver → (per driver, per host) rate limits from plugin.yaml.
    rates: HashMap<String, (Option<Rate>, Option<Rate>)>,
}

/// A random key, new in every process, that secret param values are
/// hashed with before they enter an idempotency key: the key still tells
/// runs with the same secrets apart from runs with others, but nothing in
/// the ledger lets a reader test guesses against a secret once this process
/// is gone. (So an idempotency window over secret params holds for the life
/// of one `serve`.)
#[derive(Clone)]
struct SecretSalt([u8; 32]);

impl Default for SecretSalt {
    fn default() -> Self {
        let mut salt = [0u8; 32];
        salt[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        salt[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        SecretSalt(salt)
    }
}

impl std::fmt::Debug for SecretSalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSalt(..)")
    }
}

/// Why an action has no driver on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The host is not configured.
    UnknownHost,
    /// No driver of the host provides the capability and verb for the target type.
    NoDriver,
}

impl RouteError {
    /// The run reason recorded in the ledger.
    pub fn reason(&self) -> &'static str {
        match self {
            RouteError::UnknownHost => "unknown_host",
            RouteError::NoDriver => "no_driver",
        }
    }
}

impl Routing {
    /// Key secret params with `secret` (hashed to the key's length) instead
    /// of a random key: every instance configured alike computes the same
    /// idempotency keys.
    pub fn with_idempotency_secret(mut self, secret: &[u8]) -> Routing {
        use sha2::Digest;
        self.salt = SecretSalt(sha2::Sha256::digest(secret).into());
        self
    }

    /// What an idempotency key is computed over: `stored` (the params as
    /// the ledger keeps them, secret members `***`) and, when there are
    /// secret values, their keyed hash ([`SecretSalt`]).
    pub fn key_params<'a>(
        &self,
        stored: &'a serde_json::Value,
        secrets: &[String],
    ) -> std::borrow::Cow<'a, serde_json::Value> {
        if secrets.is_empty() {
            return std::borrow::Cow::Borrowed(stored);
        }
        // The values as a JSON array: no separator a value could contain.
        let keyed = switchyard_spec::canonical::hmac_sha256_hex(
            &self.salt.0,
            serde_json::Value::from(secrets.to_vec())
                .to_string()
                .as_bytes(),
        );
        std::borrow::Cow::Owned(serde_json::json!({"params": stored, "secrets": keyed}))
    }

    /// Build from manifests and hosts.
    pub fn new<'m>(
        manifests: impl IntoIterator<Item = &'m Manifest>,
        hosts: impl IntoIterator<Item = HostEntry>,
    ) -> Routing {
        let mut capabilities = HashMap::new();
        let mut rates = HashMap::new();
        for m in manifests {
            let timeout = Duration::from_secs(m.defaults.timeout_s);
            let rate = |text: &Option<String>| {
                text.as_deref()
                    .and_then(|t| switchyard_plugin::manifest::Rate::parse(t).ok())
                    .map(|r| Rate {
                        count: r.count,
                        per_ms: r.per_ms,
                    })
            };
            rates.insert(
                m.name.clone(),
                (
                    rate(&m.defaults.rate_limit.per_driver),
                    rate(&m.defaults.rate_limit.per_host),
                ),
            );
            for c in &m.capabilities {
                let verbs = c
                    .verbs
                    .iter()
                    .map(|v| {
                        (
                            v.name.clone(),
                            VerbInfo {
                                idempotent: v.idempotent,
                                per_target: c.serialize == Serialization::Target,
                                timeout,
                                inverse: v.inverse.clone(),
                                params: v
                                    .params_schema
                                    .as_ref()
                                    .and_then(ParamsRules::new)
                                    .map(std::sync::Arc::new),
                            },
                        )
                    })
                    .collect();
                capabilities.insert(
                    (m.name.clone(), c.name.clone()),
                    CapabilityInfo {
                        target_type: c.target_type.clone(),
                        verbs,
                    },
                );
            }
        }
        Routing {
            salt: SecretSalt::default(),
            hosts: hosts.into_iter().map(|h| (h.id.clone(), h)).collect(),
            capabilities,
            rates,
        }
    }

    /// The configured hosts.
    pub fn hosts(&self) -> impl Iterator<Item = &HostEntry> {
        self.hosts.values()
    }

    /// The hosts as the selector resolver sees them.
    pub fn inventory_hosts(&self) -> Vec<InventoryHost> {
        self.hosts
            .values()
            .map(|h| InventoryHost {
                id: h.id.clone(),
                labels: h.labels.clone(),
            })
            .collect()
    }

    /// The driver for `capability.verb` on a target of `target_type` on `host`:
    /// `explicit` when the action names one (it must reach the host), else the
    /// host's first driver that provides it.
    pub fn route(
        &self,
        host: &str,
        target_type: &str,
        capability: &str,
        verb: &str,
        explicit: Option<&str>,
    ) -> Result<(String, VerbInfo), RouteError> {
        let entry = self.hosts.get(host).ok_or(RouteError::UnknownHost)?;
        entry
            .drivers
            .iter()
            .filter(|d| explicit.is_none_or(|e| e == d.as_str()))
            .find_map(|d| {
                let c = self.capabilities.get(&(d.clone(), capability.to_owned()))?;
                if c.target_type != target_type {
                    return None;
                }
                c.verbs.get(verb).map(|v| (d.clone(), v.clone()))
            })
            .ok_or(RouteError::NoDriver)
    }

    /// Each driver's (per driver, per host) rate limits.
    pub fn rate_limits(&self) -> impl Iterator<Item = (&String, (Option<Rate>, Option<Rate>))> {
        self.rates.iter().map(|(d, r)| (d, *r))
    }

    /// A verb's dispatch facts for a known driver.
    pub fn verb(&self, driver: &str, capability: &str, verb: &str) -> Option<&VerbInfo> {
        self.capabilities
            .get(&(driver.to_owned(), capability.to_owned()))?
            .verbs
            .get(verb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_enter_idempotency_keys_only_keyed_by_this_process() {
        let routing = Routing::default();
        let stored = json!({"key": "***", "note": "n"});
        let same = |s: &str| routing.key_params(&stored, &[s.to_owned()]).into_owned();
        assert_eq!(
            same("hunter2"),
            same("hunter2"),
            "the same secret, the same key"
        );
        assert_ne!(
            same("hunter2"),
            same("hunter3"),
            "another secret, another key"
        );
        assert!(!same("hunter2").to_string().contains("hunter2"));
        // Another process (another salt) keys the same secret otherwise: a
        // stored key cannot be matched against guesses later.
        let other = Routing::default();
        assert_ne!(
            other
                .key_params(&stored, &["hunter2".to_owned()])
                .into_owned(),
            same("hunter2")
        );
        // Instances configured with one secret agree across processes.
        let (a, b) = (
            Routing::default().with_idempotency_secret(b"shared"),
            Routing::default().with_idempotency_secret(b"shared"),
        );
        assert_eq!(
            a.key_params(&stored, &["hunter2".to_owned()]),
            b.key_params(&stored, &["hunter2".to_owned()])
        );
        // Without secrets, the params are the key's input as they are.
        assert!(matches!(
            routing.key_params(&stored, &[]),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
