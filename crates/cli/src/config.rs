//! `switchyard.toml` (DESIGN §9): one TOML file, with
//! `SWITCHYARD_<SECTION>__<KEY>` environment variables overriding its keys.
//! Precedence: flag > environment > file > default.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchyard_spec::duration::parse_ms;

/// `--config FILE` (or `SWITCHYARD_CONFIG`), as every command that talks
/// to NATS, the database or the API takes it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigFile {
    /// The configuration file (default: ./switchyard.toml when it exists).
    #[arg(long = "config", env = "SWITCHYARD_CONFIG", value_name = "FILE")]
    pub path: Option<PathBuf>,
}

impl ConfigFile {
    /// The file named, else ./switchyard.toml if present (else defaults).
    pub fn path(&self) -> Option<PathBuf> {
        self.path.clone().or_else(|| {
            let p = PathBuf::from("switchyard.toml");
            p.is_file().then_some(p)
        })
    }

    /// Load it, with the environment's overrides.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(self.path().as_deref())
    }

    /// A command's own flag when given, else `pick` of the configuration.
    pub fn or_flag(
        &self,
        flag: Option<&String>,
        pick: impl FnOnce(Config) -> String,
    ) -> Result<String, ConfigError> {
        match flag {
            Some(v) => Ok(v.clone()),
            None => self.load().map(pick),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Accept secrets written into the file itself (an HS256 secret, a
    /// webhook token, a driver's `writeOnly` member) instead of refusing to
    /// start; each is warned about at start. Off by default: reference them
    /// as `${env:NAME}` or `${file:PATH}`. A top-level key (before any section).
    pub allow_literal_secrets: bool,
    pub database: DatabaseSection,
    pub nats: NatsSection,
    pub api: ApiSection,
    pub auth: Option<AuthSection>,
    pub engine: EngineSection,
    pub ledger: LedgerSection,
    pub inventory: InventorySection,
    pub drivers: DriversSection,
    pub policies: PoliciesSection,
    pub hosts: Vec<HostSection>,
    /// Where the file was read from (relative paths resolve against its folder).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSection {
    pub url: String,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        DatabaseSection {
            url: "sqlite://switchyard.db?mode=rwc".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSection {
    pub url: String,
    pub stream: String,
    pub consumer: String,
    pub ack_wait: String,
    /// 0: unlimited.
    pub max_deliver: i64,
    pub max_ack_pending: i64,
    pub max_age: String,
    pub max_in_flight: usize,
    pub duplicate_window: String,
}

impl Default for NatsSection {
    fn default() -> Self {
        NatsSection {
            url: "nats://127.0.0.1:4222".into(),
            stream: "SWITCHYARD_EVENTS".into(),
            consumer: "switchyard-engine".into(),
            ack_wait: "30s".into(),
            max_deliver: 20,
            max_ack_pending: 1000,
            max_age: "7d".into(),
            max_in_flight: 1000,
            duplicate_window: "2m".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    pub listen: String,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: "127.0.0.1:8080".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// The key for tokens without `kid`: an HS256 secret (a `${env:…}` or
    /// `${file:…}` reference), or …
    pub jwt_hs256_secret: Option<String>,
    /// … an RS256/ES256 public key in PEM form.
    pub jwt_public_key_file: Option<String>,
    /// Keys selected by the token's `kid` (RFC 7517 JWKS), re-read when the
    /// file changes: keys rotate with no restart.
    pub jwks_file: Option<String>,
    /// When set, `iss` must be present and equal.
    pub issuer: Option<String>,
    /// When set, `aud` must be present and hold it.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf` (at most 5m).
    pub leeway: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    pub global_concurrency: usize,
    pub host_queue_depth: usize,
    pub max_event_age: String,
    pub max_queue_time: String,
    pub max_attempts: u32,
    pub retry_backoff: String,
    pub lease_ttl: String,
    pub shutdown_grace: String,
    pub breaker_failures: u32,
    pub breaker_open_for: String,
    pub schedule_catch_up: String,
    /// A secret reference (`${env:…}`/`${file:…}`) keying the secret params
    /// of idempotency keys. The same on every instance, the window over
    /// secret params holds across restarts and takeovers; unset, each
    /// process draws a random key.
    pub idempotency_secret: Option<String>,
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            global_concurrency: 32,
            host_queue_depth: 1000,
            max_event_age: "15m".into(),
            max_queue_time: "1h".into(),
            max_attempts: 3,
            retry_backoff: "1s".into(),
            lease_ttl: "30s".into(),
            shutdown_grace: "30s".into(),
            breaker_failures: 5,
            breaker_open_for: "30s".into(),
            schedule_catch_up: "1m".into(),
            idempotency_secret: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSection {
    pub max_per_policy: usize,
    pub max_age: String,
    pub prune_interval: String,
    /// How long a decided delivery is remembered (redeliveries recognized).
    pub inbox_max_age: String,
}

impl Default for LedgerSection {
    fn default() -> Self {
        LedgerSection {
            max_per_policy: 30,
            max_age: "30d".into(),
            prune_interval: "1m".into(),
            inbox_max_age: "8d".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventorySection {
    pub stale_after: String,
    pub refresh_interval: String,
}

impl Default for InventorySection {
    fn default() -> Self {
        InventorySection {
            stale_after: "10m".into(),
            refresh_interval: "5m".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriversSection {
    pub paths: Vec<PathBuf>,
    /// `[drivers.config.<name>]`, passed to `initialize` as `driver_config`.
    pub config: BTreeMap<String, Value>,
}

impl Default for DriversSection {
    fn default() -> Self {
        DriversSection {
            paths: vec![PathBuf::from("drivers")],
            config: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoliciesSection {
    /// Policy files applied at start (managed_by: dir), then watched.
    pub dir: Option<PathBuf>,
    /// Follow changes to `dir` while running (hot reload).
    pub watch: bool,
    /// Quiet time after the last change before the directory is applied.
    pub debounce: String,
    /// Where policy notifications are also posted.
    pub webhooks: Vec<WebhookSection>,
}

impl Default for PoliciesSection {
    fn default() -> Self {
        PoliciesSection {
            dir: None,
            watch: true,
            debounce: "200ms".into(),
            webhooks: Vec::new(),
        }
    }
}

/// A webhook that receives policy notifications (JSON, `POST`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Only these events (`version_created`, `updated`, `rolled_back`,
    /// `validation_failed`, `enabled`, `disabled`, `archived`); empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Sent as `Authorization: Bearer …`; a `${env:…}`/`${file:…}` reference.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Per attempt.
    #[serde(default = "default_webhook_timeout")]
    pub timeout: String,
    /// Attempts per notification, with exponential backoff between them.
    #[serde(default = "default_webhook_attempts")]
    pub max_attempts: u32,
}

fn default_webhook_timeout() -> String {
    "5s".into()
}

fn default_webhook_attempts() -> u32 {
    5
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    pub id: String,
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default)]
    pub drivers: Vec<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default = "empty_object")]
    pub config: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

impl HostSection {
    /// `driver` and `drivers` together, in order.
    pub fn all_drivers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.driver.iter().cloned().collect();
        v.extend(
            self.drivers
                .iter()
                .filter(|d| Some(*d) != self.driver.as_ref())
                .cloned(),
        );
        v
    }
}

/// A configuration problem, said in the user's terms.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

impl Config {
    /// Load `path` (absent and not asked for explicitly: defaults), then apply
    /// environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Config::load_with_env(path, &env)
    }

    /// As [`Config::load`], with the environment given.
    pub fn load_with_env(
        path: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let (text, file, base_dir) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|cause| ConfigError::Read {
                    path: p.to_path_buf(),
                    cause,
                })?,
                p.to_path_buf(),
                p.parent()
                    .map(Path::to_path_buf)
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or_else(|| PathBuf::from(".")),
            ),
            None => (
                String::new(),
                PathBuf::from("(defaults)"),
                PathBuf::from("."),
            ),
        };
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: file.clone(),
                    message: e.to_string(),
                })?;
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("SWITCHYARD_") else {
                continue;
            };
            let Some((section, key)) = rest.split_once("__") else {
                continue;
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            if section == "hosts" {
                return Err(ConfigError::Env {
                    name: name.clone(),
                    message: "hosts are configured in the file only".into(),
                });
            }
            let parsed = parse_env_value(value);
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(t) = entry else {
                return Err(ConfigError::Env {
                    name: name.clone(),
                    message: format!("`{section}` is not a section"),
                });
            };
            t.insert(key, parsed);
        }
        let mut config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: file.clone(),
                    message: e.to_string(),
                })?;
        config.base_dir = base_dir;
        config.check()?;
        Ok(config)
    }

    /// Every duration parses, hosts are unique and name a driver.
    fn check(&self) -> Result<(), ConfigError> {
        for (key, text) in [
            ("nats.ack_wait", &self.nats.ack_wait),
            ("nats.max_age", &self.nats.max_age),
            ("engine.max_event_age", &self.engine.max_event_age),
            ("engine.max_queue_time", &self.engine.max_queue_time),
            ("engine.retry_backoff", &self.engine.retry_backoff),
            ("engine.lease_ttl", &self.engine.lease_ttl),
            ("engine.shutdown_grace", &self.engine.shutdown_grace),
            ("engine.breaker_open_for", &self.engine.breaker_open_for),
            ("engine.schedule_catch_up", &self.engine.schedule_catch_up),
            ("ledger.max_age", &self.ledger.max_age),
            ("ledger.prune_interval", &self.ledger.prune_interval),
            ("inventory.stale_after", &self.inventory.stale_after),
            (
                "inventory.refresh_interval",
                &self.inventory.refresh_interval,
            ),
        ] {
            parse_ms(text).map_err(|e| ConfigError::Invalid {
                key: key.into(),
                message: e.to_string(),
            })?;
        }
        parse_ms(&self.policies.debounce).map_err(|e| ConfigError::Invalid {
            key: "policies.debounce".into(),
            message: e.to_string(),
        })?;
        for (i, w) in self.policies.webhooks.iter().enumerate() {
            parse_ms(&w.timeout).map_err(|e| ConfigError::Invalid {
                key: format!("policies.webhooks[{i}].timeout"),
                message: e.to_string(),
            })?;
            let scheme_ok = url::Url::parse(&w.url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !scheme_ok {
                return Err(ConfigError::Invalid {
                    key: format!("policies.webhooks[{i}].url"),
                    message: format!(
                        "`{}` is not an http:// or https:// URL",
                        switchyard_plugin::secrets::redact_url(&w.url)
                    ),
                });
            }
            if w.max_attempts == 0 {
                return Err(ConfigError::Invalid {
                    key: format!("policies.webhooks[{i}].max_attempts"),
                    message: "must be at least 1".into(),
                });
            }
        }
        if self.engine.global_concurrency == 0 {
            return Err(ConfigError::Invalid {
                key: "engine.global_concurrency".into(),
                message: "must be at least 1".into(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for (i, h) in self.hosts.iter().enumerate() {
            if !seen.insert(h.id.as_str()) {
                return Err(ConfigError::Invalid {
                    key: format!("hosts[{i}].id"),
                    message: format!("host `{}` is configured twice", h.id),
                });
            }
            if h.all_drivers().is_empty() {
                return Err(ConfigError::Invalid {
                    key: format!("hosts[{i}]"),
                    message: format!("host `{}` names no `driver` or `drivers`", h.id),
                });
            }
        }
        Ok(())
    }

    /// A duration key, already checked.
    pub fn duration(text: &str) -> Duration {
        Duration::from_millis(parse_ms(text).unwrap_or(0))
    }

    /// A path from the file, resolved against the file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The database URL with a relative SQLite path resolved against the file's folder.
    pub fn database_url(&self) -> String {
        let url = &self.database.url;
        if let Some(rest) = url.strip_prefix("sqlite://")
            && !rest.starts_with('/')
            && !rest.starts_with(':')
        {
            return format!("sqlite://{}", self.base_dir.join(rest).display());
        }
        url.clone()
    }
}

/// An environment value: a TOML scalar or array when it reads as one, else a string.
fn parse_env_value(v: &str) -> toml::Value {
    let probe = format!("v = {v}");
    match probe.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(v.to_owned())),
        Err(_) => toml::Value::String(v.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_serve_one_machine() {
        let c = Config::load_with_env(None, &[]).unwrap();
        assert_eq!(c.nats.url, "nats://127.0.0.1:4222");
        assert_eq!(c.api.listen, "127.0.0.1:8080");
        assert!(c.database.url.starts_with("sqlite://"));
        assert_eq!(c.engine.global_concurrency, 32);
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchyard.toml");
        std::fs::write(
            &path,
            "[nats]\nurl = \"nats://file:4222\"\n[engine]\nglobal_concurrency = 4\n\n[[hosts]]\nid = \"h1\"\ndriver = \"exec\"\n",
        )
        .unwrap();
        let c = Config::load_with_env(
            Some(&path),
            &env(&[
                ("SWITCHYARD_NATS__URL", "nats://env:4222"),
                ("SWITCHYARD_ENGINE__HOST_QUEUE_DEPTH", "7"),
                ("SWITCHYARD_CONFIG", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(c.nats.url, "nats://env:4222");
        assert_eq!(c.engine.global_concurrency, 4);
        assert_eq!(c.engine.host_queue_depth, 7);
        assert_eq!(c.hosts[0].all_drivers(), ["exec"]);
    }

    /// docs/OPERATIONS.md names every key the code reads.
    #[test]
    fn every_key_is_documented() {
        let docs = include_str!("../../../docs/OPERATIONS.md");
        let defaults = serde_json::to_value(Config::default()).unwrap();
        let mut keys = Vec::new();
        for (section, v) in defaults.as_object().unwrap() {
            if let Some(fields) = v.as_object() {
                keys.extend(fields.keys().map(|k| format!("`{section}.{k}")));
            }
        }
        let auth = serde_json::to_value(AuthSection::default()).unwrap();
        keys.extend(
            auth.as_object()
                .unwrap()
                .keys()
                .map(|k| format!("`auth.{k}`")),
        );
        assert!(keys.len() > 25, "{keys:?}");
        for key in keys {
            assert!(
                docs.contains(&key),
                "docs/OPERATIONS.md does not mention {key}"
            );
        }
    }

    /// docker-compose.yml cannot run here (no Docker engine); parse it and
    /// load the configuration it gives switchyard, as the container would.
    #[test]
    fn the_compose_file_configures_a_valid_switchyard() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let text = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
        let compose: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        for service in ["nats", "postgres", "switchyard"] {
            assert!(
                compose["services"][service].is_object(),
                "service {service}"
            );
        }
        assert!(
            compose["services"]["nats"]["command"]
                .as_array()
                .unwrap()
                .contains(&"-js".into()),
            "JetStream on"
        );
        let sy = &compose["services"]["switchyard"];
        // Compose's own interpolation: `$${` is a literal `${`; `${X:?…}` is the user's secret.
        let env: Vec<(String, String)> = sy["environment"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let v = v.as_str().unwrap().replace("$${", "${");
                let v = if v.starts_with("${SWITCHYARD_JWT_SECRET:?") {
                    "x".repeat(32)
                } else {
                    v
                };
                (k.clone(), v)
            })
            .collect();
        let mount = sy["volumes"][0].as_str().unwrap();
        let host_path = mount.split(':').next().unwrap();
        let c = Config::load_with_env(Some(&root.join(host_path)), &env).unwrap();
        assert!(c.database_url().starts_with("postgres://"));
        assert_eq!(c.nats.url, "nats://nats:4222");
        assert_eq!(c.api.listen, "0.0.0.0:8080");
        assert_eq!(
            c.auth.unwrap().jwt_hs256_secret.as_deref(),
            Some("${env:SWITCHYARD_JWT_SECRET}")
        );
        assert_eq!(c.hosts.len(), 2);
        // The Dockerfile copies what exists.
        let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
        for line in dockerfile
            .lines()
            .filter(|l| l.starts_with("COPY drivers/"))
        {
            let src = line.split_whitespace().nth(1).unwrap();
            assert!(root.join(src).is_file(), "{src}");
        }
    }

    #[test]
    fn mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchyard.toml");
        std::fs::write(&path, "[engine]\nglobal_concurency = 4\n").unwrap();
        let e = Config::load_with_env(Some(&path), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("global_concurency"), "{e}");
        std::fs::write(&path, "[engine]\nmax_event_age = \"15 minutes\"\n").unwrap();
        let e = Config::load_with_env(Some(&path), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("engine.max_event_age"), "{e}");
        std::fs::write(&path, "[[hosts]]\nid = \"h1\"\n").unwrap();
        let e = Config::load_with_env(Some(&path), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("names no `driver`"), "{e}");
    }
}
