//! `drawdrop status`: what is waiting, what is being done, what was done, whether the
//! server answers and whether the daemon and the service run. Reads only; works while the
//! daemon runs, and answers whatever is broken: a broken profile is named (its files wait),
//! and with a config file that cannot be read it says why, and shows what it still can from
//! the folders of the daemon's last start (see `last_start`), and why that start failed.
//! Of `jobs.jsonl` it reads only what was added since the last `status` and the end (see
//! `job_log`: the one thing it writes is the summary it keeps beside it).

use super::job_log::JobLog;
use super::{EXIT_START, runtime};
use crate::backends::{self, Probe};
use crate::config::{Config, Server, locate};
use crate::jobs::claim::Claims;
use crate::jobs::names::shown;
use crate::jobs::outbox::Outbox;
use crate::pipeline::watch::scan;
use crate::report::last_start::LastStart;
use crate::service;
use serde_json::Value;
use std::path::Path;
use std::process::ExitCode;
use tokio::runtime::Runtime;

/// How many of the last jobs are listed.
const LAST_JOBS: usize = 10;

/// Where the continuation lines of a long entry start.
const INDENT: &str = "             ";

pub(super) fn status(flag: Option<&Path>) -> ExitCode {
    let located = match locate(flag) {
        Ok(located) => located,
        Err(error) => {
            eprintln!("drawdrop: {error}");
            return ExitCode::from(EXIT_START);
        }
    };
    let loaded = Config::load(&located);
    let last_start = LastStart::read(&located.path);
    let folders = match &loaded {
        Ok(config) => Some((config.inbox.clone(), config.outbox.clone())),
        Err(error) => {
            print_entry(
                "config",
                &format!("cannot be read, so drawdrop cannot start: {error}"),
            );
            last_start
                .as_ref()
                .and_then(|last| Some((last.inbox.clone()?, last.outbox.clone()?)))
                .inspect(|_| {
                    print_entry(
                        "",
                        "what follows is from the folders of the daemon's last good start",
                    )
                })
        }
    };
    let Some((inbox, outbox)) = folders else {
        print_entry(
            "daemon",
            &last_start_failure(last_start.as_ref())
                .unwrap_or_else(|| "not known: its folders are named by the config".to_owned()),
        );
        println!("{:<12} {}", "service", service_state(&located.path));
        return ExitCode::from(EXIT_START);
    };
    let config = loaded.as_ref().ok();
    let claims = Claims::new(&inbox);
    let daemon = match claims.holder() {
        Some(pid) if config.is_none() => {
            format!("running (process {pid}), with its last good settings")
        }
        Some(pid) => format!("running (process {pid})"),
        None => last_start_failure(last_start.as_ref()).unwrap_or_else(|| "not running".to_owned()),
    };
    print_entry("daemon", &daemon);
    for (name, error) in config.iter().flat_map(|config| &config.broken) {
        print_entry(
            "broken",
            &format!("profile {name}: its files wait until it is fixed: {error}"),
        );
    }
    let mut not_taken = Vec::new();
    print_entry("pending", &pending(&inbox, config, &mut not_taken));
    if !not_taken.is_empty() {
        not_taken.sort();
        println!("not taken  {}: {}", not_taken.len(), not_taken.join(", "));
    }
    println!("{:<12} {}", "in progress", claims.count());
    if let Some(pid) = claims.holder() {
        let now = jiff::Timestamp::now().as_millisecond();
        for job in crate::report::live::read(&outbox, pid) {
            println!(
                "{:<12} {}",
                "  in flight",
                crate::report::live::describe(&job, now)
            );
        }
    }
    let jobs = JobLog::read(&Outbox::new(outbox).jobs_log(), LAST_JOBS);
    println!("{:<12} {}", "done", jobs.done);
    println!("{:<12} {}", "failed", jobs.failed);
    match config {
        Some(config) => {
            let runtime = runtime().map_err(|error| error.to_string());
            for server in &config.servers {
                println!("{:<12} {}", "server", server_state(server, &runtime, &jobs));
            }
        }
        None => println!("{:<12} not known until the config can be read", "server"),
    }
    println!("{:<12} {}", "service", service_state(&located.path));
    if !jobs.last.is_empty() {
        println!("\nlast jobs:");
        for job in &jobs.last {
            println!("  {}", describe_job(job));
        }
    }
    match loaded {
        Ok(_) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(EXIT_START),
    }
}

/// `what` and its text; each further line of the text (one per problem) indented below.
fn print_entry(what: &str, text: &str) {
    let mut lines = text.lines();
    println!("{what:<12} {}", lines.next().unwrap_or(""));
    for line in lines {
        println!("{INDENT}{line}");
    }
}

/// "not running: its last start failed ...", when it did.
fn last_start_failure(last_start: Option<&LastStart>) -> Option<String> {
    let last = last_start?;
    let error = last.error.as_deref()?;
    Some(format!(
        "not running: its last start ({}) failed: {error}",
        last.time
    ))
}

/// `3 in /x/Inbox`, with how many of them wait for a broken profile; a missing inbox is no
/// error before the first run. Files of a kind drawdrop does not take go to `not_taken`.
fn pending(inbox: &Path, config: Option<&Config>, not_taken: &mut Vec<String>) -> String {
    let found = match scan::scan(inbox, |notice| {
        if let scan::Notice::NotTaken(path) = notice {
            not_taken.push(shown(&path));
        }
    }) {
        Ok(found) => found,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return format!(
                "0 (the inbox {} does not exist yet: `drawdrop run` creates it)",
                inbox.display()
            );
        }
        Err(error) => return format!("cannot read {}: {error}", inbox.display()),
    };
    let waiting = config.map_or(0, |config| {
        found
            .iter()
            .filter(|file| config.waits_for(&file.relative).is_some())
            .count()
    });
    let mut line = format!("{} in {}", found.len(), inbox.display());
    if waiting > 0 {
        line.push_str(&format!(" ({waiting} of them wait for a broken profile)"));
    }
    line
}

/// `mini (http://...): answers; 12 done, 4.1 s per image; last error: ...`.
fn server_state(server: &Server, runtime: &Result<Runtime, String>, jobs: &JobLog) -> String {
    let probe = backends::for_server(server)
        .map_err(|error| error.to_string())
        .and_then(|backend| {
            let runtime = runtime.as_ref().map_err(Clone::clone)?;
            Ok(runtime.block_on(backend.probe()))
        });
    let answers = match probe {
        Ok(Probe::Up(_)) => "answers".to_owned(),
        Ok(Probe::Down(reason)) => format!("does not answer ({reason})"),
        Err(error) => error,
    };
    // Lines written before servers had names carry the URL instead.
    let mine = jobs.server(&server.name, server.url.as_str());
    let mut line = format!("{}: {answers}", server.label());
    if mine.done > 0 {
        let average = mine.server_ms / mine.done as f64 / 1000.0;
        line.push_str(&format!("; {} done, {average:.1} s per image", mine.done));
    }
    if let Some(error) = mine.last_error() {
        line.push_str(&format!("; last error: {error}"));
    }
    line
}

fn service_state(config_file: &Path) -> String {
    let kind = service::Kind::host();
    match service::ServiceEnv::current(config_file)
        .and_then(|env| service::status(kind, &env, &service::SystemRunner))
    {
        Ok(status) => status.summary(),
        Err(error) => format!("cannot tell ({error})"),
    }
}

/// `2026-11-25 22:15:03  done    watercolor/cat.png -> watercolor/cat.png (3.2 s)`.
fn describe_job(job: &Value) -> String {
    let text = |key: &str| job[key].as_str().unwrap_or("").to_owned();
    let time = text("time")
        .replace('T', " ")
        .chars()
        .take(19)
        .collect::<String>();
    let seconds = job["total_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
    let outcome = text("outcome");
    let detail = if outcome == "done" {
        let outputs: Vec<String> = job["outputs"]
            .as_array()
            .map(|outputs| {
                outputs
                    .iter()
                    .filter_map(|o| o.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        format!("-> {}", outputs.join(", "))
    } else {
        format!("because {}", text("error"))
    };
    format!(
        "{time}  {outcome:<7} {} {detail} ({seconds:.1} s)",
        text("input")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jobs_read_as_one_line_each() {
        let done = json!({"time": "2026-11-25T22:15:03.123+01:00", "outcome": "done",
            "input": "w/cat.png", "outputs": ["w/cat.png"], "total_ms": 3200});
        assert_eq!(
            describe_job(&done),
            "2026-11-25 22:15:03  done    w/cat.png -> w/cat.png (3.2 s)"
        );
        let failed = json!({"time": "2026-11-25T22:16:00.000+01:00", "outcome": "failed",
            "input": "bad.png", "error": "the file is empty", "total_ms": 10});
        assert_eq!(
            describe_job(&failed),
            "2026-11-25 22:16:00  failed  bad.png because the file is empty (0.0 s)"
        );
    }
}
