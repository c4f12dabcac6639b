//! The periods the pipeline waits out on a real clock, settable for tests the way
//! `DRAWDROP_CRASH_AT` sets a crash point: `DRAWDROP_RESCAN_MS` (how often the whole inbox
//! is scanned although no event said anything; 30 s), `DRAWDROP_BACKOFF_MS` (the pause
//! before a job's second attempt, doubled for each further one; 1 s) and
//! `DRAWDROP_NEVER_ANSWERED_MS` (how long `run --once` waits for a server that has not
//! answered once before it gives up; a minute). A value that is not
//! a whole number of milliseconds above zero is ignored. Read once; without the variables
//! they cost one load of a cached value.

use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable that sets [`rescan_every`].
pub(crate) const RESCAN_ENV: &str = "DRAWDROP_RESCAN_MS";
/// The environment variable that sets [`first_backoff`].
pub(crate) const BACKOFF_ENV: &str = "DRAWDROP_BACKOFF_MS";
/// The environment variable that sets [`never_answered_limit`].
pub(crate) const NEVER_ANSWERED_ENV: &str = "DRAWDROP_NEVER_ANSWERED_MS";

const RESCAN_EVERY: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const NEVER_ANSWERED_LIMIT: Duration = Duration::from_secs(60);

/// How often the whole inbox is scanned even when no event says anything changed.
pub(crate) fn rescan_every() -> Duration {
    static PERIOD: OnceLock<Duration> = OnceLock::new();
    *PERIOD.get_or_init(|| from_env(RESCAN_ENV).unwrap_or(RESCAN_EVERY))
}

/// The pause before a job's second attempt (doubled for each further one).
pub(crate) fn first_backoff() -> Duration {
    static PAUSE: OnceLock<Duration> = OnceLock::new();
    *PAUSE.get_or_init(|| from_env(BACKOFF_ENV).unwrap_or(FIRST_BACKOFF))
}

/// How long `run --once` waits at most for a server that has not answered once since
/// drawdrop started (Draw Things closed, a wrong URL).
pub(crate) fn never_answered_limit() -> Duration {
    static LIMIT: OnceLock<Duration> = OnceLock::new();
    *LIMIT.get_or_init(|| from_env(NEVER_ANSWERED_ENV).unwrap_or(NEVER_ANSWERED_LIMIT))
}

fn from_env(name: &str) -> Option<Duration> {
    let millis: u64 = std::env::var(name).ok()?.trim().parse().ok()?;
    (millis > 0).then(|| Duration::from_millis(millis))
}
