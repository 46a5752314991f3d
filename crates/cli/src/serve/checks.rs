//! What `serve` checks before it starts anything: the API's auth, literal
//! secrets, and that every host's drivers are installed and accept its config.

use crate::config::{Config, HostSection};
use anyhow::{Context, Result, anyhow, bail};
use std::path::Path;
use std::time::Duration;
use switchyard_plugin::Registry;

/// The API's token check from `[auth]`, with the secret resolved now (a
/// reference that does not resolve refuses to start; never falls back to no auth).
pub(super) fn api_auth(config: &Config) -> Result<Option<switchyard_api::Auth>> {
    use switchyard_api::auth::{Claims, Key};
    let Some(a) = &config.auth else {
        return Ok(None);
    };
    let mut keys = Vec::new();
    if let Some(path) = &a.jwt_public_key_file {
        if a.jwt_hs256_secret.is_some() {
            bail!("[auth] has both jwt_hs256_secret and jwt_public_key_file; configure one");
        }
        let path = config.resolve(Path::new(path));
        let pem = std::fs::read(&path)
            .with_context(|| format!("auth.jwt_public_key_file {}", path.display()))?;
        keys.push(
            Key::public_pem(&pem, None)
                .map_err(|e| anyhow!("auth.jwt_public_key_file {}: {e}", path.display()))?,
        );
    }
    if let Some(secret) = &a.jwt_hs256_secret {
        let resolved =
            switchyard_plugin::secrets::resolve(&serde_json::Value::String(secret.clone()))
                .map_err(|e| anyhow!("auth.jwt_hs256_secret: {e}"))?;
        let secret = resolved.value.as_str().unwrap_or_default().to_owned();
        keys.push(
            Key::hs256(secret.as_bytes(), None)
                .map_err(|e| anyhow!("auth.jwt_hs256_secret: {e}"))?,
        );
    }
    let jwks = a.jwks_file.as_ref().map(|p| config.resolve(Path::new(p)));
    if keys.is_empty() && jwks.is_none() {
        bail!(
            "[auth] needs a key: jwt_hs256_secret (as ${{env:NAME}} or ${{file:PATH}}), jwt_public_key_file or jwks_file"
        );
    }
    let leeway = match &a.leeway {
        None => Duration::from_secs(30),
        Some(text) => Duration::from_millis(
            switchyard_spec::duration::parse_ms(text).map_err(|e| anyhow!("auth.leeway: {e}"))?,
        ),
    };
    let claims = Claims {
        issuer: a.issuer.clone(),
        audience: a.audience.clone(),
        leeway,
    };
    let auth = switchyard_api::Auth::new(keys, jwks.as_deref(), &claims)
        .map_err(|e| anyhow!("[auth]: {e}"))?;
    tracing::info!(
        algorithms = ?auth.algorithms(),
        jwks_file = ?jwks,
        issuer = ?a.issuer,
        audience = ?a.audience,
        leeway_s = leeway.as_secs(),
        "API tokens are checked"
    );
    Ok(Some(auth))
}

/// What names this deployment to its adapters (`SWITCHYARD_DEPLOYMENT`):
/// one engine per database, so a digest of the database URL.
pub(super) fn deployment(database_url: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(database_url.as_bytes())[..8])
}

/// The keys of `config` that hold a secret written as a literal rather
/// than a `${env:…}`/`${file:…}` reference: `[auth]`'s HS256 secret, webhook
/// tokens, and members drivers mark `writeOnly` in their config schemas.
fn literal_secrets(config: &Config, registry: Option<&Registry>) -> Vec<String> {
    let Some(registry) = registry else {
        return file_literal_secrets(config);
    };
    let mut found = file_literal_secrets(config);
    use switchyard_plugin::secrets::literal_secrets;
    for (name, cfg) in &config.drivers.config {
        if let Some(schema) = registry
            .get(name)
            .and_then(|d| d.manifest().driver_config_schema.as_ref())
        {
            for at in literal_secrets(schema, cfg) {
                found.push(format!("drivers.config.{name}{at}"));
            }
        }
    }
    for (i, h) in config.hosts.iter().enumerate() {
        let mut seen = std::collections::BTreeSet::new();
        for d in h.all_drivers() {
            if let Some(schema) = registry
                .get(&d)
                .and_then(|d| d.manifest().host_config_schema.as_ref())
            {
                for at in literal_secrets(schema, &h.config) {
                    if seen.insert(at.clone()) {
                        found.push(format!("hosts[{i}].config{at} (host `{}`)", h.id));
                    }
                }
            }
        }
    }
    found
}

/// The literal secrets among the file's own keys: the `[auth]` HS256
/// secret and webhook tokens.
fn file_literal_secrets(config: &Config) -> Vec<String> {
    use switchyard_plugin::secrets::is_reference;
    let literal = |s: &str| !s.is_empty() && !is_reference(s);
    let mut found = Vec::new();
    if let Some(a) = &config.auth
        && a.jwt_hs256_secret.as_deref().is_some_and(literal)
    {
        found.push("auth.jwt_hs256_secret".to_owned());
    }
    if config
        .engine
        .idempotency_secret
        .as_deref()
        .is_some_and(literal)
    {
        found.push("engine.idempotency_secret".to_owned());
    }
    for (i, w) in config.policies.webhooks.iter().enumerate() {
        if w.bearer_token.as_deref().is_some_and(literal) {
            found.push(format!("policies.webhooks[{i}].bearer_token"));
        }
    }
    found
}

/// Refuse literal secrets unless `allow_literal_secrets`; warn when allowed.
/// Without `registry`, only the file's own keys are looked at, and only to refuse.
pub(super) fn check_literal_secrets(config: &Config, registry: Option<&Registry>) -> Result<()> {
    let found = literal_secrets(config, registry);
    if found.is_empty() {
        return Ok(());
    }
    if !config.allow_literal_secrets {
        bail!(
            "secrets written into the configuration: {}. Reference each as ${{env:NAME}} or ${{file:PATH}}, or set allow_literal_secrets = true (top level) to accept them",
            found.join(", ")
        );
    }
    if registry.is_none() {
        return Ok(()); // warned about once the drivers are known
    }
    tracing::warn!(
        keys = %found.join(", "),
        "secrets are written into the configuration (allow_literal_secrets = true): anyone who can read the file has them"
    );
    Ok(())
}

/// Every host names installed drivers and a config its drivers accept; returns the drivers in use.
pub(super) fn check_hosts(hosts: &[HostSection], registry: &Registry) -> Result<Vec<String>> {
    let mut used: Vec<String> = Vec::new();
    for h in hosts {
        for d in h.all_drivers() {
            let driver = registry
                .get(&d)
                .ok_or_else(|| anyhow!("host `{}`: driver `{d}` is not installed", h.id))?;
            // Secrets stay references here; the supervisor resolves them at use.
            let resolved = switchyard_plugin::secrets::resolve(&h.config)
                .map_err(|e| anyhow!("host `{}`: {e}", h.id))?;
            driver.check_host_config(&resolved.value).map_err(|p| {
                anyhow!("host `{}` config for driver `{d}`: {}", h.id, p.join("; "))
            })?;
            if !used.contains(&d) {
                used.push(d);
            }
        }
    }
    Ok(used)
}
