//! `drawdrop check`: is the config valid, are the folders usable, does the server answer?
//! Prints a readable report; exit 0 when all is well, 1 when something needs fixing,
//! 2 when the config itself cannot be read.

use super::{EXIT_START, load_config, profile_check, runtime};
use crate::backends::{self, Probe};
use crate::config::{Config, ConfigSource};
use std::path::Path;
use std::process::ExitCode;

pub(super) fn check(flag: Option<&Path>) -> ExitCode {
    let (located, config) = match load_config(flag) {
        Ok(loaded) => loaded,
        Err(error) => {
            let mut report = Report::default();
            report.problem("config", error.to_string());
            println!(
                "The config file cannot be read, so nothing else can be checked: `drawdrop run` \
                 would not start (a running daemon keeps its last good settings)."
            );
            return ExitCode::from(EXIT_START);
        }
    };
    let mut report = Report::default();
    let source = match located.source {
        ConfigSource::Flag => "from --config",
        ConfigSource::Env => "from $DRAWDROP_CONFIG",
        ConfigSource::Default if located.path.exists() => "the default location",
        ConfigSource::Default => "not there: using the built-in defaults",
    };
    report.ok("config", format!("{} ({source})", located.path.display()));
    let names: Vec<&str> = config.profiles.keys().map(String::as_str).collect();
    report.ok(
        "profiles",
        format!(
            "{} (default for the inbox itself: {})",
            names.join(", "),
            config.default_profile
        ),
    );
    for (name, error) in &config.broken {
        report.problem(
            "profile",
            format!("{name} is broken; its files wait in the inbox until it is fixed:\n{error}"),
        );
    }
    report.folder("inbox", &config.inbox);
    report.folder("outbox", &config.outbox);
    match crate::image::heic::describe_support() {
        Ok(line) => report.ok("heic", line),
        Err(line) => report.note("heic", line),
    }
    if cfg!(target_os = "macos")
        && let Some(home) = crate::config::home_dir()
    {
        for folder in [&config.inbox, &config.outbox] {
            if let Some(note) = crate::service::privacy_note(folder, &home) {
                report.note("privacy", note);
            }
        }
    }
    report.servers(&config);
    report.finish()
}

#[derive(Default)]
struct Report {
    problems: usize,
}

impl Report {
    fn ok(&mut self, what: &str, detail: String) {
        println!("{what:<9} ok       {detail}");
    }

    /// Something to know that is not (yet) a problem.
    fn note(&mut self, what: &str, detail: String) {
        println!("{what:<9} note     {detail}");
    }

    /// A problem; a detail of several lines (one per spot in a file) is indented below.
    fn problem(&mut self, what: &str, detail: String) {
        self.problems += 1;
        let mut lines = detail.lines();
        println!("{what:<9} PROBLEM  {}", lines.next().unwrap_or(""));
        for line in lines {
            println!("{:<18}{line}", "");
        }
    }

    fn folder(&mut self, what: &str, path: &Path) {
        match folder_state(path) {
            Ok(state) => self.ok(what, format!("{} ({state})", path.display())),
            Err(problem) => self.problem(what, format!("{}: {problem}", path.display())),
        }
    }

    /// Every server: does it answer, and would it refuse a name in a profile it takes?
    fn servers(&mut self, config: &Config) {
        let runtime = match runtime() {
            Ok(runtime) => runtime,
            Err(error) => return self.problem("server", error.to_string()),
        };
        for (index, server) in config.servers.iter().enumerate() {
            let api = server.api.name();
            let what = if config.servers.len() == 1 {
                format!("{} ({api})", server.url)
            } else {
                format!("{}: {} ({api})", server.name, server.url)
            };
            let backend = match backends::for_server(server) {
                Ok(backend) => backend,
                Err(error) => {
                    self.problem("server", format!("{what}: {error}"));
                    continue;
                }
            };
            let probe = runtime.block_on(backend.probe());
            let answers = matches!(probe, Probe::Up(_));
            match probe {
                Probe::Up(about) => self.ok("server", format!("{what} answers{about}")),
                Probe::Down(reason) => self.problem(
                    "server",
                    format!(
                        "{what} does not answer: {reason}. Files wait in the inbox until it does."
                    ),
                ),
            }
            if let Some(takes) = profile_check::takes(config, index) {
                self.ok("server", takes);
            }
            for finding in
                runtime.block_on(profile_check::findings(config, index, &*backend, answers))
            {
                self.problem("profile", finding);
            }
        }
    }

    fn finish(self) -> ExitCode {
        if self.problems == 0 {
            println!("all is well");
            ExitCode::SUCCESS
        } else {
            println!(
                "{} problem{} to fix",
                self.problems,
                if self.problems == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}

/// Whether drawdrop can use (or create) a folder.
fn folder_state(path: &Path) -> Result<&'static str, String> {
    if path.is_dir() {
        let probe = path.join(format!(".drawdrop-check-{}", std::process::id()));
        return match std::fs::write(&probe, b"") {
            Ok(()) => {
                let _ = std::fs::remove_file(&probe);
                Ok("writable")
            }
            Err(error) => Err(format!("not writable ({error})")),
        };
    }
    if path.exists() {
        return Err("exists but is not a folder".into());
    }
    if path.ancestors().skip(1).any(Path::is_dir) {
        Ok("missing: `drawdrop run` creates it")
    } else {
        Err("cannot be created".into())
    }
}
