//! The engine's clock: the wall-clock time when the process first asked,
//! advanced by the monotonic clock since.
//!
//! Windows (suppression, idempotency, correlation), queue times, deadlines
//! and recovery are measured on it, so a step of the system clock while
//! serve runs — NTP correcting a bad clock, an operator, a VM resumed —
//! neither expires every window at once (a step forward) nor freezes them
//! (a step back). Cron schedules follow the wall clock, as operators read
//! them. Across a restart the clock starts from the wall clock again.

use chrono::{DateTime, Utc};
use std::sync::OnceLock;
use std::time::Instant;

/// Now, on the engine's clock.
pub fn now() -> DateTime<Utc> {
    static ANCHOR: OnceLock<(DateTime<Utc>, Instant)> = OnceLock::new();
    let (wall, mono) = ANCHOR.get_or_init(|| (Utc::now(), Instant::now()));
    after(*wall, mono.elapsed())
}

/// `t` plus `d`, or the end of time where that does not fit.
pub fn after(t: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    #[test]
    fn it_moves_forward_with_the_monotonic_clock() {
        let a = super::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = super::now();
        assert!(b - a >= chrono::Duration::milliseconds(20));
        // Anchored on the wall clock.
        assert!((chrono::Utc::now() - b).num_seconds().abs() < 60);
    }

    #[test]
    fn after_saturates_at_the_end_of_time() {
        let now = super::now();
        let year = std::time::Duration::from_secs(365 * 86_400);
        assert!(super::after(now, year) > now);
        assert_eq!(
            super::after(now, year * 1_000_000),
            chrono::DateTime::<chrono::Utc>::MAX_UTC
        );
    }
}
