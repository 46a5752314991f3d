//! One adapter process: its pipes, the requests in flight, and the tasks that
//! read its stdout (responses) and stderr (log lines).

use super::CallError;
use crate::protocol::{Request, Response};
use serde_json::Value;
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

/// What a request's waiter receives.
pub(crate) struct Reply {
    pub result: Result<Value, CallError>,
    pub stderr: Vec<String>,
}

struct Pending {
    tx: oneshot::Sender<Reply>,
    run_id: Option<String>,
    stderr: Vec<String>,
    /// The secret values in this call's params: redacted from every line
    /// read while it is in flight (a line cannot be told apart from another
    /// call's until it is attached) and from its error.
    secrets: Vec<String>,
}

/// How long a finished call's secret params are still redacted from stderr.
const LINGER: std::time::Duration = std::time::Duration::from_secs(10);
/// Finished calls whose secrets linger at most (the oldest go first).
const MAX_LINGERING: usize = 1024;

/// How to start an adapter.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub driver: String,
    pub instance: usize,
    pub argv: Vec<String>,
    pub cwd: std::path::PathBuf,
    pub max_line_bytes: usize,
    pub stderr_lines_per_call: usize,
    /// `SWITCHYARD_DEPLOYMENT`, when set.
    pub deployment: Option<String>,
}

/// A running adapter.
pub(crate) struct Process {
    pub launch: Launch,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    child: tokio::sync::Mutex<Child>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    alive: AtomicBool,
    /// Set by `shutdown`: an exit now is orderly, not a crash.
    stopping: AtomicBool,
    /// Why it stopped, once it has.
    death: Mutex<Option<String>>,
    /// Secrets sent to this process: removed from everything it prints.
    secrets: Mutex<Vec<String>>,
    /// The secret params of calls answered lately, kept for
    /// [`LINGER`]: stderr is read apart from stdout, so a call's last
    /// lines can come after its answer.
    lingering: Mutex<std::collections::VecDeque<(std::time::Instant, Vec<String>)>>,
    exited: tokio::sync::Notify,
    /// The last stderr lines, for crash reports.
    tail: Mutex<std::collections::VecDeque<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-written
    // (each critical section is a single insert/remove), so a poisoned lock is usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

enum LineRead {
    Line,
    Eof,
    TooLong,
}

async fn read_line_limited<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    buf.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Line
            });
        }
        if let Some(pos) = available.iter().position(|b| *b == b'\n') {
            if buf.len() + pos > max {
                return Ok(LineRead::TooLong);
            }
            buf.extend_from_slice(&available[..pos]);
            reader.consume(pos + 1);
            return Ok(LineRead::Line);
        }
        let n = available.len();
        if buf.len() + n > max {
            return Ok(LineRead::TooLong);
        }
        buf.extend_from_slice(available);
        reader.consume(n);
    }
}

/// Longest stderr line kept; the rest of a longer one is read and dropped.
const MAX_STDERR_LINE: usize = 16 * 1024;

/// Read one line into `buf`, keeping at most `max` bytes of it; `None` at
/// the end of the stream, else whether the line was cut. Memory stays bounded
/// however long the line.
async fn read_line_capped<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut truncated = false;
    let mut any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(any.then_some(truncated));
        }
        any = true;
        let (take, done) = match available.iter().position(|b| *b == b'\n') {
            Some(pos) => (pos, true),
            None => (available.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&available[..take.min(room)]);
        truncated |= take > room;
        reader.consume(if done { take + 1 } else { take });
        if done {
            return Ok(Some(truncated));
        }
    }
}

impl Process {
    /// Spawn the adapter (argv, never a shell) and start its reader tasks.
    pub fn spawn(launch: Launch) -> Result<Arc<Process>, CallError> {
        let mut cmd = Command::new(&launch.argv[0]);
        cmd.args(&launch.argv[1..])
            .current_dir(&launch.cwd)
            .env("SWITCHYARD_DRIVER", &launch.driver)
            // The SDK stops an adapter whose parent is no longer this process.
            .env("SWITCHYARD_PARENT_PID", std::process::id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(d) = &launch.deployment {
            cmd.env("SWITCHYARD_DEPLOYMENT", d);
        }
        let mut child = cmd.spawn().map_err(|e| CallError::Spawn {
            driver: launch.driver.clone(),
            program: launch.argv[0].clone(),
            reason: e.to_string(),
        })?;
        let stdin = child.stdin.take();
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.start_kill();
            return Err(CallError::Spawn {
                driver: launch.driver.clone(),
                program: launch.argv[0].clone(),
                reason: "its stdout and stderr are not piped".into(),
            });
        };
        let process = Arc::new(Process {
            launch,
            stdin: tokio::sync::Mutex::new(stdin),
            child: tokio::sync::Mutex::new(child),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            alive: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            death: Mutex::new(None),
            secrets: Mutex::new(Vec::new()),
            lingering: Mutex::new(std::collections::VecDeque::new()),
            exited: tokio::sync::Notify::new(),
            tail: Mutex::new(std::collections::VecDeque::new()),
        });
        tracing::info!(driver = %process.launch.driver, instance = process.launch.instance, "adapter started");
        tokio::spawn(Self::read_stdout(
            Arc::clone(&process),
            BufReader::new(stdout),
        ));
        tokio::spawn(Self::read_stderr(
            Arc::clone(&process),
            BufReader::new(stderr),
        ));
        Ok(process)
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Why the process stopped (for errors), if it has.
    pub fn death(&self) -> Option<String> {
        lock(&self.death).clone()
    }

    /// Remember secrets sent to this process so its output can be redacted.
    pub fn add_secrets(&self, secrets: impl IntoIterator<Item = String>) {
        let mut known = lock(&self.secrets);
        for s in secrets {
            if !s.is_empty() && !known.contains(&s) {
                known.push(s);
            }
        }
    }

    /// Replace with `***` every secret this process was given, and the
    /// secret params of every call in flight
    /// or answered within [`LINGER`].
    ///
    /// Calls in flight are read before lingering ones, and a call moves
    /// from the first to the second under the `pending` lock
    /// ([`Process::take_pending`]): a line read meanwhile sees it in one.
    fn redact_line(&self, text: &str) -> String {
        let mut secrets = lock(&self.secrets).clone();
        secrets.extend(
            lock(&self.pending)
                .values()
                .flat_map(|p| p.secrets.iter().cloned()),
        );
        {
            let mut lingering = lock(&self.lingering);
            while lingering
                .front()
                .is_some_and(|(at, _)| at.elapsed() > LINGER)
            {
                lingering.pop_front();
            }
            secrets.extend(lingering.iter().flat_map(|(_, s)| s.iter().cloned()));
        }
        crate::secrets::redact(text, &secrets)
    }

    /// Remove a call from those in flight (`None`: every call), its secrets
    /// lingering a while for its late lines. Lock order: `pending`, then
    /// `lingering`.
    fn take_pending(&self, id: Option<u64>) -> Vec<Pending> {
        let mut pending = lock(&self.pending);
        let taken: Vec<Pending> = match id {
            Some(id) => pending.remove(&id).into_iter().collect(),
            None => pending.drain().map(|(_, p)| p).collect(),
        };
        let now = std::time::Instant::now();
        let mut lingering = lock(&self.lingering);
        for p in taken.iter().filter(|p| !p.secrets.is_empty()) {
            if lingering.len() >= MAX_LINGERING {
                lingering.pop_front();
            }
            lingering.push_back((now, p.secrets.clone()));
        }
        taken
    }

    /// Register a request and get its id and the receiver of its reply;
    /// `secrets` are the secret values in its params.
    pub fn register(
        &self,
        run_id: Option<String>,
        secrets: Vec<String>,
    ) -> (u64, oneshot::Receiver<Reply>) {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(
            id,
            Pending {
                tx,
                run_id,
                stderr: Vec::new(),
                secrets,
            },
        );
        (id, rx)
    }

    /// Forget a request (timed out), returning the stderr lines it collected.
    pub fn unregister(&self, id: u64) -> Vec<String> {
        self.take_pending(Some(id))
            .pop()
            .map(|p| p.stderr)
            .unwrap_or_default()
    }

    /// Write one JSON line to the adapter.
    pub async fn send(&self, request: &Request) -> Result<(), CallError> {
        let mut line = serde_json::to_vec(request).map_err(|e| CallError::Encode {
            method: request.method.clone(),
            detail: e.to_string(),
        })?;
        line.push(b'\n');
        let mut stdin = self.stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else {
            return Err(self.crashed("its stdin is closed"));
        };
        if let Err(e) = pipe.write_all(&line).await {
            return Err(self.crashed(&format!("writing to it failed: {e}")));
        }
        pipe.flush()
            .await
            .map_err(|e| self.crashed(&format!("writing to it failed: {e}")))
    }

    fn crashed(&self, detail: &str) -> CallError {
        CallError::Crashed {
            driver: self.launch.driver.clone(),
            detail: self.death().unwrap_or_else(|| detail.to_owned()),
        }
    }

    /// Stop the process now; every request in flight fails with `error`.
    pub async fn kill(&self, error: CallError) {
        self.mark_dead(error);
        let mut child = self.child.lock().await;
        let _ = child.start_kill();
        let _ = child.wait().await;
    }

    /// Close stdin (adapters exit on EOF), wait up to `grace`, then kill.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stdin.lock().await.take();
        let exited = self.exited.notified();
        if self.is_alive() && tokio::time::timeout(grace, exited).await.is_err() {
            tracing::warn!(driver = %self.launch.driver, instance = self.launch.instance, "adapter did not exit on EOF; killing it");
        }
        self.kill(CallError::ShuttingDown).await;
    }

    fn mark_dead(&self, error: CallError) {
        if !self.alive.swap(false, Ordering::SeqCst) {
            return;
        }
        lock(&self.death).get_or_insert_with(|| error.to_string());
        for p in self.take_pending(None) {
            let _ = p.tx.send(Reply {
                result: Err(error.clone()),
                stderr: p.stderr,
            });
        }
        self.exited.notify_waiters();
    }

    async fn read_stdout(self: Arc<Self>, mut reader: BufReader<tokio::process::ChildStdout>) {
        let driver = self.launch.driver.clone();
        let mut buf = Vec::new();
        loop {
            let read = read_line_limited(&mut reader, &mut buf, self.launch.max_line_bytes).await;
            let problem = match read {
                Ok(LineRead::Line) => match self.deliver(&buf) {
                    Ok(()) => continue,
                    Err(problem) => problem,
                },
                Ok(LineRead::TooLong) => format!(
                    "a stdout line is longer than {} bytes",
                    self.launch.max_line_bytes
                ),
                Ok(LineRead::Eof) => {
                    // Usually the process has exited; one that only closed stdout is killed.
                    let status = {
                        let mut child = self.child.lock().await;
                        tokio::time::timeout(std::time::Duration::from_millis(500), child.wait())
                            .await
                    };
                    let detail = match status {
                        Ok(Ok(s)) => format!("the adapter exited ({s})"),
                        Ok(Err(e)) => format!("the adapter exited: {e}"),
                        Err(_) => "the adapter closed its stdout".to_owned(),
                    };
                    let tail = self.stderr_tail();
                    let detail = if tail.is_empty() {
                        detail
                    } else {
                        format!("{detail}; last stderr: {tail}")
                    };
                    if self.stopping.load(Ordering::SeqCst) {
                        tracing::debug!(driver = %driver, instance = self.launch.instance, "adapter stopped on shutdown");
                    } else {
                        tracing::warn!(driver = %driver, instance = self.launch.instance, detail = %detail, "adapter stopped");
                    }
                    self.kill(CallError::Crashed { driver, detail }).await;
                    return;
                }
                Err(e) => format!("reading its stdout failed: {e}"),
            };
            let problem = self.redact_line(&problem);
            tracing::warn!(driver = %driver, instance = self.launch.instance, problem = %problem, "adapter protocol error; restarting it");
            self.kill(CallError::Protocol {
                driver,
                detail: problem,
            })
            .await;
            return;
        }
    }

    /// Route one stdout line to its waiter; `Err` is a protocol error.
    fn deliver(&self, line: &[u8]) -> Result<(), String> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let text =
            std::str::from_utf8(line).map_err(|_| "a stdout line is not UTF-8".to_owned())?;
        let response: Response = serde_json::from_str(text).map_err(|e| {
            let shown: String = text.chars().take(120).collect();
            format!("a stdout line is not a JSON-RPC response ({e}): `{shown}`")
        })?;
        let Some(id) = response.id else {
            return Err("a response has no id".into());
        };
        let Some(p) = self.take_pending(Some(id)).pop() else {
            tracing::debug!(driver = %self.launch.driver, id, "response to a request no longer waited for");
            return Ok(());
        };
        let result = match (response.result, response.error) {
            (_, Some(e)) => Err(CallError::Adapter {
                code: e.code,
                message: {
                    let mut secrets = lock(&self.secrets).clone();
                    secrets.extend(p.secrets.iter().cloned());
                    crate::secrets::redact(&e.message, &secrets)
                },
            }),
            (Some(v), None) => Ok(v),
            (None, None) => Ok(Value::Null),
        };
        let _ = p.tx.send(Reply {
            result,
            stderr: p.stderr,
        });
        Ok(())
    }

    async fn read_stderr(self: Arc<Self>, mut reader: BufReader<tokio::process::ChildStderr>) {
        let mut line = Vec::new();
        loop {
            match read_line_capped(&mut reader, &mut line, MAX_STDERR_LINE).await {
                Ok(None) | Err(_) => return,
                Ok(Some(truncated)) => {
                    let mut text = String::from_utf8_lossy(&line).trim_end().to_owned();
                    if truncated {
                        text.push_str(" [line truncated]");
                    }
                    let text = self.redact_line(&text);
                    tracing::info!(driver = %self.launch.driver, instance = self.launch.instance, line = %text, "adapter stderr");
                    self.attach_stderr(text);
                }
            }
        }
    }

    /// The last few stderr lines, joined.
    fn stderr_tail(&self) -> String {
        lock(&self.tail)
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// A line `[run-id] …` goes to that run; any other line to every request in flight.
    fn attach_stderr(&self, text: String) {
        {
            let mut tail = lock(&self.tail);
            if tail.len() >= 5 {
                tail.pop_front();
            }
            tail.push_back(text.clone());
        }
        let tagged = text
            .strip_prefix('[')
            .and_then(|rest| rest.split_once("] "))
            .map(|(id, _)| id.to_owned());
        let cap = self.launch.stderr_lines_per_call;
        let mut pending = lock(&self.pending);
        let owner = tagged.filter(|id| {
            pending
                .values()
                .any(|p| p.run_id.as_deref() == Some(id.as_str()))
        });
        for p in pending.values_mut() {
            if owner
                .as_ref()
                .is_none_or(|o| p.run_id.as_deref() == Some(o.as_str()))
            {
                if p.stderr.len() >= cap {
                    p.stderr.remove(0);
                }
                p.stderr.push(text.clone());
            }
        }
    }
}
