//! The command line (clap): `drawdrop run|check|init|status|gallery|service` and their options, and the help's
//! footer, written for this machine when help is asked for: the config file in use, where
//! `run` writes, the log variables and the exit codes.

use crate::config::{CONFIG_ENV, Config, ConfigSource, Located, locate};
use crate::jobs::outbox;
use crate::report::logging::{FILTER_VARIABLE, STDERR_FILTER_VARIABLE};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(
    name = "drawdrop",
    version,
    about = "Drop a picture into a folder, get it back through img2img (Draw Things or AUTOMATIC1111)."
)]
pub(crate) struct Cli {
    /// The config file to use.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Watch the inbox and process every picture dropped into it (what the login service runs).
    Run {
        /// Process what is in the inbox now, then exit: 0 if every file succeeded, 1 if any
        /// failed, 2 on a config or start-up error. A server that does not answer is waited
        /// for `timeout_s`, or at most 60 s while it has not answered once since the start;
        /// then it exits with 2 and the files stay in the inbox untouched.
        #[arg(long)]
        once: bool,
    },
    /// Validate the config and profiles, check the folders and ask the server if it answers.
    Check,
    /// Write a commented config and a `default` profile (never overwriting), create the folders.
    Init {
        /// Set up for ComfyUI: the server at port 8188 and a `default` profile running an
        /// example img2img workflow (profiles/default.json).
        #[arg(long)]
        comfyui: bool,
    },
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
pub(crate) enum ServiceAction {
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

/// Parses the command line (exiting on `--help` or a mistake, as clap does). Help shows the
/// config file in use and where `run` writes, worked out now for this system.
pub(crate) fn parse() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    let mut command = Cli::command();
    if wants_help(&args) {
        let help = Help::now(config_flag(&args).as_deref());
        command = command
            .after_help(help.overview())
            .mut_subcommand("run", |run| run.after_help(help.run()))
            .mut_subcommand("check", |check| check.after_help(help.check()))
            .mut_subcommand("status", |status| status.after_help(help.status()));
    }
    let mut matches = command.get_matches_from(args);
    Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|error| error.exit())
}

/// `-h`, `--help` or `drawdrop help ...`: only then is the help's footer worked out.
fn wants_help(args: &[OsString]) -> bool {
    let mut args = args.iter().skip(1);
    let mut first_word = true;
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" || (first_word && arg == "help") {
            return true;
        }
        if arg == "--config" {
            args.next();
        } else if !arg.to_string_lossy().starts_with('-') {
            first_word = false;
        }
    }
    false
}

/// The value of `--config FILE` or `--config=FILE`, if given.
fn config_flag(args: &[OsString]) -> Option<PathBuf> {
    let mut args = args.iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(value) = arg.to_str().and_then(|arg| arg.strip_prefix("--config=")) {
            return Some(PathBuf::from(value));
        }
    }
    None
}

/// What the help says about this system.
struct Help {
    /// `Config file: ... (how it was chosen)`.
    config: String,
    /// The outbox of that config, or why it is not known.
    outbox: String,
}

impl Help {
    fn now(flag: Option<&Path>) -> Help {
        match locate(flag) {
            Ok(located) => Help {
                config: describe_config(&located),
                outbox: match Config::load(&located) {
                    Ok(config) => config.outbox.display().to_string(),
                    Err(error) => {
                        format!("the `outbox` of the config file (it cannot be read now: {error})")
                    }
                },
            },
            Err(error) => Help {
                config: format!("Config file: none found ({error})"),
                outbox: "the `outbox` of the config file".to_owned(),
            },
        }
    }

    fn overview(&self) -> String {
        format!(
            "{}\n\n{}\n\n{}\n\nExit codes:\n{RUN_ONCE_EXITS}\n{RUN_EXITS}\n{CHECK_EXITS}\n{STATUS_EXITS}\n{OTHER_EXITS}",
            self.config,
            self.writes(),
            log_variables()
        )
    }

    fn run(&self) -> String {
        format!(
            "{}\n\n{}\n\n{}\n\nExit codes:\n{RUN_ONCE_EXITS}\n{RUN_EXITS}",
            self.config,
            self.writes(),
            log_variables()
        )
    }

    fn check(&self) -> String {
        format!("{}\n\nExit codes:\n{CHECK_EXITS}", self.config)
    }

    fn status(&self) -> String {
        format!("{}\n\nExit codes:\n{STATUS_EXITS}", self.config)
    }

    /// Where `run` puts results, originals, failures and logs.
    fn writes(&self) -> String {
        format!(
            "`drawdrop run` writes into the outbox, {outbox}:\n  \
             results     <outbox>/<path in the inbox>.png\n  \
             originals   <outbox>/{originals}/ (after = \"archive\")\n  \
             failed      <outbox>/{failed}/, each with <name>.error.txt saying why\n  \
             logs        <outbox>/{logs}/drawdrop.log (a file a day, a week kept) and <outbox>/{logs}/jobs.jsonl\n\
             and logs to stderr too.",
            outbox = self.outbox,
            originals = outbox::ORIGINALS,
            failed = outbox::FAILED,
            logs = outbox::LOGS,
        )
    }
}

fn describe_config(located: &Located) -> String {
    let how = match located.source {
        ConfigSource::Flag => "from --config".to_owned(),
        ConfigSource::Env => format!("from ${CONFIG_ENV}; --config FILE overrides it"),
        ConfigSource::Default => {
            format!("the default here; --config FILE or ${CONFIG_ENV} choose another")
        }
    };
    let missing = match located.source {
        _ if located.path.exists() => "",
        ConfigSource::Default => {
            "\n  (no file there yet: `drawdrop init` writes a commented one; until then the built-in defaults apply)"
        }
        ConfigSource::Flag => {
            "\n  (no file there yet: `drawdrop init --config FILE` writes a commented one; `run` needs it)"
        }
        ConfigSource::Env => {
            "\n  (no file there yet: `drawdrop init` writes a commented one there; `run` needs it)"
        }
    };
    format!("Config file: {} ({how}){missing}", located.path.display())
}

fn log_variables() -> String {
    format!(
        "Log variables:\n  \
         {FILTER_VARIABLE}=debug        what is logged, to stderr and drawdrop.log (default: info; a tracing filter)\n  \
         {STDERR_FILTER_VARIABLE}=warn  narrows what reaches stderr only (the login service sets it; drawdrop.log keeps every line)"
    )
}

const RUN_ONCE_EXITS: &str = "  run --once  0 every file done, 1 some failed, 2 a config or start-up error, no server answered, or files wait for a broken profile (the files stay in the inbox)";
const RUN_EXITS: &str = "  run         0 stopped by SIGTERM or Ctrl-C, 2 a config or start-up error (another drawdrop watching the same inbox is one)";
const CHECK_EXITS: &str = "  check       0 all is well, 1 something to fix (the report says what), 2 the config cannot be read";
const STATUS_EXITS: &str = "  status      0 the report was printed, 2 the config cannot be read";
const OTHER_EXITS: &str = "  init        0 written (existing files are never overwritten), 2 cannot write\n  \
                           service     0 done, 1 launchctl, systemctl or a file failed, 2 refused (another system, or run as root)";

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_config_flag_is_found_in_either_spelling() {
        assert_eq!(
            config_flag(&args(&["drawdrop", "--config", "a.toml", "run", "--help"])),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            config_flag(&args(&["drawdrop", "check", "--config=b.toml", "-h"])),
            Some(PathBuf::from("b.toml"))
        );
        assert_eq!(config_flag(&args(&["drawdrop", "--help"])), None);
    }

    #[test]
    fn help_is_worked_out_only_when_asked_for() {
        assert!(wants_help(&args(&["drawdrop", "--help"])));
        assert!(wants_help(&args(&["drawdrop", "run", "-h"])));
        assert!(wants_help(&args(&["drawdrop", "help", "run"])));
        assert!(!wants_help(&args(&["drawdrop", "run", "--once"])));
        assert!(wants_help(&args(&[
            "drawdrop", "--config", "c.toml", "help"
        ])));
        assert!(!wants_help(&args(&["drawdrop", "--config", "help", "run"])));
        assert!(!wants_help(&args(&["drawdrop", "run", "help"])));
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
