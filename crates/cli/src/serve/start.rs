//! The steps `serve` starts in, each a function of what came before:
//! the store, the API's guard, the drivers, the shared state the API and
//! the engine meet in, the API, the policy directory, the engine, intake,
//! and the work that runs beside them.

use super::background::{active_versions, load_policies, prune_loop};
use super::checks::{api_auth, check_hosts, check_literal_secrets, deployment};
use crate::config::Config;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use switchyard_api::{DirectoryStatus, PolicyNotice, ReadyCheck};
use switchyard_engine::{Engine, EngineConfig, Fleet, FleetHost, RunNotice};
use switchyard_intake::{Intake, IntakeOptions, Publisher, Readiness};
use switchyard_plugin::protocol::DiscoverMode;
use switchyard_plugin::secrets::{redact_url, redact_urls};
use switchyard_plugin::{HostSpec, Registry, Supervisor, SupervisorOptions};
use switchyard_store::{BundleAction, Store, StoreOptions};
use tokio::task::JoinHandle;

/// The database, created and migrated when new.
pub(super) async fn open_store(config: &Config) -> Result<Store> {
    let url = config.database_url();
    let store = Store::open(&url)
        .await
        .with_context(|| format!("opening the database {}", redact_url(&url)))?
        .with_options(StoreOptions::default());
    tracing::info!(database = %redact_url(&url), "database ready");
    Ok(store)
}

/// Who may call the API, and where it listens: without `[auth]`, loopback
/// only. The file's own literal secrets are refused before the key is read.
pub(super) fn api_guard(
    config: &Config,
) -> Result<(Option<switchyard_api::Auth>, std::net::SocketAddr)> {
    check_literal_secrets(config, None)?;
    let auth = api_auth(config)?;
    let listen: std::net::SocketAddr = config.api.listen.parse().with_context(|| {
        format!(
            "api.listen `{}` is not an address like 127.0.0.1:8080",
            config.api.listen
        )
    })?;
    if auth.is_none() {
        if !listen.ip().is_loopback() {
            bail!(
                "api.listen {listen} is not a loopback address and [auth] is not configured; refusing to serve an unauthenticated API beyond this machine"
            );
        }
        tracing::warn!(%listen, "NO AUTH: [auth] is not configured; the API is open to anyone on this machine (state changes need X-Switchyard-CSRF: 1)");
    }
    Ok((auth, listen))
}

/// The installed drivers, their supervised adapters (started on first use)
/// and the hosts they serve.
pub(super) struct Drivers {
    pub registry: Arc<Registry>,
    pub supervisor: Supervisor,
    pub fleet: Arc<Fleet>,
}

pub(super) fn load_drivers(config: &Config) -> Result<Drivers> {
    let paths: Vec<PathBuf> = config
        .drivers
        .paths
        .iter()
        .map(|p| config.resolve(p))
        .collect();
    let (registry, notes) = Registry::load_present(&paths).context("loading drivers")?;
    for note in &notes {
        tracing::warn!("drivers.paths: {note}");
    }
    if registry.is_empty() {
        tracing::warn!(
            "no drivers are installed: policies are checked and events decided, but no action can run until drivers.paths names a folder of drivers"
        );
    }
    let registry = Arc::new(registry);
    let used = check_hosts(&config.hosts, &registry)?;
    check_literal_secrets(config, Some(&registry))?;
    // Packages install adapters beside the binary.
    let search: Vec<PathBuf> = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .into_iter()
        .collect();
    let mut specs = Vec::new();
    for name in &used {
        let cfg = config
            .drivers
            .config
            .get(name)
            .cloned()
            .unwrap_or_else(|| json!({}));
        specs.push(
            registry
                .adapter_spec(name, cfg, &search)
                .map_err(|p| anyhow!("driver `{name}`: {}", p.join("; ")))?,
        );
    }
    let supervisor = Supervisor::new(
        SupervisorOptions {
            deployment: Some(deployment(&config.database_url())),
            ..SupervisorOptions::default()
        },
        specs,
    );
    let hosts = config
        .hosts
        .iter()
        .map(|h| FleetHost {
            spec: HostSpec {
                id: h.id.clone(),
                address: h.address.clone(),
                labels: h.labels.clone(),
                config: h.config.clone(),
            },
            drivers: h.all_drivers(),
        })
        .collect();
    let mut fleet = Fleet::new(
        Arc::clone(&registry),
        supervisor.clone(),
        hosts,
        Config::duration(&config.inventory.stale_after),
    );
    if let Some(reference) = &config.engine.idempotency_secret {
        let resolved = switchyard_plugin::secrets::resolve(&json!(reference))
            .map_err(|e| anyhow!("engine.idempotency_secret: {e}"))?;
        let secret = resolved.value.as_str().unwrap_or_default();
        if secret.len() < 16 {
            bail!("engine.idempotency_secret: at least 16 bytes, please (it keys secret params)");
        }
        fleet = fleet.with_idempotency_secret(secret.as_bytes());
    }
    let fleet = Arc::new(fleet);
    tracing::info!(drivers = ?used, hosts = config.hosts.len(), "drivers loaded");
    Ok(Drivers {
        registry,
        supervisor,
        fleet,
    })
}

/// Where the API and the engine meet: set once the engine holds the lease
/// and intake is connected; policy changes announced and reloaded.
pub(super) struct Shared {
    pub engine: Arc<OnceLock<Engine>>,
    pub publisher: Arc<OnceLock<Publisher>>,
    pub intake: Arc<OnceLock<Readiness>>,
    pub policy_notices: tokio::sync::broadcast::Sender<PolicyNotice>,
    pub directory: DirectoryStatus,
    /// Reload the engine's policies from the store; reloads run one at a
    /// time, in order, so the last one always reads the last change.
    pub reload_policies: Arc<dyn Fn() -> JoinHandle<()> + Send + Sync>,
}

impl Shared {
    pub(super) fn new(store: &Store) -> Shared {
        let engine: Arc<OnceLock<Engine>> = Arc::default();
        let reload_policies: Arc<dyn Fn() -> JoinHandle<()> + Send + Sync> = {
            let (store, engine) = (store.clone(), Arc::clone(&engine));
            let gate = Arc::new(tokio::sync::Mutex::new(std::collections::BTreeSet::new()));
            Arc::new(move || {
                let (store, engine, gate) = (store.clone(), Arc::clone(&engine), Arc::clone(&gate));
                tokio::spawn(async move {
                    let mut active = gate.lock().await;
                    let Some(engine) = engine.get() else { return };
                    match load_policies(&store).await {
                        Ok(p) => {
                            tracing::info!(enabled = p.len(), "policies reloaded");
                            *active = active_versions(&p, &active);
                            engine.set_policies(p);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "reloading policies failed; the engine keeps the previous set")
                        }
                    }
                })
            })
        };
        Shared {
            engine,
            publisher: Arc::default(),
            intake: Arc::default(),
            policy_notices: tokio::sync::broadcast::channel::<PolicyNotice>(1024).0,
            directory: Arc::default(),
            reload_policies,
        }
    }

    /// Readiness: the engine active, its ledger writing, intake connected.
    fn ready(&self) -> ReadyCheck {
        let (e, i) = (Arc::clone(&self.engine), Arc::clone(&self.intake));
        Arc::new(move || {
            let Some(engine) = e.get() else {
                return Some(
                    "the engine is starting, or standing by while another instance holds the lease"
                        .into(),
                );
            };
            if let Some(why) = engine.ledger_failing() {
                return Some(format!(
                    "ledger writes fail and are retried; no event is taken meanwhile: {why}"
                ));
            }
            match i.get() {
                None => Some("intake is not connected yet".into()),
                Some(r) => r.reason().map(str::to_owned),
            }
        })
    }
}

/// Policy notifications posted to the configured webhooks.
pub(super) fn spawn_webhooks(config: &Config, shared: &Shared) -> Result<()> {
    if config.policies.webhooks.is_empty() {
        return Ok(());
    }
    let hooks = config
        .policies
        .webhooks
        .iter()
        .map(crate::webhooks::Webhook::from_config)
        .collect::<Result<Vec<_>>>()?;
    tracing::info!(
        webhooks = hooks.len(),
        "policy notifications go to webhooks"
    );
    crate::webhooks::spawn(hooks, shared.policy_notices.subscribe());
    Ok(())
}

/// The HTTP API, serving (readiness 503) while the rest starts; stopped
/// by sending on the returned channel.
pub(super) struct Api {
    pub task: JoinHandle<std::io::Result<()>>,
    pub stop: tokio::sync::oneshot::Sender<()>,
}

pub(super) async fn start_api(
    store: &Store,
    shared: &Shared,
    fleet: &Arc<Fleet>,
    (auth, listen): (Option<switchyard_api::Auth>, std::net::SocketAddr),
) -> Result<Api> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the API to {listen}"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let policies_changed: Arc<dyn Fn() + Send + Sync> = {
        let reload = Arc::clone(&shared.reload_policies);
        Arc::new(move || {
            reload();
        })
    };
    let task = tokio::spawn(switchyard_api::serve(
        listener,
        switchyard_api::AppState {
            store: store.clone(),
            engine: Arc::clone(&shared.engine),
            publisher: Arc::clone(&shared.publisher),
            ready: shared.ready(),
            auth: auth.map(Arc::new),
            listen,
            policies_changed,
            fleet: Arc::clone(fleet),
            policy_notices: shared.policy_notices.clone(),
            directory: Arc::clone(&shared.directory),
        },
        async {
            let _ = stopped.await;
        },
    ));
    tracing::info!(%listen, "API listening");
    Ok(Api { task, stop })
}

/// `[policies] dir` applied as one bundle, with the digest it was applied at.
pub(super) async fn apply_policy_dir(
    config: &Config,
    store: &Store,
    registry: &Arc<Registry>,
    shared: &Shared,
) -> Result<Option<(crate::policy_dir::PolicyDir, String)>> {
    let Some(dir) = &config.policies.dir else {
        return Ok(None);
    };
    let pd = crate::policy_dir::PolicyDir {
        dir: {
            let dir = config.resolve(dir);
            std::fs::canonicalize(&dir).unwrap_or(dir)
        },
        store: store.clone(),
        registry: Arc::clone(registry),
        notices: shared.policy_notices.clone(),
        status: Arc::clone(&shared.directory),
        debounce: Config::duration(&config.policies.debounce),
        watch: config.policies.watch,
        cache: Arc::default(),
    };
    let (steps, digest) = pd.apply_at_start().await?;
    let count = |a: BundleAction| steps.iter().filter(|s| s.action == a).count();
    tracing::info!(dir = %pd.dir.display(), created = count(BundleAction::Created), updated = count(BundleAction::Updated), unchanged = count(BundleAction::Unchanged), disabled = count(BundleAction::Disabled), "policies applied from the directory");
    Ok(Some((pd, digest)))
}

/// The engine, once this instance holds the lease and has recovered what
/// an earlier one left, with the enabled policies and the first full
/// discovery of every host; then the policy directory's watch.
pub(super) async fn start_engine(
    config: &Config,
    store: &Store,
    fleet: &Arc<Fleet>,
    shared: &Shared,
    policy_dir: Option<(crate::policy_dir::PolicyDir, String)>,
) -> Result<(Engine, Option<JoinHandle<()>>)> {
    let policies = load_policies(store).await?;
    tracing::info!(enabled = policies.len(), "policies loaded");
    fleet.discover_all(store, DiscoverMode::Full).await;
    let inventory = fleet.snapshot(store).await?;
    let e = &config.engine;
    let engine_config = EngineConfig {
        global_concurrency: e.global_concurrency,
        host_queue_depth: e.host_queue_depth,
        max_event_age: Config::duration(&e.max_event_age),
        max_queue_time: Config::duration(&e.max_queue_time),
        max_attempts: e.max_attempts.max(1),
        retry_backoff: Config::duration(&e.retry_backoff),
        lease_ttl: Config::duration(&e.lease_ttl).max(Duration::from_secs(3)),
        breaker_failures: e.breaker_failures.max(1),
        breaker_open_for: Config::duration(&e.breaker_open_for),
        ..EngineConfig::default()
    };
    let holder = engine_config.holder.clone();
    let (engine, recovery) = Engine::start(
        engine_config,
        Arc::new(store.clone()),
        Arc::new(fleet.drivers_port()),
        fleet.routing().clone(),
        policies,
        inventory,
    )
    .await
    .context("starting the engine")?;
    let _ = shared.engine.set(engine.clone());
    // The engine holds the policies now. Read them once more: a change made
    // through the API since they were loaded found no engine to reload; this
    // also sets the active-version gauges. Then the watch.
    (shared.reload_policies)()
        .await
        .context("recording the active policies")?;
    let watcher = match policy_dir {
        Some((pd, digest)) if pd.watch => {
            Some(pd.watch(digest, Arc::clone(&shared.reload_policies))?)
        }
        _ => None,
    };
    switchyard_api::record_audit(
        store,
        "switchyard",
        "engine.started",
        &holder,
        &std::process::id().to_string(),
        json!({"requeued": recovery.requeued, "retried": recovery.retried, "interrupted": recovery.interrupted}),
    )
    .await;
    tracing::info!(
        requeued = recovery.requeued,
        retried = recovery.retried,
        interrupted = recovery.interrupted,
        "engine active"
    );
    Ok((engine, watcher))
}

/// Intake connected to NATS, its stream and consumer reconciled; the API's
/// ingest endpoints publish through it from now on.
pub(super) async fn start_intake(config: &Config, shared: &Shared) -> Result<Intake> {
    let n = &config.nats;
    let opts = IntakeOptions {
        stream: n.stream.clone(),
        consumer: n.consumer.clone(),
        ack_wait: Config::duration(&n.ack_wait),
        max_deliver: (n.max_deliver > 0).then_some(n.max_deliver),
        max_ack_pending: n.max_ack_pending,
        max_age: Config::duration(&n.max_age),
        max_in_flight: n.max_in_flight.max(1),
        duplicate_window: Config::duration(&n.duplicate_window),
        ..IntakeOptions::default()
    };
    let intake = Intake::start(&n.url, opts)
        .await
        .with_context(|| format!("connecting intake to {}", redact_urls(&n.url)))?;
    tracing::info!(nats = %redact_urls(&n.url), stream = %n.stream, "intake connected");
    let _ = shared.intake.set(intake.readiness());
    let _ = shared.publisher.set(intake.publisher());
    Ok(intake)
}

/// What runs beside intake until the stop: schedule ticks (stopped with
/// intake, before the engine drains), and notifications on NATS, the ledger
/// cap and inventory refreshes (stopped last, so the drained runs' status
/// changes are still announced).
pub(super) struct Background {
    pub scheduler: JoinHandle<()>,
    pub tasks: Vec<JoinHandle<()>>,
}

pub(super) fn spawn_background(
    config: &Config,
    store: &Store,
    fleet: &Arc<Fleet>,
    engine: &Engine,
    intake: &Intake,
    shared: &Shared,
) -> Background {
    let notifier = tokio::spawn(intake.notifications(engine.subscribe(), |n: &RunNotice| {
        format!("switchyard.runs.{}", n.status)
    }));
    let policy_notifier = tokio::spawn(
        intake.notifications(shared.policy_notices.subscribe(), |n: &PolicyNotice| {
            format!("switchyard.policies.{}", n.event)
        }),
    );
    let l = &config.ledger;
    let pruner = tokio::spawn(prune_loop(
        store.clone(),
        l.max_per_policy,
        Config::duration(&l.max_age),
        Config::duration(&l.inbox_max_age),
        Config::duration(&l.prune_interval).max(Duration::from_secs(1)),
    ));
    let refresher = {
        let (store, fleet, engine) = (store.clone(), Arc::clone(fleet), engine.clone());
        let every =
            Config::duration(&config.inventory.refresh_interval).max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                fleet.discover_all(&store, DiscoverMode::Full).await;
                match fleet.snapshot(&store).await {
                    Ok(s) => engine.set_inventory(s),
                    Err(e) => tracing::warn!(error = %e, "reloading the inventory failed"),
                }
            }
        })
    };
    Background {
        scheduler: engine.start_scheduler(Config::duration(&config.engine.schedule_catch_up)),
        tasks: vec![notifier, policy_notifier, pruner, refresher],
    }
}
