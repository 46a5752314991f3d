//! Adapters a crashed switchyard left behind.
//!
//! Every adapter is started with `SWITCHYARD_PARENT_PID` naming the serve
//! that started it, `SWITCHYARD_DRIVER`, and `SWITCHYARD_DEPLOYMENT` naming
//! the deployment (a digest of its database URL). An adapter built on the
//! SDK exits as soon as its serve is gone; one that does not (a script that
//! ignores the end of its stdin) could still be carrying out an action.
//! Before recovery carries any run out again, serve kills every such orphan
//! of its own deployment on this machine, with the process group it leads,
//! so no earlier attempt goes on beside the new one. Adapters of other
//! deployments, and of serves still running, are left alone.

use crate::procs;
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

/// Adapters of `deployment` on this machine whose serve no longer runs.
pub fn find_orphans(deployment: Option<&str>) -> Vec<Orphan> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // Processes whose environment this user cannot read are not ours.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let (mut parent, mut driver, mut deploy) = (None, None, None);
        for var in environ.split(|b| *b == 0) {
            let text = String::from_utf8_lossy(var);
            if let Some(v) = text.strip_prefix("SWITCHYARD_PARENT_PID=") {
                parent = v.parse::<u32>().ok();
            } else if let Some(v) = text.strip_prefix("SWITCHYARD_DRIVER=") {
                driver = Some(v.to_owned());
            } else if let Some(v) = text.strip_prefix("SWITCHYARD_DEPLOYMENT=") {
                deploy = Some(v.to_owned());
            }
        }
        let (Some(parent), Some(driver)) = (parent, driver) else {
            continue;
        };
        if deploy.as_deref() != deployment || parent == std::process::id() {
            continue;
        }
        let Some(stat) = procs::stat(pid) else {
            continue;
        };
        // Still the child of its serve: not an orphan. Otherwise its serve
        // is gone — or the pid was taken by another process, which is not
        // this adapter's parent either.
        if stat.ppid == parent || stat.state == 'Z' {
            continue;
        }
        if procs::alive(parent) && stat.ppid != 1 {
            // Its serve runs (the adapter was started through a wrapper).
            continue;
        }
        found.push(Orphan {
            pid,
            parent,
            driver,
        });
    }
    found
}

/// Kill every orphaned adapter of `deployment` (and the process group it
/// leads) and wait up to `limit` for them to be gone; returns the ones found.
pub fn reap_orphans(deployment: Option<&str>, limit: Duration) -> Vec<Orphan> {
    let orphans = find_orphans(deployment);
    for o in &orphans {
        tracing::warn!(pid = o.pid, driver = %o.driver, engine_pid = o.parent, "an adapter outlived the switchyard that started it; killing it before recovery");
        // Its own process group, when it leads one (the processes it started).
        procs::kill_group(o.pid as i32);
        procs::kill_process(o.pid);
    }
    let until = Instant::now() + limit;
    while orphans.iter().any(|o| procs::alive(o.pid)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    orphans
}
