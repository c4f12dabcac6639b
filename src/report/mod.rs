//! What drawdrop tells: the log (`logging`), the `--once` progress bar and its counts
//! (`progress`, `tally`), desktop notifications (`desktop`), the jobs in flight for `status`
//! (`live`), how the last start went (`last_start`), and the outbox gallery (`gallery`).

pub(crate) mod desktop;
pub mod gallery;
pub(crate) mod last_start;
pub mod live;
pub(crate) mod logging;
pub(crate) mod progress;
pub(crate) mod tally;
