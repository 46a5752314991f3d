//! The adapter supervisor: starts adapters lazily (argv, never a shell), sends
//! `initialize` once per process, pins each host to one instance, multiplexes
//! concurrent requests by id, enforces deadlines (`cancel`, then kill after a
//! grace period), treats bad stdout as a protocol error, restarts crashed
//! adapters with backoff, and attaches stderr lines to the requests they
//! belong to. Secrets in host config are resolved at use and redacted from
//! everything that comes back.

mod error;
mod orphans;
mod process;

pub use error::CallError;
pub use orphans::{Orphan, find_orphans};

use crate::manifest::LoadedManifest;
use crate::protocol::{
    self, CancelParams, DiscoverMode, DiscoverParams, DiscoverResult, DryRunParams, DryRunResult,
    ExecuteParams, ExecuteResult, HealthParams, HealthResult, InitializeParams, InitializeResult,
    Request, Target,
};
use crate::secrets;
use process::{Launch, Process};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Supervisor settings.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// After `cancel`, how long an adapter has to stop before it is killed.
    pub cancel_grace: Duration,
    /// How long `initialize` may take.
    pub init_timeout: Duration,
    /// First restart delay after a crash; doubles per consecutive failure.
    pub restart_backoff_min: Duration,
    pub restart_backoff_max: Duration,
    /// Longest stdout line accepted.
    pub max_line_bytes: usize,
    /// Stderr lines kept per request.
    pub stderr_lines_per_call: usize,
    /// Names the deployment (serve passes a digest of its database URL) to
    /// every adapter, as `SWITCHYARD_DEPLOYMENT`: at start, serve stops only
    /// the orphaned adapters of its own deployment.
    pub deployment: Option<String>,
}

impl Default for SupervisorOptions {
    fn default() -> Self {
        SupervisorOptions {
            cancel_grace: Duration::from_secs(5),
            init_timeout: Duration::from_secs(10),
            restart_backoff_min: Duration::from_millis(200),
            restart_backoff_max: Duration::from_secs(30),
            max_line_bytes: protocol::MAX_LINE_BYTES,
            stderr_lines_per_call: 200,
            deployment: None,
        }
    }
}

/// A host as configured: `config` may hold `${env:..}` / `${file:..}` references.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSpec {
    pub id: String,
    pub address: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub config: Value,
}

/// What came back from a call, with the adapter's stderr lines for it.
#[derive(Debug)]
pub struct Outcome<T> {
    pub result: Result<T, CallError>,
    pub stderr: Vec<String>,
}

/// Who a call is for: the run, and the secret values its params hold.
struct Call {
    run_id: Option<String>,
    secrets: Vec<String>,
}

/// A driver to supervise.
#[derive(Debug, Clone)]
pub struct AdapterSpec {
    pub driver: String,
    /// Resolved argv.
    pub argv: Vec<String>,
    /// Working directory: the driver folder.
    pub cwd: PathBuf,
    pub instances: usize,
    /// `[drivers.config.<name>]`, already validated against `driver_config_schema`;
    /// secret references in it are resolved each time an adapter starts.
    pub driver_config: Value,
}

impl AdapterSpec {
    /// Build from a loaded manifest. A bare `command[0]` is resolved next to
    /// plugin.yaml, then in each of `search` (the CLI passes the folder of the
    /// running switchyard binary, where packages install drivers), and is
    /// otherwise left to PATH lookup.
    pub fn from_manifest(
        loaded: &LoadedManifest,
        driver_config: Value,
        search: &[PathBuf],
    ) -> AdapterSpec {
        let m = &loaded.manifest;
        let mut argv = m.adapter.command.clone();
        if !Path::new(&argv[0]).is_absolute()
            && let Some(found) = std::iter::once(&loaded.dir)
                .chain(search)
                .map(|d| d.join(&argv[0]))
                .find(|p| p.is_file())
        {
            argv[0] = found.to_string_lossy().into_owned();
        }
        AdapterSpec {
            driver: m.name.clone(),
            argv,
            cwd: loaded.dir.clone(),
            instances: m.adapter.instances.max(1) as usize,
            driver_config,
        }
    }
}

struct SlotState {
    process: Option<Arc<Process>>,
    failures: u32,
    not_before: Option<Instant>,
    last_failure: String,
}

struct Pool {
    spec: AdapterSpec,
    slots: Vec<tokio::sync::Mutex<SlotState>>,
}

struct Inner {
    options: SupervisorOptions,
    pools: HashMap<String, Pool>,
    suspects: std::sync::Mutex<Suspects>,
}

/// Runs that were in flight when their adapter crashed, broke the protocol
/// or was killed for ignoring a cancel. Any of them may be what broke it;
/// the others lost their call to it. The next call of a suspect runs alone,
/// in a fresh adapter process of its own (stopped after the call), so a run
/// that breaks its adapter again takes nothing else with it, and the runs it
/// hit are retried beside nothing that can break them.
#[derive(Default)]
struct Suspects {
    order: std::collections::VecDeque<String>,
    set: std::collections::HashSet<String>,
}

/// Suspects remembered at most (the oldest are forgotten first).
const MAX_SUSPECTS: usize = 4096;

impl Suspects {
    fn add(&mut self, run: &str) {
        if self.set.insert(run.to_owned()) {
            self.order.push_back(run.to_owned());
            while self.order.len() > MAX_SUSPECTS {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    fn remove(&mut self, run: &str) {
        if self.set.remove(run) {
            self.order.retain(|r| r != run);
        }
    }
}

/// A cheap, cloneable handle to the adapters of every configured driver.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("drivers", &self.inner.pools.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// FNV-1a: a hash that is stable across runs and toolchains, for host pinning.
fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Supervisor {
    /// A supervisor for these drivers; nothing starts until the first call.
    pub fn new(options: SupervisorOptions, specs: Vec<AdapterSpec>) -> Supervisor {
        let pools = specs
            .into_iter()
            .map(|spec| {
                let slots = (0..spec.instances.max(1))
                    .map(|_| {
                        tokio::sync::Mutex::new(SlotState {
                            process: None,
                            failures: 0,
                            not_before: None,
                            last_failure: String::new(),
                        })
                    })
                    .collect();
                (spec.driver.clone(), Pool { spec, slots })
            })
            .collect();
        Supervisor {
            inner: Arc::new(Inner {
                options,
                pools,
                suspects: Default::default(),
            }),
        }
    }

    /// The instance a host is pinned to.
    pub fn instance_for(&self, driver: &str, host_id: &str) -> Option<usize> {
        let pool = self.inner.pools.get(driver)?;
        Some((stable_hash(host_id) % pool.slots.len() as u64) as usize)
    }

    /// A live, initialized process for the slot, starting one if needed.
    async fn process(
        &self,
        driver: &str,
        slot: usize,
        deadline: Instant,
    ) -> Result<Arc<Process>, CallError> {
        let pool = self
            .inner
            .pools
            .get(driver)
            .ok_or_else(|| CallError::UnknownDriver(driver.to_owned()))?;
        let opts = &self.inner.options;
        let mut state = pool.slots[slot].lock().await;
        if let Some(p) = &state.process {
            if p.is_alive() {
                return Ok(Arc::clone(p));
            }
            // It died since the last call: count the failure and back off.
            let death = state
                .process
                .take()
                .and_then(|died| died.death())
                .unwrap_or_default();
            note_failure(&mut state, opts, death);
            metrics::counter!(switchyard_spec::metric_names::ADAPTER_RESTARTS, "driver" => driver.to_owned())
                .increment(1);
        }
        if let Some(not_before) = state.not_before {
            let now = Instant::now();
            if not_before > now {
                if not_before > deadline {
                    return Err(CallError::Unavailable {
                        driver: driver.to_owned(),
                        retry_in_ms: (not_before - now).as_millis() as u64,
                        last: state.last_failure.clone(),
                    });
                }
                tokio::time::sleep_until(not_before.into()).await;
            }
        }
        match self.launch(driver, pool, slot).await {
            Ok(process) => {
                state.process = Some(Arc::clone(&process));
                Ok(process)
            }
            Err(e) => {
                note_failure(&mut state, opts, e.to_string());
                Err(e)
            }
        }
    }

    /// Start an adapter process for `slot` and initialize it.
    async fn launch(
        &self,
        driver: &str,
        pool: &Pool,
        slot: usize,
    ) -> Result<Arc<Process>, CallError> {
        let opts = &self.inner.options;
        let launch = Launch {
            driver: driver.to_owned(),
            instance: slot,
            argv: pool.spec.argv.clone(),
            cwd: pool.spec.cwd.clone(),
            max_line_bytes: opts.max_line_bytes,
            stderr_lines_per_call: opts.stderr_lines_per_call,
            deployment: opts.deployment.clone(),
        };
        // Secret references in the driver config resolve at each start, and
        // the adapter's output is redacted of them.
        let resolved = secrets::resolve(&pool.spec.driver_config).map_err(|e| CallError::Init {
            driver: driver.to_owned(),
            reason: format!("driver config: {e}"),
        })?;
        let process = Process::spawn(launch)?;
        process.add_secrets(resolved.secret_values());
        let init = InitializeParams {
            protocol_version: protocol::PROTOCOL_VERSION,
            driver_config: resolved.value,
        };
        let init_deadline = Instant::now() + opts.init_timeout;
        let reply = self
            .request(
                &process,
                "initialize",
                to_value(&init),
                None,
                Vec::new(),
                init_deadline,
            )
            .await;
        match reply
            .result
            .and_then(|v| decode::<InitializeResult>("initialize", v))
        {
            Ok(info) => {
                tracing::info!(driver, instance = slot, adapter = %info.name, version = %info.version, "adapter initialized");
                Ok(process)
            }
            Err(e) => {
                let reason = e.to_string();
                process
                    .kill(CallError::Init {
                        driver: driver.to_owned(),
                        reason: reason.clone(),
                    })
                    .await;
                Err(CallError::Init {
                    driver: driver.to_owned(),
                    reason,
                })
            }
        }
    }

    /// Stop every adapter of this deployment that a dead serve left on
    /// this machine (see [`orphans`]); returns the ones found.
    pub fn reap_orphans(&self, limit: Duration) -> Vec<Orphan> {
        orphans::reap_orphans(self.inner.options.deployment.as_deref(), limit)
    }

    /// Send one request and wait for its reply until `deadline`; on timeout,
    /// send `cancel`, wait the grace period, then kill the adapter.
    async fn request(
        &self,
        process: &Arc<Process>,
        method: &str,
        params: Value,
        run_id: Option<String>,
        secrets: Vec<String>,
        deadline: Instant,
    ) -> Outcome<Value> {
        let (id, mut rx) = process.register(run_id, secrets);
        let request = Request {
            jsonrpc: "2.0".into(),
            id: Some(id),
            method: method.to_owned(),
            params,
        };
        let started = Instant::now();
        let timeout = |killed| CallError::Timeout {
            method: method.to_owned(),
            after_ms: started.elapsed().as_millis() as u64,
            killed,
        };
        match tokio::time::timeout_at(deadline.into(), process.send(&request)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Outcome {
                    result: Err(e),
                    stderr: process.unregister(id),
                };
            }
            Err(_) => {
                let stderr = process.unregister(id);
                // It stopped reading its stdin: nothing else will get through either.
                process.kill(timeout(true)).await;
                return Outcome {
                    result: Err(timeout(true)),
                    stderr,
                };
            }
        }
        if let Ok(reply) = tokio::time::timeout_at(deadline.into(), &mut rx).await {
            return match reply {
                Ok(r) => Outcome {
                    result: r.result,
                    stderr: r.stderr,
                },
                Err(_) => Outcome {
                    result: Err(CallError::ShuttingDown),
                    stderr: Vec::new(),
                },
            };
        }
        // Past the deadline: ask the adapter to stop, then insist.
        let cancel = Request {
            jsonrpc: "2.0".into(),
            id: None,
            method: "cancel".into(),
            params: to_value(&CancelParams { id }),
        };
        let _ = tokio::time::timeout(self.inner.options.cancel_grace, process.send(&cancel)).await;
        let stopped = tokio::time::timeout(self.inner.options.cancel_grace, &mut rx).await;
        let mut stderr = process.unregister(id);
        let killed = match stopped {
            Ok(Ok(reply)) => {
                stderr = reply.stderr;
                false
            }
            _ => {
                tracing::warn!(driver = %process.launch.driver, method, "adapter ignored cancel; killing it");
                process
                    .kill(CallError::Crashed {
                        driver: process.launch.driver.clone(),
                        detail: format!("killed: {method} ignored cancel past its deadline"),
                    })
                    .await;
                true
            }
        };
        Outcome {
            result: Err(timeout(killed)),
            stderr,
        }
    }

    /// Call `method` on the adapter instance `host` is pinned to; `build`
    /// makes the params from the host as sent (secrets resolved). With
    /// `R = Value` the raw result comes back (conformance checks use this).
    pub async fn call<P: Serialize, R: DeserializeOwned>(
        &self,
        driver: &str,
        host: &HostSpec,
        method: &str,
        run_id: Option<String>,
        timeout: Duration,
        build: impl FnOnce(protocol::Host) -> P,
    ) -> Outcome<R> {
        let call = Call {
            run_id,
            secrets: Vec::new(),
        };
        self.call_with(driver, host, method, call, timeout, build)
            .await
    }

    /// [`Supervisor::call`] for a run whose params hold `call.secrets`:
    /// they are removed, with the host's secrets, from the result, the
    /// error and the stderr lines logged while the call is in flight.
    async fn call_with<P: Serialize, R: DeserializeOwned>(
        &self,
        driver: &str,
        host: &HostSpec,
        method: &str,
        call: Call,
        timeout: Duration,
        build: impl FnOnce(protocol::Host) -> P,
    ) -> Outcome<R> {
        let Call { run_id, secrets } = call;
        let deadline = Instant::now() + timeout;
        let fail = |e| Outcome {
            result: Err(e),
            stderr: Vec::new(),
        };
        let Some(slot) = self.instance_for(driver, &host.id) else {
            return fail(CallError::UnknownDriver(driver.to_owned()));
        };
        let resolved = match secrets::resolve(&host.config) {
            Ok(r) => r,
            Err(cause) => {
                return fail(CallError::Secret {
                    host: host.id.clone(),
                    cause,
                });
            }
        };
        let suspect = run_id.as_ref().is_some_and(|r| {
            self.inner
                .suspects
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .set
                .contains(r)
        });
        let process = if suspect {
            tracing::info!(driver, run = ?run_id, "the run was in flight when its adapter broke; it runs alone this time, in an adapter of its own");
            let pool = &self.inner.pools[driver];
            match self.launch(driver, pool, slot).await {
                Ok(p) => p,
                Err(e) => return fail(e),
            }
        } else {
            match self.process(driver, slot, deadline).await {
                Ok(p) => p,
                Err(e) => return fail(e),
            }
        };
        // The host's secrets stay with the process (a late stderr line is
        // still redacted); a run's secret params only with the call.
        process.add_secrets(resolved.secret_values());
        let wire_host = protocol::Host {
            id: host.id.clone(),
            address: host.address.clone(),
            labels: host.labels.clone(),
            config: resolved.value.clone(),
        };
        let redactor = resolved.redactor(&secrets);
        let reply = self
            .request(
                &process,
                method,
                to_value(&build(wire_host)),
                run_id.clone(),
                secrets,
                deadline,
            )
            .await;
        if suspect {
            // Its own adapter goes with it.
            let grace = self.inner.options.cancel_grace;
            let p = Arc::clone(&process);
            tokio::spawn(async move { p.shutdown(grace).await });
        } else if reply.result.is_ok() {
            self.inner.pools[driver].slots[slot].lock().await.failures = 0;
        }
        if let Some(run) = &run_id {
            let mut suspects = self
                .inner
                .suspects
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match &reply.result {
                Err(
                    CallError::Crashed { .. }
                    | CallError::Protocol { .. }
                    | CallError::Timeout { killed: true, .. },
                ) => suspects.add(run),
                _ if suspect => suspects.remove(run),
                _ => {}
            }
        }
        Outcome {
            // Whatever the adapter says goes through the secrets it was sent.
            result: reply
                .result
                .and_then(|v| decode(method, redact_value(v, &redactor))),
            stderr: reply.stderr.iter().map(|l| redactor.redact(l)).collect(),
        }
    }

    /// `discover` a host's items.
    pub async fn discover(
        &self,
        driver: &str,
        host: &HostSpec,
        mode: DiscoverMode,
        timeout: Duration,
    ) -> Outcome<DiscoverResult> {
        self.call(driver, host, "discover", None, timeout, |host| {
            DiscoverParams { host, mode }
        })
        .await
    }

    /// `health` of a host as the driver sees it.
    pub async fn health(
        &self,
        driver: &str,
        host: &HostSpec,
        timeout: Duration,
    ) -> Outcome<HealthResult> {
        self.call(driver, host, "health", None, timeout, |host| HealthParams {
            host,
        })
        .await
    }

    /// `dry_run` an action.
    #[allow(clippy::too_many_arguments)]
    pub async fn dry_run(
        &self,
        driver: &str,
        host: &HostSpec,
        run_id: &str,
        target: Target,
        capability: &str,
        verb: &str,
        params: Value,
        timeout: Duration,
        secrets: &[String],
    ) -> Outcome<DryRunResult> {
        let call = Call {
            run_id: Some(run_id.to_owned()),
            secrets: secrets.to_vec(),
        };
        self.call_with(driver, host, "dry_run", call, timeout, |host| {
            DryRunParams {
                run_id: run_id.to_owned(),
                host,
                target,
                capability: capability.to_owned(),
                verb: verb.to_owned(),
                params,
            }
        })
        .await
    }

    /// `execute` an action; `deadline_ms` sent to the adapter is the whole
    /// timeout, `deadline_at_ms` the time it ends. `secrets`: the secret
    /// values in `params`, redacted from what comes back.
    #[allow(clippy::too_many_arguments)]
    pub async fn execute(
        &self,
        driver: &str,
        host: &HostSpec,
        run_id: &str,
        target: Target,
        capability: &str,
        verb: &str,
        params: Value,
        idempotency_key: &str,
        timeout: Duration,
        secrets: &[String],
    ) -> Outcome<ExecuteResult> {
        let deadline_ms = timeout.as_millis() as u64;
        let deadline_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|now| (now + timeout).as_millis() as u64)
            .ok();
        let call = Call {
            run_id: Some(run_id.to_owned()),
            secrets: secrets.to_vec(),
        };
        self.call_with(driver, host, "execute", call, timeout, |host| {
            ExecuteParams {
                run_id: run_id.to_owned(),
                host,
                target,
                capability: capability.to_owned(),
                verb: verb.to_owned(),
                params,
                idempotency_key: idempotency_key.to_owned(),
                deadline_ms,
                deadline_at_ms,
            }
        })
        .await
    }

    /// Stop every adapter: close stdin, wait `cancel_grace`, then kill.
    pub async fn shutdown(&self) {
        for pool in self.inner.pools.values() {
            for slot in &pool.slots {
                let process = slot.lock().await.process.take();
                if let Some(p) = process {
                    p.shutdown(self.inner.options.cancel_grace).await;
                }
            }
        }
    }
}

fn note_failure(state: &mut SlotState, opts: &SupervisorOptions, reason: String) {
    state.failures = state.failures.saturating_add(1);
    let factor = 2u32.saturating_pow(state.failures.saturating_sub(1).min(16));
    let delay = opts
        .restart_backoff_min
        .saturating_mul(factor)
        .min(opts.restart_backoff_max);
    state.not_before = Some(Instant::now() + delay);
    state.last_failure = reason;
}

/// Replace the secrets in every string of an adapter's result (the result
/// as it is when there are none).
fn redact_value(v: Value, redactor: &secrets::Redactor) -> Value {
    if redactor.is_empty() {
        return v;
    }
    match v {
        Value::String(s) => Value::String(redactor.redact(&s)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|i| redact_value(i, redactor))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, redact_value(v, redactor)))
                .collect(),
        ),
        other => other,
    }
}

/// A request's params as JSON. They are maps, strings and numbers, which
/// always encode; should one not, the adapter gets `null` and refuses it as
/// invalid params, a failure the run records.
fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a request's params cannot be encoded");
        Value::Null
    })
}

fn decode<T: DeserializeOwned>(method: &str, v: Value) -> Result<T, CallError> {
    serde_json::from_value(v).map_err(|e| CallError::InvalidResult {
        method: method.to_owned(),
        detail: e.to_string(),
    })
}
