//! Workers: take settled files from the queue, claim them, send them, and finish them.
//!
//! One worker per request the server may have in flight (`concurrency`). A worker waits
//! while the server is down (nothing is failed for that), retries what may pass with
//! exponential backoff up to `max_attempts`, fails at once what the server rejects (4xx),
//! and on shutdown puts back the input it holds unless its answer is already in hand.

use crate::api::answer::{self, BadAnswer};
use crate::api::request;
use crate::api::{Client, Disposition, SendError};
use crate::claim::Job;
use crate::config::{After, Config, Profile};
use crate::finish::{Finisher, InputTo, Placed};
use crate::health::{Health, Unreachable};
use crate::image::{self, Limits};
use crate::outbox::RESERVED;
use crate::queue::{Queue, Work};
use crate::tally::Tally;
use crate::watch::scan;
use crate::watch::settle::Observation;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Pause before the second attempt; doubled each time, up to `LONGEST_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const LONGEST_BACKOFF: Duration = Duration::from_secs(60);
/// A `Retry-After` longer than this is not honoured in full.
const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(600);
/// On shutdown, an answer already on its way gets this long to arrive.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What every worker shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub client: Client,
    /// The claims and the outbox.
    pub finisher: Finisher,
    pub queue: Arc<Queue>,
    pub health: Arc<Health>,
    pub tally: Arc<Tally>,
    pub limits: Limits,
    /// The inbox as the watch stage sees it (canonical).
    pub inbox: PathBuf,
    /// `--once`: how long a server that does not answer is waited for before giving up.
    pub give_up_after: Option<Duration>,
    pub cancel: CancellationToken,
}

/// How sending one job ended.
enum Sent {
    Images(Vec<Vec<u8>>),
    Failed(String),
    /// Shut down before an answer came: the input goes back to the inbox.
    Interrupted,
    /// `--once` waited `timeout_s` for the server in vain.
    GaveUp(Unreachable),
}

/// Facts about one job, gathered for the log line, `jobs.jsonl` and `.error.txt`.
struct Report {
    started: Instant,
    started_at: jiff::ZonedDateTime,
    profile: String,
    attempts: u32,
    server_time: Duration,
    sent: Option<Map<String, Value>>,
    input_size: Option<(u32, u32)>,
    resized: bool,
}

/// Runs one worker until the queue closes or drawdrop shuts down. Returns an error when
/// `--once` gave up waiting for the server.
pub async fn run(shared: Arc<Shared>) -> Result<(), Unreachable> {
    loop {
        let work = tokio::select! {
            _ = shared.cancel.cancelled() => return Ok(()),
            work = shared.queue.pop() => work,
        };
        let Some(work) = work else { return Ok(()) };
        let job = match work {
            Work::Settled { relative, seen } => match take(&shared, &relative, seen).await? {
                Some(job) => job,
                None => continue,
            },
            Work::Recovered(job) => {
                if job.commit_file().is_file() {
                    resume(&shared, job).await;
                    continue;
                }
                if let Err(error) = shared.finisher.discard_staging(&job) {
                    tracing::warn!(
                        "cannot clear staged files of {}: {error}",
                        job.relative.display()
                    );
                }
                tracing::info!(
                    "resuming {} (claimed before drawdrop stopped)",
                    job.relative.display()
                );
                job
            }
        };
        if let Some(unreachable) = process(&shared, job).await {
            return Err(unreachable);
        }
    }
}

/// Waits for the server, then claims a settled file if it is still as it settled.
async fn take(
    shared: &Shared,
    relative: &Path,
    seen: Observation,
) -> Result<Option<Job>, Unreachable> {
    let ready = tokio::select! {
        _ = shared.cancel.cancelled() => None,
        ready = shared.health.wait_up(shared.give_up_after) => Some(ready),
    };
    match ready {
        None => {
            shared.queue.release(relative);
            return Ok(None);
        }
        Some(Err(unreachable)) => {
            shared.queue.release(relative);
            return Err(unreachable);
        }
        Some(Ok(())) => {}
    }
    let path = shared.inbox.join(relative);
    match scan::observe(&path) {
        Ok(now) if now == seen => {}
        Ok(_) => {
            shared.queue.hand_back(relative);
            return Ok(None);
        }
        Err(_) => {
            shared.queue.release(relative);
            return Ok(None);
        }
    }
    let claimed = shared.finisher.claims.claim(relative);
    let job = match claimed {
        Ok(Some(job)) => job,
        Ok(None) => {
            shared.queue.release(relative);
            return Ok(None);
        }
        Err(error) => {
            tracing::error!(
                "cannot claim {}: {error}; it stays in the inbox",
                relative.display()
            );
            shared.queue.release(relative);
            return Ok(None);
        }
    };
    // A writer that paused longer than the settle window may still hold the file open.
    if scan::observe(&job.input()).ok() != Some(seen) {
        match shared.finisher.claims.unclaim(&job) {
            Ok(_) => shared.queue.hand_back(relative),
            Err(error) => {
                tracing::error!("cannot put {} back: {error}", relative.display());
                shared.queue.release(relative);
            }
        }
        return Ok(None);
    }
    shared.queue.release(relative);
    Ok(Some(job))
}

/// Sends one claimed job and finishes it. Returns `Some` when `--once` must give up.
async fn process(shared: &Shared, job: Job) -> Option<Unreachable> {
    let profile = shared.config.profile_for(&job.relative).clone();
    let mut report = Report {
        started: Instant::now(),
        started_at: jiff::ZonedDateTime::now(),
        profile: profile.name.clone(),
        attempts: 0,
        server_time: Duration::ZERO,
        sent: None,
        input_size: None,
        resized: false,
    };
    let prepared = prepare(shared, &job, &profile, &mut report).await;
    let sent = match prepared {
        Err(reason) => Sent::Failed(reason),
        Ok((body, expected)) => {
            tracing::info!(
                "taken {} (profile {}, {}x{}{})",
                job.relative.display(),
                profile.name,
                report.input_size.map_or(0, |s| s.0),
                report.input_size.map_or(0, |s| s.1),
                if report.resized { ", resized" } else { "" }
            );
            send(shared, &job, body, expected, &mut report).await
        }
    };
    match sent {
        Sent::Images(images) => {
            let input_to = match shared.config.after {
                After::Archive => InputTo::Originals,
                After::Delete => InputTo::Deleted,
            };
            let record = record(shared, &job, &report, "done", None);
            let finished = blocking(shared, job.clone(), move |finisher, job| {
                finisher.done(&job, &images, input_to, record)
            })
            .await;
            match finished {
                Ok(placed) => {
                    tracing::info!(
                        "done {} in {:.1} s -> {}",
                        job.relative.display(),
                        report.started.elapsed().as_secs_f64(),
                        list(&placed.results)
                    );
                    shared.tally.add_done(&job.relative.to_string_lossy());
                }
                Err(error) => write_failure(shared, &job, &error),
            }
            None
        }
        Sent::Failed(reason) => {
            fail(shared, &job, &reason, &report).await;
            None
        }
        Sent::Interrupted => {
            put_back(shared, &job);
            None
        }
        Sent::GaveUp(unreachable) => {
            put_back(shared, &job);
            Some(unreachable)
        }
    }
}

/// Reads and checks the input, and builds the request body. `Err` is a reason to fail it.
async fn prepare(
    shared: &Shared,
    job: &Job,
    profile: &Profile,
    report: &mut Report,
) -> Result<(Bytes, usize), String> {
    if let Some(reserved) = reserved_top_folder(&job.relative) {
        return Err(format!(
            "the inbox folder `{reserved}` has the name of an outbox folder drawdrop uses itself; rename the folder"
        ));
    }
    let input = job.input();
    let limits = shared.limits;
    let settings = profile.settings.clone();
    let api = shared.config.server.api;
    let built = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let bytes =
            std::fs::read(&input).map_err(|error| format!("cannot read the file: {error}"))?;
        let info = image::inspect(&bytes, &limits).map_err(|problem| problem.to_string())?;
        let size = image::target_size((info.width, info.height), (settings.width, settings.height));
        let init = image::init_image(&bytes, &info, size).map_err(|error| error.to_string())?;
        let resized = matches!(init, std::borrow::Cow::Owned(_));
        let seed = request::pick_seed(&settings);
        let sent = request::settings_for(api, &settings, size, seed);
        let body = request::body(&sent, &init);
        Ok((
            Bytes::from(body),
            sent,
            (info.width, info.height),
            resized,
            request::expected_images(&settings),
        ))
    })
    .await
    .map_err(|error| format!("internal error while preparing the image: {error}"))??;
    let (body, sent, input_size, resized, expected) = built;
    report.sent = Some(sent);
    report.input_size = Some(input_size);
    report.resized = resized;
    Ok((body, expected))
}

/// Sends until an answer with images comes, the file must fail, or drawdrop stops.
async fn send(
    shared: &Shared,
    job: &Job,
    body: Bytes,
    expected: usize,
    report: &mut Report,
) -> Sent {
    let server = &shared.config.server;
    let mut waits_in_a_row = 0u32;
    loop {
        let ready = tokio::select! {
            _ = shared.cancel.cancelled() => return Sent::Interrupted,
            ready = shared.health.wait_up(shared.give_up_after) => ready,
        };
        if let Err(unreachable) = ready {
            return Sent::GaveUp(unreachable);
        }
        report.attempts += 1;
        tracing::debug!(
            "sending {} to {} (attempt {} of {})",
            job.relative.display(),
            server.url,
            report.attempts,
            server.max_attempts
        );
        let started = Instant::now();
        let answer = tokio::select! {
            answer = shared.client.img2img(body.clone()) => answer,
            _ = cancelled_then_grace(&shared.cancel) => return Sent::Interrupted,
        };
        report.server_time += started.elapsed();
        let problem = match answer {
            Ok(answer) => match answer::images(&answer, server.api, expected, &shared.limits) {
                Ok(images) => return Sent::Images(images),
                Err(BadAnswer(reason)) => (reason, Disposition::Retry(None)),
            },
            Err(error) => {
                let disposition = error.disposition();
                (describe(&error), disposition)
            }
        };
        match problem {
            (reason, Disposition::Fail) => return Sent::Failed(reason),
            (reason, Disposition::WaitForServer) => {
                report.attempts -= 1;
                waits_in_a_row += 1;
                shared.health.mark_down(&reason);
                // The server may answer probes yet refuse this request: don't spin.
                if waits_in_a_row > 1 && !pause(&shared.cancel, backoff(waits_in_a_row - 1)).await {
                    return Sent::Interrupted;
                }
            }
            (reason, Disposition::Retry(at_least)) => {
                waits_in_a_row = 0;
                if report.attempts >= server.max_attempts {
                    return Sent::Failed(format!(
                        "gave up after {} attempt{}; the last one: {reason}",
                        report.attempts,
                        if report.attempts == 1 { "" } else { "s" }
                    ));
                }
                let wait = backoff(report.attempts)
                    .max(at_least.unwrap_or_default().min(LONGEST_RETRY_AFTER));
                tracing::warn!(
                    "retrying {} in {} s because {reason} (attempt {} of {})",
                    job.relative.display(),
                    wait.as_secs(),
                    report.attempts,
                    server.max_attempts
                );
                if reason.starts_with("the connection was lost") {
                    shared.health.mark_down(&reason);
                }
                if !pause(&shared.cancel, wait).await {
                    return Sent::Interrupted;
                }
            }
        }
    }
}

fn describe(error: &SendError) -> String {
    error.to_string()
}

/// Backoff before attempt `attempt + 1`: 1 s, 2 s, 4 s ... up to a minute.
fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(LONGEST_BACKOFF)
}

/// Sleeps unless cancelled first; false when cancelled.
async fn pause(cancel: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

async fn cancelled_then_grace(cancel: &CancellationToken) {
    cancel.cancelled().await;
    tokio::time::sleep(SHUTDOWN_GRACE).await;
}

async fn fail(shared: &Shared, job: &Job, reason: &str, report: &Report) {
    let record = record(shared, job, report, "failed", Some(reason));
    let text = error_text(shared, job, reason, report);
    let finished = blocking(shared, job.clone(), move |finisher, job| {
        finisher.failed(&job, &text, record)
    })
    .await;
    match finished {
        Ok(placed) => {
            tracing::warn!(
                "failed {} because {reason} -> {}",
                job.relative.display(),
                placed
                    .input
                    .as_deref()
                    .map(Path::display)
                    .map(|d| d.to_string())
                    .unwrap_or_default()
            );
            shared.tally.add_failed(&job.relative.to_string_lossy());
        }
        Err(error) => write_failure(shared, job, &error),
    }
}

/// The outbox could not be written: the claimed input stays safe in its job and is
/// finished by the next start (or put back now if nothing was committed).
fn write_failure(shared: &Shared, job: &Job, error: &std::io::Error) {
    tracing::error!(
        "cannot write the outcome of {} to the outbox: {error}; the input is kept and retried at the next start",
        job.relative.display()
    );
    if !job.commit_file().is_file() {
        put_back(shared, job);
    }
    shared.tally.add_failed(&job.relative.to_string_lossy());
}

fn put_back(shared: &Shared, job: &Job) {
    let _ = shared.finisher.discard_staging(job);
    match shared.finisher.claims.unclaim(job) {
        Ok(path) => tracing::info!("put {} back into the inbox", path.display()),
        Err(error) => tracing::error!(
            "cannot put {} back into the inbox ({error}); it is kept and resumed at the next start",
            job.relative.display()
        ),
    }
}

async fn resume(shared: &Shared, job: Job) {
    let resumed = blocking(shared, job.clone(), |finisher, job| finisher.resume(&job)).await;
    match resumed {
        Ok(Placed { results, input }) => {
            tracing::info!(
                "finished {} (decided before drawdrop stopped) -> {}",
                input
                    .as_deref()
                    .map(Path::display)
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| job.id.clone()),
                list(&results)
            );
        }
        Err(error) => tracing::error!(
            "cannot finish job {}: {error}; it is retried at the next start",
            job.id
        ),
    }
}

/// Runs finishing file work off the async threads.
async fn blocking<T: Send + 'static>(
    shared: &Shared,
    job: Job,
    work: impl FnOnce(&Finisher, Job) -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let finisher = shared.finisher.clone();
    tokio::task::spawn_blocking(move || work(&finisher, job))
        .await
        .map_err(std::io::Error::other)?
}

fn record(
    shared: &Shared,
    job: &Job,
    report: &Report,
    outcome: &str,
    error: Option<&str>,
) -> Map<String, Value> {
    let server = &shared.config.server;
    let value = json!({
        "time": jiff::ZonedDateTime::now().strftime("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string(),
        "job": job.id,
        "input": job.relative.to_string_lossy(),
        "outcome": outcome,
        "profile": report.profile,
        "server": server.url.as_str(),
        "api": match server.api { crate::config::Api::DrawThings => "drawthings", crate::config::Api::A1111 => "a1111" },
        "settings": report.sent,
        "input_size": report.input_size.map(|(w, h)| json!([w, h])),
        "resized": report.resized,
        "attempts": report.attempts,
        "server_ms": report.server_time.as_millis() as u64,
        "total_ms": report.started.elapsed().as_millis() as u64,
        "error": error,
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn error_text(shared: &Shared, job: &Job, reason: &str, report: &Report) -> String {
    let server = &shared.config.server;
    format!(
        "drawdrop could not process {input}\n\n\
         Reason:   {reason}\n\
         Attempts: {attempts}\n\
         Profile:  {profile}\n\
         Server:   {url}\n\
         When:     {when} (after {took:.1} s)\n\n\
         To try again, move this file back into the inbox.\n",
        input = job.relative.display(),
        attempts = report.attempts,
        profile = report.profile,
        url = server.url,
        when = report.started_at.strftime("%Y-%m-%d %H:%M:%S %:z"),
        took = report.started.elapsed().as_secs_f64(),
    )
}

fn reserved_top_folder(relative: &Path) -> Option<String> {
    let mut components = relative.components();
    let first = components.next()?;
    components.next()?; // a file directly in the inbox is fine whatever its name
    let Component::Normal(name) = first else {
        return None;
    };
    let name = name.to_string_lossy();
    RESERVED
        .iter()
        .any(|reserved| name.eq_ignore_ascii_case(reserved))
        .then(|| name.into_owned())
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let waits: Vec<u64> = (1..=8).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(1000), LONGEST_BACKOFF);
    }

    #[test]
    fn reserved_folders_are_refused_only_as_top_level_folders() {
        assert_eq!(
            reserved_top_folder(Path::new("Originals/cat.png")).as_deref(),
            Some("Originals")
        );
        assert_eq!(
            reserved_top_folder(Path::new("logs/a/cat.png")).as_deref(),
            Some("logs")
        );
        assert_eq!(reserved_top_folder(Path::new("failed.png")), None);
        assert_eq!(reserved_top_folder(Path::new("w/failed/cat.png")), None);
    }
}
