//! What becomes of a job once sending ended: decided (results staged and the commit written,
//! or the failure staged), then applied in the background (files moved into place, the
//! `jobs.jsonl` line, the log line); or put back into the inbox when drawdrop stops first.
//! While the outbox cannot be written, both steps wait and retry; nothing is lost.

use super::Shared;
use super::failure::Failure;
use super::send::Sent;
use crate::config::After;
use crate::image::parameters;
use crate::jobs::claim::Job;
use crate::jobs::finish::{Finisher, InputTo, Placed, Resumed};
use crate::jobs::names::shown;
use crate::pipeline::health::Unreachable;
use crate::pipeline::pool::{Handover, Refusal};
use crate::pipeline::queue::Work;
use crate::pipeline::reload::Current;
use serde_json::{Map, Value, json};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Facts about one job, gathered for the log line, `jobs.jsonl` and `.error.txt`.
pub(super) struct Report {
    started: Instant,
    started_at: jiff::ZonedDateTime,
    profile: String,
    /// The server asked (by index; the config has its name and URL).
    server: usize,
    pub attempts: u32,
    /// Time spent in requests (every attempt's, not the pauses between them).
    pub server_time: Duration,
    /// When the first request went out: the time before it the job waited for its turn
    /// (read ahead while another was in flight, or the server was down).
    pub first_sent: Option<Instant>,
    pub sent: Option<Map<String, Value>>,
    pub input_size: Option<(u32, u32)>,
    pub resized: bool,
    /// `cat.txt`, `cat.toml` that shaped the settings.
    pub sidecars: Vec<String>,
}

impl Report {
    /// A report for `job` on `server`, counting `attempts` made on other servers before.
    pub(super) fn new(current: &Current, job: &Job, server: usize, attempts: u32) -> Report {
        Report {
            started: Instant::now(),
            started_at: jiff::ZonedDateTime::now(),
            profile: current.config.profile_for(&job.relative).name.clone(),
            server,
            attempts,
            server_time: Duration::ZERO,
            first_sent: None,
            sent: None,
            input_size: None,
            resized: false,
            sidecars: Vec::new(),
        }
    }
}

/// What the log says once a job is in place.
pub(super) struct Told {
    failure: Option<String>,
    /// The server's time, its attempts, and the wait before the first request.
    server_time: Duration,
    attempts: u32,
    waited: Duration,
}

impl Told {
    /// `0.7 s at the server, after 1.8 s waiting for its turn`.
    fn durations(&self) -> String {
        let attempts = if self.attempts > 1 {
            format!(" ({} attempts)", self.attempts)
        } else {
            String::new()
        };
        let waited = if self.waited >= Duration::from_millis(50) {
            format!(
                ", after {:.1} s waiting for its turn",
                self.waited.as_secs_f64()
            )
        } else {
            String::new()
        };
        format!(
            "{:.1} s at the server{attempts}{waited}",
            self.server_time.as_secs_f64()
        )
    }
}

/// Decides a job after sending, then applies it in the background; or hands it to another
/// server of the pool. Returns `Some` when `--once` must give up (the job is back in the
/// inbox then).
pub(super) async fn decide(
    shared: &Arc<Shared>,
    current: Arc<Current>,
    job: Job,
    handover: Handover,
    sent: Sent,
    report: Report,
) -> Option<Unreachable> {
    let (taken, failure) = match sent {
        Sent::Images(images, infotext) => {
            let input_to = match current.config.after {
                After::Archive => InputTo::Originals,
                After::Delete => InputTo::Deleted,
            };
            let record = record(&current, &job, &report, "done", None);
            let images: Vec<Vec<u8>> = images
                .into_iter()
                .map(|mut png| {
                    parameters::add_infotext(&mut png, &infotext);
                    png
                })
                .collect();
            let decided = decide_with(shared, &job, move |finisher, job| {
                finisher.decide_done(job, &images, input_to, record.clone())
            })
            .await;
            (decided, None)
        }
        Sent::HandOver { reason, refused } => {
            return hand_over(shared, current, job, handover, report, reason, refused).await;
        }
        Sent::Failed(reason) => fail(shared, &current, &job, &report, reason).await,
        Sent::Interrupted => {
            put_back(shared, &job);
            shared.queue.job_ended();
            return None;
        }
        Sent::GaveUp(unreachable) => {
            put_back(shared, &job);
            shared.queue.job_ended();
            return Some(unreachable);
        }
    };
    finish(shared, current, job, report, taken, failure);
    None
}

/// Decides a failure: the input and its reason go to `failed/`.
async fn fail(
    shared: &Arc<Shared>,
    current: &Current,
    job: &Job,
    report: &Report,
    failure: Failure,
) -> (bool, Option<String>) {
    let reason = failure.to_string();
    let record = record(current, job, report, "failed", Some(&failure));
    let text = error_text(current, job, &reason, report);
    let decided = decide_with(shared, job, move |finisher, job| {
        finisher.decide_failed(job, &text, record.clone())
    })
    .await;
    (decided, Some(reason))
}

/// After deciding: apply in the background, or (not decided: shutting down) let the job go.
fn finish(
    shared: &Arc<Shared>,
    current: Arc<Current>,
    job: Job,
    report: Report,
    taken: bool,
    failure: Option<String>,
) {
    if taken {
        let sent_at = report.first_sent.unwrap_or_else(Instant::now);
        let told = Told {
            failure,
            server_time: report.server_time,
            attempts: report.attempts,
            waited: sent_at.saturating_duration_since(report.started),
        };
        apply_in_background(shared, current, job, Some(told));
    } else {
        shared.queue.job_ended();
    }
}

/// A pool's server could not do the job: it goes to another one, first in line; when no
/// server is left that could, it fails with every server's reason.
async fn hand_over(
    shared: &Arc<Shared>,
    current: Arc<Current>,
    job: Job,
    handover: Handover,
    report: Report,
    reason: String,
    refused: bool,
) -> Option<Unreachable> {
    let server = current.server(report.server);
    let mut handover = handover;
    handover.attempts = report.attempts;
    if refused {
        handover.refusals.push(Refusal {
            server: report.server,
            reason: reason.clone(),
        });
    }
    let profile = current.config.profile_for(&job.relative);
    if shared.pool.anyone_left(&current.config, profile, &handover) {
        tracing::info!(
            "{} goes to another server: {} {}",
            shown(&job.relative),
            server.name,
            if refused {
                format!("cannot do it ({reason})")
            } else {
                format!("does not answer ({reason})")
            }
        );
        let _ = shared.finisher.discard_staging(&job);
        shared.queue.push_front(Work::Claimed(job, handover));
        shared.queue.job_ended();
        return None;
    }
    // Only a pool hands jobs over; should its one other server be gone, its reason stands.
    let reasons = if current.config.servers.len() > 1 {
        handover.reasons(&current.config)
    } else {
        reason
    };
    let reason = Failure::NoServer(reasons);
    let (taken, failure) = fail(shared, &current, &job, &report, reason).await;
    finish(shared, current, job, report, taken, failure);
    None
}

/// Stages and commits, waiting (and retrying) while the outbox cannot be written. On
/// shutdown meanwhile the input goes back to the inbox. True once committed.
async fn decide_with(
    shared: &Shared,
    job: &Job,
    write: impl Fn(&Finisher, &Job) -> std::io::Result<()> + Send + Sync + 'static,
) -> bool {
    let write = Arc::new(write);
    loop {
        if job.commit_file().is_file() {
            return true;
        }
        let attempt = {
            let (write, finisher, job) = (write.clone(), shared.finisher.clone(), job.clone());
            tokio::task::spawn_blocking(move || write(&finisher, &job))
                .await
                .map_err(std::io::Error::other)
                .and_then(|written| written)
        };
        match attempt {
            Ok(()) => return true,
            Err(error) => shared.outbox_gate.close(&error.to_string()),
        }
        if !wait_for_outbox(shared).await {
            if !job.commit_file().is_file() {
                put_back(shared, job);
                return false;
            }
            return true;
        }
        tracing::info!("writing the outcome of {} again", shown(&job.relative));
    }
}

/// Moves a decided job into place without holding up the next request. While the outbox
/// cannot be written it waits; on shutdown meanwhile the job stays decided and the next
/// start finishes it.
/// Finishes a job an earlier run decided but did not complete (found at start).
pub(crate) fn apply_recovered(shared: &Arc<Shared>, job: Job) {
    shared.queue.job_started();
    apply_in_background(shared, shared.live.get(), job, None);
}

pub(super) fn apply_in_background(
    shared: &Arc<Shared>,
    current: Arc<Current>,
    job: Job,
    told: Option<Told>,
) {
    let shared = shared.clone();
    let tracker = shared.applying.clone();
    tracker.spawn(async move {
        // A job decided in this run is complete on its first try; a recovered one, or a
        // retry, may have written its jobs.jsonl line already.
        let mut resumed = if told.is_some() {
            Resumed::No
        } else {
            Resumed::Yes
        };
        let placed = loop {
            let (finisher, job) = (shared.finisher.clone(), job.clone());
            let applied = tokio::task::spawn_blocking(move || finisher.resume(&job, resumed))
                .await
                .map_err(std::io::Error::other)
                .and_then(|placed| placed);
            match applied {
                Ok(placed) => break Some(placed),
                Err(error) => shared.outbox_gate.close(&error.to_string()),
            }
            resumed = Resumed::Yes;
            if !wait_for_outbox(&shared).await {
                break None;
            }
        };
        if let Some(placed) = placed {
            // Before the log line: once it says "done", the folder is gone if it is to go.
            remove_emptied_folders(&shared, &current, &job);
            shared.queue.job_ended();
            shared.gallery.job_logged();
            tell(&shared, &current, &job, &placed, told);
        } else {
            shared.queue.job_ended();
        }
    });
}

/// A folder that drawdrop emptied (a batch copied into the inbox) goes once its last file
/// is done; a profile's folder stays, and so does any folder that holds something.
fn remove_emptied_folders(shared: &Shared, current: &Current, job: &Job) {
    let profiles = &current.config.profiles;
    let is_profile_folder = |folder: &Path| {
        let mut parts = folder.components();
        matches!(
            (parts.next(), parts.next()),
            (Some(Component::Normal(name)), None)
                if name.to_str().is_some_and(|name| profiles.contains_key(name))
        )
    };
    for folder in shared
        .finisher
        .claims
        .remove_emptied_folders(&job.relative, is_profile_folder)
    {
        tracing::info!(
            "removed the folder {}: drawdrop took every file it held",
            shown(&folder)
        );
    }
}

/// The log line, the tally and the desktop notification for a job now in place.
fn tell(shared: &Shared, current: &Current, job: &Job, placed: &Placed, told: Option<Told>) {
    let name = placed
        .input
        .as_deref()
        .map(|input| input.components().skip(1).collect::<PathBuf>())
        .unwrap_or_else(|| job.relative.clone());
    match told {
        None => tracing::info!(
            "finished {} (decided before drawdrop stopped) -> {}",
            shown(&name),
            list(&placed.results)
        ),
        Some(told @ Told { failure: None, .. }) => {
            tracing::info!(
                "done {} in {} -> {}",
                shown(&job.relative),
                told.durations(),
                list(&placed.results)
            );
            shared.tally.add_done(&shown(&job.relative));
            shared.job_ended(current, None);
        }
        Some(Told {
            failure: Some(reason),
            ..
        }) => {
            tracing::warn!(
                "failed {} because {reason} -> {}",
                shown(&job.relative),
                placed.input.as_deref().map(shown).unwrap_or_default()
            );
            shared.tally.add_failed(&shown(&job.relative));
            shared.job_ended(current, Some((&shown(&job.relative), &reason)));
        }
    }
}

/// Waits until the outbox takes writes again; false when drawdrop stops first.
async fn wait_for_outbox(shared: &Shared) -> bool {
    tokio::select! {
        _ = shared.cancel.cancelled() => false,
        _ = shared.outbox_gate.wait_open() => true,
    }
}

/// Puts a claimed input (and its sidecars) back into the inbox; but when drawdrop stops
/// and a backend noted the request it queued at its server (a ComfyUI prompt, which the
/// server goes on with), the claim is kept, so the next start takes that request's results
/// instead of queueing it a second time.
pub(super) fn put_back(shared: &Shared, job: &Job) {
    let _ = shared.finisher.discard_staging(job);
    if shared.cancel.is_cancelled()
        && let Some((server, _)) = job.sent_note()
    {
        tracing::info!(
            "kept {} claimed: its request is queued at {server}, and the next start takes its results",
            shown(&job.relative)
        );
        return;
    }
    match shared.finisher.claims.unclaim(job) {
        Ok(path) => tracing::info!("put {} back into the inbox", shown(&path)),
        Err(error) => tracing::error!(
            "cannot put {} back into the inbox ({error}); it is kept and resumed at the next start",
            shown(&job.relative)
        ),
    }
}

fn record(
    current: &Current,
    job: &Job,
    report: &Report,
    outcome: &str,
    failure: Option<&Failure>,
) -> Map<String, Value> {
    let server = current.server(report.server);
    let value = json!({
        "time": jiff::ZonedDateTime::now().strftime("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string(),
        "job": job.id,
        "input": job.relative.to_string_lossy(),
        "outcome": outcome,
        "profile": report.profile,
        "server": server.name,
        "url": server.url.as_str(),
        "api": server.api.name(),
        "settings": report.sent,
        "input_size": report.input_size.map(|(w, h)| json!([w, h])),
        "resized": report.resized,
        "sidecars": report.sidecars,
        "attempts": report.attempts,
        "server_ms": report.server_time.as_millis() as u64,
        "total_ms": report.started.elapsed().as_millis() as u64,
        "error": failure.map(Failure::to_string),
        "error_kind": failure.map(Failure::kind),
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
        url = current.server(report.server).label(),
        when = report.started_at.strftime("%Y-%m-%d %H:%M:%S %:z"),
        took = report.started.elapsed().as_secs_f64(),
    )
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| shown(p))
        .collect::<Vec<_>>()
        .join(", ")
}
