//! The installed drivers, and policy validation against them.

use crate::manifest::{self, HOST_TARGET_TYPE, LoadedManifest, Manifest};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use switchyard_spec::catalog::DriverCatalog;
use switchyard_spec::finding::{Finding, codes};
use switchyard_spec::ir::{ActionIr, PolicyIr};
use switchyard_spec::pointer::Pointer;
use switchyard_spec::selector;

/// Why the registry could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Manifest(#[from] manifest::Error),
    #[error("{path}: no plugin.yaml here or in its subfolders")]
    NoDrivers { path: PathBuf },
    #[error("driver `{name}` is installed twice: {first} and {second}")]
    Duplicate {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// One installed driver with its params validators compiled.
#[derive(Debug)]
pub struct Driver {
    pub loaded: LoadedManifest,
    validators: HashMap<(String, String), jsonschema::Validator>,
}

impl Driver {
    fn new(loaded: LoadedManifest) -> Driver {
        let mut validators = HashMap::new();
        for cap in &loaded.manifest.capabilities {
            for verb in &cap.verbs {
                if let Some(schema) = &verb.params_schema {
                    // The manifest was validated: every params_schema compiles.
                    if let Ok(v) = jsonschema::validator_for(schema) {
                        validators.insert((cap.name.clone(), verb.name.clone()), v);
                    }
                }
            }
        }
        Driver { loaded, validators }
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.loaded.manifest
    }

    /// Check `[drivers.config.<name>]` against `driver_config_schema`; each problem names its pointer.
    pub fn check_driver_config(&self, config: &Value) -> Result<(), Vec<String>> {
        check_against(self.manifest().driver_config_schema.as_ref(), config)
    }

    /// Check a host's `config` against `host_config_schema`. Secret references
    /// (`${env:..}`, `${file:..}`) are strings here and are checked as such.
    pub fn check_host_config(&self, config: &Value) -> Result<(), Vec<String>> {
        check_against(self.manifest().host_config_schema.as_ref(), config)
    }

    /// The params validator of a verb, if it declares a schema.
    pub fn params_validator(&self, capability: &str, verb: &str) -> Option<&jsonschema::Validator> {
        self.validators
            .get(&(capability.to_owned(), verb.to_owned()))
    }
}

/// What `value` breaks of a compiled schema, at most `limit` problems, each
/// prefixed by its JSON pointer.
pub fn schema_problems(
    validator: &jsonschema::Validator,
    value: &Value,
    limit: usize,
) -> Vec<String> {
    validator
        .iter_errors(value)
        .take(limit)
        .map(|e| {
            let at = e.instance_path().as_str().to_owned();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
        .collect()
}

fn check_against(schema: Option<&Value>, value: &Value) -> Result<(), Vec<String>> {
    let Some(schema) = schema else { return Ok(()) };
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| vec![format!("the schema itself is invalid: {e}")])?;
    let problems = schema_problems(&validator, value, usize::MAX);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Installed drivers by name.
#[derive(Debug, Default)]
pub struct Registry {
    drivers: BTreeMap<String, Driver>,
}

impl Registry {
    /// Load drivers from paths that are driver folders (holding plugin.yaml)
    /// or folders of driver folders.
    pub fn load(paths: &[PathBuf]) -> Result<Registry, Error> {
        let mut registry = Registry::default();
        for path in paths {
            for dir in driver_dirs(path)? {
                registry.add(Manifest::load(&dir)?)?;
            }
        }
        Ok(registry)
    }

    /// As [`Registry::load`], for a server being set up: a path that does
    /// not exist or holds no plugin.yaml is not an error but a note (each
    /// says why, once); a broken plugin.yaml still is.
    pub fn load_present(paths: &[PathBuf]) -> Result<(Registry, Vec<String>), Error> {
        let mut registry = Registry::default();
        let mut notes = Vec::new();
        for path in paths {
            if !path.exists() {
                notes.push(format!("{}: no such folder", path.display()));
                continue;
            }
            match driver_dirs(path) {
                Ok(dirs) => {
                    for dir in dirs {
                        registry.add(Manifest::load(&dir)?)?;
                    }
                }
                Err(e @ Error::NoDrivers { .. }) => notes.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        Ok((registry, notes))
    }

    /// How many drivers are installed.
    pub fn len(&self) -> usize {
        self.drivers.len()
    }

    /// No driver is installed.
    pub fn is_empty(&self) -> bool {
        self.drivers.is_empty()
    }

    /// Add one loaded driver.
    pub fn add(&mut self, loaded: LoadedManifest) -> Result<(), Error> {
        let name = loaded.manifest.name.clone();
        if let Some(existing) = self.drivers.get(&name) {
            return Err(Error::Duplicate {
                name,
                first: existing.loaded.dir.clone(),
                second: loaded.dir,
            });
        }
        self.drivers.insert(name, Driver::new(loaded));
        Ok(())
    }

    /// A driver by name.
    pub fn get(&self, name: &str) -> Option<&Driver> {
        self.drivers.get(name)
    }

    /// Every driver, by name.
    pub fn drivers(&self) -> impl Iterator<Item = &Driver> {
        self.drivers.values()
    }

    /// How to run a driver's adapter, with its `[drivers.config.<name>]`
    /// checked against `driver_config_schema` first: an adapter is never
    /// initialized with a config its manifest refuses.
    pub fn adapter_spec(
        &self,
        name: &str,
        driver_config: Value,
        search: &[PathBuf],
    ) -> Result<crate::supervisor::AdapterSpec, Vec<String>> {
        let driver = self.get(name).ok_or_else(|| {
            vec![format!(
                "driver `{name}` is not installed; installed: {}",
                self.names()
            )]
        })?;
        // References resolve now (fail fast) and again when an adapter starts.
        let resolved = crate::secrets::resolve(&driver_config)
            .map_err(|e| vec![format!("[drivers.config.{name}] {e}")])?;
        driver.check_driver_config(&resolved.value).map_err(|p| {
            p.into_iter()
                .map(|m| format!("[drivers.config.{name}] {m}"))
                .collect::<Vec<_>>()
        })?;
        Ok(crate::supervisor::AdapterSpec::from_manifest(
            &driver.loaded,
            driver_config,
            search,
        ))
    }

    fn names(&self) -> String {
        if self.drivers.is_empty() {
            "none".into()
        } else {
            self.drivers
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

fn driver_dirs(path: &Path) -> Result<Vec<PathBuf>, Error> {
    if path.join("plugin.yaml").is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("plugin.yaml").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(Error::NoDrivers {
            path: path.to_path_buf(),
        });
    }
    Ok(dirs)
}

/// The target type a selector selects (`host` without items).
fn selected_type(selector_text: &str) -> Option<String> {
    let sel = selector::parse(selector_text).ok()?;
    Some(
        sel.items
            .map_or_else(|| HOST_TARGET_TYPE.to_owned(), |i| i.type_name),
    )
}

/// A JSON pointer (`/a/0`) resolved against a value.
fn holds_placeholder(params: &Value, pointer: &str) -> bool {
    params
        .pointer(pointer)
        .and_then(Value::as_str)
        .is_some_and(|s| s.contains("{{"))
}

impl DriverCatalog for Registry {
    fn check_action(
        &self,
        policy: &PolicyIr,
        action: &ActionIr,
        at: &Pointer,
        findings: &mut Vec<Finding>,
    ) {
        let candidates: Vec<&Driver> = match &action.driver {
            Some(name) => match self.drivers.get(name) {
                Some(d) => vec![d],
                None => {
                    findings.push(Finding::blocker(
                        codes::DRIVER_UNKNOWN,
                        at.key("driver"),
                        format!(
                            "driver `{name}` is not installed; installed: {}",
                            self.names()
                        ),
                    ));
                    return;
                }
            },
            None => self.drivers.values().collect(),
        };
        let providing: Vec<(&Driver, &manifest::Capability)> = candidates
            .iter()
            .filter_map(|d| d.manifest().capability(&action.capability).map(|c| (*d, c)))
            .collect();
        if providing.is_empty() {
            let message = match &action.driver {
                Some(name) => {
                    let caps: Vec<&str> = candidates[0]
                        .manifest()
                        .capabilities
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect();
                    format!(
                        "driver `{name}` does not provide capability `{}`; it provides {}",
                        action.capability,
                        caps.join(", ")
                    )
                }
                None => format!(
                    "no installed driver provides capability `{}` (installed: {})",
                    action.capability,
                    self.names()
                ),
            };
            findings.push(Finding::blocker(
                codes::CAPABILITY_UNKNOWN,
                at.key("capability"),
                message,
            ));
            return;
        }
        let with_verb: Vec<(&Driver, &manifest::Capability, &manifest::Verb)> = providing
            .iter()
            .filter_map(|(d, c)| c.verb(&action.verb).map(|v| (*d, *c, v)))
            .collect();
        if with_verb.is_empty() {
            let mut verbs: Vec<&str> = providing
                .iter()
                .flat_map(|(_, c)| c.verbs.iter().map(|v| v.name.as_str()))
                .collect();
            verbs.sort_unstable();
            verbs.dedup();
            findings.push(Finding::blocker(
                codes::VERB_UNKNOWN,
                at.key("verb"),
                format!(
                    "capability `{}` has no verb `{}`; its verbs: {}",
                    action.capability,
                    action.verb,
                    verbs.join(", ")
                ),
            ));
            return;
        }
        for (i, target) in policy.targets.iter().enumerate() {
            let Some(ty) = selected_type(&target.selector) else {
                continue;
            };
            if !with_verb.iter().any(|(_, c, _)| c.target_type == ty) {
                findings.push(Finding::blocker(
                    codes::CAPABILITY_TARGET_TYPE,
                    at.key("capability"),
                    format!(
                        "capability `{}` acts on `{}`, but target {i} (`{}`) selects `{ty}`",
                        action.capability, with_verb[0].1.target_type, target.selector
                    ),
                ));
            }
        }
        let several = with_verb.len() > 1;
        for (driver, cap, verb) in &with_verb {
            let params_at = at.key("params");
            match driver.params_validator(&cap.name, &verb.name) {
                Some(validator) => {
                    for e in validator.iter_errors(&action.params) {
                        let pointer = e.instance_path().as_str();
                        if holds_placeholder(&action.params, pointer) {
                            continue; // filled from the event; checked at run time
                        }
                        let prefix = if several {
                            format!("driver `{}`: ", driver.manifest().name)
                        } else {
                            String::new()
                        };
                        findings.push(Finding::blocker(
                            codes::DRIVER_PARAMS_INVALID,
                            format!("{params_at}{pointer}"),
                            format!("{prefix}{e}"),
                        ));
                    }
                }
                None => {
                    if action.params.as_object().is_some_and(|m| !m.is_empty()) {
                        findings.push(Finding::blocker(
                            codes::DRIVER_PARAMS_INVALID,
                            params_at,
                            format!("verb `{}` of `{}` takes no params", verb.name, cap.name),
                        ));
                    }
                }
            }
            let warned = findings.iter().any(|f| {
                f.code == codes::VERB_NOT_IDEMPOTENT && f.path == at.key("verb").to_string()
            });
            if !verb.idempotent && policy.windows.idempotency_ms == 0 && !warned {
                // Once per action, however many drivers offer the verb.
                findings.push(Finding::warn(
                    codes::VERB_NOT_IDEMPOTENT,
                    at.key("verb"),
                    format!(
                        "`{} {}` is not idempotent and the policy has no idempotency window: a repeated event runs it again",
                        cap.name, verb.name
                    ),
                ));
            }
        }
    }
}
