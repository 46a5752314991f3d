//! The `ssh` driver: `command.run` and systemd `service` start/stop/restart
//! on hosts reached over SSH, with key authentication and a pinned host key.
//!
//! SSH runs commands through the remote user's shell, so every argument is
//! single-quoted before it is sent: params are never interpolated. Unit names
//! are checked against systemd's character set as well.

mod session;

use serde::Deserialize;
use serde_json::{Value, json};
use session::{Conn, HostConfig};
use std::time::Duration;
use switchyard_plugin::protocol::{
    DiscoverMode, DiscoverParams, DiscoverResult, DryRunParams, DryRunResult, Effect,
    ExecuteParams, ExecuteResult, HealthParams, HealthResult, InitializeParams, Item, Precondition,
    Severity, Target,
};
use switchyard_plugin::sdk::{self, Adapter, AdapterError, Context};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    connect_timeout_s: Option<u64>,
    #[serde(default)]
    auth_timeout_s: Option<u64>,
    #[serde(default)]
    max_output_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunParams {
    argv: Vec<String>,
    #[serde(default)]
    timeout_s: Option<u64>,
    #[serde(default)]
    expect_exit: Option<Vec<u32>>,
}

struct Ssh {
    connect_timeout: Duration,
    auth_timeout: Duration,
    max_output: usize,
}

/// Quote one argument for a POSIX shell (sh, dash, bash, zsh, busybox ash:
/// the remote login shell runs the command line): safe words as they are,
/// anything else in single quotes, a `'` inside written `'\''`. Inside single
/// quotes a POSIX shell expands nothing — `$`, backticks, `;`, `|`, newlines
/// and globs are plain text. A NUL cannot be carried by a shell command line
/// and is refused before quoting ([`command_line`]). Not for csh/fish or
/// Windows shells: hosts whose login shell is one of those are not supported.
pub fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./=:@%+,-".contains(c));
    if safe {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

fn command_line(argv: &[String]) -> Result<String, AdapterError> {
    if let Some(i) = argv.iter().position(|a| a.contains('\0')) {
        return Err(AdapterError::invalid_params(format!(
            "argv[{i}] holds a NUL character, which a shell command line cannot carry"
        )));
    }
    Ok(argv
        .iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" "))
}

fn unit_name(target: &Target) -> Result<String, AdapterError> {
    let ok = target.target_type == "service"
        && !target.id.is_empty()
        && target.id.len() <= 200
        && target
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._:-".contains(c));
    if !ok {
        return Err(AdapterError::target_not_found(format!(
            "`{}` is not a systemd unit name",
            target.id
        )));
    }
    Ok(target.id.clone())
}

fn systemctl(hc: &HostConfig, args: &[&str]) -> Vec<String> {
    let mut argv = Vec::new();
    if hc.sudo.unwrap_or(false) {
        argv.extend(["sudo".to_owned(), "-n".to_owned()]);
    }
    argv.push(
        hc.systemctl
            .clone()
            .unwrap_or_else(|| "systemctl".to_owned()),
    );
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    argv
}

fn desired_active(verb: &str) -> Result<Option<bool>, AdapterError> {
    match verb {
        "start" => Ok(Some(true)),
        "stop" => Ok(Some(false)),
        "restart" => Ok(None),
        other => Err(AdapterError::unsupported(format!(
            "service has no verb `{other}`"
        ))),
    }
}

impl Ssh {
    async fn connect(
        &self,
        host: &switchyard_plugin::protocol::Host,
    ) -> Result<(Conn, HostConfig), AdapterError> {
        let hc = HostConfig::from_host(host)?;
        let conn = Conn::open(host, &hc, self.connect_timeout, self.auth_timeout).await?;
        Ok((conn, hc))
    }

    /// `systemctl is-active` and `show -p LoadState` for a unit.
    async fn unit_state(
        &self,
        conn: &Conn,
        hc: &HostConfig,
        unit: &str,
    ) -> Result<(String, String), AdapterError> {
        let active = conn
            .run(
                &command_line(&systemctl(hc, &["is-active", unit]))?,
                Duration::from_secs(30),
                self.max_output,
                None,
            )
            .await?;
        let load = conn
            .run(
                &command_line(&systemctl(
                    hc,
                    &["show", "-p", "LoadState", "--value", unit],
                ))?,
                Duration::from_secs(30),
                self.max_output,
                None,
            )
            .await?;
        Ok((
            active.stdout_text().trim().to_owned(),
            load.stdout_text().trim().to_owned(),
        ))
    }
}

impl Adapter for Ssh {
    const NAME: &'static str = "ssh";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn initialize(params: InitializeParams) -> Result<Self, AdapterError> {
        let config: Config = if params.driver_config.is_null() {
            Config::default()
        } else {
            serde_json::from_value(params.driver_config)
                .map_err(|e| AdapterError::invalid_params(format!("driver config: {e}")))?
        };
        Ok(Ssh {
            connect_timeout: Duration::from_secs(config.connect_timeout_s.unwrap_or(10)),
            auth_timeout: Duration::from_secs(config.auth_timeout_s.unwrap_or(10)),
            max_output: config.max_output_bytes.unwrap_or(64 * 1024),
        })
    }

    async fn discover(
        &self,
        req: DiscoverParams,
        _ctx: Context,
    ) -> Result<DiscoverResult, AdapterError> {
        let (conn, hc) = self.connect(&req.host).await?;
        let args: &[&str] = match req.mode {
            DiscoverMode::Full => &[
                "list-units",
                "--type=service",
                "--all",
                "--no-legend",
                "--plain",
                "--no-pager",
            ],
            DiscoverMode::Fast => &[
                "list-units",
                "--type=service",
                "--no-legend",
                "--plain",
                "--no-pager",
            ],
        };
        let out = conn
            .run(
                &command_line(&systemctl(&hc, args))?,
                Duration::from_secs(60),
                self.max_output * 16,
                None,
            )
            .await?;
        conn.close().await;
        if out.exit != Some(0) {
            return Err(AdapterError::transient(format!(
                "systemctl list-units failed: {}",
                out.stderr_text().trim()
            )));
        }
        let items = out
            .stdout_text()
            .lines()
            .filter_map(|line| {
                let mut f = line.split_whitespace();
                let unit = f.next()?;
                let (load, active, sub) = (f.next()?, f.next()?, f.next()?);
                let id = unit.strip_suffix(".service")?;
                Some(Item {
                    item_type: "service".into(),
                    id: id.to_owned(),
                    name: Some(unit.to_owned()),
                    labels: Default::default(),
                    state: Some(json!({"load": load, "active": active, "sub": sub})),
                })
            })
            .collect();
        Ok(DiscoverResult {
            items,
            complete: true,
        })
    }

    async fn dry_run(
        &self,
        req: DryRunParams,
        _ctx: Context,
    ) -> Result<DryRunResult, AdapterError> {
        let (conn, hc) = match self.connect(&req.host).await {
            Ok(c) => c,
            Err(e) => {
                return Ok(DryRunResult {
                    ok: false,
                    severity: Severity::Error,
                    idempotency_key: None,
                    preconditions: vec![Precondition {
                        name: "ssh".into(),
                        ok: false,
                        detail: Some(e.message.clone()),
                    }],
                    plan: vec![],
                    effects: vec![],
                    reason: Some(e.message),
                });
            }
        };
        let ssh_ok = Precondition {
            name: "ssh".into(),
            ok: true,
            detail: Some(format!("{}@{} (host key pinned)", hc.user, req.host.id)),
        };
        let result = match req.capability.as_str() {
            "command.run" => {
                let p: RunParams = serde_json::from_value(req.params)
                    .map_err(|e| AdapterError::invalid_params(e.to_string()))?;
                let program = &p.argv[0];
                let which = conn
                    .run(
                        &command_line(&["command".into(), "-v".into(), program.clone()])?,
                        Duration::from_secs(30),
                        4096,
                        None,
                    )
                    .await?;
                let found = which.exit == Some(0);
                let ok = found;
                DryRunResult {
                    ok,
                    severity: if ok { Severity::Info } else { Severity::Error },
                    idempotency_key: None,
                    preconditions: vec![
                        ssh_ok,
                        Precondition {
                            name: "program".into(),
                            ok: found,
                            detail: Some(if found {
                                which.stdout_text().trim().to_owned()
                            } else {
                                format!("`{program}` is not found on the host")
                            }),
                        },
                    ],
                    plan: vec![format!(
                        "run `{}` on {}",
                        command_line(&p.argv)?,
                        req.host.id
                    )],
                    effects: vec![],
                    reason: (!ok).then(|| "a precondition failed".to_owned()),
                }
            }
            "service" => {
                let unit = unit_name(&req.target)?;
                let want = desired_active(&req.verb)?;
                let (active, load) = self.unit_state(&conn, &hc, &unit).await?;
                let loaded = load == "loaded";
                let is_active = active == "active";
                let noop = want == Some(is_active);
                let (plan, effects) = if !loaded || noop {
                    (
                        vec![format!("nothing to do: {unit} is already {active}")],
                        vec![],
                    )
                } else {
                    let to = match want {
                        Some(true) | None => "active",
                        Some(false) => "inactive",
                    };
                    (
                        vec![format!(
                            "{} on {}",
                            command_line(&systemctl(&hc, &[&req.verb, &unit]))?,
                            req.host.id
                        )],
                        vec![Effect {
                            target: unit.clone(),
                            field: "active".into(),
                            from: json!(active),
                            to: json!(to),
                        }],
                    )
                };
                DryRunResult {
                    ok: loaded,
                    severity: if loaded {
                        Severity::Info
                    } else {
                        Severity::Error
                    },
                    idempotency_key: None,
                    preconditions: vec![
                        ssh_ok,
                        Precondition {
                            name: "unit loaded".into(),
                            ok: loaded,
                            detail: Some(format!("{unit}: LoadState={load}, active={active}")),
                        },
                    ],
                    plan: if loaded { plan } else { vec![] },
                    effects: if loaded { effects } else { vec![] },
                    reason: (!loaded).then(|| format!("unit {unit} is not loaded ({load})")),
                }
            }
            other => {
                return Err(AdapterError::unsupported(format!(
                    "ssh has no capability `{other}`"
                )));
            }
        };
        conn.close().await;
        Ok(result)
    }

    async fn execute(
        &self,
        req: ExecuteParams,
        ctx: Context,
    ) -> Result<ExecuteResult, AdapterError> {
        let (conn, hc) = self.connect(&req.host).await?;
        let budget = ctx.remaining().unwrap_or(Duration::from_secs(3600));
        let result = match req.capability.as_str() {
            "command.run" => {
                if req.verb != "run" {
                    return Err(AdapterError::unsupported(format!(
                        "command.run has no verb `{}`",
                        req.verb
                    )));
                }
                let p: RunParams = serde_json::from_value(req.params)
                    .map_err(|e| AdapterError::invalid_params(e.to_string()))?;
                if p.argv.is_empty() {
                    return Err(AdapterError::invalid_params("argv needs a program"));
                }
                let line = command_line(&p.argv)?;
                ctx.log(format!("run `{line}` on {}", req.host.id));
                let limit = p
                    .timeout_s
                    .map_or(budget, |t| Duration::from_secs(t).min(budget));
                let out = conn.run(&line, limit, self.max_output, Some(&ctx)).await?;
                let expect = p.expect_exit.unwrap_or_else(|| vec![0]);
                let ok = out.exit.is_some_and(|c| expect.contains(&c));
                ExecuteResult {
                    ok,
                    effects: vec![],
                    output: Some(out.render()),
                    reason: (!ok).then(|| match out.exit {
                        Some(c) => format!("exited with status {c} (expected {expect:?})"),
                        None if out.timed_out && out.group_killed => format!(
                            "timed out after {} s; the command's process group was killed",
                            limit.as_secs()
                        ),
                        None if out.timed_out => format!("timed out after {} s", limit.as_secs()),
                        None => "ended without an exit status".to_owned(),
                    }),
                }
            }
            "service" => {
                let unit = unit_name(&req.target)?;
                desired_active(&req.verb)?;
                let (before, _) = self.unit_state(&conn, &hc, &unit).await?;
                let line = command_line(&systemctl(&hc, &[&req.verb, &unit]))?;
                ctx.log(format!("{line} on {}", req.host.id));
                let out = conn.run(&line, budget, self.max_output, Some(&ctx)).await?;
                let (after, _) = self.unit_state(&conn, &hc, &unit).await?;
                let ok = out.exit == Some(0);
                ExecuteResult {
                    ok,
                    effects: if before == after && req.verb != "restart" {
                        vec![]
                    } else {
                        vec![Effect {
                            target: unit.clone(),
                            field: "active".into(),
                            from: Value::String(before),
                            to: Value::String(after),
                        }]
                    },
                    output: Some(out.render()),
                    reason: (!ok).then(|| {
                        format!(
                            "systemctl {} {unit} failed: {}",
                            req.verb,
                            out.stderr_text().trim()
                        )
                    }),
                }
            }
            other => {
                return Err(AdapterError::unsupported(format!(
                    "ssh has no capability `{other}`"
                )));
            }
        };
        conn.close().await;
        Ok(result)
    }

    async fn health(&self, req: HealthParams, _ctx: Context) -> Result<HealthResult, AdapterError> {
        match self.connect(&req.host).await {
            Ok((conn, hc)) => {
                let out = conn.run("true", Duration::from_secs(10), 1024, None).await;
                conn.close().await;
                Ok(HealthResult {
                    ok: matches!(&out, Ok(o) if o.exit == Some(0)),
                    detail: Some(match out {
                        Ok(_) => format!("{}@{} reachable, host key matches", hc.user, req.host.id),
                        Err(e) => e.message,
                    }),
                })
            }
            Err(e) => Ok(HealthResult {
                ok: false,
                detail: Some(e.message),
            }),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    sdk::serve::<Ssh>().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_defeats_interpolation() {
        assert_eq!(shell_quote("nginx"), "nginx");
        assert_eq!(shell_quote("/usr/bin/env"), "/usr/bin/env");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("$(id)"), "'$(id)'");
        assert_eq!(shell_quote("it's; rm -rf /"), r"'it'\''s; rm -rf /'");
        assert_eq!(
            command_line(&["echo".into(), "`id`".into(), "x|y".into()]).unwrap(),
            "echo '`id`' 'x|y'"
        );
    }

    #[test]
    fn unit_names_are_checked() {
        let t = |id: &str| Target {
            target_type: "service".into(),
            id: id.into(),
        };
        assert!(unit_name(&t("nginx")).is_ok());
        assert!(unit_name(&t("getty@tty1.service")).is_ok());
        assert!(unit_name(&t("nginx; reboot")).is_err());
        assert!(unit_name(&t("")).is_err());
    }
}
