//! `switchyard serve`: configuration → store → drivers → policies → engine →
//! intake, and a graceful stop on SIGINT/SIGTERM.

mod background;
mod checks;
mod start;

use crate::config::Config;
use anyhow::{Context, Result};
use clap::Args;
use std::sync::Arc;
use switchyard_engine::{Engine, Incoming, WriteError};
use switchyard_intake::{Delivery, EventHandler, HandlerError, Intake};
use switchyard_plugin::Supervisor;

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
    let rt = match crate::runtime(Some(0)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(serve(config)) {
        Ok(()) => crate::EXIT_OK,
        Err(e) => {
            let e = said_once(&e);
            tracing::error!("{e}");
            eprintln!("error: {e}");
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

/// Start in order — store, the API's guard, drivers, the API (answering
/// 503 until ready), the policy directory, the engine, intake and the work
/// beside it — then take events until SIGINT/SIGTERM or a lost lease, and
/// stop in the reverse order.
async fn serve(config: Config) -> Result<()> {
    // The metrics recorder first, so nothing recorded at start is lost.
    let _ = switchyard_api::metrics::handle();
    let store = start::open_store(&config).await?;
    let guard = start::api_guard(&config)?;
    let drivers = start::load_drivers(&config)?;
    let shared = start::Shared::new(&store);
    start::spawn_webhooks(&config, &shared)?;
    let api = start::start_api(&store, &shared, &drivers.fleet, guard).await?;
    let policy_dir = start::apply_policy_dir(&config, &store, &drivers.registry, &shared).await?;
    let (engine, watcher) =
        start::start_engine(&config, &store, &drivers.fleet, &shared, policy_dir).await?;
    let intake = start::start_intake(&config, &shared).await?;
    let mut background =
        start::spawn_background(&config, &store, &drivers.fleet, &engine, &intake, &shared);
    background.tasks.extend(watcher);
    tracing::info!("switchyard is running; stop with Ctrl-C or SIGTERM");

    // Stopped either way: a failed intake still drains the engine and
    // stops the adapters before the error is returned.
    let taken = take_events(&intake, &engine).await;
    stop(&config, &engine, &drivers.supervisor, api, background).await;
    tracing::info!("stopped");
    taken
}

/// Take events until SIGINT/SIGTERM, or until the engine lease is lost.
async fn take_events(intake: &Intake, engine: &Engine) -> Result<()> {
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
        .context("intake")
}

/// Intake has stopped: the engine drains (running runs get
/// `engine.shutdown_grace`), adapters stop, then the API and the rest.
async fn stop(
    config: &Config,
    engine: &Engine,
    supervisor: &Supervisor,
    api: start::Api,
    background: start::Background,
) {
    background.scheduler.abort();
    let _ = background.scheduler.await;
    let grace = Config::duration(&config.engine.shutdown_grace);
    let left = engine.shutdown(grace).await;
    if left > 0 {
        tracing::warn!(
            running = left,
            "runs still running at shutdown; the next start recovers them"
        );
    }
    supervisor.shutdown().await;
    let _ = api.stop.send(());
    let _ = api.task.await;
    for task in background.tasks {
        task.abort();
    }
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
