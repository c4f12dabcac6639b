//! What drawdrop tells: the log (`logging`), the `--once` progress bar and its counts
//! (`progress`, `tally`), desktop notifications (`desktop`), the jobs in flight for `status`
//! (`live`), how the last start went (`last_start`), and the outbox gallery (`gallery`).

pub mod desktop;
pub mod gallery;
pub mod last_start;
pub mod live;
pub mod logging;
pub mod progress;
pub mod tally;
