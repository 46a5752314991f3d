//! `switchyard init [DIR]`: a configuration a newcomer can `serve` at once —
//! a commented `switchyard.toml` (SQLite beside it, NATS on this machine,
//! the API on loopback, the installed drivers, one host: this machine), and
//! a `policies/` folder with one example policy.

use crate::{EXIT_BLOCKED, EXIT_OK, EXIT_USAGE};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write (created when missing).
    #[arg(default_value = ".", value_name = "DIR")]
    dir: PathBuf,
    /// The drivers folder to name in `drivers.paths` (default: the drivers
    /// installed with this binary, found next to it).
    #[arg(long, value_name = "DIR")]
    drivers: Option<PathBuf>,
    /// Overwrite `switchyard.toml` and the example policy when they exist.
    #[arg(long)]
    force: bool,
}

const EXAMPLE_POLICY: &str = r#"# An example policy: when an event of kind `demo.hello` names a host, run
# `echo` on it through the exec driver. Try it while `switchyard serve` runs:
#
#   switchyard event publish --kind demo.hello --host localhost --data '{"who":"me"}'
#   switchyard runs list
#
# Policy spec v1: docs/POLICIES.md in switchyard's sources; check a change
# with `switchyard policy validate policies/`. serve applies this folder at
# start and again on every change.
version: 1
name: hello
description: Echo a greeting on the host an event names
enabled: true
trigger_group:
  triggers:
    - kind: demo.hello
targets:
  - selector: "{{ $.host }}"
    dynamic_resolution: true
actions:
  - capability: command.run
    verb: run
    driver: exec
    params:
      argv: ["echo", "hello, {{ $.data.who }}"]
windows:
  # The same greeting to the same host within a minute runs once.
  idempotency: 1m
"#;

fn config_text(drivers: &str, found: bool) -> String {
    let drivers_note = if found {
        "# The drivers installed with switchyard (exec, http, ssh)."
    } else {
        "# No installed drivers were found next to the switchyard binary: point\n# this at the folder holding <driver>/plugin.yaml, then uncomment the\n# host below and rename policies/hello.yaml.example to hello.yaml. (serve\n# starts without drivers, with a warning, as long as no host or policy\n# names one; no action can run until then.)"
    };
    let host = "# The machine switchyard runs on, acted on through the exec driver.\n[[hosts]]\nid = \"localhost\"\ndriver = \"exec\"\nlabels = { role = \"local\" }\n";
    let host = if found {
        host.to_owned()
    } else {
        host.lines()
            .map(|l| {
                if l.starts_with('#') {
                    format!("{l}\n")
                } else {
                    format!("# {l}\n")
                }
            })
            .collect()
    };
    format!(
        r#"# switchyard configuration (written by `switchyard init`).
# Every key has a default; environment variables override keys as
# SWITCHYARD_<SECTION>__<KEY> (e.g. SWITCHYARD_NATS__URL). All keys:
# docs/OPERATIONS.md in switchyard's sources. Relative paths are relative
# to this file.

[database]
# SQLite beside this file; for several instances use PostgreSQL:
# url = "postgres://switchyard@db.example/switchyard"
url = "sqlite://switchyard.db?mode=rwc"

[nats]
# A nats-server with JetStream (`nats-server -js`). serve creates the
# stream SWITCHYARD_EVENTS (subjects switchyard.events.>) when it is missing.
url = "nats://127.0.0.1:4222"

[api]
# Loopback without [auth]: only this machine can call the API. To listen
# beyond it, add [auth] with jwt_hs256_secret = "${{env:SWITCHYARD_JWT_SECRET}}".
listen = "127.0.0.1:8080"

[drivers]
{drivers_note}
paths = [{drivers}]

[policies]
# Applied at start as one bundle (subfolders included), then watched: edit
# a file, it reloads.
dir = "policies"

{host}"#
    )
}

/// Where drivers are installed, relative to the running binary: a package's
/// `/usr/lib/switchyard/drivers` for `/usr/bin/switchyard`, a `drivers`
/// folder beside it, or the source tree's `drivers/` for a binary built from
/// it (in its `target/`, or wherever `CARGO_TARGET_DIR` put it).
fn installed_drivers() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    let dir = exe.parent()?;
    let mut candidates = vec![dir.join("../lib/switchyard/drivers"), dir.join("drivers")];
    candidates.extend(
        dir.ancestors()
            .filter(|a| a.join("Cargo.toml").is_file())
            .map(|a| a.join("drivers")),
    );
    // A development build outside its tree (CARGO_TARGET_DIR elsewhere).
    if cfg!(debug_assertions) {
        candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../drivers"));
    }
    candidates
        .into_iter()
        .find(|c| holds_drivers(c))
        .and_then(|c| c.canonicalize().ok())
}

/// Whether `d` holds a driver that loads, as `serve` would load it.
fn holds_drivers(d: &Path) -> bool {
    switchyard_plugin::Registry::load_present(&[d.to_path_buf()])
        .is_ok_and(|(registry, _)| !registry.is_empty())
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

pub fn run(args: InitArgs) -> u8 {
    let drivers = match &args.drivers {
        Some(d) => Some(std::path::absolute(d).unwrap_or_else(|_| d.clone())),
        None => installed_drivers(),
    };
    let found = drivers.as_deref().is_some_and(holds_drivers);
    let config_path = args.dir.join("switchyard.toml");
    // Without drivers the example could not load (it names the exec
    // driver): it is written aside, to be renamed once drivers are there.
    let policy_path = args.dir.join("policies").join(if found {
        "hello.yaml"
    } else {
        "hello.yaml.example"
    });
    if !args.force {
        let existing: Vec<String> = [&config_path, &policy_path]
            .into_iter()
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            eprintln!(
                "error: {} already exist(s); nothing written (--force overwrites)",
                existing.join(", ")
            );
            return EXIT_BLOCKED;
        }
    }
    let drivers_value = match &drivers {
        Some(d) => toml_string(&d.display().to_string()),
        None => toml_string("drivers"),
    };
    let written = std::fs::create_dir_all(args.dir.join("policies"))
        .and_then(|()| std::fs::write(&config_path, config_text(&drivers_value, found)))
        .and_then(|()| std::fs::write(&policy_path, EXAMPLE_POLICY));
    if let Err(e) = written {
        eprintln!("error: writing into {}: {e}", args.dir.display());
        return EXIT_USAGE;
    }
    println!("wrote {}", config_path.display());
    println!("wrote {}", policy_path.display());
    match &drivers {
        Some(d) if found => println!("drivers: {}", d.display()),
        Some(d) => eprintln!(
            "warning: {} holds no driver (no <driver>/plugin.yaml); the host and the example policy are left off until it does",
            d.display()
        ),
        None => eprintln!(
            "warning: no installed drivers found next to this binary; set drivers.paths in {}, then uncomment the host and rename the example policy",
            config_path.display()
        ),
    }
    let cd = if args.dir == Path::new(".") {
        String::new()
    } else {
        let dir = args.dir.display().to_string();
        let plain = dir
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c));
        if plain {
            format!("cd {dir} && ")
        } else {
            format!("cd '{}' && ", dir.replace('\'', "'\\''"))
        }
    };
    println!(
        "next: start a nats-server with JetStream (`nats-server -js`), then\n  {cd}switchyard serve"
    );
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_drivers_the_host_is_commented_out() {
        let text = config_text(&toml_string("drivers"), false);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchyard.toml");
        std::fs::write(&path, &text).unwrap();
        let c = crate::config::Config::load_with_env(Some(&path), &[]).unwrap();
        assert!(c.hosts.is_empty(), "{text}");
        assert!(text.contains("# [[hosts]]\n# id = \"localhost\""), "{text}");
    }

    #[test]
    fn the_written_configuration_loads_and_the_example_validates() {
        let text = config_text(&toml_string("/opt/x \"drivers\""), true);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchyard.toml");
        std::fs::write(&path, &text).unwrap();
        let c = crate::config::Config::load_with_env(Some(&path), &[]).unwrap();
        assert_eq!(c.drivers.paths, vec![PathBuf::from("/opt/x \"drivers\"")]);
        assert_eq!(c.hosts[0].id, "localhost");
        assert_eq!(c.api.listen, "127.0.0.1:8080");
        let results = switchyard_spec::policy::validate_text(
            EXAMPLE_POLICY,
            switchyard_spec::policy::Format::Yaml,
            None,
        );
        assert_eq!(results.len(), 1);
        assert!(!results[0].is_blocked(), "{:?}", results[0].findings);
    }
}
