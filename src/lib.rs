//! drawdrop: a hot-folder daemon for img2img. Drop a picture into the inbox; the result of
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
//! Layout: `cli` (clap) · `commands` (run, check, init, status, service, gallery) · `config` (files ->
//! validated types) · `reload` (the settings in force, hot reload) · `folders` · `watch`
//! (events, scans, settle) · `queue` · `claim` (durable claims, lock, recovery) · `pool`
//! (servers, who takes what) · `worker` (prepare, send, decide; retries and hand-overs) ·
//! `health` (is a server up) · `outbox_gate` (can the outbox be written) · `api` (requests,
//! streamed answers, client) · `image` (formats, orientation, checks, sizes, resizing, text) ·
//! `image_settings` (sidecars, `{name}`) · `metadata` (the `parameters` chunk) · `finish`
//! (stage, commit, apply) · `outbox` (names, placing, jobs.jsonl) · `durable` (crash-safe
//! file operations) · `mutex` (locks that outlive a panic) · `failpoint` (crash points for
//! tests) · `logging` · `desktop` (notifications) · `service` (launchd, systemd) · `tally`
//! and `progress` (`--once`) · `last_start` (how the last start went, for `status`) ·
//! `gallery` (the outbox's pages of what was made, thumbnails) · `live` (jobs in flight, for
//! `status`) · `daemon` (the whole pipeline). `fpzip` is the float codec of Draw Things' gRPC
//! image tensors; `drawthings_grpc` is the wire of Draw Things' gRPC API (messages, client,
//! configuration, tensors).

pub mod api;
pub mod claim;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod desktop;
pub mod drawthings_grpc;
pub mod durable;
pub mod failpoint;
pub mod finish;
pub mod folders;
pub mod fpzip;
pub mod gallery;
pub mod health;
pub mod image;
pub mod image_settings;
pub mod inbox_names;
pub mod last_start;
pub mod live;
pub mod logging;
pub mod metadata;
pub mod mutex;
pub mod outbox;
pub mod outbox_gate;
pub mod pipeline;
pub mod pool;
pub mod progress;
pub mod queue;
pub mod reload;
pub mod service;
pub mod tally;
pub mod watch;
pub mod worker;
