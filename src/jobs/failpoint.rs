//! Crash points for the fault suite: `DRAWDROP_CRASH_AT=<name>` (or `<name>:<n>` for the
//! n-th time) makes drawdrop abort at that point, exactly as `kill -9` would (no unwinding,
//! no cleanup). Without the variable a crash point costs one load of a cached value.
//!
//! The points sit between the steps that must survive a crash: after a claim, after a
//! backend noted what it is about to send (`noted`), after the results are staged, after the commit record, after the input moved, after the first file
//! was placed, and after the `jobs.jsonl` line was written.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The environment variable that names the crash point.
pub(crate) const CRASH_AT_ENV: &str = "DRAWDROP_CRASH_AT";

struct Target {
    name: String,
    nth: u32,
    seen: AtomicU32,
}

fn target() -> Option<&'static Target> {
    static TARGET: OnceLock<Option<Target>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let value = std::env::var(CRASH_AT_ENV).ok()?;
            let (name, nth) = match value.split_once(':') {
                Some((name, nth)) => (name.to_owned(), nth.parse().unwrap_or(1)),
                None => (value, 1),
            };
            Some(Target {
                name,
                nth: nth.max(1),
                seen: AtomicU32::new(0),
            })
        })
        .as_ref()
}

/// Aborts the process here if `DRAWDROP_CRASH_AT` names this point (and this is the n-th hit).
pub(crate) fn crash_point(name: &str) {
    if let Some(target) = target()
        && target.name == name
        && target.seen.fetch_add(1, Ordering::SeqCst) + 1 == target.nth
    {
        eprintln!("drawdrop: crash point {name} reached ({CRASH_AT_ENV}); aborting");
        std::process::abort();
    }
}
