//! `drawdrop service install|uninstall|status|print [--launchd|--systemd]`: the login service.
//! Exit 0 when done, 1 when `launchctl`/`systemctl` failed (its words are shown), 2 when
//! refused (root, the other system's service manager, a config that does not load).

use super::EXIT_START;
use crate::cli::ServiceAction;
use crate::config::{Config, Located, locate};
use crate::service::{
    self, Kind, Report, ServiceEnv, ServiceError, SystemRunner, check_host, install_warnings,
};
use std::path::Path;
use std::process::ExitCode;

pub(super) fn service(
    flag: Option<&Path>,
    action: ServiceAction,
    launchd: bool,
    systemd: bool,
) -> ExitCode {
    let kind = Kind::chosen(launchd, systemd);
    let located = match locate(flag) {
        Ok(located) => located,
        Err(error) => {
            eprintln!("drawdrop service: {error}");
            return ExitCode::from(EXIT_START);
        }
    };
    let result = ServiceEnv::current(&located.path).and_then(|env| match action {
        ServiceAction::Print => print(kind, &env),
        ServiceAction::Install => install(kind, &env, &located),
        ServiceAction::Uninstall => uninstall(kind, &env),
        ServiceAction::Status => status(kind, &env),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("drawdrop service: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn print(kind: Kind, env: &ServiceEnv) -> Result<(), ServiceError> {
    print!("{}", service::render(kind, env)?);
    Ok(())
}

fn install(kind: Kind, env: &ServiceEnv, located: &Located) -> Result<(), ServiceError> {
    check_host(kind)?;
    // The folders, for the Full Disk Access note. A config that does not load (or a named
    // one that does not exist) is refused, since the service would only fail with it; the
    // platform's own config file may be missing: the service then runs with the defaults.
    let config = Config::load(located).map_err(|error| {
        ServiceError::Refused(format!(
            "{error}\nfix the config first (`drawdrop init` writes one, `drawdrop check` shows what is wrong), then install again"
        ))
    })?;
    let warnings = install_warnings(kind, env, &[&config.inbox, &config.outbox]);
    let mut report = Report::default();
    let result = service::install(kind, env, &SystemRunner, &mut report);
    show(&report);
    if !matches!(result, Err(ServiceError::Refused(_))) {
        for warning in warnings {
            eprintln!("warning: {warning}");
        }
    }
    result
}

fn uninstall(kind: Kind, env: &ServiceEnv) -> Result<(), ServiceError> {
    check_host(kind)?;
    let mut report = Report::default();
    let result = service::uninstall(kind, env, &SystemRunner, &mut report);
    show(&report);
    result
}

fn status(kind: Kind, env: &ServiceEnv) -> Result<(), ServiceError> {
    check_host(kind)?;
    print!("{}", service::status(kind, env, &SystemRunner)?);
    Ok(())
}

fn show(report: &Report) {
    for line in &report.lines {
        println!("{line}");
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
}
