//! The LaunchAgent through `launchctl`: install (bootout, write, enable, bootstrap,
//! kickstart), uninstall (bootout, remove), status (`launchctl print`, parsed).
//!
//! Only the modern domain commands are used (`bootstrap`/`bootout gui/<uid>`), never the
//! legacy `load`/`unload`.

use super::environment::ServiceEnv;
use super::plist::{program_arguments, render_plist};
use super::runner::{RunOutput, Runner};
use super::status::ServiceStatus;
use super::{Kind, Report, ServiceError, remove_file, run, write_service_file};
use std::time::Duration;

/// `launchctl`'s fixed place on every Mac.
pub(crate) const LAUNCHCTL: &str = "/bin/launchctl";

/// How long to wait for a booted-out agent to leave the domain (drawdrop needs up to 10 s to
/// stop; `ExitTimeOut` is 15 s).
const GONE_POLLS: u32 = 80;
const GONE_PAUSE: Duration = Duration::from_millis(250);
/// `bootstrap` right after `bootout` may fail with EIO while the label is still draining.
const BOOTSTRAP_ATTEMPTS: u32 = 3;
const BOOTSTRAP_PAUSE: Duration = Duration::from_secs(1);

/// Writes the plist and (re)loads the agent, so that it runs now and at every login.
pub(crate) fn install(
    env: &ServiceEnv,
    runner: &dyn Runner,
    report: &mut Report,
) -> Result<(), ServiceError> {
    let plist = render_plist(env)?;
    let file = env.plist_path();
    if is_loaded(env, runner)? {
        boot_out(env, runner)?;
        report
            .lines
            .push(format!("unloaded the old agent ({})", env.target()));
    }
    let log_dir = env.log_dir();
    crate::jobs::durable::create_dir_all(&log_dir).map_err(|source| ServiceError::Io {
        what: format!("cannot create the log folder {}", log_dir.display()),
        source,
    })?;
    write_service_file(&file, &plist)?;
    report.lines.push(format!("wrote {}", file.display()));
    // A `launchctl disable` from earlier would make bootstrap fail; enabling is harmless.
    run(runner, LAUNCHCTL, &["enable", &env.target()])?;
    bootstrap(env, runner)?;
    kickstart(env, runner, report)?;
    report.lines.push(format!(
        "loaded {} into {}: drawdrop runs now and at every login",
        super::LABEL,
        env.domain()
    ));
    report.lines.push(format!(
        "its output goes to {}/drawdrop.err.log (and the outbox's logs/drawdrop.log)",
        log_dir.display()
    ));
    Ok(())
}

/// Stops and unloads the agent and removes its plist; a clear message when there is none.
pub(crate) fn uninstall(
    env: &ServiceEnv,
    runner: &dyn Runner,
    report: &mut Report,
) -> Result<(), ServiceError> {
    let file = env.plist_path();
    let loaded = is_loaded(env, runner)?;
    if loaded {
        boot_out(env, runner)?;
        report
            .lines
            .push(format!("stopped and unloaded {}", env.target()));
    }
    let existed = remove_file(&file)?;
    if existed {
        report.lines.push(format!("removed {}", file.display()));
    }
    if !loaded && !existed {
        report.lines.push(format!(
            "drawdrop's LaunchAgent is not installed (no {}, nothing loaded as {}): nothing to do",
            file.display(),
            env.target()
        ));
    }
    Ok(())
}

/// The agent as `launchctl print` and the installed plist describe it.
pub(crate) fn status(env: &ServiceEnv, runner: &dyn Runner) -> Result<ServiceStatus, ServiceError> {
    let mut status = ServiceStatus::new(Kind::Launchd, env.plist_path());
    let output = print(env, runner)?;
    status.loaded = output.is_some();
    let loaded = output.and_then(|output| parse_print(&output.stdout));
    if let Some(loaded) = &loaded {
        status.pid = loaded.pid;
        status.running = loaded.pid.is_some() || loaded.state.as_deref() == Some("running");
        status.state.clone_from(&loaded.state);
        status.last_exit = match (&loaded.last_exit, &loaded.last_signal) {
            (_, Some(signal)) => Some(format!("ended by a signal ({signal})")),
            (Some(code), None) if code.parse::<i64>().is_ok() => {
                Some(format!("exit status {code}"))
            }
            (Some(code), None) => Some(code.trim_matches(['(', ')']).to_owned()),
            (None, None) => None,
        };
    }
    if status.installed {
        status.read_command(env, program_arguments)?;
        if let (Some(loaded), Some(command)) = (&loaded, &status.command)
            && !loaded.arguments.is_empty()
            && loaded.arguments != *command
        {
            status.warnings.push(format!(
                "launchd runs {} but the plist says {}: `drawdrop service install` reloads it",
                loaded.arguments.join(" "),
                command.join(" ")
            ));
        }
    } else if status.loaded {
        status.warnings.push(format!(
            "{} is loaded but its plist is gone: `drawdrop service uninstall` unloads it, `drawdrop service install` puts it back",
            env.target()
        ));
    }
    Ok(status)
}

/// Whether the agent is in the user's domain now.
fn is_loaded(env: &ServiceEnv, runner: &dyn Runner) -> Result<bool, ServiceError> {
    Ok(print(env, runner)?.is_some())
}

/// `launchctl print gui/<uid>/<label>`: `None` when the agent is not loaded.
fn print(env: &ServiceEnv, runner: &dyn Runner) -> Result<Option<RunOutput>, ServiceError> {
    let args = ["print".to_owned(), env.target()];
    let output = super::call(runner, LAUNCHCTL, &args)?;
    if output.success() {
        Ok(Some(output))
    } else if not_loaded(&output) {
        Ok(None)
    } else {
        let mut error = super::failed(LAUNCHCTL, &args, &output);
        if output.mentions("domain")
            && let ServiceError::Manager { message, .. } = &mut error
        {
            message.push_str(&format!(
                "\n{} is your desktop login session: run this in Terminal on the Mac while logged in, not over SSH or with sudo",
                env.domain()
            ));
        }
        Err(error)
    }
}

/// "Could not find service ... in domain" (exit 113), or bootout's "No such process" (3).
fn not_loaded(output: &RunOutput) -> bool {
    matches!(output.code, Some(3 | 113))
        || output.mentions("could not find service")
        || output.mentions("no such process")
}

/// `launchctl bootout gui/<uid>/<label>`, then waits until the label has left the domain.
fn boot_out(env: &ServiceEnv, runner: &dyn Runner) -> Result<(), ServiceError> {
    let args = ["bootout".to_owned(), env.target()];
    let output = super::call(runner, LAUNCHCTL, &args)?;
    // Any failure is checked against the truth: is it still loaded?
    if !output.success() && !not_loaded(&output) && is_loaded(env, runner)? {
        return Err(super::failed(LAUNCHCTL, &args, &output));
    }
    for _ in 0..GONE_POLLS {
        if !is_loaded(env, runner)? {
            return Ok(());
        }
        runner.pause(GONE_PAUSE);
    }
    Err(ServiceError::Manager {
        command: super::command_line(LAUNCHCTL, &args),
        message: format!(
            "the agent is still loaded {} s later",
            (GONE_PAUSE * GONE_POLLS).as_secs()
        ),
    })
}

/// `launchctl bootstrap gui/<uid> <plist>`, tried again on EIO (error 5).
fn bootstrap(env: &ServiceEnv, runner: &dyn Runner) -> Result<(), ServiceError> {
    let file = env.plist_path();
    let args = [
        "bootstrap".to_owned(),
        env.domain(),
        file.display().to_string(),
    ];
    let mut attempt = 1;
    loop {
        let output = super::call(runner, LAUNCHCTL, &args)?;
        if output.success() || already_in_progress(&output) {
            return Ok(());
        }
        let eio = output.code == Some(5) || output.mentions("input/output error");
        if !eio || attempt == BOOTSTRAP_ATTEMPTS {
            let mut error = super::failed(LAUNCHCTL, &args, &output);
            if let ServiceError::Manager { message, .. } = &mut error {
                message.push_str(&format!(
                    "\nlaunchctl says little: check that {} runs, `plutil -lint {}`, and `log show --last 5m --predicate 'subsystem == \"com.apple.xpc.launchd\"'`",
                    env.binary.display(),
                    file.display()
                ));
            }
            return Err(error);
        }
        attempt += 1;
        runner.pause(BOOTSTRAP_PAUSE);
    }
}

/// `launchctl kickstart gui/<uid>/<label>`: starts the agent unless `RunAtLoad` already did
/// (no `-k`: that would kill the instance bootstrap just started). A failure is only a
/// warning while the agent is loaded: it starts at the next login in any case.
fn kickstart(
    env: &ServiceEnv,
    runner: &dyn Runner,
    report: &mut Report,
) -> Result<(), ServiceError> {
    let args = ["kickstart".to_owned(), env.target()];
    let output = super::call(runner, LAUNCHCTL, &args)?;
    if output.success() || already_in_progress(&output) {
        return Ok(());
    }
    let error = super::failed(LAUNCHCTL, &args, &output);
    if !is_loaded(env, runner)? {
        return Err(error);
    }
    report.warnings.push(format!(
        "{error}; the agent is loaded and starts at every login, and `drawdrop service status` shows whether it runs now"
    ));
    Ok(())
}

/// Error 37, "Operation already in progress": loaded or starting already.
fn already_in_progress(output: &RunOutput) -> bool {
    output.code == Some(37) || output.mentions("already in progress")
}

/// The parts of `launchctl print gui/<uid>/<label>` that status shows. Apple calls the output
/// no API; only top-level `key = value` lines and the `arguments` block are read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LaunchdPrint {
    /// `state = running`, `state = waiting`, `state = not running` ...
    pub state: Option<String>,
    pub pid: Option<u32>,
    /// `last exit code = 0` or `(never exited)`.
    pub last_exit: Option<String>,
    /// `last terminating signal = Terminated: 15`.
    pub last_signal: Option<String>,
    /// The `arguments = { ... }` block: what launchd runs.
    pub arguments: Vec<String>,
}

/// Reads `launchctl print` output; `None` when it is not a service description.
pub(crate) fn parse_print(text: &str) -> Option<LaunchdPrint> {
    let mut print = LaunchdPrint::default();
    let mut depth = 0usize;
    let mut block: Option<String> = None;
    let mut seen_service = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed == "}" {
            depth = depth.saturating_sub(1);
            if depth <= 1 {
                block = None;
            }
            continue;
        }
        if let Some(key) = trimmed.strip_suffix('{') {
            let key = key.trim().trim_end_matches('=').trim().to_owned();
            depth += 1;
            if depth == 1 {
                seen_service = true;
            } else if depth == 2 {
                block = Some(key);
            }
            continue;
        }
        if depth == 2 && block.as_deref() == Some("arguments") && !trimmed.is_empty() {
            print.arguments.push(trimmed.to_owned());
            continue;
        }
        if depth != 1 {
            continue;
        }
        let Some((key, value)) = trimmed.split_once(" = ") else {
            continue;
        };
        let value = value.trim().to_owned();
        match key.trim() {
            "state" => print.state = Some(value),
            "pid" => print.pid = value.parse().ok(),
            "last exit code" => print.last_exit = Some(value),
            "last terminating signal" => print.last_signal = Some(value),
            _ => {}
        }
    }
    seen_service.then_some(print)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::runner::fake::FakeRunner;
    use std::path::{Path, PathBuf};

    /// What `launchctl print gui/501/com.drawdrop.agent` shows for a running agent (macOS 14,
    /// trimmed): nested blocks hold their own `state` lines, which must not be taken.
    const RUNNING: &str = "gui/501/com.drawdrop.agent = {
\tactive count = 1
\tpath = /Users/ann/Library/LaunchAgents/com.drawdrop.agent.plist
\ttype = LaunchAgent
\tstate = running

\tprogram = /Users/ann/.cargo/bin/drawdrop
\targuments = {
\t\t/Users/ann/.cargo/bin/drawdrop
\t\trun
\t\t--config
\t\t/Users/ann/Library/Application Support/drawdrop/config.toml
\t}

\tworking directory = /Users/ann

\tstdout path = /Users/ann/Library/Logs/drawdrop/drawdrop.out.log
\tstderr path = /Users/ann/Library/Logs/drawdrop/drawdrop.err.log
\tdefault environment = {
\t\tPATH => /usr/bin:/bin:/usr/sbin:/sbin
\t}

\tenvironment = {
\t\tHOME => /Users/ann
\t\tPATH => /usr/bin:/bin:/usr/sbin:/sbin
\t\tXPC_SERVICE_NAME => com.drawdrop.agent
\t}

\tdomain = gui/501 [100005]
\tasid = 100005
\tminimum runtime = 30
\texit timeout = 15
\truns = 1
\tpid = 4242
\timmediate reason = speculative
\tforks = 0
\texecs = 1
\tinitialized = 1
\ttrampolined = 1
\tstarted suspended = 0
\tproxy started suspended = 0
\tlast exit code = (never exited)

\tspawn type = daemon (3)
\tjetsam priority = 40
\tjetsam memory limit (active) = (unlimited)
\tjetsam memory limit (inactive) = (unlimited)
\tjetsamproperties = 1
\tjetsam memory limit (active, soft) = (unlimited)

\tresource coalition = {
\t\tID = 1234
\t\tstate = active
\t}

\tproperties = keepalive | runatload | inferred program
}
";

    const CRASHED: &str = "gui/501/com.drawdrop.agent = {
\tstate = not running
\tprogram = /Users/ann/.cargo/bin/drawdrop
\truns = 3
\tlast exit code = 2
\tlast terminating signal = Killed: 9
}
";

    const NOT_LOADED: &str =
        "Bad request.\nCould not find service \"com.drawdrop.agent\" in domain for user gui: 501\n";

    fn env(home: &Path) -> ServiceEnv {
        ServiceEnv {
            binary: std::env::current_exe().unwrap(),
            config: home.join("Library/Application Support/drawdrop/config.toml"),
            home: home.to_path_buf(),
            uid: 501,
            is_root: false,
        }
    }

    fn plist(home: &Path) -> PathBuf {
        home.join("Library/LaunchAgents/com.drawdrop.agent.plist")
    }

    #[test]
    fn print_output_gives_state_pid_and_last_exit() {
        let print = parse_print(RUNNING).unwrap();
        assert_eq!(print.state.as_deref(), Some("running"));
        assert_eq!(print.pid, Some(4242));
        assert_eq!(print.last_exit.as_deref(), Some("(never exited)"));
        assert_eq!(print.last_signal, None);
        assert_eq!(
            print.arguments,
            [
                "/Users/ann/.cargo/bin/drawdrop",
                "run",
                "--config",
                "/Users/ann/Library/Application Support/drawdrop/config.toml"
            ]
        );

        let print = parse_print(CRASHED).unwrap();
        assert_eq!(print.state.as_deref(), Some("not running"));
        assert_eq!(print.pid, None);
        assert_eq!(print.last_exit.as_deref(), Some("2"));
        assert_eq!(print.last_signal.as_deref(), Some("Killed: 9"));
        assert!(print.arguments.is_empty());

        assert_eq!(parse_print(NOT_LOADED), None);
        assert_eq!(parse_print(""), None);
    }

    #[test]
    fn a_first_install_writes_the_plist_then_enables_bootstraps_and_kickstarts() {
        let home = tempfile::tempdir().unwrap();
        let env = env(home.path());
        let runner = FakeRunner::new().answer("/bin/launchctl print", 113, "", NOT_LOADED);
        let mut report = Report::default();
        install(&env, &runner, &mut report).unwrap();
        let file = plist(home.path());
        assert_eq!(
            runner.calls(),
            [
                "/bin/launchctl print gui/501/com.drawdrop.agent".to_owned(),
                "/bin/launchctl enable gui/501/com.drawdrop.agent".to_owned(),
                format!("/bin/launchctl bootstrap gui/501 {}", file.display()),
                "/bin/launchctl kickstart gui/501/com.drawdrop.agent".to_owned(),
            ]
        );
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text, render_plist(&env).unwrap());
        assert!(home.path().join("Library/Logs/drawdrop").is_dir());
        assert!(report.lines.iter().any(|line| line.starts_with("wrote ")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
    }

    #[test]
    fn a_reinstall_boots_out_waits_rewrites_and_loads_again() {
        let home = tempfile::tempdir().unwrap();
        let env = env(home.path());
        let file = plist(home.path());
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "old plist").unwrap();
        let runner = FakeRunner::new()
            .answer("/bin/launchctl print", 0, RUNNING, "")
            .answer("/bin/launchctl print", 0, RUNNING, "")
            .answer("/bin/launchctl print", 113, "", NOT_LOADED);
        let mut report = Report::default();
        install(&env, &runner, &mut report).unwrap();
        assert_eq!(
            runner.calls(),
            [
                "/bin/launchctl print gui/501/com.drawdrop.agent".to_owned(),
                "/bin/launchctl bootout gui/501/com.drawdrop.agent".to_owned(),
                "/bin/launchctl print gui/501/com.drawdrop.agent".to_owned(),
                "/bin/launchctl print gui/501/com.drawdrop.agent".to_owned(),
                "/bin/launchctl enable gui/501/com.drawdrop.agent".to_owned(),
                format!("/bin/launchctl bootstrap gui/501 {}", file.display()),
                "/bin/launchctl kickstart gui/501/com.drawdrop.agent".to_owned(),
            ]
        );
        assert_eq!(runner.pauses.borrow().len(), 1);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            render_plist(&env).unwrap()
        );
        // Written whole, then renamed: no temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["com.drawdrop.agent.plist"]);
    }

    #[test]
    fn bootstrap_is_retried_on_eio_then_its_error_is_reported() {
        let home = tempfile::tempdir().unwrap();
        let env = env(home.path());
        let eio = "Bootstrap failed: 5: Input/output error\nTry re-running the command as root for richer errors.\n";
        let runner = FakeRunner::new()
            .answer("/bin/launchctl print", 113, "", NOT_LOADED)
            .answer("/bin/launchctl bootstrap", 5, "", eio)
            .answer("/bin/launchctl bootstrap", 0, "", "");
        install(&env, &runner, &mut Report::default()).unwrap();
        let bootstraps = runner
            .calls()
            .iter()
            .filter(|call| call.contains(" bootstrap "))
            .count();
        assert_eq!(bootstraps, 2);

        let runner = FakeRunner::new()
            .answer("/bin/launchctl print", 113, "", NOT_LOADED)
            .answer("/bin/launchctl bootstrap", 5, "", eio);
        let error = install(&env, &runner, &mut Report::default()).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("Input/output error"), "{text}");
        assert!(text.contains("plutil -lint"), "{text}");
        assert_eq!(error.exit_code(), 1);
        assert!(!runner.calls().iter().any(|call| call.contains("kickstart")));
    }

    #[test]
    fn an_agent_already_loaded_or_started_is_fine() {
        let home = tempfile::tempdir().unwrap();
        let busy = "Bootstrap failed: 37: Operation already in progress";
        let runner = FakeRunner::new()
            .answer("/bin/launchctl print", 113, "", NOT_LOADED)
            .answer("/bin/launchctl bootstrap", 37, "", busy)
            .answer(
                "/bin/launchctl kickstart",
                37,
                "",
                "Operation already in progress",
            );
        let mut report = Report::default();
        install(&env(home.path()), &runner, &mut report).unwrap();
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }

    #[test]
    fn a_failed_kickstart_of_a_loaded_agent_is_a_warning() {
        let home = tempfile::tempdir().unwrap();
        let env = env(home.path());
        let runner = FakeRunner::new()
            .answer("/bin/launchctl print", 113, "", NOT_LOADED)
            .answer("/bin/launchctl print", 0, RUNNING, "")
            .answer("/bin/launchctl kickstart", 5, "", "Input/output error");
        let mut report = Report::default();
        install(&env, &runner, &mut report).unwrap();
        assert!(
            report.warnings[0].contains("kickstart"),
            "{:?}",
            report.warnings
        );

        let runner = FakeRunner::new()
            .answer("/bin/launchctl print", 113, "", NOT_LOADED)
            .answer("/bin/launchctl kickstart", 5, "", "Input/output error");
        let error = install(&env, &runner, &mut Report::default()).unwrap_err();
        assert!(error.to_string().contains("kickstart"), "{error}");
    }

    #[test]
    fn another_bootstrap_error_is_not_retried() {
        let home = tempfile::tempdir().unwrap();
        let runner = FakeRunner::new()
            .answer("/bin/launchctl print", 113, "", NOT_LOADED)
            .answer(
                "/bin/launchctl bootstrap",
                1,
                "",
                "Bootstrap failed: 1: Operation not permitted",
            );
        let error = install(&env(home.path()), &runner, &mut Report::default()).unwrap_err();
        assert!(
            error.to_string().contains("Operation not permitted"),
            "{error}"
        );
        assert_eq!(
            runner
                .calls()
                .iter()
                .filter(|c| c.contains("bootstrap"))
                .count(),
            1
        );
    }

    #[test]
    fn a_print_that_fails_otherwise_stops_the_install() {
        let home = tempfile::tempdir().unwrap();
        let runner = FakeRunner::new().answer(
            "/bin/launchctl print",
            125,
            "",
            "Domain does not support specified action",
        );
        let error = install(&env(home.path()), &runner, &mut Report::default()).unwrap_err();
        assert!(
            error.to_string().contains("Domain does not support"),
            "{error}"
        );
        assert!(!plist(home.path()).exists());
    }

    #[test]
    fn uninstall_boots_out_and_removes_the_plist() {
        let home = tempfile::tempdir().unwrap();
        let env = env(home.path());
        let file = plist(home.path());
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, render_plist(&env).unwrap()).unwrap();
        let runner = FakeRunner::new()
            .answer("/bin/launchctl print", 0, RUNNING, "")
            .answer("/bin/launchctl print", 113, "", NOT_LOADED);
        let mut report = Report::default();
        uninstall(&env, &runner, &mut report).unwrap();
        assert_eq!(
            runner.calls(),
            [
                "/bin/launchctl print gui/501/com.drawdrop.agent",
                "/bin/launchctl bootout gui/501/com.drawdrop.agent",
                "/bin/launchctl print gui/501/com.drawdrop.agent",
            ]
        );
        assert!(!file.exists());
        assert_eq!(report.lines.len(), 2, "{:?}", report.lines);
    }

    #[test]
    fn a_bootout_that_finds_nothing_is_fine() {
        let home = tempfile::tempdir().unwrap();
        let env = env(home.path());
        let runner = FakeRunner::new()
            .answer("/bin/launchctl print", 0, RUNNING, "")
            .answer("/bin/launchctl print", 113, "", NOT_LOADED)
            .answer(
                "/bin/launchctl bootout",
                5,
                "",
                "Boot-out failed: 5: Input/output error",
            );
        uninstall(&env, &runner, &mut Report::default()).unwrap();

        let runner = FakeRunner::new()
            .answer("/bin/launchctl print", 0, RUNNING, "")
            .answer(
                "/bin/launchctl bootout",
                1,
                "",
                "Boot-out failed: 1: Operation not permitted",
            );
        let error = uninstall(&env, &runner, &mut Report::default()).unwrap_err();
        assert!(
            error.to_string().contains("Operation not permitted"),
            "{error}"
        );
    }

    #[test]
    fn uninstalling_what_is_not_there_says_so() {
        let home = tempfile::tempdir().unwrap();
        let runner = FakeRunner::new().answer("/bin/launchctl print", 113, "", NOT_LOADED);
        let mut report = Report::default();
        uninstall(&env(home.path()), &runner, &mut report).unwrap();
        assert_eq!(
            runner.calls(),
            ["/bin/launchctl print gui/501/com.drawdrop.agent"]
        );
        assert!(
            report.lines[0].contains("not installed"),
            "{:?}",
            report.lines
        );
    }

    #[test]
    fn status_shows_the_running_agent_and_warns_about_another_binary_or_config() {
        let home = tempfile::tempdir().unwrap();
        let env = env(home.path());
        let runner = FakeRunner::new().answer("/bin/launchctl print", 0, RUNNING, "");
        let file = plist(home.path());
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();

        std::fs::write(&file, render_plist(&env).unwrap()).unwrap();
        let status = status(&env, &runner).unwrap();
        assert!(status.installed && status.loaded && status.running);
        assert_eq!(status.pid, Some(4242));
        assert_eq!(status.state.as_deref(), Some("running"));
        assert_eq!(status.last_exit.as_deref(), Some("never exited"));
        // The sample's arguments are another user's, so launchd "runs" something else.
        assert!(
            status.warnings.iter().all(|w| w.contains("launchd runs")),
            "{:?}",
            status.warnings
        );

        let mut elsewhere = env.clone();
        elsewhere.binary = "/bin/sh".into();
        elsewhere.config = "/etc/other.toml".into();
        std::fs::write(&file, render_plist(&elsewhere).unwrap()).unwrap();
        let status = super::status(&env, &runner).unwrap();
        let warnings = status.warnings.join("\n");
        assert!(
            warnings.contains("another drawdrop (/bin/sh)"),
            "{warnings}"
        );
        assert!(warnings.contains("config /etc/other.toml"), "{warnings}");
        assert_eq!(
            status.command.unwrap(),
            ["/bin/sh", "run", "--config", "/etc/other.toml"]
        );
    }

    #[test]
    fn status_of_a_crashed_or_missing_agent() {
        let home = tempfile::tempdir().unwrap();
        let env = env(home.path());
        let runner = FakeRunner::new().answer("/bin/launchctl print", 0, CRASHED, "");
        let status = status(&env, &runner).unwrap();
        assert!(status.loaded && !status.running && !status.installed);
        assert_eq!(
            status.last_exit.as_deref(),
            Some("ended by a signal (Killed: 9)")
        );
        assert!(
            status.warnings[0].contains("plist is gone"),
            "{:?}",
            status.warnings
        );

        let runner = FakeRunner::new().answer("/bin/launchctl print", 113, "", NOT_LOADED);
        let status = super::status(&env, &runner).unwrap();
        assert!(!status.loaded && !status.running && !status.installed);
        assert!(status.warnings.is_empty());
        assert_eq!(
            runner.calls(),
            ["/bin/launchctl print gui/501/com.drawdrop.agent"]
        );
    }
}
