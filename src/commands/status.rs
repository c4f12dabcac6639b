//! `drawdrop status`: what is waiting, what is being done, what was done, whether the
//! server answers and whether the daemon and the service run. Reads only; works while the
//! daemon runs.

use super::{EXIT_START, load_config, runtime};
use crate::api::{Client, Probe};
use crate::claim::Claims;
use crate::config::Server;
use crate::outbox::Outbox;
use crate::service;
use crate::watch::scan;
use serde_json::Value;
use std::path::Path;
use std::process::ExitCode;
use tokio::runtime::Runtime;

/// How many of the last jobs are listed.
const LAST_JOBS: usize = 10;

pub fn status(flag: Option<&Path>) -> ExitCode {
    let (_, config) = match load_config(flag) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("drawdrop: {error}");
            return ExitCode::from(EXIT_START);
        }
    };
    let claims = Claims::new(&config.inbox);
    let daemon = match claims.holder() {
        Some(pid) => format!("running (process {pid})"),
        None => "not running".to_owned(),
    };
    println!("{:<12} {daemon}", "daemon");
    let pending = scan::scan(&config.inbox, |_| {}).map(|found| found.len());
    match pending {
        Ok(count) => println!("{:<12} {count} in {}", "pending", config.inbox.display()),
        Err(error) => println!(
            "{:<12} cannot read {}: {error}",
            "pending",
            config.inbox.display()
        ),
    }
    println!("{:<12} {}", "in progress", claims.count());
    if let Some(pid) = claims.holder() {
        let now = jiff::Timestamp::now().as_millisecond();
        for job in crate::live::read(&config.outbox, pid) {
            println!("{:<12} {}", "  in flight", crate::live::describe(&job, now));
        }
    }
    let jobs = read_jobs(&Outbox::new(config.outbox.clone()).jobs_log());
    let count = |outcome: &str| jobs.iter().filter(|job| job["outcome"] == outcome).count();
    println!("{:<12} {}", "done", count("done"));
    println!("{:<12} {}", "failed", count("failed"));
    let runtime = runtime().map_err(|error| error.to_string());
    for server in &config.servers {
        println!("{:<12} {}", "server", server_state(server, &runtime, &jobs));
    }
    println!("{:<12} {}", "service", service_state(&config.file));
    if !jobs.is_empty() {
        println!("\nlast jobs:");
        for job in jobs.iter().rev().take(LAST_JOBS).rev() {
            println!("  {}", describe_job(job));
        }
    }
    ExitCode::SUCCESS
}

/// `mini (http://...): answers; 12 done, 4.1 s per image; last error: ...`.
fn server_state(server: &Server, runtime: &Result<Runtime, String>, jobs: &[Value]) -> String {
    let probe = Client::new(server)
        .map_err(|error| error.to_string())
        .and_then(|client| {
            let runtime = runtime.as_ref().map_err(Clone::clone)?;
            Ok(runtime.block_on(client.probe()))
        });
    let answers = match probe {
        Ok(Probe::Up(_)) => "answers".to_owned(),
        Ok(Probe::Down(reason)) => format!("does not answer ({reason})"),
        Err(error) => error,
    };
    // Lines written before servers had names carry the URL instead.
    let mine: Vec<&Value> = jobs
        .iter()
        .filter(|job| job["server"] == server.name.as_str() || job["server"] == server.url.as_str())
        .collect();
    let done: Vec<f64> = mine
        .iter()
        .filter(|job| job["outcome"] == "done")
        .filter_map(|job| job["server_ms"].as_f64())
        .collect();
    let mut line = format!("{}: {answers}", server.label());
    if !done.is_empty() {
        let average = done.iter().sum::<f64>() / done.len() as f64 / 1000.0;
        line.push_str(&format!("; {} done, {average:.1} s per image", done.len()));
    }
    if let Some(error) = mine.iter().rev().find_map(|job| job["error"].as_str()) {
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

/// The lines of `jobs.jsonl` that parse; a broken line (a crash mid-write) is skipped.
fn read_jobs(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
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
