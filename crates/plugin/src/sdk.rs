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
//! be concurrent), writes responses to stdout one per line, turns `cancel`
//! notifications into [`Context::cancelled`], and exits when stdin closes and
//! the requests in flight have finished. Log with [`Context::log`]: the line
//! goes to stderr tagged with the run id, and switchyard attaches it to that run.

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
    r.map(|v| serde_json::to_value(v).expect("protocol types serialize"))
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

/// Serve the adapter protocol on stdin/stdout until stdin closes.
pub async fn serve<A: Adapter>() {
    use std::os::fd::AsFd;
    use tokio::net::unix::pipe;
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
            let mut line = serde_json::to_vec(&resp).expect("responses serialize");
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
                (None, Ok(params)) => A::initialize(params).map(|a| {
                    adapter = Some(Arc::new(a));
                    serde_json::to_value(InitializeResult {
                        name: A::NAME.into(),
                        version: A::VERSION.into(),
                    })
                    .expect("serializes")
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
            deadline: request
                .params
                .get("deadline_ms")
                .and_then(Value::as_u64)
                .map(|ms| Instant::now() + Duration::from_millis(ms)),
            cancel: cancel_rx,
        };
        let out_tx = out_tx.clone();
        let cancels = Arc::clone(&cancels);
        tasks.spawn(async move {
            let result = dispatch(adapter.as_ref(), &request.method, request.params, ctx).await;
            cancels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&id);
            let _ = out_tx.send(response(Some(id), result));
        });
    }
    while tasks.join_next().await.is_some() {}
    drop(out_tx);
    let _ = writer.await;
}
