//! The SDK for adapters written in Rust: implement [`Adapter`], call [`serve`].
//!
//! ```no_run
//! use switchyard_plugin::protocol::*;
//! use switchyard_plugin::sdk::{self, Adapter, AdapterError, Context};
//!
//! struct Hello;
//!
//! impl Adapter for Hello {
//!     const NAME: &'static str = "hello";
//!     const VERSION: &'static str = "0.1.0";
//!
//!     fn initialize(_params: InitializeParams) -> Result<Self, AdapterError> {
//!         Ok(Hello)
//!     }
//!
//!     async fn execute(&self, req: ExecuteParams, ctx: Context) -> Result<ExecuteResult, AdapterError> {
//!         ctx.log(format!("greeting {}", req.host.id));
//!         Ok(ExecuteResult { ok: true, effects: vec![], output: Some("hello".into()), reason: None })
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() {
//!     sdk::serve::<Hello>().await;
//! }
//! ```
//!
//! The SDK reads requests from stdin, runs each in its own task (requests may
//! be concurrent), writes responses to stdout one per line, and turns `cancel`
//! notifications into [`Context::cancelled`]. Log with [`Context::log`]: the
//! line goes to stderr tagged with the run id, and switchyard attaches it to
//! that run.
//!
//! An adapter never outlives the engine that started it, and no request
//! outlives its deadline:
//! - When stdin closes, or the process that started the adapter is gone
//!   (checked every 100 ms on a thread of its own, so a handler that blocks
//!   does not delay it), requests in flight are cancelled, every
//!   [`ProcessGroup`] still open is killed, and the adapter exits.
//! - An `execute` carries its deadline as a time (`deadline_at_ms`): one
//!   received past it is refused; one still running a second after it is
//!   stopped (its future dropped, its process groups killed) and answered
//!   with a transient error.
//! - A handler that panics is answered with an internal error; the adapter
//!   and its other requests go on.

use crate::protocol::{
    CancelParams, DiscoverParams, DiscoverResult, DryRunParams, DryRunResult, ExecuteParams,
    ExecuteResult, HealthParams, HealthResult, InitializeParams, InitializeResult, Request,
    Response, RpcError, codes,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

/// An error an adapter returns; the code tells switchyard how to treat it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct AdapterError {
    pub code: i64,
    pub message: String,
}

impl AdapterError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        AdapterError {
            code,
            message: message.into(),
        }
    }
    /// The target does not exist (`-32001`).
    pub fn target_not_found(message: impl Into<String>) -> Self {
        Self::new(codes::TARGET_NOT_FOUND, message)
    }
    /// A precondition failed (`-32002`).
    pub fn precondition_failed(message: impl Into<String>) -> Self {
        Self::new(codes::PRECONDITION_FAILED, message)
    }
    /// A transient failure: switchyard may retry idempotent verbs (`-32003`).
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(codes::TRANSIENT, message)
    }
    /// Not supported by this adapter (`-32004`).
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(codes::UNSUPPORTED, message)
    }
    /// The params do not fit (`-32602`).
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_PARAMS, message)
    }
    /// Anything else (`-32603`).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(codes::INTERNAL, message)
    }
}

/// Per-request context: the run id, the deadline, cancellation and logging.
#[derive(Debug, Clone)]
pub struct Context {
    run_id: Option<String>,
    deadline: Option<Instant>,
    cancel: watch::Receiver<bool>,
}

impl Context {
    /// The run this request belongs to (dry_run and execute).
    pub fn run_id(&self) -> Option<&str> {
        self.run_id.as_deref()
    }

    /// Time left before switchyard gives up on the request (execute only).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// True once switchyard has sent `cancel` for this request.
    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Resolves when switchyard cancels this request: `select!` on it to stop work.
    pub async fn cancelled(&self) {
        let mut rx = self.cancel.clone();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                // The request finished; never resolves.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Write a log line to stderr, tagged with the run id so switchyard attaches it to the run.
    pub fn log(&self, message: impl AsRef<str>) {
        let mut err = std::io::stderr().lock();
        let _ = match &self.run_id {
            Some(id) => writeln!(err, "[{id}] {}", message.as_ref()),
            None => writeln!(err, "{}", message.as_ref()),
        };
    }
}

/// What a driver implements. Unimplemented methods answer "unsupported"
/// (`health` answers ok).
pub trait Adapter: Sized + Send + Sync + 'static {
    /// Reported by `initialize`.
    const NAME: &'static str;
    /// Reported by `initialize`.
    const VERSION: &'static str;

    /// Build the adapter from `initialize` (driver config is in `params.driver_config`).
    fn initialize(params: InitializeParams) -> Result<Self, AdapterError>;

    /// Enumerate (`full`) or refresh (`fast`) a host's items.
    fn discover(
        &self,
        _req: DiscoverParams,
        _ctx: Context,
    ) -> impl Future<Output = Result<DiscoverResult, AdapterError>> + Send {
        async { Err(AdapterError::unsupported("discover is not implemented")) }
    }

    /// Say what `execute` would do, without doing it.
    fn dry_run(
        &self,
        _req: DryRunParams,
        _ctx: Context,
    ) -> impl Future<Output = Result<DryRunResult, AdapterError>> + Send {
        async { Err(AdapterError::unsupported("dry_run is not implemented")) }
    }

    /// Carry the action out.
    fn execute(
        &self,
        req: ExecuteParams,
        ctx: Context,
    ) -> impl Future<Output = Result<ExecuteResult, AdapterError>> + Send;

    /// Can this host be reached?
    fn health(
        &self,
        _req: HealthParams,
        _ctx: Context,
    ) -> impl Future<Output = Result<HealthResult, AdapterError>> + Send {
        async {
            Ok(HealthResult {
                ok: true,
                detail: None,
            })
        }
    }
}

fn response(id: Option<u64>, result: Result<Value, AdapterError>) -> Response {
    let (result, error) = match result {
        Ok(v) => (Some(v), None),
        Err(e) => (
            None,
            Some(RpcError {
                code: e.code,
                message: e.message,
                data: None,
            }),
        ),
    };
    Response {
        jsonrpc: "2.0".into(),
        id,
        result,
        error,
    }
}

fn decode<T: DeserializeOwned>(params: Value) -> Result<T, AdapterError> {
    serde_json::from_value(params).map_err(|e| AdapterError::invalid_params(e.to_string()))
}

fn encode<T: Serialize>(r: Result<T, AdapterError>) -> Result<Value, AdapterError> {
    r.and_then(|v| {
        serde_json::to_value(v)
            .map_err(|e| AdapterError::internal(format!("the result does not serialize: {e}")))
    })
}

async fn dispatch<A: Adapter>(
    adapter: &A,
    method: &str,
    params: Value,
    ctx: Context,
) -> Result<Value, AdapterError> {
    match method {
        "discover" => encode(adapter.discover(decode(params)?, ctx).await),
        "dry_run" => encode(adapter.dry_run(decode(params)?, ctx).await),
        "execute" => encode(adapter.execute(decode(params)?, ctx).await),
        "health" => encode(adapter.health(decode(params)?, ctx).await),
        "initialize" => Err(AdapterError::new(
            codes::INVALID_REQUEST,
            "initialize was already sent",
        )),
        other => Err(AdapterError::new(
            codes::METHOD_NOT_FOUND,
            format!("unknown method `{other}`"),
        )),
    }
}

/// Process groups started by this adapter and not yet ended (see [`ProcessGroup`]).
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn groups() -> std::sync::MutexGuard<'static, Vec<i32>> {
    GROUPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Kill every process group still open: the adapter is stopping.
fn kill_all_groups() {
    for pgid in groups().drain(..) {
        crate::procs::kill_group(pgid);
    }
}

/// A process group a handler started (a child spawned with
/// `process_group(0)` leads one). Every process in it is killed when this is
/// dropped or [`ProcessGroup::kill`]ed, and when the adapter stops — at
/// stdin's end, or when switchyard is gone — so nothing a request started
/// outlives it.
#[derive(Debug)]
pub struct ProcessGroup(Option<i32>);

impl ProcessGroup {
    /// Track the group led by the child `pid`.
    pub fn new(pid: u32) -> ProcessGroup {
        let pgid = i32::try_from(pid).ok().filter(|p| *p > 1);
        if let Some(pgid) = pgid {
            groups().push(pgid);
        }
        ProcessGroup(pgid)
    }

    /// Kill every process still in the group; `true` when there were some.
    pub fn kill(&mut self) -> bool {
        let Some(pgid) = self.0.take() else {
            return false;
        };
        groups().retain(|g| *g != pgid);
        crate::procs::kill_group(pgid)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Stop the adapter when the process that started it is gone. A thread of its
/// own, so a handler that blocks the runtime cannot delay it. switchyard names
/// itself in `SWITCHYARD_PARENT_PID`; without it, the parent at start counts.
/// An adapter started directly by switchyard also stops when it is no longer
/// its child (reparented: switchyard died, whatever became of its pid).
fn watch_parent() {
    use nix::unistd::getppid;
    let at_start = getppid().as_raw() as u32;
    let named = std::env::var("SWITCHYARD_PARENT_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok());
    let parent = named.unwrap_or(at_start);
    let direct = at_start == parent;
    let _ = std::thread::Builder::new()
        .name("switchyard-parent-watch".into())
        .spawn(move || {
            loop {
                let gone = if direct {
                    getppid().as_raw() as u32 != parent
                } else {
                    !crate::procs::alive(parent)
                };
                if gone {
                    let _ = writeln!(
                        std::io::stderr(),
                        "switchyard (pid {parent}) is gone; stopping every request and exiting"
                    );
                    kill_all_groups();
                    std::process::exit(1);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
}

/// Serve the adapter protocol on stdin/stdout until stdin closes or the
/// process that started the adapter is gone.
pub async fn serve<A: Adapter>() {
    use std::os::fd::AsFd;
    use tokio::net::unix::pipe;
    watch_parent();
    // Under switchyard stdin and stdout are pipes: use them non-blocking.
    // tokio's stdin/stdout go through a blocking thread per read and write,
    // which costs a thread handoff on every request.
    let pipes = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(pipe::Receiver::from_owned_fd)
        .and_then(|rx| {
            Ok((
                rx,
                pipe::Sender::from_owned_fd(std::io::stdout().as_fd().try_clone_to_owned()?)?,
            ))
        });
    match pipes {
        Ok((rx, tx)) => serve_io::<A, _, _>(rx, tx).await,
        Err(_) => serve_io::<A, _, _>(tokio::io::stdin(), tokio::io::stdout()).await,
    }
}

/// How long requests in flight get, once stdin has closed, to stop on their
/// cancellation before they are dropped.
const EOF_GRACE: Duration = Duration::from_secs(1);

/// How long after its deadline a handler that ignores its cancellation is
/// dropped (switchyard times the request out and cancels it at the deadline).
const STOP_GRACE: Duration = Duration::from_secs(1);

/// A future whose panic becomes an `Err` with the panic's message.
struct CatchUnwind<F>(std::pin::Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(panic) => std::task::Poll::Ready(Err(panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned()))),
        }
    }
}

/// When a request must be done: the earlier of its budget (`deadline_ms`,
/// from now) and its deadline as a time (`deadline_at_ms`). `Err` when that
/// time has passed already.
fn deadline_of(params: &Value) -> Result<Option<Instant>, AdapterError> {
    let now = Instant::now();
    let budget = params
        .get("deadline_ms")
        .and_then(Value::as_u64)
        .map(|ms| now + Duration::from_millis(ms));
    let at = match params.get("deadline_at_ms").and_then(Value::as_u64) {
        None => None,
        Some(at_ms) => {
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64;
            if at_ms <= wall {
                return Err(AdapterError::transient(format!(
                    "the request's deadline passed {} ms ago; it was not started",
                    wall - at_ms
                )));
            }
            Some(now + Duration::from_millis(at_ms - wall))
        }
    };
    Ok(match (budget, at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// Serve on any reader and writer (tests use in-memory pipes).
pub async fn serve_io<A, R, W>(input: R, output: W)
where
    A: Adapter,
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Response>();
    let writer = tokio::spawn(async move {
        let mut output = output;
        while let Some(resp) = out_rx.recv().await {
            let Ok(mut line) = serde_json::to_vec(&resp) else {
                // A response is ids, numbers and JSON values: it serializes.
                continue;
            };
            line.push(b'\n');
            if output.write_all(&line).await.is_err() || output.flush().await.is_err() {
                return;
            }
        }
    });
    let mut lines = BufReader::new(input).lines();
    let mut adapter: Option<Arc<A>> = None;
    let cancels: Arc<Mutex<HashMap<u64, watch::Sender<bool>>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    while let Ok(Some(line)) = lines.next_line().await {
        while tasks.try_join_next().is_some() {}
        if line.trim().is_empty() {
            continue;
        }
        let request: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                let _ = out_tx.send(response(
                    None,
                    Err(AdapterError::new(codes::PARSE_ERROR, e.to_string())),
                ));
                continue;
            }
        };
        if request.method == "cancel" {
            if let Ok(CancelParams { id }) = serde_json::from_value(request.params)
                && let Some(tx) = cancels
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(&id)
            {
                let _ = tx.send(true);
            }
            continue;
        }
        let Some(id) = request.id else { continue };
        if request.method == "initialize" {
            let result = match (&adapter, decode::<InitializeParams>(request.params)) {
                (Some(_), _) => Err(AdapterError::new(
                    codes::INVALID_REQUEST,
                    "initialize was already sent",
                )),
                (None, Err(e)) => Err(e),
                (None, Ok(params)) => A::initialize(params).and_then(|a| {
                    adapter = Some(Arc::new(a));
                    encode(Ok(InitializeResult {
                        name: A::NAME.into(),
                        version: A::VERSION.into(),
                    }))
                }),
            };
            let _ = out_tx.send(response(Some(id), result));
            continue;
        }
        let Some(adapter) = adapter.clone() else {
            let _ = out_tx.send(response(
                Some(id),
                Err(AdapterError::new(
                    codes::INVALID_REQUEST,
                    "initialize must come first",
                )),
            ));
            continue;
        };
        let deadline = match deadline_of(&request.params) {
            Ok(d) => d,
            Err(e) => {
                let _ = out_tx.send(response(Some(id), Err(e)));
                continue;
            }
        };
        let (cancel_tx, cancel_rx) = watch::channel(false);
        cancels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, cancel_tx);
        let ctx = Context {
            run_id: request
                .params
                .get("run_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            deadline,
            cancel: cancel_rx,
        };
        let out_tx = out_tx.clone();
        let cancels = Arc::clone(&cancels);
        tasks.spawn(async move {
            let work = CatchUnwind(Box::pin(dispatch(
                adapter.as_ref(),
                &request.method,
                request.params,
                ctx,
            )));
            let result = match deadline {
                // Past the deadline switchyard has cancelled the request and
                // counts it timed out; a handler that ignored the cancel is
                // dropped a moment later.
                Some(at) => tokio::time::timeout_at((at + STOP_GRACE).into(), work)
                    .await
                    .unwrap_or_else(|_| {
                        Ok(Err(AdapterError::transient(
                            "the request reached its deadline and was stopped",
                        )))
                    }),
                None => work.await,
            }
            .unwrap_or_else(|panic| {
                Err(AdapterError::internal(format!(
                    "the adapter panicked: {panic}"
                )))
            });
            cancels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&id);
            let _ = out_tx.send(response(Some(id), result));
        });
    }
    // stdin closed: switchyard stopped, or is gone. Nothing in flight may go
    // on without it: cancel, give the requests a moment, then drop them.
    for tx in cancels
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .values()
    {
        let _ = tx.send(true);
    }
    let stopped = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(EOF_GRACE, stopped).await.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    kill_all_groups();
    drop(out_tx);
    let _ = writer.await;
}
