//! Adapters a crashed switchyard left behind.
//!
//! Every adapter is started with `SWITCHYARD_PARENT_PID` naming the serve
//! that started it. An adapter built on the SDK exits as soon as that
//! process is gone; one that does not (a script that ignores the end of its
//! stdin) could still be carrying out an action. Before recovery carries
//! any run out again, `serve` kills every such orphan on this machine, with
//! the process groups it leads, so no earlier attempt goes on beside the
//! new one.

use std::path::Path;
use std::time::{Duration, Instant};

/// An adapter whose switchyard is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub pid: u32,
    /// The serve that started it.
    pub parent: u32,
    /// `SWITCHYARD_DRIVER`.
    pub driver: String,
}

/// Adapters on this machine whose named parent no longer runs.
pub fn find_orphans() -> Vec<Orphan> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // Only processes this user may read; others are not ours to stop.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let mut parent = None;
        let mut driver = String::new();
        for var in environ.split(|b| *b == 0) {
            if let Some(v) = var.strip_prefix(b"SWITCHYARD_PARENT_PID=") {
                parent = std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.parse::<u32>().ok());
            } else if let Some(v) = var.strip_prefix(b"SWITCHYARD_DRIVER=") {
                driver = String::from_utf8_lossy(v).into_owned();
            }
        }
        let Some(parent) = parent else { continue };
        // Its switchyard is gone (a reused pid is no parent of it either).
        // A process an adapter started may carry the same variable: it is
        // an orphan only once that switchyard is gone too.
        if parent != std::process::id()
            && (!alive(parent) || ppid(pid) == Some(1))
            && ppid(pid) != Some(parent)
        {
            found.push(Orphan {
                pid,
                parent,
                driver,
            });
        }
    }
    found
}

/// The parent process id, from `/proc/<pid>/stat`.
fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Kill every orphaned adapter (and the process groups it leads) and wait
/// up to `limit` for them to be gone; returns the ones found.
pub fn reap_orphans(limit: Duration) -> Vec<Orphan> {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::Pid;
    let orphans = find_orphans();
    for o in &orphans {
        tracing::warn!(pid = o.pid, driver = %o.driver, engine_pid = o.parent, "an adapter outlived the switchyard that started it; killing it before recovery");
        let pid = Pid::from_raw(o.pid as i32);
        // Its own process group, when it leads one (the processes it started).
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = kill(pid, Signal::SIGKILL);
    }
    let until = Instant::now() + limit;
    while orphans.iter().any(|o| alive(o.pid) && !zombie(o.pid)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    orphans
}

/// A process that has exited and waits for its parent to collect it.
fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}
