//! The commands behind the CLI, each returning the process exit status.

mod check;
mod gallery;
mod init;
mod job_log;
mod profile_check;
mod run;
mod service;
mod status;

use crate::cli::{Cli, Command};
use crate::config::{Config, ConfigError, Located, locate};
use crate::report::logging::LogHandle;
use std::process::ExitCode;

/// Exit status for a config or start-up error.
pub(crate) const EXIT_START: u8 = 2;

/// Runs the command the user asked for.
pub(crate) fn execute(cli: Cli, logs: LogHandle) -> ExitCode {
    let flag = cli.config.as_deref();
    if !matches!(cli.command, Command::Run { .. }) {
        end_quietly_when_the_reader_goes();
    }
    match cli.command {
        Command::Run { once } => run::run(flag, once, logs),
        Command::Check => check::check(flag),
        Command::Init { comfyui } => init::init(flag, comfyui),
        Command::Status => status::status(flag),
        Command::Gallery { open } => gallery::gallery(flag, open),
        Command::Service {
            action,
            launchd,
            systemd,
        } => service::service(flag, action, launchd, systemd),
    }
}

/// A report piped into `head` ends when its reader does, as other command-line tools do,
/// instead of panicking on a closed stdout. Not for `run`, whose sockets must never raise
/// SIGPIPE.
fn end_quietly_when_the_reader_goes() {
    #[cfg(unix)]
    // SAFETY: sets the process-wide disposition of one signal to a valid value; nothing in
    // these commands relies on SIGPIPE being ignored.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Finds and loads the config, or reports why not.
fn load_config(flag: Option<&std::path::Path>) -> Result<(Located, Config), ConfigError> {
    let located = locate(flag)?;
    let config = Config::load(&located)?;
    Ok((located, config))
}

/// A multi-threaded runtime sized for a background daemon.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}
