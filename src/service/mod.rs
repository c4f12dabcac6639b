//! The login service: a launchd LaunchAgent on macOS, a systemd user unit on Linux, each
//! running `drawdrop run --config <absolute path>` at login and again when it fails.
//!
//! Rendering is pure (a function of [`ServiceEnv`]); installing, removing and inspecting go
//! through [`Runner`], the one seam to `launchctl` and `systemctl`, so tests record the exact
//! commands. Files are written whole (`durable::write_whole`), so a reinstall never leaves a
//! half-written plist or unit behind.
//!
//! - `environment`: [`ServiceEnv`], the paths it implies, path checks, [`binary_warning`]
//! - `plist` and `launchd`: the LaunchAgent and `launchctl`
//! - `unit` and `systemd`: the user unit and `systemctl --user`
//! - `status`: [`ServiceStatus`] and the "another binary or config" warnings
//! - `privacy`: the Full Disk Access note for ~/Desktop, ~/Documents, ~/Downloads
//! - `runner`: [`Runner`] and the real [`SystemRunner`]

mod environment;
mod launchd;
mod plist;
mod privacy;
mod runner;
mod status;
mod systemd;
mod unit;

pub(crate) use environment::{ServiceEnv, binary_warning};
pub(crate) use privacy::{privacy_note, privacy_note_for};
pub(crate) use runner::{RunOutput, Runner, SystemRunner};
pub(crate) use status::ServiceStatus;

use std::io;
use std::path::Path;

/// The LaunchAgent's label.
pub(crate) const LABEL: &str = "com.drawdrop.agent";
/// The systemd user unit's name.
pub(crate) const UNIT_NAME: &str = "drawdrop.service";

/// Which service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// macOS: a LaunchAgent in `~/Library/LaunchAgents`, `launchctl`.
    Launchd,
    /// Linux: a user unit in `~/.config/systemd/user`, `systemctl --user`.
    Systemd,
}

impl Kind {
    /// The service manager of the system this runs on.
    pub(crate) fn host() -> Kind {
        if cfg!(target_os = "macos") {
            Kind::Launchd
        } else {
            Kind::Systemd
        }
    }

    /// `--launchd` or `--systemd` as given, else the host's.
    pub(crate) fn chosen(launchd: bool, systemd: bool) -> Kind {
        match (launchd, systemd) {
            (true, _) => Kind::Launchd,
            (_, true) => Kind::Systemd,
            _ => Kind::host(),
        }
    }

    /// The file the service lives in.
    #[cfg(test)]
    pub(crate) fn file(self, env: &ServiceEnv) -> std::path::PathBuf {
        match self {
            Kind::Launchd => env.plist_path(),
            Kind::Systemd => env.unit_path(),
        }
    }
}

/// Why a service command did not do its job.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServiceError {
    /// Not attempted: root, the other system's service manager, a path no service file can
    /// hold. Exit status 2.
    #[error("{0}")]
    Refused(String),
    /// `launchctl` or `systemctl` failed (or could not be run). Exit status 1.
    #[error("`{command}` failed: {message}")]
    Manager { command: String, message: String },
    /// A file could not be written, read or removed. Exit status 1.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl ServiceError {
    /// The process exit status for this error.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            ServiceError::Refused(_) => 2,
            ServiceError::Manager { .. } | ServiceError::Io { .. } => 1,
        }
    }
}

/// What an install or uninstall did, line by line, and what the user should know.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
}

/// Refuses `kind` on a system that does not have it (only `print` works for either).
pub(crate) fn check_host(kind: Kind) -> Result<(), ServiceError> {
    check_host_with(kind, Kind::host())
}

fn check_host_with(kind: Kind, host: Kind) -> Result<(), ServiceError> {
    match (kind, host) {
        (Kind::Launchd, Kind::Systemd) => Err(ServiceError::Refused(
            "launchd is macOS's service manager: here drawdrop's service is a systemd user unit (--systemd, the default); `drawdrop service print --launchd` shows the LaunchAgent".into(),
        )),
        (Kind::Systemd, Kind::Launchd) => Err(ServiceError::Refused(
            "systemd is not macOS's service manager: here drawdrop's service is a LaunchAgent (--launchd, the default); `drawdrop service print --systemd` shows the unit".into(),
        )),
        _ => Ok(()),
    }
}

/// The plist or unit `install` would write, for any kind on any system.
pub(crate) fn render(kind: Kind, env: &ServiceEnv) -> Result<String, ServiceError> {
    match kind {
        Kind::Launchd => plist::render_plist(env),
        Kind::Systemd => unit::render_unit(env),
    }
}

/// Writes the service file and (re)loads the service; running it again rewrites the file
/// and reloads. Refused as root.
pub(crate) fn install(
    kind: Kind,
    env: &ServiceEnv,
    runner: &dyn Runner,
    report: &mut Report,
) -> Result<(), ServiceError> {
    refuse_root(env, "install the service")?;
    match kind {
        Kind::Launchd => launchd::install(env, runner, report),
        Kind::Systemd => systemd::install(env, runner, report),
    }
}

/// Stops and unloads the service and removes its file; only a message when it is not
/// installed. Refused as root.
pub(crate) fn uninstall(
    kind: Kind,
    env: &ServiceEnv,
    runner: &dyn Runner,
    report: &mut Report,
) -> Result<(), ServiceError> {
    refuse_root(env, "uninstall the service")?;
    match kind {
        Kind::Launchd => launchd::uninstall(env, runner, report),
        Kind::Systemd => systemd::uninstall(env, runner, report),
    }
}

/// Whether the service is installed, loaded and running, its pid and last exit, and
/// warnings when it runs another binary or config than `env`'s. Refused as root.
pub(crate) fn status(
    kind: Kind,
    env: &ServiceEnv,
    runner: &dyn Runner,
) -> Result<ServiceStatus, ServiceError> {
    refuse_root(env, "look at the service")?;
    match kind {
        Kind::Launchd => launchd::status(env, runner),
        Kind::Systemd => systemd::status(env, runner),
    }
}

/// What `install` should tell the user before it starts: a binary in a cargo `target/` or a
/// temporary folder, a config file that does not exist yet, and (for launchd) every folder
/// in ~/Desktop, ~/Documents or ~/Downloads, which needs Full Disk Access.
pub(crate) fn install_warnings(kind: Kind, env: &ServiceEnv, folders: &[&Path]) -> Vec<String> {
    let mut warnings = Vec::new();
    warnings.extend(binary_warning(&env.binary, &std::env::temp_dir()));
    if !env.config.exists() {
        warnings.push(format!(
            "there is no config file at {} yet: drawdrop runs with the built-in defaults until you write one (`drawdrop init` does)",
            env.config.display()
        ));
    }
    if kind == Kind::Launchd {
        for folder in folders {
            warnings.extend(privacy_note_for(folder, &env.home, Some(&env.binary)));
        }
    }
    warnings
}

fn refuse_root(env: &ServiceEnv, action: &str) -> Result<(), ServiceError> {
    if env.is_root {
        return Err(ServiceError::Refused(format!(
            "refusing to {action} as root: drawdrop's service is yours, started at your login, and root's would be another; run this without sudo"
        )));
    }
    Ok(())
}

/// Runs a command through the seam; only failing to start it is an error here.
fn call(runner: &dyn Runner, program: &str, args: &[String]) -> Result<RunOutput, ServiceError> {
    runner
        .run(program, args)
        .map_err(|error| ServiceError::Manager {
            command: command_line(program, args),
            message: format!("cannot run {program}: {error}"),
        })
}

/// Runs a command that must succeed.
fn run(runner: &dyn Runner, program: &str, args: &[&str]) -> Result<RunOutput, ServiceError> {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let output = call(runner, program, &args)?;
    if output.success() {
        Ok(output)
    } else {
        Err(failed(program, &args, &output))
    }
}

/// The error for a command that ran and failed, in its own words.
fn failed(program: &str, args: &[String], output: &RunOutput) -> ServiceError {
    let status = match output.code {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_owned(),
    };
    let message = output.message();
    ServiceError::Manager {
        command: command_line(program, args),
        message: if message.is_empty() {
            status
        } else {
            format!("{status}: {message}")
        },
    }
}

fn command_line(program: &str, args: &[String]) -> String {
    std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes a plist or unit whole (temporary sibling, then rename), readable by all and
/// writable by the owner only: launchd ignores an agent others may change.
fn write_service_file(path: &Path, text: &str) -> Result<(), ServiceError> {
    let io_error = |source| ServiceError::Io {
        what: format!("cannot write {}", path.display()),
        source,
    };
    crate::jobs::durable::write_whole(path, text.as_bytes()).map_err(io_error)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).map_err(io_error)?;
    }
    Ok(())
}

/// Removes a file durably; `false` when there was none.
fn remove_file(path: &Path) -> Result<bool, ServiceError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            if let Some(parent) = path.parent() {
                let _ = crate::jobs::durable::sync_dir(parent);
            }
            Ok(true)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ServiceError::Io {
            what: format!("cannot remove {}", path.display()),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::runner::fake::FakeRunner;
    use super::*;

    fn env(home: &Path) -> ServiceEnv {
        ServiceEnv {
            binary: "/Users/ann/.cargo/bin/drawdrop".into(),
            config: home.join("config.toml"),
            home: home.to_path_buf(),
            uid: 501,
            is_root: false,
        }
    }

    #[test]
    fn root_is_refused_before_anything_runs() {
        let home = tempfile::tempdir().unwrap();
        let mut env = env(home.path());
        env.is_root = true;
        for kind in [Kind::Launchd, Kind::Systemd] {
            let runner = FakeRunner::new();
            let error = install(kind, &env, &runner, &mut Report::default()).unwrap_err();
            assert!(error.to_string().contains("as root"), "{error}");
            assert_eq!(error.exit_code(), 2);
            let error = uninstall(kind, &env, &runner, &mut Report::default()).unwrap_err();
            assert_eq!(error.exit_code(), 2);
            assert_eq!(status(kind, &env, &runner).unwrap_err().exit_code(), 2);
            assert!(runner.calls().is_empty());
            assert!(!kind.file(&env).exists());
            assert!(render(kind, &env).is_ok(), "print works as root");
        }
    }

    #[test]
    fn each_system_refuses_the_other_ones_manager() {
        assert!(check_host_with(Kind::Launchd, Kind::Launchd).is_ok());
        assert!(check_host_with(Kind::Systemd, Kind::Systemd).is_ok());
        let error = check_host_with(Kind::Launchd, Kind::Systemd).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("print --launchd"), "{error}");
        let error = check_host_with(Kind::Systemd, Kind::Launchd).unwrap_err();
        assert!(error.to_string().contains("print --systemd"), "{error}");
        assert!(check_host(Kind::host()).is_ok());
    }

    #[test]
    fn the_kind_follows_the_flags_else_the_host() {
        assert_eq!(Kind::chosen(true, false), Kind::Launchd);
        assert_eq!(Kind::chosen(false, true), Kind::Systemd);
        let host = if cfg!(target_os = "macos") {
            Kind::Launchd
        } else {
            Kind::Systemd
        };
        assert_eq!(Kind::chosen(false, false), host);
    }

    #[test]
    fn install_warns_about_a_missing_config_and_protected_folders() {
        let home = tempfile::tempdir().unwrap();
        let env = env(home.path());
        let inbox = home.path().join("Desktop/In");
        let outbox = home.path().join("DrawDrop/Out");
        let warnings = install_warnings(Kind::Launchd, &env, &[&inbox, &outbox]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("drawdrop init"), "{warnings:?}");
        assert!(warnings[1].contains("Full Disk Access"), "{warnings:?}");
        assert!(
            warnings[1].contains("add /Users/ann/.cargo/bin/drawdrop"),
            "{warnings:?}"
        );

        std::fs::write(&env.config, "").unwrap();
        assert_eq!(
            install_warnings(Kind::Launchd, &env, &[&outbox]),
            Vec::<String>::new()
        );
        assert_eq!(
            install_warnings(Kind::Systemd, &env, &[&inbox]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_failure_to_start_the_tool_names_it() {
        struct Missing;
        impl Runner for Missing {
            fn run(&self, _: &str, _: &[String]) -> io::Result<RunOutput> {
                Err(io::Error::from(io::ErrorKind::NotFound))
            }
        }
        let home = tempfile::tempdir().unwrap();
        let error = status(Kind::Systemd, &env(home.path()), &Missing).unwrap_err();
        assert_eq!(error.exit_code(), 1);
        assert!(
            error.to_string().contains("cannot run systemctl"),
            "{error}"
        );
    }
}
