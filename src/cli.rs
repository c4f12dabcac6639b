//! The command line (clap): `drawdrop run|check` and their options.

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
}
