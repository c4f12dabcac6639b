//! drawdrop: a hot-folder daemon for img2img. Drop a picture into the inbox; the result of
//! Draw Things (HTTP or gRPC), a ComfyUI workflow or an AUTOMATIC1111-compatible server
//! appears in the outbox.
//!
//! ```text
//! notify events ─┐
//! startup scan ──┼─> settle (debounce) ─> queue ─> workers: claim (durable) ─> backend ─> server
//! periodic scan ─┘                                   │
//!                                                    └─> outbox: result, original, failed, logs
//! ```
//! Events are hints; the folder's content is the truth. A file is claimed — moved out of
//! the inbox's sight, durably — before it is sent, and finished in two phases (stage, then
//! commit and apply), so a crash at any moment loses nothing and writes nothing twice.
//!
//! Layout, imports flowing downwards: `cli` and `commands` (run, check, init, status,
//! service, gallery) · `pipeline` (the daemon: folders, watch, queue, pool and health,
//! workers) · `backends` (the seam every kind of server implements, and one folder per kind)
//! · `report` (logging, progress, notifications, jobs in flight, the gallery) · `jobs` (the
//! durable job store: claims, finishing, the outbox, crash points) · `image` (formats in,
//! checks, sizes, PNG out) · `service` (launchd, systemd) · `config` (files -> validated
//! types) · `mutex` (locks that outlive a panic).

pub mod backends;
pub(crate) mod cli;
pub(crate) mod commands;
pub mod config;
pub(crate) mod image;
pub mod jobs;
pub(crate) mod mutex;
pub(crate) mod pipeline;
pub mod report;
pub(crate) mod service;

/// The `drawdrop` binary: parse the command line, start logging, run the command, and
/// exit with its code.
pub fn main() -> std::process::ExitCode {
    let cli = cli::parse();
    let logs = report::logging::init();
    commands::execute(cli, logs)
}
