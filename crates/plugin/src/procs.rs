//! The few process facts and signals the supervisor and the SDK need, from
//! `/proc` and `kill(2)`.

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// What `/proc/<pid>/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub ppid: u32,
    /// `Z` for a process that exited and waits to be collected.
    pub state: char,
}

/// `/proc/<pid>/stat`, or `None` when there is no such process.
pub(crate) fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold anything, spaces and parentheses included:
    // the fields start after its last `)`.
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(Stat { ppid, state })
}

/// Does the process exist (as anything but a zombie)?
pub(crate) fn alive(pid: u32) -> bool {
    match i32::try_from(pid) {
        Ok(p) => kill(Pid::from_raw(p), None).is_ok() && stat(pid).is_none_or(|s| s.state != 'Z'),
        Err(_) => false,
    }
}

/// SIGKILL every process in the group `pgid`; `true` when there were some.
pub(crate) fn kill_group(pgid: i32) -> bool {
    pgid > 1 && killpg(Pid::from_raw(pgid), Signal::SIGKILL).is_ok()
}

/// SIGKILL one process.
pub(crate) fn kill_process(pid: u32) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
}
