//! `switchyard serve`: configuration → store → drivers → policies → engine →
//! intake, and a graceful stop on SIGINT/SIGTERM.

use crate::config::{Config, HostSection};
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use switchyard_engine::{
    ActivePolicy, Engine, EngineConfig, Fleet, FleetHost, Incoming, PolicySet, WriteError,
};
use switchyard_intake::{Delivery, EventHandler, HandlerError, Intake, IntakeOptions};
use switchyard_plugin::protocol::DiscoverMode;
use switchyard_plugin::{HostSpec, Registry, Supervisor, SupervisorOptions};
use switchyard_store::{Store, StoreOptions};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: crate::config::ConfigFile,
}

pub fn run(args: ServeArgs) -> u8 {
    init_tracing();
    let config = match args.config.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return crate::EXIT_USAGE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return crate::EXIT_USAGE;
        }
    };
    match rt.block_on(serve(config)) {
        Ok(()) => crate::EXIT_OK,
        Err(e) => {
            eprintln!("error: {}", said_once(&e));
            crate::EXIT_BLOCKED
        }
    }
}

/// An error with its causes, each said once: a cause whose text the
/// message already holds (`database: {0}` over its own source) is left out.
pub fn said_once(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Libraries whose trace level prints message payloads or headers (events
/// and tokens may carry secrets): capped at debug unless `SWITCHYARD_LOG`
/// names them itself.
const PAYLOAD_LOGGERS: &[&str] = &["async_nats", "hyper", "hyper_util", "h2", "reqwest"];

fn init_tracing() {
    let asked = std::env::var("SWITCHYARD_LOG").ok();
    let mut filter = asked
        .as_deref()
        .and_then(|a| tracing_subscriber::EnvFilter::try_new(a).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    for target in PAYLOAD_LOGGERS {
        if !asked.as_deref().is_some_and(|a| a.contains(target))
            && let Ok(d) = format!("{target}=debug").parse()
        {
            filter = filter.add_directive(d);
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The event handler intake calls: an event is acknowledged only after the
/// engine reports its decision durable.
struct Handler {
    engine: Engine,
}

impl EventHandler for Handler {
    async fn handle(&self, d: Delivery) -> Result<(), HandlerError> {
        let mut event = d.event;
        if event.id.is_none() {
            event.id = Some(d.event_id.clone());
        }
        let incoming = Incoming {
            delivery_key: format!(
                "{}|{}|{}",
                d.id.stream,
                d.id.stream_created
                    .timestamp_nanos_opt()
                    .unwrap_or_default(),
                d.id.stream_seq
            ),
            event_id: d.event_id,
            event,
            // Staleness compares it with the producer's time: the wall clock.
            received_at: d.received_at,
        };
        match self.engine.decide(incoming).await {
            Ok(_) => Ok(()),
            Err(e @ (WriteError::Store(_) | WriteError::LeaseLost(_))) => {
                Err(HandlerError::Unavailable(e.to_string()))
            }
            Err(WriteError::Closed) => Err(HandlerError::Transient("shutting down".into())),
            Err(WriteError::Refused(message)) => Err(HandlerError::Rejected {
                reason: "ledger_refused",
                message,
            }),
        }
    }
}

async fn serve(config: Config) -> Result<()> {
    // The metrics recorder first, so nothing recorded at start is lost.
    let _ = switchyard_api::metrics::handle();
    let url = config.database_url();
    let store = Store::open(&url)
        .await
        .with_context(|| {
            format!(
                "opening the database {}",
                switchyard_plugin::secrets::redact_url(&url)
            )
        })?
        .with_options(StoreOptions::default());
    tracing::info!(database = %switchyard_plugin::secrets::redact_url(&url), "database ready");

    // The HTTP API first, so readiness answers (503) while this instance
    // starts or stands by.
    // The file's own secrets first: a literal never reaches the API setup.
    check_literal_secrets(&config, None)?;
    let auth = api_auth(&config)?;
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
    // Drivers and hosts (adapters start on first use).
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
    check_literal_secrets(&config, Some(&registry))?;
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
            .unwrap_or_else(|| serde_json::json!({}));
        specs.push(
            registry
                .adapter_spec(name, cfg, &search)
                .map_err(|p| anyhow!("driver `{name}`: {}", p.join("; ")))?,
        );
    }
    let supervisor = Supervisor::new(
        SupervisorOptions {
            deployment: Some(deployment(&url)),
            ..SupervisorOptions::default()
        },
        specs,
    );
    let stale_after = Config::duration(&config.inventory.stale_after);
    let fleet = Arc::new(Fleet::new(
        Arc::clone(&registry),
        supervisor.clone(),
        config
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
            .collect(),
        stale_after,
    ));
    tracing::info!(drivers = ?used, hosts = config.hosts.len(), "drivers loaded");

    let (policy_notices, _) = tokio::sync::broadcast::channel::<switchyard_api::PolicyNotice>(1024);
    let engine_cell: Arc<std::sync::OnceLock<Engine>> = Arc::default();
    let publisher_cell: Arc<std::sync::OnceLock<switchyard_intake::Publisher>> = Arc::default();
    let intake_cell: Arc<std::sync::OnceLock<switchyard_intake::Readiness>> = Arc::default();
    let ready: switchyard_api::ReadyCheck = {
        let (e, i) = (Arc::clone(&engine_cell), Arc::clone(&intake_cell));
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
    };
    // A policy change (API or directory) reloads the engine's policies;
    // reloads run one at a time, in order, so the last one always reads the
    // last change.
    let reload_policies: Arc<dyn Fn() -> tokio::task::JoinHandle<()> + Send + Sync> = {
        let (store, engine) = (store.clone(), Arc::clone(&engine_cell));
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
    let policies_changed: Arc<dyn Fn() + Send + Sync> = {
        let reload = Arc::clone(&reload_policies);
        Arc::new(move || {
            reload();
        })
    };
    let directory: switchyard_api::DirectoryStatus = Arc::default();
    if !config.policies.webhooks.is_empty() {
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
        crate::webhooks::spawn(hooks, policy_notices.subscribe());
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the API to {listen}"))?;
    let (api_stop_tx, api_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(switchyard_api::serve(
        listener,
        switchyard_api::AppState {
            store: store.clone(),
            engine: Arc::clone(&engine_cell),
            publisher: Arc::clone(&publisher_cell),
            ready,
            auth: auth.map(Arc::new),
            listen,
            policies_changed,
            fleet: Arc::clone(&fleet),
            policy_notices: policy_notices.clone(),
            directory: Arc::clone(&directory),
        },
        async {
            let _ = api_stop_rx.await;
        },
    ));
    tracing::info!(%listen, "API listening");

    // Policies from the directory, then the enabled set.
    let policy_dir = match &config.policies.dir {
        None => None,
        Some(dir) => {
            let pd = crate::policy_dir::PolicyDir {
                dir: {
                    let dir = config.resolve(dir);
                    std::fs::canonicalize(&dir).unwrap_or(dir)
                },
                store: store.clone(),
                registry: Arc::clone(&registry),
                notices: policy_notices.clone(),
                status: Arc::clone(&directory),
                debounce: Config::duration(&config.policies.debounce),
                watch: config.policies.watch,
                cache: Arc::default(),
            };
            let (steps, digest) = pd.apply_at_start().await?;
            let count =
                |a: switchyard_store::BundleAction| steps.iter().filter(|s| s.action == a).count();
            use switchyard_store::BundleAction as A;
            tracing::info!(dir = %pd.dir.display(), created = count(A::Created), updated = count(A::Updated), unchanged = count(A::Unchanged), disabled = count(A::Disabled), "policies applied from the directory");
            Some((pd, digest))
        }
    };
    let policies = load_policies(&store).await?;
    tracing::info!(enabled = policies.len(), "policies loaded");

    // Inventory: the first discovery of every host before any event.
    fleet.discover_all(&store, DiscoverMode::Full).await;
    let inventory = fleet.snapshot(&store).await?;

    let engine_config = EngineConfig {
        global_concurrency: config.engine.global_concurrency,
        host_queue_depth: config.engine.host_queue_depth,
        max_event_age: Config::duration(&config.engine.max_event_age),
        max_queue_time: Config::duration(&config.engine.max_queue_time),
        max_attempts: config.engine.max_attempts.max(1),
        retry_backoff: Config::duration(&config.engine.retry_backoff),
        lease_ttl: Config::duration(&config.engine.lease_ttl).max(Duration::from_secs(3)),
        breaker_failures: config.engine.breaker_failures.max(1),
        breaker_open_for: Config::duration(&config.engine.breaker_open_for),
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
    let _ = engine_cell.set(engine.clone());
    // The engine holds the policies now. Read them once more: a change made
    // through the API since they were loaded found no engine to reload; this
    // also sets the active-version gauges. Then the watch.
    reload_policies()
        .await
        .context("recording the active policies")?;
    let watcher = match policy_dir {
        Some((pd, digest)) if pd.watch => Some(pd.watch(digest, Arc::clone(&reload_policies))?),
        _ => None,
    };
    switchyard_api::record_audit(
        &store,
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

    // Intake.
    let opts = IntakeOptions {
        stream: config.nats.stream.clone(),
        consumer: config.nats.consumer.clone(),
        ack_wait: Config::duration(&config.nats.ack_wait),
        max_deliver: (config.nats.max_deliver > 0).then_some(config.nats.max_deliver),
        max_ack_pending: config.nats.max_ack_pending,
        max_age: Config::duration(&config.nats.max_age),
        max_in_flight: config.nats.max_in_flight.max(1),
        duplicate_window: Config::duration(&config.nats.duplicate_window),
        ..IntakeOptions::default()
    };
    let intake = Intake::start(&config.nats.url, opts)
        .await
        .with_context(|| {
            format!(
                "connecting intake to {}",
                switchyard_plugin::secrets::redact_urls(&config.nats.url)
            )
        })?;
    tracing::info!(nats = %switchyard_plugin::secrets::redact_urls(&config.nats.url), stream = %config.nats.stream, "intake connected");
    let _ = intake_cell.set(intake.readiness());
    let _ = publisher_cell.set(intake.publisher());

    // Run notifications on NATS.
    let notifier = tokio::spawn(
        intake.notifications(engine.subscribe(), |n: &switchyard_engine::RunNotice| {
            format!("switchyard.runs.{}", n.status)
        }),
    );
    let policy_notifier = tokio::spawn(intake.notifications(
        policy_notices.subscribe(),
        |n: &switchyard_api::PolicyNotice| format!("switchyard.policies.{}", n.event),
    ));
    // Ledger cap.
    let pruner = tokio::spawn(prune_loop(
        store.clone(),
        config.ledger.max_per_policy,
        Config::duration(&config.ledger.max_age),
        Config::duration(&config.ledger.inbox_max_age),
        Config::duration(&config.ledger.prune_interval).max(Duration::from_secs(1)),
    ));
    // Inventory refresh on an interval.
    let refresher = {
        let (store, fleet, engine) = (store.clone(), Arc::clone(&fleet), engine.clone());
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
    let scheduler = engine.start_scheduler(Config::duration(&config.engine.schedule_catch_up));
    tracing::info!("switchyard is running; stop with Ctrl-C or SIGTERM");

    let mut lost = engine.lease_lost();
    let stop = async move {
        tokio::select! {
            () = shutdown_signal() => tracing::info!("stopping: no new events are taken"),
            _ = lost.wait_for(|l| *l) => tracing::error!("stopping: the engine lease was lost"),
        }
    };
    intake
        .run(
            Arc::new(Handler {
                engine: engine.clone(),
            }),
            stop,
        )
        .await
        .context("intake")?;
    scheduler.abort();
    let grace = Config::duration(&config.engine.shutdown_grace);
    let left = engine.shutdown(grace).await;
    if left > 0 {
        tracing::warn!(
            running = left,
            "runs still running at shutdown; the next start recovers them"
        );
    }
    supervisor.shutdown().await;
    let _ = api_stop_tx.send(());
    let _ = api.await;
    notifier.abort();
    policy_notifier.abort();
    if let Some(w) = watcher {
        w.abort();
    }
    pruner.abort();
    refresher.abort();
    tracing::info!("stopped");
    Ok(())
}

/// The API's token check from `[auth]`, with the secret resolved now (a
/// reference that does not resolve refuses to start; never falls back to no auth).
fn api_auth(config: &Config) -> Result<Option<switchyard_api::Auth>> {
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

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// What names this deployment to its adapters (`SWITCHYARD_DEPLOYMENT`):
/// one engine per database, so a digest of the database URL.
fn deployment(database_url: &str) -> String {
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
    for (i, w) in config.policies.webhooks.iter().enumerate() {
        if w.bearer_token.as_deref().is_some_and(literal) {
            found.push(format!("policies.webhooks[{i}].bearer_token"));
        }
    }
    found
}

/// Refuse literal secrets unless `allow_literal_secrets`; warn when allowed.
/// Without `registry`, only the file's own keys are looked at, and only to refuse.
fn check_literal_secrets(config: &Config, registry: Option<&Registry>) -> Result<()> {
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
fn check_hosts(hosts: &[HostSection], registry: &Registry) -> Result<Vec<String>> {
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

/// Set the active-version gauge of every policy in `set`, and 0 for those
/// in `before` that left it; the names now active.
fn active_versions(
    set: &PolicySet,
    before: &std::collections::BTreeSet<String>,
) -> std::collections::BTreeSet<String> {
    let now: std::collections::BTreeSet<String> = set
        .iter()
        .map(|p| {
            metrics::gauge!(switchyard_spec::metric_names::POLICY_ACTIVE_VERSION, "policy" => p.name.clone())
                .set(p.version as f64);
            p.name.clone()
        })
        .collect();
    for gone in before.difference(&now) {
        metrics::gauge!(switchyard_spec::metric_names::POLICY_ACTIVE_VERSION, "policy" => gone.clone())
            .set(0.0);
    }
    now
}

/// The enabled policies, compiled for evaluation.
pub async fn load_policies(store: &Store) -> Result<PolicySet> {
    let mut active = Vec::new();
    for p in store
        .list_policies()
        .await?
        .into_iter()
        .filter(|p| p.enabled)
    {
        match ActivePolicy::new(p.id, &p.name, p.version_int, p.ir) {
            Ok(a) => active.push(a),
            Err(e) => {
                tracing::error!(policy = %p.name, error = %e, "stored policy does not compile; left out")
            }
        }
    }
    Ok(PolicySet::new(active))
}

async fn prune_loop(
    store: Store,
    max_per_policy: usize,
    max_age: Duration,
    inbox_max_age: Duration,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        match store
            .prune_ledger(switchyard_engine::clock::now(), max_per_policy, max_age)
            .await
        {
            Ok(r) if r.decisions > 0 => {
                tracing::info!(decisions = r.decisions, runs = r.runs, "ledger pruned")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning the ledger failed"),
        }
        if let Err(e) = store.prune_claims(switchyard_engine::clock::now()).await {
            tracing::warn!(error = %e, "pruning expired windows failed");
        }
        let before = switchyard_engine::clock::now()
            - chrono::Duration::from_std(inbox_max_age).unwrap_or(chrono::Duration::MAX);
        match store.prune_inbox(before).await {
            Ok(n) if n > 0 => tracing::info!(deliveries = n, "inbox pruned"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning the inbox failed"),
        }
    }
}
