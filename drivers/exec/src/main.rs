//! The `exec` driver: `command.run` on the machine switchyard runs on, and
//! `command.reversible` — a command with the command that undoes it.
//!
//! Commands run from an argv array, never through a shell (a policy that
//! wants a shell names it: `argv: [sh, -c, …]`). The environment is built from
//! scratch: a fixed PATH and LANG, the variables in `env_allowlist`, and the
//! action's `env`. Output is captured and truncated. Each command runs in a
//! process group of its own, killed as a whole at the command's timeout, at
//! the run's deadline, when switchyard cancels, and once the command has
//! exited: nothing a command starts outlives its run, and a background
//! process holding the command's output open cannot hold the run (output is
//! read for at most [`DRAIN`] after the command exits).

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use switchyard_plugin::protocol::{
    DryRunParams, DryRunResult, ExecuteParams, ExecuteResult, InitializeParams, Precondition,
    Severity,
};
use switchyard_plugin::sdk::{self, Adapter, AdapterError, Context};
use tokio::io::AsyncReadExt;

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const DEFAULT_MAX_OUTPUT: usize = 64 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    env_allowlist: Vec<String>,
    #[serde(default)]
    max_output_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunParams {
    argv: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    timeout_s: Option<u64>,
    #[serde(default)]
    expect_exit: Option<Vec<i32>>,
}

struct Exec {
    env: BTreeMap<String, String>,
    max_output: usize,
}

/// `command.reversible` params: the command and the one that undoes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReversibleParams {
    apply: Vec<String>,
    revert: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    timeout_s: Option<u64>,
    #[serde(default)]
    expect_exit: Option<Vec<i32>>,
}

/// The command a request runs: `command.run/run` runs `argv`;
/// `command.reversible/apply` runs `apply` and `/revert` runs `revert` (each
/// other's inverse, so a run can be undone with the params it ran with).
fn run_params(capability: &str, verb: &str, params: Value) -> Result<RunParams, AdapterError> {
    let invalid = |e: serde_json::Error| AdapterError::invalid_params(e.to_string());
    let p = match (capability, verb) {
        ("command.run", "run") => serde_json::from_value::<RunParams>(params).map_err(invalid)?,
        ("command.reversible", "apply" | "revert") => {
            let r: ReversibleParams = serde_json::from_value(params).map_err(invalid)?;
            RunParams {
                argv: if verb == "apply" { r.apply } else { r.revert },
                env: r.env,
                cwd: r.cwd,
                timeout_s: r.timeout_s,
                expect_exit: r.expect_exit,
            }
        }
        _ => {
            return Err(AdapterError::unsupported(format!(
                "exec provides command.run/run and command.reversible/apply|revert, not {capability}/{verb}"
            )));
        }
    };
    if p.argv.is_empty() || p.argv[0].is_empty() {
        return Err(AdapterError::invalid_params("the command needs a program"));
    }
    Ok(p)
}

/// Where `program` would be found: a path as given, or the first match on PATH.
fn locate(program: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    PATH.split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| executable(p))
}

/// What has been read from one of the command's pipes so far.
#[derive(Debug, Default)]
struct Captured {
    kept: Vec<u8>,
    truncated: bool,
}

type Shared = std::sync::Arc<std::sync::Mutex<Captured>>;

/// Read a pipe to its end into `into`, keeping at most `max` bytes. What was
/// read stays in `into` even if the reader is stopped early.
async fn capture<R: tokio::io::AsyncRead + Unpin>(mut r: R, max: usize, into: Shared) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let mut c = into
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let room = max.saturating_sub(c.kept.len());
        c.kept.extend_from_slice(&buf[..n.min(room)]);
        c.truncated |= n > room;
    }
}

/// How long output is still read after the command exits: a background
/// process that keeps the command's stdout or stderr open does not keep the
/// run going past this.
const DRAIN: Duration = Duration::from_millis(500);

/// The two output readers of a command.
struct Output {
    out: (Shared, tokio::task::JoinHandle<()>),
    err: (Shared, tokio::task::JoinHandle<()>),
}

impl Output {
    fn start(child: &mut tokio::process::Child, max: usize) -> Output {
        fn reader<R>(pipe: R, max: usize) -> (Shared, tokio::task::JoinHandle<()>)
        where
            R: tokio::io::AsyncRead + Unpin + Send + 'static,
        {
            let shared = Shared::default();
            let task = tokio::spawn(capture(pipe, max, std::sync::Arc::clone(&shared)));
            (shared, task)
        }
        Output {
            out: reader(child.stdout.take().expect("piped"), max),
            err: reader(child.stderr.take().expect("piped"), max),
        }
    }

    /// Wait up to `limit` for both pipes to close; `false` when one is
    /// still held open (its reader is then stopped).
    async fn finish(&mut self, limit: Duration) -> bool {
        let both = async {
            let _ = (&mut self.out.1).await;
            let _ = (&mut self.err.1).await;
        };
        let closed = tokio::time::timeout(limit, both).await.is_ok();
        if !closed {
            self.out.1.abort();
            self.err.1.abort();
        }
        closed
    }

    /// stdout and stderr as the run's output.
    fn text(&self) -> String {
        let take = |s: &Shared| {
            let c = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (c.kept.clone(), c.truncated)
        };
        let (o, ot) = take(&self.out.0);
        let (e, et) = take(&self.err.0);
        format!(
            "{}\n{}",
            section("stdout", &o, ot),
            section("stderr", &e, et)
        )
    }
}

fn section(name: &str, bytes: &[u8], truncated: bool) -> String {
    let mut s = format!("--- {name} ---\n{}", String::from_utf8_lossy(bytes));
    if truncated {
        s.push_str("\n[truncated]");
    }
    s
}

impl Exec {
    fn plan(&self, p: &RunParams) -> String {
        let quoted: Vec<String> = p.argv.iter().map(|a| format!("{a:?}")).collect();
        let mut plan = format!("run [{}]", quoted.join(", "));
        if let Some(cwd) = &p.cwd {
            plan.push_str(&format!(" in {cwd}"));
        }
        if !p.env.is_empty() {
            plan.push_str(&format!(
                " with env {}",
                p.env.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(t) = p.timeout_s {
            plan.push_str(&format!(", timeout {t}s"));
        }
        plan
    }
}

impl Adapter for Exec {
    const NAME: &'static str = "exec";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn initialize(params: InitializeParams) -> Result<Self, AdapterError> {
        let config: Config = if params.driver_config.is_null() {
            Config::default()
        } else {
            serde_json::from_value(params.driver_config)
                .map_err(|e| AdapterError::invalid_params(format!("driver config: {e}")))?
        };
        let mut env = BTreeMap::from([
            ("PATH".to_owned(), PATH.to_owned()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ]);
        for name in &config.env_allowlist {
            if let Ok(v) = std::env::var(name) {
                env.insert(name.clone(), v);
            }
        }
        Ok(Exec {
            env,
            max_output: config.max_output_bytes.unwrap_or(DEFAULT_MAX_OUTPUT),
        })
    }

    async fn dry_run(
        &self,
        req: DryRunParams,
        _ctx: Context,
    ) -> Result<DryRunResult, AdapterError> {
        let p = run_params(&req.capability, &req.verb, req.params)?;
        let found = locate(&p.argv[0]);
        let mut preconditions = vec![Precondition {
            name: "program".into(),
            ok: found.is_some(),
            detail: Some(match &found {
                Some(path) => format!("{} is executable", path.display()),
                None => format!("`{}` is not an executable file (PATH is {PATH})", p.argv[0]),
            }),
        }];
        if let Some(cwd) = &p.cwd {
            let ok = Path::new(cwd).is_dir();
            preconditions.push(Precondition {
                name: "cwd".into(),
                ok,
                detail: Some(if ok {
                    format!("{cwd} exists")
                } else {
                    format!("{cwd} is not a directory")
                }),
            });
        }
        let ok = preconditions.iter().all(|c| c.ok);
        Ok(DryRunResult {
            ok,
            severity: if ok { Severity::Info } else { Severity::Error },
            idempotency_key: None,
            plan: vec![self.plan(&p)],
            preconditions,
            effects: vec![],
            reason: (!ok).then(|| "a precondition failed".to_owned()),
        })
    }

    async fn execute(
        &self,
        req: ExecuteParams,
        ctx: Context,
    ) -> Result<ExecuteResult, AdapterError> {
        let p = run_params(&req.capability, &req.verb, req.params)?;
        let mut cmd = tokio::process::Command::new(&p.argv[0]);
        cmd.args(&p.argv[1..])
            .env_clear()
            .envs(&self.env)
            .envs(&p.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, killed as a whole (`sdk::ProcessGroup`).
            .process_group(0)
            .kill_on_drop(true);
        if let Some(cwd) = &p.cwd {
            cmd.current_dir(cwd);
        }
        ctx.log(self.plan(&p));
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => AdapterError::precondition_failed(format!(
                "`{}`: no such program or working directory",
                p.argv[0]
            )),
            std::io::ErrorKind::PermissionDenied => {
                AdapterError::precondition_failed(format!("`{}`: permission denied", p.argv[0]))
            }
            _ => AdapterError::internal(format!("cannot start `{}`: {e}", p.argv[0])),
        })?;
        // Killed as a whole at the end of the run, and by the SDK if the
        // adapter stops first: nothing the command started outlives it.
        let mut group = sdk::ProcessGroup::new(child.id().unwrap_or_default());
        let mut output = Output::start(&mut child, self.max_output);
        let limit = match (p.timeout_s.map(Duration::from_secs), ctx.remaining()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(Duration::from_secs(3600)),
        };
        let status = tokio::select! {
            s = child.wait() => Some(s.map_err(|e| AdapterError::internal(e.to_string()))?),
            () = tokio::time::sleep(limit) => None,
            () = ctx.cancelled() => {
                group.kill();
                let _ = child.kill().await;
                return Err(AdapterError::transient("cancelled by switchyard"));
            }
        };
        let Some(status) = status else {
            group.kill();
            let _ = child.kill().await;
            output.finish(DRAIN).await;
            return Ok(ExecuteResult {
                ok: false,
                effects: vec![],
                output: Some(output.text()),
                reason: Some(format!(
                    "timed out after {} s; the command's process group was killed",
                    limit.as_secs()
                )),
            });
        };
        // The command has exited: read what is left, then make sure nothing
        // it started goes on (a background process may still hold a pipe).
        let closed = output.finish(DRAIN).await;
        let leftovers = group.kill();
        let expect = p.expect_exit.unwrap_or_else(|| vec![0]);
        let ok = status.code().is_some_and(|c| expect.contains(&c));
        let reason = (!ok).then(|| match status.code() {
            Some(c) => format!("exited with status {c} (expected {expect:?})"),
            None => format!("terminated by a signal ({status})"),
        });
        let mut text = output.text();
        if leftovers {
            ctx.log("processes the command left running were killed");
            text.push_str(if closed {
                "\n[processes the command left running were killed]"
            } else {
                "\n[a process the command left running held its output open; its process group was killed]"
            });
        }
        // A command's effects are unknown to the driver: none are claimed.
        Ok(ExecuteResult {
            ok,
            effects: vec![],
            output: Some(text),
            reason,
        })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    sdk::serve::<Exec>().await;
}
