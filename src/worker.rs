//! Workers: take settled files from the queue, claim them, send them, and finish them.
//!
//! One worker per request the server may have in flight (`concurrency`). A worker waits
//! while the server is down or the outbox cannot be written (nothing is failed for either),
//! retries what may pass with exponential backoff up to `max_attempts`, fails at once what
//! the server rejects (4xx), and on shutdown puts back the input it holds unless its outcome
//! is already committed.

use crate::api::Disposition;
use crate::api::answer::{self, BadAnswer};
use crate::api::request;
use crate::claim::Job;
use crate::config::{After, Api, Profile};
use crate::desktop::Notifications;
use crate::failpoint::crash_point;
use crate::finish::{Finisher, InputTo, Placed};
use crate::health::{Health, Unreachable};
use crate::image::{self, Limits};
use crate::image_settings;
use crate::inbox_names::shown;
use crate::metadata;
use crate::outbox::RESERVED;
use crate::outbox_gate::OutboxGate;
use crate::queue::{Queue, Work};
use crate::reload::{Current, Live};
use crate::tally::Tally;
use crate::watch::scan;
use crate::watch::settle::Observation;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// The config in force (and a client for its server), replaced when the files change.
    pub live: Arc<Live>,
    /// The claims and the outbox.
    pub finisher: Finisher,
    pub queue: Arc<Queue>,
    pub health: Arc<Health>,
    pub outbox_gate: Arc<OutboxGate>,
    pub tally: Arc<Tally>,
    pub limits: Limits,
    /// The inbox as the watch stage sees it (canonical).
    pub inbox: PathBuf,
    /// `--once`: how long a server that does not answer is waited for before giving up.
    pub give_up_after: Option<Duration>,
    pub cancel: CancellationToken,
    pub notifications: Notifications,
    /// Jobs being worked on right now.
    pub working: AtomicUsize,
}

impl Shared {
    /// A job ended: tell the desktop (when asked to) about a failure, and about the batch
    /// once nothing is left to do.
    fn job_ended(&self, current: &Current, failure: Option<(&str, &str)>) {
        if !current.config.notifications {
            return;
        }
        let drained = self.queue.is_empty()
            && self.queue.is_idle()
            && self.working.load(Ordering::SeqCst) <= 1;
        self.notifications.job_finished(failure, drained);
    }
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
    /// `cat.txt`, `cat.toml` that shaped the settings.
    sidecars: Vec<String>,
}

/// A request ready to send.
struct Prepared {
    body: Bytes,
    expected_images: usize,
    /// The `parameters` chunk for the results.
    infotext: String,
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
        let current = shared.live.get();
        let job = match work {
            Work::Settled { relative, seen } => match take(&shared, &relative, seen).await? {
                Some(job) => job,
                None => continue,
            },
            Work::Recovered(job) if job.commit_file().is_file() => {
                resume(&shared, job).await;
                continue;
            }
            Work::Recovered(job) => {
                if let Err(error) = shared.finisher.discard_staging(&job) {
                    tracing::warn!(
                        "cannot clear staged files of {}: {error}",
                        shown(&job.relative)
                    );
                }
                tracing::info!(
                    "resuming {} (claimed before drawdrop stopped)",
                    shown(&job.relative)
                );
                job
            }
        };
        shared.working.fetch_add(1, Ordering::SeqCst);
        let gave_up = process(&shared, &current, job).await;
        shared.working.fetch_sub(1, Ordering::SeqCst);
        if let Some(unreachable) = gave_up {
            return Err(unreachable);
        }
    }
}

/// Waits until the server answers and the outbox can be written, then claims a settled
/// file if it is still as it settled. The queue entry is released or handed back either way.
async fn take(
    shared: &Shared,
    relative: &Path,
    seen: Observation,
) -> Result<Option<Job>, Unreachable> {
    let ready = tokio::select! {
        _ = shared.cancel.cancelled() => None,
        ready = async {
            shared.outbox_gate.wait_open().await;
            shared.health.wait_up(shared.give_up_after).await
        } => Some(ready),
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
    match scan::observe(&shared.inbox.join(relative)) {
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
    let job = match shared.finisher.claims.claim(relative) {
        Ok(Some(job)) => job,
        Ok(None) => {
            shared.queue.release(relative);
            return Ok(None);
        }
        Err(error) => {
            tracing::error!(
                "cannot claim {}: {error}; it stays in the inbox",
                shown(relative)
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
                tracing::error!("cannot put {} back: {error}", shown(relative));
                shared.queue.release(relative);
            }
        }
        return Ok(None);
    }
    shared.queue.release(relative);
    crash_point("claimed");
    Ok(Some(job))
}

/// Sends one claimed job and finishes it. Returns `Some` when `--once` must give up.
async fn process(shared: &Shared, current: &Current, job: Job) -> Option<Unreachable> {
    let profile = current.config.profile_for(&job.relative).clone();
    let mut report = Report {
        started: Instant::now(),
        started_at: jiff::ZonedDateTime::now(),
        profile: profile.name.clone(),
        attempts: 0,
        server_time: Duration::ZERO,
        sent: None,
        input_size: None,
        resized: false,
        sidecars: Vec::new(),
    };
    let (sent, infotext) = match prepare(shared, current, &job, &profile, &mut report).await {
        Err(reason) => (Sent::Failed(reason), String::new()),
        Ok(prepared) => {
            let (width, height) = report.input_size.unwrap_or_default();
            tracing::info!(
                "taken {} (profile {}{}, {width}x{height}{})",
                shown(&job.relative),
                profile.name,
                report
                    .sidecars
                    .iter()
                    .map(|name| format!(" + {name}"))
                    .collect::<String>(),
                if report.resized { ", resized" } else { "" }
            );
            let infotext = prepared.infotext.clone();
            (
                send(shared, current, &job, prepared, &mut report).await,
                infotext,
            )
        }
    };
    match sent {
        Sent::Images(images) => {
            succeed(shared, current, &job, images, &infotext, &report).await;
            None
        }
        Sent::Failed(reason) => {
            fail(shared, current, &job, &reason, &report).await;
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
    current: &Current,
    job: &Job,
    profile: &Profile,
    report: &mut Report,
) -> Result<Prepared, String> {
    if let Some(reserved) = reserved_top_folder(&job.relative) {
        return Err(format!(
            "the inbox folder `{reserved}` has the name of an outbox folder drawdrop uses itself; rename the folder"
        ));
    }
    let resolved = image_settings::resolve(&profile.settings, job, &shared.inbox)?;
    report.sidecars = resolved.sidecars;
    let settings = resolved.settings;
    let input = job.input();
    let limits = shared.limits;
    let max_bytes = current.config.max_file_bytes;
    let api = current.config.server.api;
    let built = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let size = std::fs::metadata(&input)
            .map_err(|error| format!("cannot read the file: {error}"))?
            .len();
        if size > max_bytes {
            return Err(format!(
                "the file is {} MB, above the limit of {} MB (max_file_mb in the config)",
                size.div_ceil(1024 * 1024),
                max_bytes / (1024 * 1024)
            ));
        }
        let bytes =
            std::fs::read(&input).map_err(|error| format!("cannot read the file: {error}"))?;
        let info = image::inspect(&bytes, &limits).map_err(|problem| problem.to_string())?;
        let target = image::target_size(info.size(), (settings.width, settings.height));
        let init = image::init_image(&bytes, &info, target).map_err(|error| error.to_string())?;
        let resized = matches!(init, std::borrow::Cow::Owned(_));
        let seed = request::pick_seed(&settings);
        let sent = request::settings_for(api, &settings, target, seed);
        let body = Bytes::from(request::body(&sent, &init));
        let prepared = Prepared {
            body,
            expected_images: request::expected_images(&settings),
            infotext: metadata::infotext(&settings, target, seed),
        };
        Ok((prepared, sent, info.size(), resized))
    })
    .await
    .map_err(|error| format!("internal error while preparing the image: {error}"))??;
    let (prepared, sent, input_size, resized) = built;
    report.sent = Some(sent);
    report.input_size = Some(input_size);
    report.resized = resized;
    Ok(prepared)
}

/// Sends until an answer with images comes, the file must fail, or drawdrop stops.
async fn send(
    shared: &Shared,
    current: &Current,
    job: &Job,
    prepared: Prepared,
    report: &mut Report,
) -> Sent {
    let server = &current.config.server;
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
            shown(&job.relative),
            server.url,
            report.attempts,
            server.max_attempts
        );
        let started = Instant::now();
        let answer = tokio::select! {
            answer = current.client.img2img(prepared.body.clone()) => answer,
            _ = cancelled_then_grace(&shared.cancel) => return Sent::Interrupted,
        };
        report.server_time += started.elapsed();
        let (reason, disposition) = match answer {
            Ok(answer) => match answer::images(
                &answer,
                server.api,
                prepared.expected_images,
                &shared.limits,
            ) {
                Ok(images) => return Sent::Images(images),
                Err(BadAnswer(reason)) => (reason, Disposition::Retry(None)),
            },
            Err(error) => (error.to_string(), error.disposition()),
        };
        match disposition {
            Disposition::Fail => return Sent::Failed(reason),
            Disposition::WaitForServer => {
                report.attempts -= 1;
                waits_in_a_row += 1;
                shared.health.mark_down(&reason);
                // The server may answer probes yet refuse this request: don't spin.
                if waits_in_a_row > 1 && !pause(&shared.cancel, backoff(waits_in_a_row - 1)).await {
                    return Sent::Interrupted;
                }
            }
            Disposition::Retry(at_least) => {
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
                    shown(&job.relative),
                    wait.as_secs(),
                    report.attempts,
                    server.max_attempts
                );
                if !pause(&shared.cancel, wait).await {
                    return Sent::Interrupted;
                }
            }
        }
    }
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

async fn succeed(
    shared: &Shared,
    current: &Current,
    job: &Job,
    images: Vec<Vec<u8>>,
    infotext: &str,
    report: &Report,
) {
    let input_to = match current.config.after {
        After::Archive => InputTo::Originals,
        After::Delete => InputTo::Deleted,
    };
    let record = record(current, job, report, "done", None);
    let images: Arc<Vec<Vec<u8>>> = Arc::new(
        images
            .into_iter()
            .map(|png| metadata::with_infotext(png, infotext))
            .collect(),
    );
    let written = write_outcome(shared, job, move |finisher, job| {
        finisher.done(job, &images, input_to, record.clone())
    })
    .await;
    if let Some(placed) = written {
        tracing::info!(
            "done {} in {:.1} s -> {}",
            shown(&job.relative),
            report.started.elapsed().as_secs_f64(),
            list(&placed.results)
        );
        shared.tally.add_done(&shown(&job.relative));
        shared.job_ended(current, None);
    }
}

async fn fail(shared: &Shared, current: &Current, job: &Job, reason: &str, report: &Report) {
    let record = record(current, job, report, "failed", Some(reason));
    let text = error_text(current, job, reason, report);
    let written = write_outcome(shared, job, move |finisher, job| {
        finisher.failed(job, &text, record.clone())
    })
    .await;
    if let Some(placed) = written {
        tracing::warn!(
            "failed {} because {reason} -> {}",
            shown(&job.relative),
            placed.input.as_deref().map(shown).unwrap_or_default()
        );
        shared.tally.add_failed(&shown(&job.relative));
        shared.job_ended(current, Some((&shown(&job.relative), reason)));
    }
}

/// Writes a job's outcome, waiting (and retrying) while the outbox cannot be written. Once
/// the outcome is committed, a retry only completes it (`resume`), never decides it again.
/// On shutdown meanwhile, an uncommitted input goes back to the inbox; a committed one stays
/// claimed and is finished at the next start. `None` then.
async fn write_outcome(
    shared: &Shared,
    job: &Job,
    write: impl Fn(&Finisher, &Job) -> std::io::Result<Placed> + Send + Sync + 'static,
) -> Option<Placed> {
    let write = Arc::new(write);
    loop {
        let attempt = {
            let (write, finisher, job) = (write.clone(), shared.finisher.clone(), job.clone());
            tokio::task::spawn_blocking(move || {
                if job.commit_file().is_file() {
                    finisher.resume(&job)
                } else {
                    write(&finisher, &job)
                }
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|written| written)
        };
        let error = match attempt {
            Ok(placed) => return Some(placed),
            Err(error) => error,
        };
        shared.outbox_gate.close(&error.to_string());
        let reopened = tokio::select! {
            _ = shared.cancel.cancelled() => false,
            _ = shared.outbox_gate.wait_open() => true,
        };
        if !reopened {
            if !job.commit_file().is_file() {
                put_back(shared, job);
            }
            return None;
        }
        tracing::info!("writing the outcome of {} again", shown(&job.relative));
    }
}

fn put_back(shared: &Shared, job: &Job) {
    let _ = shared.finisher.discard_staging(job);
    match shared.finisher.claims.unclaim(job) {
        Ok(path) => tracing::info!("put {} back into the inbox", shown(&path)),
        Err(error) => tracing::error!(
            "cannot put {} back into the inbox ({error}); it is kept and resumed at the next start",
            shown(&job.relative)
        ),
    }
}

async fn resume(shared: &Shared, job: Job) {
    let resumed = write_outcome(shared, &job, |finisher, job| finisher.resume(job)).await;
    if let Some(Placed { results, input }) = resumed {
        tracing::info!(
            "finished {} (decided before drawdrop stopped) -> {}",
            input
                .as_deref()
                .map(shown)
                .unwrap_or_else(|| job.id.clone()),
            list(&results)
        );
    }
}

fn record(
    current: &Current,
    job: &Job,
    report: &Report,
    outcome: &str,
    error: Option<&str>,
) -> Map<String, Value> {
    let server = &current.config.server;
    let value = json!({
        "time": jiff::ZonedDateTime::now().strftime("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string(),
        "job": job.id,
        "input": job.relative.to_string_lossy(),
        "outcome": outcome,
        "profile": report.profile,
        "server": server.url.as_str(),
        "api": match server.api { Api::DrawThings => "drawthings", Api::A1111 => "a1111" },
        "settings": report.sent,
        "input_size": report.input_size.map(|(w, h)| json!([w, h])),
        "resized": report.resized,
        "sidecars": report.sidecars,
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

fn error_text(current: &Current, job: &Job, reason: &str, report: &Report) -> String {
    format!(
        "drawdrop could not process {input}\n\n\
         Reason:   {reason}\n\
         Attempts: {attempts}\n\
         Profile:  {profile}\n\
         Server:   {url}\n\
         When:     {when} (after {took:.1} s)\n\n\
         To try again, move this file back into the inbox.\n",
        input = shown(&job.relative),
        attempts = report.attempts,
        profile = report.profile,
        url = current.config.server.url,
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
        .map(|p| shown(p))
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
