//! Sending one request until an answer with images comes, the file must fail, or drawdrop
//! stops: waits while the server is down (not an attempt), retries with exponential
//! backoff (honouring `Retry-After`) what may pass, fails at once what the server rejects.

use super::Shared;
use super::failure::Failure;
use super::outcome::Report;
use super::prepare::Prepared;
use crate::backends::{BoxFuture, Disposition, Generation, Journal, Request, Trouble, rpc_name};
use crate::jobs::claim::Job;
use crate::jobs::failpoint::crash_point;
use crate::jobs::names::shown;
use crate::pipeline::health::Unreachable;
use crate::pipeline::reload::Current;
use crate::pipeline::timing;
use crate::report::live::Progress;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The pause before the second attempt ([`timing::first_backoff`]) doubles each time, up to
/// `LONGEST_BACKOFF`.
const LONGEST_BACKOFF: Duration = Duration::from_secs(60);
/// A `Retry-After` longer than this is not honoured in full.
const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(600);
/// On shutdown, an answer already on its way gets this long to arrive.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How sending one job ended.
pub(super) enum Sent {
    /// The result images, with the `parameters` chunk for them.
    Images(Vec<Vec<u8>>, String),
    Failed(Failure),
    /// A pool's server cannot do it now: another one should. `refused`: this server gave
    /// the job up for good (it rejected it, or ran out of attempts); else it is only down.
    HandOver {
        reason: String,
        refused: bool,
    },
    /// Shut down before an answer came: the input goes back to the inbox.
    Interrupted,
    /// `--once` waited `timeout_s` for the server in vain.
    GaveUp(Unreachable),
}

pub(super) async fn send(
    shared: &Shared,
    current: &Current,
    index: usize,
    job: &Job,
    mut prepared: Prepared,
    report: &mut Report,
) -> Sent {
    let server = current.server(index);
    let health = shared.pool.health(index);
    let profile = &current.config.profile_for(&job.relative).name;
    let shared_pool = shared.pool.is_shared();
    let mut waits_in_a_row = 0u32;
    let mut told_sending = false;
    let mut attempts_here = 0u32;
    let reporter = shared.in_flight.start(&job.relative, &server.name);
    let journal = ClaimJournal::new(job, &server.name);
    loop {
        if shared_pool && !health.is_up() {
            // Gone while this job waited for it: another server of the pool should have it.
            let reason = match health.state() {
                crate::pipeline::health::State::Down { reason } => reason,
                _ => "not answering".to_owned(),
            };
            return Sent::HandOver {
                reason,
                refused: false,
            };
        }
        let ready = tokio::select! {
            _ = shared.cancel.cancelled() => return Sent::Interrupted,
            ready = health.wait_up() => ready,
        };
        if let Err(unreachable) = ready {
            return Sent::GaveUp(unreachable);
        }
        report.attempts += 1;
        attempts_here += 1;
        tracing::debug!(
            "sending {} to {} (attempt {} of {})",
            shown(&job.relative),
            server.url,
            report.attempts,
            server.max_attempts
        );
        let backend = current.backend(index);
        let body = match prepared.body(current.backend_shared(index)).await {
            Ok(body) => body,
            Err(failure) => return Sent::Failed(failure),
        };
        let started = Instant::now();
        if !told_sending {
            tracing::info!("sending {} {}", shown(&job.relative), prepared.summary);
            told_sending = true;
        }
        report.first_sent.get_or_insert(started);
        reporter.report(Progress::Attempt);
        let generation = Generation {
            request: &prepared.request,
            body,
            limits: &shared.limits,
            progress: &reporter,
            journal: &journal,
        };
        let answer = tokio::select! {
            answer = backend.generate(generation) => answer,
            _ = cancelled_then_grace(&shared.cancel) => return Sent::Interrupted,
        };
        report.server_time += started.elapsed();
        let trouble = match answer {
            Ok(images) => return Sent::Images(images, prepared.infotext),
            Err(trouble) => trouble,
        };
        let disposition = trouble.disposition();
        let server_gone = trouble.server_gone();
        let reason = trouble.to_string();
        if shared_pool {
            // In a pool, a server that cannot do the job now hands it to another.
            match disposition {
                Disposition::Fail => {
                    let reason = refusal(current, index, job, report, &prepared.request, trouble);
                    let reason = reason.to_string();
                    shared.pool.skip(index, profile, &reason);
                    return Sent::HandOver {
                        reason,
                        refused: true,
                    };
                }
                Disposition::WaitForServer => {
                    report.attempts -= 1;
                    health.mark_down(&reason);
                    return Sent::HandOver {
                        reason,
                        refused: false,
                    };
                }
                Disposition::Retry(_) if server_gone => {
                    health.mark_down(&reason);
                    return Sent::HandOver {
                        reason,
                        refused: false,
                    };
                }
                Disposition::Retry(_) if attempts_here >= server.max_attempts => {
                    let gave_up = Failure::GaveUp {
                        attempts: attempts_here,
                        last: trouble,
                    };
                    return Sent::HandOver {
                        reason: gave_up.to_string(),
                        refused: true,
                    };
                }
                Disposition::Retry(_) => {}
            }
        }
        match disposition {
            Disposition::Fail => {
                let failure = refusal(current, index, job, report, &prepared.request, trouble);
                return Sent::Failed(failure);
            }
            Disposition::WaitForServer => {
                report.attempts -= 1;
                attempts_here -= 1;
                waits_in_a_row += 1;
                health.mark_down(&reason);
                // The server may answer probes yet refuse this request: don't spin.
                if waits_in_a_row > 1 && !pause(&shared.cancel, backoff(waits_in_a_row - 1)).await {
                    return Sent::Interrupted;
                }
            }
            Disposition::Retry(at_least) => {
                waits_in_a_row = 0;
                if attempts_here >= server.max_attempts {
                    return Sent::Failed(Failure::GaveUp {
                        attempts: report.attempts,
                        last: trouble,
                    });
                }
                let wait = backoff(attempts_here)
                    .max(at_least.unwrap_or_default().min(LONGEST_RETRY_AFTER));
                let on = if shared_pool {
                    format!(" on {}", server.name)
                } else {
                    String::new()
                };
                tracing::warn!(
                    "retrying {}{on} in {} s because {reason} (attempt {} of {})",
                    shown(&job.relative),
                    seconds(wait),
                    attempts_here,
                    server.max_attempts
                );
                if !pause(&shared.cancel, wait).await {
                    return Sent::Interrupted;
                }
            }
        }
    }
}

/// The job's claim as its backend's [`Journal`]: notes are kept in the claim folder,
/// tagged with the server's name.
struct ClaimJournal {
    job: Job,
    server: String,
    noted: std::sync::Mutex<Option<String>>,
}

impl ClaimJournal {
    fn new(job: &Job, server: &str) -> ClaimJournal {
        let noted = job
            .sent_note()
            .filter(|(by, _)| by == server)
            .map(|(_, note)| note);
        ClaimJournal {
            job: job.clone(),
            server: server.to_owned(),
            noted: std::sync::Mutex::new(noted),
        }
    }
}

impl Journal for ClaimJournal {
    fn noted(&self) -> Option<String> {
        crate::mutex::lock(&self.noted).clone()
    }

    fn note<'a>(&'a self, what: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let (job, server, note) = (self.job.clone(), self.server.clone(), what.to_owned());
            tokio::task::spawn_blocking(move || job.note_sent(&server, &note))
                .await
                .map_err(|error| error.to_string())?
                .map_err(|error| error.to_string())?;
            crash_point("noted");
            *crate::mutex::lock(&self.noted) = Some(what.to_owned());
            Ok(())
        })
    }
}

/// The server refused the request itself: its words, and what to fix — the model that was
/// sent when the refusal is about the model, and the files whose settings were sent (the
/// profile, and the picture's own `.toml`).
fn refusal(
    current: &Current,
    index: usize,
    job: &Job,
    report: &Report,
    request: &Request,
    trouble: Trouble,
) -> Failure {
    let (status, detail) = match trouble {
        Trouble::Status { code, detail, .. } => (format!("HTTP {code}"), detail),
        Trouble::Rpc { code, detail } => (format!("gRPC {}", rpc_name(code)), detail),
        // Only a status refuses a request; anything else that ends it is its last attempt.
        last => {
            return Failure::GaveUp {
                attempts: report.attempts,
                last,
            };
        }
    };
    let profile = current.config.profile_for(&job.relative);
    let profile_file = match &profile.file {
        Some(file) => file.display().to_string(),
        None => format!(
            "the built-in `{}` profile (no file: write {} to choose)",
            profile.name,
            current
                .config
                .profiles_dir()
                .join(format!("{}.toml", profile.name))
                .display()
        ),
    };
    let sidecar = report
        .sidecars
        .iter()
        .find(|name| name.ends_with(".toml"))
        .map(|name| format!("{name} beside the picture"));
    let model = request.model.as_deref();
    let about_model = detail.to_lowercase().contains("model");
    let hint = match (about_model, model, &sidecar) {
        (true, Some(model), Some(sidecar)) if profile.settings.model.as_deref() != Some(model) => {
            format!("model sent: {model:?}, from {sidecar}")
        }
        (true, Some(model), _) => format!("model sent: {model:?}, from {profile_file}"),
        (true, None, _) => format!(
            "no model was sent, so the app's own was used; choose one with `model` in {profile_file}"
        ),
        (false, _, Some(sidecar)) => format!("settings from {profile_file} and {sidecar}"),
        (false, _, None) => format!("settings from {profile_file}"),
    };
    Failure::Refused {
        product: current.backend(index).product(),
        status,
        detail,
        hint,
    }
}

/// Backoff before attempt `attempt + 1`: 1 s, 2 s, 4 s ... up to a minute, each made up to a
/// quarter longer at random, so that jobs which failed together (a server restarting under
/// a pool's load) are not all sent again in the same instant.
fn backoff(attempt: u32) -> Duration {
    let pause = timing::first_backoff()
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(LONGEST_BACKOFF);
    pause + pause.mul_f64(fastrand::f64() / 4.0)
}

/// A pause as the log says it: whole seconds (`2`), or a fraction of one (`0.05`).
fn seconds(pause: Duration) -> String {
    if pause >= Duration::from_secs(1) {
        pause.as_secs().to_string()
    } else {
        format!("{:.2}", pause.as_secs_f64())
    }
}

/// Sleeps unless cancelled first; false when cancelled.
pub(super) async fn pause(cancel: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

async fn cancelled_then_grace(cancel: &CancellationToken) {
    cancel.cancelled().await;
    tokio::time::sleep(SHUTDOWN_GRACE).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute_with_up_to_a_quarter_more() {
        for _ in 0..100 {
            let waits: Vec<u64> = (1..=8).map(|a| backoff(a).as_millis() as u64).collect();
            let nominal = [1, 2, 4, 8, 16, 32, 60, 60].map(|s| s * 1000);
            for (wait, nominal) in waits.iter().zip(nominal) {
                assert!((nominal..nominal + nominal / 4).contains(wait), "{waits:?}");
            }
            assert!(backoff(1000) < LONGEST_BACKOFF + LONGEST_BACKOFF / 4);
        }
        // The log names them in whole seconds, as they were before the quarter was added.
        assert_eq!(seconds(backoff(1)), "1");
        assert_eq!(seconds(backoff(2)), "2");
        assert_eq!(seconds(Duration::from_millis(50)), "0.05");
    }
}
