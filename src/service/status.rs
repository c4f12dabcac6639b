//! What `drawdrop service status` reports, and the warnings when the installed service runs
//! another binary or config than this command would install.

use super::environment::ServiceEnv;
use super::{Kind, LABEL, ServiceError, UNIT_NAME};
use std::fmt;
use std::path::{Path, PathBuf};

/// The service as the service manager and the installed file describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceStatus {
    pub kind: Kind,
    /// The plist or unit file.
    pub file: PathBuf,
    /// Whether that file exists.
    pub installed: bool,
    /// Whether the service manager knows the service (launchd: bootstrapped; systemd: the
    /// unit file is loaded).
    pub loaded: bool,
    /// Whether systemd starts it at login (`UnitFileState=enabled`); launchd: `None`.
    pub enabled: Option<bool>,
    /// Whether drawdrop is running under it now.
    pub running: bool,
    pub pid: Option<u32>,
    /// The manager's own words: launchd's `state`, systemd's `ActiveState (SubState)`.
    pub state: Option<String>,
    /// How the last run ended, such as `0`, `never exited`, `killed by signal 9`.
    pub last_exit: Option<String>,
    /// The command line in the installed file.
    pub command: Option<Vec<String>>,
    /// Things to fix, each a sentence.
    pub warnings: Vec<String>,
}

impl ServiceStatus {
    /// A status with nothing known yet but the kind and the file.
    pub(crate) fn new(kind: Kind, file: PathBuf) -> ServiceStatus {
        ServiceStatus {
            kind,
            installed: file.is_file(),
            file,
            loaded: false,
            enabled: None,
            running: false,
            pid: None,
            state: None,
            last_exit: None,
            command: None,
            warnings: Vec::new(),
        }
    }

    /// Reads the installed file's command line with `parse`, and warns when it is not this
    /// binary and config.
    pub(crate) fn read_command(
        &mut self,
        env: &ServiceEnv,
        parse: fn(&[u8]) -> Option<Vec<String>>,
    ) -> Result<(), ServiceError> {
        let text = std::fs::read(&self.file).map_err(|source| ServiceError::Io {
            what: format!("cannot read {}", self.file.display()),
            source,
        })?;
        self.command = parse(&text);
        self.warnings = mismatch_warnings(self.command.as_deref(), env);
        Ok(())
    }
}

impl ServiceStatus {
    /// One line for `drawdrop status`: `launchd agent installed, running (pid 123)`.
    pub(crate) fn summary(&self) -> String {
        let kind = match self.kind {
            Kind::Launchd => "launchd agent",
            Kind::Systemd => "systemd user unit",
        };
        if !self.installed {
            return format!("{kind} not installed (`drawdrop service install`)");
        }
        let running = match (self.running, self.pid) {
            (_, Some(pid)) => format!("running (pid {pid})"),
            (true, None) => "running".to_owned(),
            (false, None) if self.loaded => "loaded, not running".to_owned(),
            (false, None) => "not loaded".to_owned(),
        };
        let warning = if self.warnings.is_empty() {
            ""
        } else {
            "; see `drawdrop service status`"
        };
        format!("{kind} installed, {running}{warning}")
    }
}

impl fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes_no = |value: bool| if value { "yes" } else { "no" };
        match self.kind {
            Kind::Launchd => writeln!(f, "service    launchd agent {LABEL}")?,
            Kind::Systemd => writeln!(f, "service    systemd user unit {UNIT_NAME}")?,
        }
        writeln!(f, "file       {}", self.file.display())?;
        let enabled = match self.enabled {
            Some(true) => ", enabled: starts at login",
            Some(false) => ", not enabled: does not start at login",
            None => "",
        };
        writeln!(f, "installed  {}{enabled}", yes_no(self.installed))?;
        writeln!(f, "loaded     {}", yes_no(self.loaded))?;
        match self.pid {
            Some(pid) => writeln!(f, "running    yes, pid {pid}")?,
            None => writeln!(f, "running    {}", yes_no(self.running))?,
        }
        if let Some(state) = &self.state {
            writeln!(f, "state      {state}")?;
        }
        if let Some(last_exit) = &self.last_exit {
            writeln!(f, "last exit  {last_exit}")?;
        }
        if let Some(command) = &self.command {
            writeln!(f, "runs       {}", command.join(" "))?;
        }
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        Ok(())
    }
}

/// Warnings when `command` (from the installed file) is not `env.binary run --config
/// env.config`, or its program no longer exists.
pub(crate) fn mismatch_warnings(command: Option<&[String]>, env: &ServiceEnv) -> Vec<String> {
    let reinstall = "`drawdrop service install` points it at this one";
    let Some(command) = command else {
        return vec![format!(
            "cannot tell which program the installed file runs: {reinstall}"
        )];
    };
    let mut warnings = Vec::new();
    let Some(binary) = command.first() else {
        return vec![format!("the installed file runs nothing: {reinstall}")];
    };
    let binary = Path::new(binary);
    if !binary.exists() {
        warnings.push(format!(
            "the service runs {}, which does not exist any more: {reinstall}",
            binary.display()
        ));
    } else if !same_file(binary, &env.binary) {
        warnings.push(format!(
            "the service runs another drawdrop ({}), not this one ({}): {reinstall}",
            binary.display(),
            env.binary.display()
        ));
    }
    let config = command
        .iter()
        .position(|word| word == "--config")
        .and_then(|index| command.get(index + 1));
    match config {
        Some(config) if same_file(Path::new(config), &env.config) => {}
        Some(config) => warnings.push(format!(
            "the service uses the config {config}, not {} (the one this command found): pass --config {config} to look at that one, or reinstall to switch",
            env.config.display()
        )),
        None => warnings.push(format!(
            "the service runs without --config: {reinstall} and its config"
        )),
    }
    warnings
}

/// The same path, or two paths to one existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (a.canonicalize(), b.canonicalize()),
            (Ok(a), Ok(b)) if a == b
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(binary: &Path, config: &Path) -> ServiceEnv {
        ServiceEnv {
            binary: binary.to_path_buf(),
            config: config.to_path_buf(),
            home: "/home/ann".into(),
            uid: 1000,
            is_root: false,
        }
    }

    fn command(binary: &Path, config: &str) -> Vec<String> {
        vec![
            binary.display().to_string(),
            "run".into(),
            "--config".into(),
            config.into(),
        ]
    }

    #[test]
    fn the_same_binary_and_config_give_no_warning() {
        let binary = std::env::current_exe().unwrap();
        let env = env(&binary, Path::new("/etc/dd.toml"));
        assert!(mismatch_warnings(Some(&command(&binary, "/etc/dd.toml")), &env).is_empty());
    }

    #[test]
    fn another_binary_a_missing_binary_and_another_config_are_named() {
        let this = std::env::current_exe().unwrap();
        let other = Path::new("/bin/sh");
        let env = env(&this, Path::new("/etc/dd.toml"));

        let warnings = mismatch_warnings(Some(&command(other, "/etc/dd.toml")), &env);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("another drawdrop (/bin/sh)"),
            "{warnings:?}"
        );

        let gone = Path::new("/nonexistent/target/debug/drawdrop");
        let warnings = mismatch_warnings(Some(&command(gone, "/etc/dd.toml")), &env);
        assert!(
            warnings[0].contains("does not exist any more"),
            "{warnings:?}"
        );

        let warnings = mismatch_warnings(Some(&command(&this, "/srv/other.toml")), &env);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("config /srv/other.toml"),
            "{warnings:?}"
        );

        let warnings = mismatch_warnings(Some(&[this.display().to_string()]), &env);
        assert!(warnings[0].contains("without --config"), "{warnings:?}");
        assert_eq!(mismatch_warnings(None, &env).len(), 1);
    }

    #[test]
    fn the_status_reads_plainly() {
        let mut status = ServiceStatus::new(Kind::Systemd, "/nonexistent/drawdrop.service".into());
        status.loaded = true;
        status.enabled = Some(true);
        status.running = true;
        status.pid = Some(42);
        status.state = Some("active (running)".into());
        status.last_exit = Some("never exited".into());
        status.warnings.push("look out".into());
        let text = status.to_string();
        assert!(
            text.contains("systemd user unit drawdrop.service"),
            "{text}"
        );
        assert!(text.contains("installed  no, enabled"), "{text}");
        assert!(text.contains("running    yes, pid 42"), "{text}");
        assert!(text.contains("warning: look out"), "{text}");
    }
}
