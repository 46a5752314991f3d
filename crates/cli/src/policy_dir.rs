//! `serve`'s policy directory (`[policies] dir`): applied as one bundle at
//! start, then watched. A change is applied once the directory has been
//! quiet for the debounce delay; the whole directory is read again each
//! time, so editors' save patterns (a temporary file renamed over the
//! original, a backup beside it, several writes in a row) end in one apply
//! of what is on disk. A change that does not validate, or whose activation
//! fails, leaves the last good set running and is reported in the log, in
//! metrics, on `GET /api/directory` and as a policy notification.

use anyhow::{Context, Result, bail};
use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_api::bundle::{self, ApplyRequest, BundleContext, Outcome};
use switchyard_api::{DirectoryStatus, PolicyNotice};
use switchyard_plugin::Registry;
use switchyard_spec::metric_names as m;
use switchyard_store::{BundleAction, BundleStep, Store};
use tokio::sync::broadcast;

/// Everything an apply of the directory needs.
#[derive(Clone)]
pub struct PolicyDir {
    pub dir: PathBuf,
    pub store: Store,
    pub registry: Arc<Registry>,
    pub notices: broadcast::Sender<PolicyNotice>,
    pub status: DirectoryStatus,
    pub debounce: Duration,
    pub watch: bool,
    pub cache: Arc<std::sync::Mutex<bundle::ValidationCache>>,
}

impl std::fmt::Debug for PolicyDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyDir")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl PolicyDir {
    /// The directory's policy files as they are on disk, and their digest.
    fn read(&self) -> Result<(Vec<bundle::File>, String)> {
        let files = bundle::read_dir(&self.dir)
            .with_context(|| format!("reading the policy directory {}", self.dir.display()))?;
        let digest = digest(&files);
        Ok((files, digest))
    }

    /// Apply `files` as the directory's bundle (pruning what is gone).
    async fn apply(&self, files: &[bundle::File]) -> Result<Outcome> {
        let correlation_id = uuid::Uuid::now_v7().to_string();
        bundle::apply_files(
            BundleContext {
                store: &self.store,
                catalog: self.registry.as_ref(),
                notices: &self.notices,
            },
            ApplyRequest {
                files,
                by: bundle::MANAGED_BY_DIR,
                correlation_id: &correlation_id,
                prune: true,
                dry_run: false,
                cache: Some(&self.cache),
            },
        )
        .await
        .map_err(anyhow::Error::from)
    }

    /// Record the outcome of an apply for `GET /api/directory`.
    fn report(&self, last: Value) {
        let status = json!({
            "dir": self.dir.display().to_string(),
            "watching": self.watch,
            "debounce_ms": u64::try_from(self.debounce.as_millis()).unwrap_or(u64::MAX),
            "last": last,
        });
        *self
            .status
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status);
    }

    /// The first apply, at start: blockers or a rollback refuse to start
    /// (as a broken configuration does); the error lists every finding.
    pub async fn apply_at_start(&self) -> Result<(Vec<BundleStep>, String)> {
        let (files, digest) = self.read()?;
        let outcome = self.apply(&files).await?;
        self.report(outcome_json(&outcome));
        match outcome {
            Outcome::Applied { steps, compiled } => {
                for f in &compiled.findings {
                    tracing::warn!("{f}");
                }
                Ok((steps, digest))
            }
            Outcome::Refused(c) => {
                let lines: Vec<String> = c
                    .findings
                    .iter()
                    .filter(|f| f.finding.severity == switchyard_spec::Severity::Blocker)
                    .map(ToString::to_string)
                    .collect();
                bail!(
                    "the policy directory has blockers; nothing applied:\n  {}",
                    lines.join("\n  ")
                )
            }
            Outcome::RolledBack { reason, .. } => {
                bail!("the policy directory was applied and rolled back: {reason}")
            }
        }
    }

    /// Watch the directory until the returned handle is dropped; after each
    /// apply that changed something, `reload` makes the engine take it up.
    pub fn watch(
        self,
        digest: String,
        reload: Arc<dyn Fn() -> tokio::task::JoinHandle<()> + Send + Sync>,
    ) -> Result<tokio::task::JoinHandle<()>> {
        // One pending signal is enough: every apply reads the whole directory.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        // How often the debouncer looks for quiet paths: a tenth of the
        // delay (5–25 ms), so a change is seen soon after it has settled.
        let tick = (self.debounce / 10).clamp(Duration::from_millis(5), Duration::from_millis(25));
        let mut debouncer = new_debouncer(
            self.debounce,
            Some(tick),
            move |res: DebounceEventResult| {
                match res {
                    // Reads (ours included: every apply reads the files)
                    // change nothing.
                    Ok(events) if events.iter().all(|e| e.kind.is_access()) => {}
                    Ok(_) => {
                        let _ = tx.try_send(());
                    }
                    Err(errors) => {
                        for e in errors {
                            tracing::warn!(error = %e, "watching the policy directory");
                        }
                        // Something changed that the watcher could not say: look.
                        let _ = tx.try_send(());
                    }
                }
            },
        )
        .context("starting the policy directory watcher")?;
        debouncer
            .watch(&self.dir, RecursiveMode::Recursive)
            .with_context(|| format!("watching {}", self.dir.display()))?;
        tracing::info!(dir = %self.dir.display(), debounce_ms = self.debounce.as_millis(), "watching the policy directory");
        Ok(tokio::spawn(async move {
            let _debouncer = debouncer;
            let mut last = Some(digest);
            while rx.recv().await.is_some() {
                let started = Instant::now();
                let result = self.reload_once(&mut last, &reload).await;
                metrics::counter!(m::POLICY_RELOADS, "result" => result).increment(1);
                if result != "unchanged" {
                    metrics::histogram!(m::POLICY_RELOAD_DURATION)
                        .record(started.elapsed().as_secs_f64());
                }
            }
        }))
    }

    /// One reload; the result label for the metric.
    async fn reload_once(
        &self,
        last: &mut Option<String>,
        reload: &Arc<dyn Fn() -> tokio::task::JoinHandle<()> + Send + Sync>,
    ) -> &'static str {
        let attempt = async {
            let (files, digest) = self.read()?;
            if last.as_deref() == Some(digest.as_str()) {
                return Ok(None); // exactly the files last applied
            }
            Ok::<_, anyhow::Error>(Some((self.apply(&files).await?, digest)))
        }
        .await;
        let (outcome, digest) = match attempt {
            Ok(None) => return "unchanged",
            Ok(Some(applied)) => applied,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = crate::serve::said_once(&e), "the policy directory was not applied; the last good set stays active");
                self.report(json!({"at": chrono::Utc::now(), "result": "error", "reason": crate::serve::said_once(&e)}));
                let _ = self.notices.send(PolicyNotice::general(
                    "validation_failed",
                    bundle::MANAGED_BY_DIR,
                    json!({"message": crate::serve::said_once(&e)}),
                ));
                // Whatever is on disk is tried again on the next change.
                *last = None;
                return "error";
            }
        };
        self.report(outcome_json(&outcome));
        match &outcome {
            Outcome::Applied { steps, compiled } => {
                *last = Some(digest);
                for f in &compiled.findings {
                    tracing::warn!("{f}");
                }
                let changed = steps
                    .iter()
                    .filter(|s| s.action != BundleAction::Unchanged)
                    .count();
                if changed == 0 {
                    return "unchanged";
                }
                let _ = reload().await;
                tracing::info!(dir = %self.dir.display(), changed, "policy directory applied");
                "applied"
            }
            Outcome::Refused(c) => {
                // The same files would be refused again: wait for a change.
                *last = Some(digest);
                for f in &c.findings {
                    tracing::error!("{f}");
                }
                tracing::error!(dir = %self.dir.display(), "the policy directory has blockers; nothing applied, the last good set stays active");
                "refused"
            }
            Outcome::RolledBack { reason, .. } => {
                // The same files are not applied again (each try would add
                // two versions to the history); a change to them is.
                *last = Some(digest);
                let _ = reload().await;
                tracing::error!(dir = %self.dir.display(), %reason, "the policy directory was rolled back; the last good set stays active");
                "rolled_back"
            }
        }
    }
}

/// A digest of the files' names and contents.
fn digest(files: &[bundle::File]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.path.as_bytes());
        h.update([0]);
        h.update(f.content.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// The outcome of an apply as `GET /api/directory` shows it.
fn outcome_json(o: &Outcome) -> Value {
    let at = chrono::Utc::now();
    match o {
        Outcome::Applied { steps, compiled } => json!({
            "at": at,
            "result": "applied",
            "steps": steps.iter().map(|s| bundle::step_json(s, compiled.file_of(&s.policy.name))).collect::<Vec<_>>(),
            "findings": compiled.findings.iter().map(bundle::FileFinding::to_json).collect::<Vec<_>>(),
        }),
        Outcome::Refused(c) => json!({
            "at": at,
            "result": "refused",
            "findings": c.findings.iter().map(bundle::FileFinding::to_json).collect::<Vec<_>>(),
        }),
        Outcome::RolledBack {
            reason, restored, ..
        } => json!({
            "at": at,
            "result": "rolled_back",
            "reason": reason,
            "restored": restored.iter().map(bundle::restored_text).collect::<Vec<_>>(),
        }),
    }
}
