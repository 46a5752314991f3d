//! The recording driver of the system tests: `effect.apply` (idempotent) and
//! `effect.once` (not idempotent) on a host take `ms` milliseconds and log
//! every effect to a JSON-lines file, with its start and end.
//!
//! While an effect runs it holds an exclusive lock on a file of its host, so
//! two effects on one host at once — in this adapter or in another process,
//! such as an adapter left behind by a killed engine — are caught by the
//! second one, which logs an `overlap` line. The lock goes with the process
//! that holds it, so an effect whose adapter was killed stops counting at
//! once.
//!
//! `misbehave` makes one effect fail the way a broken adapter does: `panic`
//! in the handler, `exit` the process, print `garbage` on stdout, or `hang`
//! ignoring cancellation.

use serde::Deserialize;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchyard_plugin::protocol::{ExecuteParams, ExecuteResult, InitializeParams};
use switchyard_plugin::sdk::{self, Adapter, AdapterError, Context};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The effects log (JSON lines, appended).
    log: PathBuf,
    /// Folder of the per-host lock files.
    locks: PathBuf,
    /// A secret the `leak` misbehaviour prints and returns (redaction tests).
    #[serde(default)]
    secret: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    ms: u64,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    misbehave: Option<String>,
    /// A secret param (`writeOnly`): `leak` prints and returns it too.
    #[serde(default)]
    secret: Option<String>,
}

struct Recorder {
    config: Config,
}

fn micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()
}

impl Recorder {
    fn log(&self, ev: &str, req: &ExecuteParams, tag: &str) {
        let line = serde_json::json!({
            "ev": ev,
            "run": req.run_id,
            "host": req.host.id,
            "verb": req.verb,
            "key": req.idempotency_key,
            "tag": tag,
            "pid": std::process::id(),
            "t": micros() as u64,
        });
        let mut text = line.to_string();
        text.push('\n');
        // One write per line on an O_APPEND file: lines from several
        // processes never interleave.
        if let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.log)
        {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

impl Adapter for Recorder {
    const NAME: &'static str = "recorder";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn initialize(params: InitializeParams) -> Result<Self, AdapterError> {
        let config: Config = serde_json::from_value(params.driver_config)
            .map_err(|e| AdapterError::invalid_params(format!("driver config: {e}")))?;
        std::fs::create_dir_all(&config.locks)
            .map_err(|e| AdapterError::internal(format!("{}: {e}", config.locks.display())))?;
        Ok(Recorder { config })
    }

    async fn execute(
        &self,
        req: ExecuteParams,
        ctx: Context,
    ) -> Result<ExecuteResult, AdapterError> {
        let p: Params = serde_json::from_value(req.params.clone())
            .map_err(|e| AdapterError::invalid_params(e.to_string()))?;
        match p.misbehave.as_deref() {
            Some("panic") => panic!("the recorder was asked to panic"),
            Some("exit") => std::process::exit(3),
            Some("garbage") => {
                {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "this is not JSON-RPC");
                    let _ = out.flush();
                }
                std::future::pending::<()>().await;
            }
            Some("leak") => {
                let secret = self.config.secret.clone().unwrap_or_default();
                let param = p.secret.clone().unwrap_or_default();
                let got = if param.starts_with("canary-") {
                    "a secret param"
                } else {
                    "no secret param"
                };
                // Everything it was given, echoed on every channel back.
                eprintln!(
                    "leaking the driver secret {secret} and the host's {}; got {got}: {param}",
                    req.host.config
                );
                ctx.log(format!("the secret is {secret}, the param {param}"));
                return Err(AdapterError::internal(format!(
                    "failed on purpose; the secret is {secret}, the host config {}; got {got}: {param}",
                    req.host.config
                )));
            }
            Some("hang") => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            Some(other) => {
                return Err(AdapterError::invalid_params(format!(
                    "unknown misbehaviour `{other}`"
                )));
            }
            None => {}
        }
        let lock_path = self.config.locks.join(format!("{}.lock", req.host.id));
        let lock = File::create(&lock_path)
            .map_err(|e| AdapterError::internal(format!("{}: {e}", lock_path.display())))?;
        if lock.try_lock().is_err() {
            self.log("overlap", &req, &p.tag);
            // Go on: the test counts the overlap; waiting would hide it.
        }
        self.log("start", &req, &p.tag);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(p.ms)) => {}
            () = ctx.cancelled() => {
                self.log("cancelled", &req, &p.tag);
                return Err(AdapterError::transient("cancelled"));
            }
        }
        self.log("end", &req, &p.tag);
        drop(lock);
        Ok(ExecuteResult {
            ok: true,
            effects: vec![],
            output: Some(format!("{} {} for {} ms", req.verb, p.tag, p.ms)),
            reason: None,
        })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    sdk::serve::<Recorder>().await;
}
