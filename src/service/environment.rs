//! Who installs the service and what it runs: [`ServiceEnv`] (the binary, the config, the
//! home folder, the user), the paths that follow from it, and the checks on those paths.

use super::{LABEL, ServiceError, UNIT_NAME};
use crate::config::normalize;
use std::path::{Component, Path, PathBuf};

/// Everything the service files are rendered from; tests build it by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceEnv {
    /// The drawdrop binary the service runs: absolute, symlinks resolved.
    pub binary: PathBuf,
    /// The config file passed with `--config`: absolute (it need not exist yet).
    pub config: PathBuf,
    /// The user's home folder: where the service file and the logs go, and `HOME` for the daemon.
    pub home: PathBuf,
    /// The user's id, for launchd's `gui/<uid>` domain.
    pub uid: u32,
    /// Running as root: installing would put the service in root's account, so it is refused.
    pub is_root: bool,
}

impl ServiceEnv {
    /// This process: its own binary, the user and home folder, and `config` made absolute.
    pub(crate) fn current(config: &Path) -> Result<ServiceEnv, ServiceError> {
        let binary = std::env::current_exe()
            .and_then(|exe| exe.canonicalize())
            .map_err(|source| ServiceError::Io {
                what: "cannot find this drawdrop binary's path".into(),
                source,
            })?;
        let home = crate::config::home_dir()
            .filter(|home| home.is_absolute())
            .ok_or_else(|| {
                ServiceError::Refused(
                    "cannot find your home folder (is HOME set to an absolute path?)".into(),
                )
            })?;
        let config = std::path::absolute(config).map_err(|source| ServiceError::Io {
            what: format!("cannot make {} absolute", config.display()),
            source,
        })?;
        let (uid, is_root) = user();
        Ok(ServiceEnv {
            binary,
            config: normalize(&config),
            home,
            uid,
            is_root,
        })
    }

    /// `~/Library/LaunchAgents/com.drawdrop.agent.plist`.
    pub(crate) fn plist_path(&self) -> PathBuf {
        self.home
            .join("Library/LaunchAgents")
            .join(format!("{LABEL}.plist"))
    }

    /// `~/Library/Logs/drawdrop`: the LaunchAgent's stdout and stderr.
    pub(crate) fn log_dir(&self) -> PathBuf {
        self.home.join("Library/Logs/drawdrop")
    }

    /// `~/.config/systemd/user/drawdrop.service`. Always under `~/.config`, not
    /// `$XDG_CONFIG_HOME`: the systemd user manager may not share the shell's environment.
    pub(crate) fn unit_path(&self) -> PathBuf {
        self.home.join(".config/systemd/user").join(UNIT_NAME)
    }

    /// launchd's domain for the user's login session: `gui/<uid>`.
    pub(crate) fn domain(&self) -> String {
        format!("gui/{}", self.uid)
    }

    /// The agent within that domain: `gui/<uid>/com.drawdrop.agent`.
    pub(crate) fn target(&self) -> String {
        format!("gui/{}/{LABEL}", self.uid)
    }
}

/// The real and effective user: `(uid, euid == 0)`.
#[cfg(unix)]
fn user() -> (u32, bool) {
    // SAFETY: getuid and geteuid take no arguments, touch no memory and cannot fail.
    let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
    (uid, euid == 0)
}

#[cfg(not(unix))]
fn user() -> (u32, bool) {
    (0, false)
}

/// `path` as text fit for a service file: absolute, UTF-8, without control characters
/// (which neither a property list nor a unit file can carry).
pub(crate) fn service_path<'a>(what: &str, path: &'a Path) -> Result<&'a str, ServiceError> {
    let text = path.to_str().ok_or_else(|| {
        ServiceError::Refused(format!(
            "{what} {} is not valid UTF-8, which a service file cannot hold: rename it",
            path.display()
        ))
    })?;
    if !path.is_absolute() {
        return Err(ServiceError::Refused(format!(
            "{what} {text} is not absolute: the service manager needs absolute paths"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(ServiceError::Refused(format!(
            "{what} {} contains a control character (a newline or tab?), which a service file cannot hold: rename it",
            text.escape_debug()
        )));
    }
    Ok(text)
}

/// Why the service should not run `binary`: a cargo build folder (`cargo clean` deletes it)
/// or a temporary folder. `temp_dir` is the system's (`std::env::temp_dir()`).
pub(crate) fn binary_warning(binary: &Path, temp_dir: &Path) -> Option<String> {
    let advice = "install drawdrop with `cargo install --path .` first (then run that `drawdrop service install`) so the service keeps working after `cargo clean`";
    if in_cargo_target(binary) {
        return Some(format!(
            "{} is a cargo build in a target/ folder: {advice}",
            binary.display()
        ));
    }
    let temporary = [
        temp_dir,
        Path::new("/tmp"),
        Path::new("/private/tmp"),
        Path::new("/var/tmp"),
        Path::new("/var/folders"),
        Path::new("/private/var/folders"),
    ];
    if temporary
        .iter()
        .any(|dir| dir.components().count() > 1 && binary.starts_with(dir))
    {
        return Some(format!(
            "{} is in a temporary folder, which may be emptied: {advice}",
            binary.display()
        ));
    }
    None
}

/// `.../target/debug/...`, `.../target/release/...` or `.../target/<triple>/<profile>/...`.
fn in_cargo_target(binary: &Path) -> bool {
    let names: Vec<&str> = binary
        .components()
        .filter_map(|component| match component {
            Component::Normal(name) => name.to_str(),
            _ => None,
        })
        .collect();
    names.iter().enumerate().any(|(index, name)| {
        *name == "target"
            && names[index + 1..]
                .iter()
                .take(2)
                .any(|next| matches!(*next, "debug" | "release"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> ServiceEnv {
        ServiceEnv {
            binary: "/Users/ann/.cargo/bin/drawdrop".into(),
            config: "/Users/ann/Library/Application Support/drawdrop/config.toml".into(),
            home: "/Users/ann".into(),
            uid: 501,
            is_root: false,
        }
    }

    #[test]
    fn the_paths_follow_from_the_home_folder_and_the_user() {
        let env = env();
        assert_eq!(
            env.plist_path(),
            Path::new("/Users/ann/Library/LaunchAgents/com.drawdrop.agent.plist")
        );
        assert_eq!(env.log_dir(), Path::new("/Users/ann/Library/Logs/drawdrop"));
        assert_eq!(
            env.unit_path(),
            Path::new("/Users/ann/.config/systemd/user/drawdrop.service")
        );
        assert_eq!(env.domain(), "gui/501");
        assert_eq!(env.target(), "gui/501/com.drawdrop.agent");
    }

    #[test]
    fn the_current_environment_is_absolute() {
        let env = ServiceEnv::current(Path::new("some/config.toml")).unwrap();
        assert!(env.binary.is_absolute());
        assert!(env.config.is_absolute());
        assert!(env.config.ends_with("some/config.toml"));
        assert!(env.home.is_absolute());
    }

    #[test]
    fn service_paths_must_be_absolute_text_without_control_characters() {
        assert_eq!(
            service_path("x", Path::new("/a b/ü&<")).unwrap(),
            "/a b/ü&<"
        );
        for bad in ["relative/path", "/with\nnewline", "/with\ttab"] {
            let error = service_path("the config", Path::new(bad)).unwrap_err();
            assert!(matches!(error, ServiceError::Refused(_)), "{bad}: {error}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_path_that_is_not_utf8_is_refused() {
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xff"));
        let error = service_path("the config", path).unwrap_err();
        assert!(error.to_string().contains("UTF-8"), "{error}");
    }

    #[test]
    fn cargo_builds_and_temporary_folders_are_warned_about() {
        let temp = Path::new("/var/folders/xy/T");
        for binary in [
            "/Users/ann/src/drawdrop/target/release/drawdrop",
            "/Users/ann/src/drawdrop/target/debug/drawdrop",
            "/Users/ann/src/drawdrop/target/aarch64-apple-darwin/release/drawdrop",
        ] {
            let warning = binary_warning(Path::new(binary), temp).unwrap();
            assert!(warning.contains("cargo install --path ."), "{warning}");
            assert!(warning.contains("target/"), "{warning}");
        }
        for binary in [
            "/tmp/drawdrop",
            "/var/folders/xy/T/drawdrop",
            "/scratch/t/drawdrop",
        ] {
            let warning = binary_warning(Path::new(binary), Path::new("/scratch/t")).unwrap();
            assert!(warning.contains("temporary"), "{warning}");
        }
        for binary in [
            "/Users/ann/.cargo/bin/drawdrop",
            "/opt/homebrew/bin/drawdrop",
            "/Users/ann/target/drawdrop",
        ] {
            assert_eq!(binary_warning(Path::new(binary), temp), None, "{binary}");
        }
    }
}
