//! The engine's locks, taken without `unwrap`: a lock poisoned by a panic
//! in another task is used as it stands. Every critical section here is a
//! few field updates with no await inside; a panic in one is a bug either
//! way, and passing it on to every later caller would stop the engine's
//! other tasks too (dispatch, the writer, the API's reads). The first such
//! recovery is logged as an error, so the bug does not go unseen.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

fn recovered<G>(e: PoisonError<G>) -> G {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        tracing::error!(
            "an engine lock was poisoned by a panic in another task; going on with its data as it stands (a bug: please report it with the log)"
        );
    }
    e.into_inner()
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(recovered)
}

pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(recovered)
}

pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(recovered)
}
