//! The command line (clap): `drawdrop run|check|init|status|gallery|service` and their options.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "drawdrop",
    version,
    about = "Drop a PNG into a folder, get it back through img2img (Draw Things or AUTOMATIC1111).",
    after_help = "The config file is --config FILE, else $DRAWDROP_CONFIG, else config.toml in the platform config folder."
)]
pub struct Cli {
    /// The config file to use.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch the inbox and process every picture dropped into it (what the login service runs).
    Run {
        /// Process what is in the inbox now, then exit: 0 if every file succeeded, 1 if any
        /// failed, 2 on a config or start-up error.
        #[arg(long)]
        once: bool,
    },
    /// Validate the config and profiles, check the folders and ask the server if it answers.
    Check,
    /// Write a commented config and a `default` profile (never overwriting), create the folders.
    Init,
    /// Pending, in progress, done and failed counts, the last jobs, the server and the service.
    Status,
    /// Make outbox/gallery/ again from logs/jobs.jsonl and the outbox (and open it).
    Gallery {
        /// Open the gallery in the default browser.
        #[arg(long)]
        open: bool,
    },
    /// The login service: a launchd LaunchAgent on macOS, a systemd user unit on Linux.
    Service {
        #[command(subcommand)]
        action: ServiceAction,
        /// The launchd LaunchAgent (the default on macOS).
        #[arg(long, global = true, conflicts_with = "systemd")]
        launchd: bool,
        /// The systemd user unit (the default elsewhere).
        #[arg(long, global = true)]
        systemd: bool,
    },
}

/// What `drawdrop service` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum ServiceAction {
    /// Write the service file (this binary, `run --config <absolute path>`) and start it now
    /// and at every login; again, to update it.
    Install,
    /// Stop the service and remove its file.
    Uninstall,
    /// Whether the service is installed, loaded and running, its pid and last exit.
    Status,
    /// Write the file `install` would write to stdout (either kind, on any system).
    Print,
}
