//! drawdrop: a hot-folder daemon for img2img. Drop a PNG into the inbox; the result of
//! Draw Things (or any AUTOMATIC1111-compatible server) appears in the outbox.
//!
//! ```text
//! notify events ─┐
//! startup scan ──┼─> settle (debounce) ─> queue ─> workers: claim (durable) ─> server
//! periodic scan ─┘                                   │
//!                                                    └─> outbox: result, original, failed, logs
//! ```
//! Events are hints; the folder's content is the truth. A file is claimed — moved out of
//! the inbox's sight, durably — before it is sent, and finished in two phases (stage, then
//! commit and apply), so a crash at any moment loses nothing and writes nothing twice.
//!
//! Layout: `cli` (clap) · `commands` (run, check, service) · `config` (files -> validated types) ·
//! `folders` (creating them) · `watch` (events, scans, settle) · `queue` · `claim` (durable
//! claims, lock, recovery) · `worker` (send, retry, wait) · `health` (is the server up) ·
//! `api` (requests, answers, client) · `image` (PNG checks, sizes, resizing) · `finish`
//! (stage, commit, apply) · `outbox` (names, placing, jobs.jsonl) · `durable` (crash-safe
//! file operations) · `logging` · `tally` and `progress` (for `--once`) · `daemon` (the
//! whole pipeline) · `service` (the launchd agent and the systemd unit).

pub mod api;
pub mod claim;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod desktop;
pub mod durable;
pub mod failpoint;
pub mod finish;
pub mod folders;
pub mod health;
pub mod image;
pub mod image_settings;
pub mod inbox_names;
pub mod logging;
pub mod metadata;
pub mod outbox;
pub mod outbox_gate;
pub mod pool;
pub mod progress;
pub mod queue;
pub mod reload;
pub mod service;
pub mod tally;
pub mod watch;
pub mod worker;
