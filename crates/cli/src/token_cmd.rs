//! `switchyard token issue`: a JWT for a local admin, signed with the
//! configured HS256 secret.

use crate::{EXIT_BLOCKED, EXIT_OK, EXIT_USAGE};
use clap::{Args, Subcommand};
use switchyard_api::Role;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a token signed with `[auth] jwt_hs256_secret` (use it as SWITCHYARD_TOKEN).
    Issue(IssueArgs),
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// viewer, ingest, operator or admin.
    #[arg(long)]
    role: Role,
    /// How long the token is valid (`30m`, `1h`, `7d`).
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// The token's subject (who acts; recorded in audit events).
    #[arg(long, default_value_t = default_subject())]
    subject: String,
    /// Holds `[auth]`.
    #[command(flatten)]
    config: crate::config::ConfigFile,
}

fn default_subject() -> String {
    std::env::var("USER").unwrap_or_else(|_| "admin".into())
}

pub fn run(cmd: TokenCommand) -> u8 {
    let TokenCommand::Issue(a) = cmd;
    let ttl = match switchyard_spec::duration::parse_ms(&a.ttl) {
        Ok(ms) if ms > 0 => std::time::Duration::from_millis(ms),
        Ok(_) => {
            eprintln!("error: --ttl must be longer than zero");
            return EXIT_USAGE;
        }
        Err(e) => {
            eprintln!("error: --ttl: {e}");
            return EXIT_USAGE;
        }
    };
    let config = match a.config.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let Some(auth) = &config.auth else {
        eprintln!("error: the configuration has no [auth]; without it the API needs no token");
        return EXIT_USAGE;
    };
    let Some(secret) = &auth.jwt_hs256_secret else {
        eprintln!(
            "error: [auth] has no jwt_hs256_secret; tokens for RS256/ES256 keys are issued by your identity provider"
        );
        return EXIT_USAGE;
    };
    if !switchyard_plugin::secrets::is_reference(secret) && !config.allow_literal_secrets {
        eprintln!(
            "error: auth.jwt_hs256_secret is written into the configuration; reference it as ${{env:NAME}} or ${{file:PATH}} (or set allow_literal_secrets = true)"
        );
        return EXIT_BLOCKED;
    }
    let secret =
        match switchyard_plugin::secrets::resolve(&serde_json::Value::String(secret.clone())) {
            Ok(r) => r.value.as_str().unwrap_or_default().to_owned(),
            Err(e) => {
                eprintln!("error: auth.jwt_hs256_secret: {e}");
                return EXIT_BLOCKED;
            }
        };
    match switchyard_api::auth::issue_hs256(
        secret.as_bytes(),
        &a.subject,
        a.role,
        ttl,
        auth.issuer.as_deref(),
        auth.audience.as_deref(),
    ) {
        Ok(t) => {
            println!("{t}");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: signing the token: {e}");
            EXIT_BLOCKED
        }
    }
}
