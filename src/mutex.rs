//! Locking a mutex whose holder may have panicked: the data behind drawdrop's mutexes stays
//! usable (counters, lists, open files), so a panic in one task never stops the others.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking over its data if a holder panicked.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
