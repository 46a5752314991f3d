//! `switchyard policy …`: offline validation and compilation, and the
//! client commands for policies on a running switchyard (`policy_client`).

use crate::{EXIT_BLOCKED, EXIT_OK, EXIT_USAGE, Output};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use std::io::Read;
use std::path::{Path, PathBuf};
use switchyard_spec::policy::{self, Compiled, Format};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files and print one line per finding.
    ///
    /// Exits 0 when no file has a blocker, 1 when any has, 2 on usage or IO errors.
    Validate(ValidateArgs),
    /// Compile one policy file and print its IR (with `spec_hash`) as JSON.
    Compile(CompileArgs),
    /// Apply policy files (or directories) on the server as one bundle: all or nothing.
    Apply(crate::policy_client::ApplyArgs),
    /// List the policies on the server.
    List(crate::policy_client::ListArgs),
    /// Show one policy (`--source` prints the saved document).
    Show(crate::policy_client::ShowArgs),
    /// What changed between two versions, by JSON pointer.
    Diff(crate::policy_client::DiffArgs),
    /// Bring back an earlier version's content as a new version (admin).
    Rollback(crate::policy_client::RollbackArgs),
    /// Enable a policy (refused while its last dry-run has errors, unless --force as admin).
    Enable(crate::policy_client::EnableArgs),
    /// Disable a policy.
    Disable(crate::policy_client::NameArgs),
    /// Dry-run a policy against a sample event; exits 1 when it found errors.
    DryRun(crate::policy_client::DryRunArgs),
    /// Print the inverse policy (disabled) and what to fill in before saving it.
    Inverse(crate::policy_client::NameArgs),
    /// Archive a policy: disabled, hidden, history kept (admin).
    Delete(crate::policy_client::NameArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Policy files (`.yaml`, `.yml`, `.json`, `.toml`), folders of them
    /// (read as serve reads its policy directory: subfolders included;
    /// hidden files and folders, `switchyard.toml` and `plugin.yaml`
    /// skipped); `-` reads standard input.
    #[arg(required = true, value_name = "FILE|DIR")]
    files: Vec<PathBuf>,
    /// Format of files without a known extension (standard input without
    /// it: JSON when it starts with `{`, TOML when it parses as TOML, else YAML).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Also check actions against the drivers installed here: a driver folder
    /// (holding plugin.yaml) or a folder of them. Repeatable.
    #[arg(long = "drivers", value_name = "DIR")]
    drivers: Vec<PathBuf>,
    /// Output style.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// A policy file; `-` reads standard input.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Format for standard input or a file without a known extension.
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Print RFC 8785 canonical JSON (the bytes that are hashed) instead of indented JSON.
    #[arg(long)]
    canonical: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Yaml,
    Json,
    Toml,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Yaml => Format::Yaml,
            FormatArg::Json => Format::Json,
            FormatArg::Toml => Format::Toml,
        }
    }
}

pub fn run(cmd: PolicyCommand) -> u8 {
    match cmd {
        PolicyCommand::Validate(args) => validate(&args),
        PolicyCommand::Compile(args) => compile(&args),
        PolicyCommand::Apply(a) => crate::policy_client::apply(a),
        PolicyCommand::List(a) => crate::policy_client::list(a),
        PolicyCommand::Show(a) => crate::policy_client::show(a),
        PolicyCommand::Diff(a) => crate::policy_client::diff(a),
        PolicyCommand::Rollback(a) => crate::policy_client::rollback(a),
        PolicyCommand::Enable(a) => crate::policy_client::enable(a, true),
        PolicyCommand::Disable(a) => crate::policy_client::enable(
            crate::policy_client::EnableArgs {
                server: a.server,
                policy: a.policy,
                force: false,
            },
            false,
        ),
        PolicyCommand::DryRun(a) => crate::policy_client::dry_run(a),
        PolicyCommand::Inverse(a) => crate::policy_client::inverse(a),
        PolicyCommand::Delete(a) => crate::policy_client::delete(a),
    }
}

/// Read a file (or stdin for `-`) and decide its format.
fn read_source(path: &Path, format: Option<FormatArg>) -> Result<(String, Format), String> {
    let stdin = path.as_os_str() == "-";
    let format = match (format, Format::from_path(path)) {
        (Some(f), _) => f.into(),
        (None, Some(f)) => f,
        (None, None) if stdin => {
            let text = read_text(path)?;
            let format = sniff(&text);
            return Ok((text, format));
        }
        (None, None) => {
            return Err(format!(
                "{}: cannot tell the format; name the file .yaml, .yml, .json or .toml, or pass --format",
                path.display()
            ));
        }
    };
    Ok((read_text(path)?, format))
}

/// The format of a document by its first line that is not blank or a
/// comment: `{` opens JSON; a `[table]` or a `key = value` line is TOML
/// (its errors then come from the TOML parser); anything else is YAML.
fn sniff(text: &str) -> Format {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    let toml_key = first.split_once('=').is_some_and(|(k, _)| {
        let k = k.trim();
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.\"'".contains(c))
    });
    if first.starts_with('{') {
        Format::Json
    } else if first.starts_with('[') || toml_key {
        Format::Toml
    } else {
        Format::Yaml
    }
}

/// A file's text, or standard input's for `-`.
fn read_text(path: &Path) -> Result<String, String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("standard input: {e}"))?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// How a document is named in output: `file`, or `file#2` for the second of several.
fn doc_label(path: &Path, c: &Compiled, count: usize) -> String {
    if count > 1 {
        format!("{}#{}", path.display(), c.document + 1)
    } else {
        path.display().to_string()
    }
}

fn validate(args: &ValidateArgs) -> u8 {
    let registry = if args.drivers.is_empty() {
        None
    } else {
        match switchyard_plugin::Registry::load(&args.drivers) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
        }
    };
    let catalog = registry
        .as_ref()
        .map(|r| r as &dyn switchyard_spec::catalog::DriverCatalog);
    let mut blocked = false;
    let mut io_error = false;
    let mut json_files = Vec::new();
    let mut files = Vec::new();
    for path in &args.files {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        match switchyard_api::bundle::policy_paths(path) {
            Ok(found) if found.is_empty() => {
                eprintln!(
                    "error: {}: no policy files here (.yaml, .yml, .json, .toml)",
                    path.display()
                );
                io_error = true;
            }
            Ok(found) => files.extend(found),
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                io_error = true;
            }
        }
    }
    for path in &files {
        let (text, format) = match read_source(path, args.format) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                io_error = true;
                if args.output == Output::Json {
                    json_files.push(json!({"file": path.display().to_string(), "error": e}));
                }
                continue;
            }
        };
        let results = policy::validate_text(&text, format, catalog);
        let count = results.len();
        for c in &results {
            blocked |= c.is_blocked();
            match args.output {
                Output::Text => {
                    let label = doc_label(path, c, count);
                    for f in &c.findings {
                        println!("{label}: {f}");
                    }
                    if !c.is_blocked() {
                        let name = c.name.as_deref().unwrap_or("?");
                        let hash = c.spec_hash.as_deref().unwrap_or("");
                        eprintln!("{label}: ok: policy `{name}` spec_hash {hash}");
                    }
                }
                Output::Json => json_files.push(json!({
                    "file": path.display().to_string(),
                    "document": c.document,
                    "name": c.name,
                    "ok": !c.is_blocked(),
                    "spec_hash": c.spec_hash,
                    "findings": c.findings,
                })),
            }
        }
    }
    if args.output == Output::Json {
        println!("{:#}", Value::Array(json_files));
    }
    if io_error {
        EXIT_USAGE
    } else if blocked {
        EXIT_BLOCKED
    } else {
        EXIT_OK
    }
}

fn compile(args: &CompileArgs) -> u8 {
    let (text, format) = match read_source(&args.file, args.format) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let results = policy::compile_text(&text, format);
    let count = results.len();
    let mut out = Vec::new();
    let mut blocked = false;
    for c in &results {
        for f in &c.findings {
            eprintln!("{}: {f}", doc_label(&args.file, c, count));
        }
        match (&c.ir, &c.spec_hash) {
            (Some(ir), Some(hash)) => {
                let mut v = ir.to_value();
                v["spec_hash"] = Value::String(hash.clone());
                out.push(v);
            }
            _ => blocked = true,
        }
    }
    if blocked {
        return EXIT_BLOCKED;
    }
    let value = if out.len() == 1 {
        out.remove(0)
    } else {
        Value::Array(out)
    };
    if args.canonical {
        println!(
            "{}",
            switchyard_spec::canonical::to_canonical_string(&value)
        );
    } else {
        println!("{value:#}");
    }
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_input_is_told_apart_by_its_first_line() {
        assert_eq!(sniff("# c\n\n{\"version\": 1}"), Format::Json);
        assert_eq!(sniff("version = 1\nname = \"x\""), Format::Toml);
        assert_eq!(sniff("[[actions]]\nverb = \"x\""), Format::Toml);
        // Broken TOML is still TOML: its errors come from the TOML parser.
        assert_eq!(sniff("version = \nname ="), Format::Toml);
        assert_eq!(sniff("version: 1\nname: x"), Format::Yaml);
        assert_eq!(sniff("url: \"a=b\""), Format::Yaml);
        assert_eq!(sniff(""), Format::Yaml);
    }
}
