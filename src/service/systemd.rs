//! The systemd user unit through `systemctl --user`: install (write, daemon-reload, enable,
//! restart), uninstall (disable --now, remove, daemon-reload), status (`systemctl show`, parsed).

use super::environment::ServiceEnv;
use super::runner::Runner;
use super::status::ServiceStatus;
use super::unit::{exec_start, render_unit};
use super::{Kind, Report, ServiceError, UNIT_NAME, remove_file, run, write_service_file};
use std::collections::BTreeMap;

pub(crate) const SYSTEMCTL: &str = "systemctl";

/// The properties status asks `systemctl show` for.
const PROPERTIES: &str = "--property=LoadState,ActiveState,SubState,MainPID,ExecMainCode,ExecMainStatus,UnitFileState,NeedDaemonReload,FragmentPath";

/// Writes the unit, enables it and (re)starts it, so that it runs now and at every login.
pub(crate) fn install(
    env: &ServiceEnv,
    runner: &dyn Runner,
    report: &mut Report,
) -> Result<(), ServiceError> {
    let unit = render_unit(env)?;
    let file = env.unit_path();
    write_service_file(&file, &unit)?;
    report.lines.push(format!("wrote {}", file.display()));
    run(runner, SYSTEMCTL, &["--user", "daemon-reload"])?;
    run(runner, SYSTEMCTL, &["--user", "enable", UNIT_NAME])?;
    // Starts it when stopped, restarts it (with the new unit) when running.
    run(runner, SYSTEMCTL, &["--user", "restart", UNIT_NAME])?;
    report.lines.push(format!(
        "enabled and started {UNIT_NAME}: drawdrop runs now and at every login"
    ));
    report.lines.push(format!(
        "its output goes to the journal (`journalctl --user -u {UNIT_NAME}`) and the outbox's logs/drawdrop.log"
    ));
    Ok(())
}

/// Stops and disables the unit and removes its file; a clear message when there is none.
pub(crate) fn uninstall(
    env: &ServiceEnv,
    runner: &dyn Runner,
    report: &mut Report,
) -> Result<(), ServiceError> {
    let file = env.unit_path();
    if !file.exists() {
        report.lines.push(format!(
            "drawdrop's systemd unit is not installed (no {}): nothing to do",
            file.display()
        ));
        return Ok(());
    }
    run(
        runner,
        SYSTEMCTL,
        &["--user", "disable", "--now", UNIT_NAME],
    )?;
    report
        .lines
        .push(format!("stopped and disabled {UNIT_NAME}"));
    remove_file(&file)?;
    report.lines.push(format!("removed {}", file.display()));
    run(runner, SYSTEMCTL, &["--user", "daemon-reload"])?;
    Ok(())
}

/// The unit as `systemctl --user show` and the installed file describe it.
pub(crate) fn status(env: &ServiceEnv, runner: &dyn Runner) -> Result<ServiceStatus, ServiceError> {
    let file = env.unit_path();
    let mut status = ServiceStatus::new(Kind::Systemd, file.clone());
    let output = run(
        runner,
        SYSTEMCTL,
        &["--user", "show", UNIT_NAME, PROPERTIES],
    )?;
    let show = parse_show(&output.stdout);
    status.loaded = show.load_state.as_deref() == Some("loaded");
    if status.loaded {
        status.enabled = Some(show.unit_file_state.as_deref() == Some("enabled"));
    }
    status.pid = show.main_pid;
    status.running = show.main_pid.is_some() || show.sub_state.as_deref() == Some("running");
    status.state = match (&show.active_state, &show.sub_state) {
        (Some(active), Some(sub)) => Some(format!("{active} ({sub})")),
        (Some(active), None) => Some(active.clone()),
        _ => None,
    };
    status.last_exit = show.last_exit();
    if status.installed {
        status.read_command(env, |unit| exec_start(std::str::from_utf8(unit).ok()?))?;
        if show.need_daemon_reload {
            status.warnings.push(format!(
                "{} changed since systemd read it: `drawdrop service install` reloads it",
                file.display()
            ));
        }
        if status.enabled == Some(false) {
            status.warnings.push(
                "the unit is not enabled, so it does not start at login: `drawdrop service install` enables it".into(),
            );
        }
        if show.active_state.as_deref() == Some("failed") {
            status.warnings.push(format!(
                "drawdrop failed: `journalctl --user -u {UNIT_NAME}` shows why"
            ));
        }
    }
    if let Some(fragment) = show.fragment_path.filter(|path| !path.is_empty())
        && std::path::Path::new(&fragment) != file
    {
        status.warnings.push(format!(
            "systemd reads {UNIT_NAME} from {fragment}, not {}: that file wins until it is removed",
            file.display()
        ));
    }
    Ok(status)
}

/// The parts of `systemctl show` output that status uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SystemdShow {
    /// `loaded`, `not-found`, `bad-setting` ...
    pub load_state: Option<String>,
    /// `active`, `inactive`, `failed`, `activating` ...
    pub active_state: Option<String>,
    /// `running`, `dead`, `auto-restart` ...
    pub sub_state: Option<String>,
    /// `MainPID`, when not 0.
    pub main_pid: Option<u32>,
    /// How the main process last ended: 1 exited, 2 killed, 3 dumped core (0: not yet).
    pub exec_main_code: Option<i32>,
    /// Its exit status or signal number.
    pub exec_main_status: Option<i32>,
    /// `enabled`, `disabled`, `linked` ...; empty when there is no unit file.
    pub unit_file_state: Option<String>,
    pub need_daemon_reload: bool,
    /// The file systemd loaded the unit from.
    pub fragment_path: Option<String>,
}

impl SystemdShow {
    /// The last exit in words, as status shows it.
    fn last_exit(&self) -> Option<String> {
        let status = self.exec_main_status.unwrap_or(0);
        match self.exec_main_code? {
            1 => Some(format!("exit status {status}")),
            2 => Some(format!("killed by signal {status}")),
            3 => Some(format!("killed by signal {status} (core dumped)")),
            _ if self.main_pid.is_some() => Some("never exited".into()),
            _ => None,
        }
    }
}

/// Reads `Key=Value` lines of `systemctl show`.
pub(crate) fn parse_show(text: &str) -> SystemdShow {
    let values: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    let text = |key: &str| values.get(key).map(|value| value.trim().to_owned());
    let number = |key: &str| {
        values
            .get(key)
            .and_then(|value| value.trim().parse::<i64>().ok())
    };
    SystemdShow {
        load_state: text("LoadState"),
        active_state: text("ActiveState"),
        sub_state: text("SubState"),
        main_pid: number("MainPID")
            .and_then(|pid| u32::try_from(pid).ok())
            .filter(|pid| *pid != 0),
        exec_main_code: number("ExecMainCode").and_then(|code| i32::try_from(code).ok()),
        exec_main_status: number("ExecMainStatus").and_then(|status| i32::try_from(status).ok()),
        unit_file_state: text("UnitFileState").filter(|state| !state.is_empty()),
        need_daemon_reload: values.get("NeedDaemonReload").map(|v| v.trim()) == Some("yes"),
        fragment_path: text("FragmentPath"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::runner::fake::FakeRunner;
    use std::path::Path;

    const RUNNING: &str = "MainPID=4242
ExecMainCode=0
ExecMainStatus=0
LoadState=loaded
ActiveState=active
SubState=running
FragmentPath=/home/ann/.config/systemd/user/drawdrop.service
UnitFileState=enabled
NeedDaemonReload=no
";

    const FAILED: &str = "MainPID=0
ExecMainCode=1
ExecMainStatus=2
LoadState=loaded
ActiveState=failed
SubState=failed
FragmentPath=/home/ann/.config/systemd/user/drawdrop.service
UnitFileState=disabled
NeedDaemonReload=yes
";

    const NOT_FOUND: &str = "MainPID=0
ExecMainCode=0
ExecMainStatus=0
LoadState=not-found
ActiveState=inactive
SubState=dead
FragmentPath=
UnitFileState=
NeedDaemonReload=no
";

    fn env(home: &Path) -> ServiceEnv {
        ServiceEnv {
            binary: std::env::current_exe().unwrap(),
            config: home.join(".config/drawdrop/config.toml"),
            home: home.to_path_buf(),
            uid: 1000,
            is_root: false,
        }
    }

    #[test]
    fn show_output_is_parsed() {
        let show = parse_show(RUNNING);
        assert_eq!(show.load_state.as_deref(), Some("loaded"));
        assert_eq!(show.active_state.as_deref(), Some("active"));
        assert_eq!(show.sub_state.as_deref(), Some("running"));
        assert_eq!(show.main_pid, Some(4242));
        assert_eq!(show.unit_file_state.as_deref(), Some("enabled"));
        assert!(!show.need_daemon_reload);
        assert_eq!(show.last_exit().as_deref(), Some("never exited"));

        let show = parse_show(FAILED);
        assert_eq!(show.main_pid, None);
        assert!(show.need_daemon_reload);
        assert_eq!(show.last_exit().as_deref(), Some("exit status 2"));

        let show = parse_show(NOT_FOUND);
        assert_eq!(show.load_state.as_deref(), Some("not-found"));
        assert_eq!(show.unit_file_state, None);
        assert_eq!(show.last_exit(), None);

        let killed = parse_show("ExecMainCode=2\nExecMainStatus=9\n");
        assert_eq!(killed.last_exit().as_deref(), Some("killed by signal 9"));
    }

    #[test]
    fn install_writes_the_unit_then_reloads_enables_and_restarts() {
        let home = tempfile::tempdir().unwrap();
        let env = env(home.path());
        let runner = FakeRunner::new();
        let mut report = Report::default();
        install(&env, &runner, &mut report).unwrap();
        assert_eq!(
            runner.calls(),
            [
                "systemctl --user daemon-reload",
                "systemctl --user enable drawdrop.service",
                "systemctl --user restart drawdrop.service",
            ]
        );
        let file = home.path().join(".config/systemd/user/drawdrop.service");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            render_unit(&env).unwrap()
        );

        // Again, over a stale unit: rewritten whole, same commands.
        std::fs::write(&file, "[Service]\nExecStart=/old/drawdrop run\n").unwrap();
        let runner = FakeRunner::new();
        install(&env, &runner, &mut Report::default()).unwrap();
        assert_eq!(runner.calls().len(), 3);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            render_unit(&env).unwrap()
        );
        let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["drawdrop.service"]);
    }

    #[test]
    fn a_failing_systemctl_stops_the_install_with_its_words() {
        let home = tempfile::tempdir().unwrap();
        let runner = FakeRunner::new().answer(
            "systemctl --user daemon-reload",
            1,
            "",
            "Failed to connect to bus: No medium found\n",
        );
        let mut report = Report::default();
        let error = install(&env(home.path()), &runner, &mut report).unwrap_err();
        assert_eq!(error.exit_code(), 1);
        let text = error.to_string();
        assert!(text.contains("systemctl --user daemon-reload"), "{text}");
        assert!(text.contains("Failed to connect to bus"), "{text}");
        assert_eq!(runner.calls().len(), 1);
        assert!(report.lines[0].starts_with("wrote "), "{:?}", report.lines);
    }

    #[test]
    fn uninstall_disables_removes_and_reloads() {
        let home = tempfile::tempdir().unwrap();
        let env = env(home.path());
        install(&env, &FakeRunner::new(), &mut Report::default()).unwrap();
        let runner = FakeRunner::new();
        let mut report = Report::default();
        uninstall(&env, &runner, &mut report).unwrap();
        assert_eq!(
            runner.calls(),
            [
                "systemctl --user disable --now drawdrop.service",
                "systemctl --user daemon-reload",
            ]
        );
        assert!(!env.unit_path().exists());

        let runner = FakeRunner::new();
        let mut report = Report::default();
        uninstall(&env, &runner, &mut report).unwrap();
        assert!(runner.calls().is_empty());
        assert!(
            report.lines[0].contains("not installed"),
            "{:?}",
            report.lines
        );
    }

    #[test]
    fn status_shows_the_unit_and_warns_about_another_binary_or_config() {
        let home = tempfile::tempdir().unwrap();
        let env = env(home.path());
        let file = env.unit_path();
        let show = RUNNING.replace(
            "/home/ann/.config/systemd/user/drawdrop.service",
            file.to_str().unwrap(),
        );
        let runner = FakeRunner::new().answer("systemctl --user show", 0, &show, "");
        install(&env, &FakeRunner::new(), &mut Report::default()).unwrap();
        let status = status(&env, &runner).unwrap();
        assert_eq!(
            runner.calls(),
            [format!(
                "systemctl --user show drawdrop.service {PROPERTIES}"
            )]
        );
        assert!(status.installed && status.loaded && status.running);
        assert_eq!(status.enabled, Some(true));
        assert_eq!(status.pid, Some(4242));
        assert_eq!(status.state.as_deref(), Some("active (running)"));
        assert!(status.warnings.is_empty(), "{:?}", status.warnings);

        let mut elsewhere = env.clone();
        elsewhere.binary = "/bin/sh".into();
        elsewhere.config = "/etc/other.toml".into();
        std::fs::write(&file, render_unit(&elsewhere).unwrap()).unwrap();
        let status = super::status(&env, &runner).unwrap();
        let warnings = status.warnings.join("\n");
        assert!(
            warnings.contains("another drawdrop (/bin/sh)"),
            "{warnings}"
        );
        assert!(warnings.contains("config /etc/other.toml"), "{warnings}");
    }

    #[test]
    fn status_of_a_failed_changed_or_absent_unit() {
        let home = tempfile::tempdir().unwrap();
        let env = env(home.path());
        install(&env, &FakeRunner::new(), &mut Report::default()).unwrap();
        let runner = FakeRunner::new().answer("systemctl --user show", 0, FAILED, "");
        let status = status(&env, &runner).unwrap();
        assert!(!status.running);
        assert_eq!(status.enabled, Some(false));
        assert_eq!(status.last_exit.as_deref(), Some("exit status 2"));
        let warnings = status.warnings.join("\n");
        assert!(
            warnings.contains("changed since systemd read it"),
            "{warnings}"
        );
        assert!(warnings.contains("not enabled"), "{warnings}");
        assert!(
            warnings.contains("journalctl --user -u drawdrop.service"),
            "{warnings}"
        );
        assert!(
            warnings.contains("systemd reads drawdrop.service from /home/ann"),
            "{warnings}"
        );

        std::fs::remove_file(env.unit_path()).unwrap();
        let runner = FakeRunner::new().answer("systemctl --user show", 0, NOT_FOUND, "");
        let status = super::status(&env, &runner).unwrap();
        assert!(!status.installed && !status.loaded && !status.running);
        assert_eq!(status.enabled, None);
        assert!(status.warnings.is_empty(), "{:?}", status.warnings);
    }
}
