//! Workers: take work from the queue, claim it, send it to their server, and finish it.
//!
//! Each server has `concurrency` slots. A slot is a small pipeline, so drawdrop's own work
//! hides behind the server's:
//!
//! ```text
//! preparer: wait for its server and the outbox -> take matching work -> claim -> build ─┐ (1 ready)
//! sender:   send (retries, waits) -> stage the results + commit ─────────────────────────┴─> apply (background)
//! ```
//! The preparer claims the next file while the sender's request is in flight; the sender
//! commits a job before it sends the next, so at most the job in flight is ever sent again
//! after a crash; moving files into place (apply) runs in the background.
//! A slot waits while its server is down or the outbox cannot be written (nothing is failed
//! for either). With a pool, a job its server cannot do (down, timing out, refusing the
//! profile) goes back to the queue, first in line, for another server; only when no server
//! can do it does it fail, with every server's reason. On shutdown a slot puts back what it
//! holds unless its outcome is already committed.

mod failure;
mod outcome;
mod prepare;
mod send;
mod sidecars;
#[cfg(test)]
mod tests;

use crate::image::Limits;
use crate::jobs::claim::Job;
use crate::jobs::failpoint::crash_point;
use crate::jobs::finish::Finisher;
use crate::jobs::names::shown;
use crate::jobs::seen::{self, Observation};
use crate::pipeline::health::Unreachable;
use crate::pipeline::outbox_gate::OutboxGate;
use crate::pipeline::pool::{Handover, Pool};
use crate::pipeline::queue::{Queue, Work};
use crate::pipeline::reload::{Current, Live};
use crate::report::desktop::Notifications;
use crate::report::tally::Tally;
use outcome::Report;
use prepare::Prepared;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use outcome::apply_recovered;
pub(crate) use send::SHUTDOWN_GRACE;

/// Starts that may find the same job unfinished before it is failed: a file that makes
/// drawdrop crash (out of memory, say) must not keep it restarting forever, while a few
/// unrelated stops (a logout, a crash elsewhere) must not fail a good file.
const MAX_RESTARTS: u32 = 10;

/// What every worker shares.
pub(crate) struct Shared {
    /// The config in force (and a client for each server), replaced when the files change.
    pub live: Arc<Live>,
    /// The claims and the outbox.
    pub finisher: Finisher,
    pub queue: Arc<Queue>,
    /// Every server's health, and which profiles each refused.
    pub pool: Pool,
    pub outbox_gate: Arc<OutboxGate>,
    pub tally: Arc<Tally>,
    pub limits: Limits,
    /// The inbox as the watch stage sees it (canonical).
    pub inbox: PathBuf,
    pub cancel: CancellationToken,
    pub notifications: Notifications,
    /// Decided jobs being moved into place in the background; waited for at the end.
    pub applying: TaskTracker,
    /// Told after every job's `jobs.jsonl` line: the gallery is brought up to date.
    pub gallery: crate::report::gallery::Feed,
    /// The jobs being sent now, for `drawdrop status`.
    pub in_flight: Arc<crate::report::live::InFlight>,
}

impl Shared {
    /// A job ended: tell the desktop (when asked to) about a failure, and about the batch
    /// once nothing is left to do.
    fn job_ended(&self, current: &Current, failure: Option<(&str, &str)>) {
        if !current.config.notifications {
            return;
        }
        self.notifications
            .job_finished(failure, self.queue.is_quiet());
    }
}

/// A job ready for the sender: claimed, checked and with its request built (or already
/// known to fail).
struct Ready {
    job: Job,
    current: Arc<Current>,
    handover: Handover,
    report: Report,
    request: Result<Prepared, Unsent>,
}

/// Why a ready job is not sent.
enum Unsent {
    /// It can only fail (not a picture, too large, a broken sidecar ...).
    Fails(failure::Failure),
    /// Its server refused the job's profile a moment ago: another server should have it.
    Skipped(String),
}

/// Runs one slot of server `server` until nothing is left to do or drawdrop shuts down.
/// Returns an error when `--once` gave up waiting for the servers.
pub(crate) async fn run(shared: Arc<Shared>, server: usize) -> Result<(), Unreachable> {
    let (ready_tx, ready_rx) = mpsc::channel::<Ready>(1);
    let preparer = prepare_loop(&shared, server, ready_tx);
    let sender = send_loop(&shared, server, ready_rx);
    let (prepared, sent) = tokio::join!(preparer, sender);
    prepared.and(sent)
}

/// Takes work this server may do from the queue and makes it ready, one job ahead.
async fn prepare_loop(
    shared: &Arc<Shared>,
    server: usize,
    ready: mpsc::Sender<Ready>,
) -> Result<(), Unreachable> {
    loop {
        // The server is asked whether it answers only once there is work.
        let work_waits = tokio::select! {
            _ = shared.cancel.cancelled() => return Ok(()),
            work_waits = shared.queue.has_work() => work_waits,
        };
        if !work_waits || !wait_ready(shared, server).await? {
            return Ok(());
        }
        let matches = |work: &Work| {
            let (relative, handover) = match work {
                Work::Settled { relative, .. } => (relative.as_path(), None),
                Work::Claimed(job, handover) => (job.relative.as_path(), Some(handover)),
                Work::Recovered(job) => (job.relative.as_path(), None),
            };
            let current = shared.live.get();
            let config = &current.config;
            let fresh = Handover::default();
            shared.pool.may_take(
                config,
                server,
                config.profile_for(relative),
                handover.unwrap_or(&fresh),
            )
        };
        let work = tokio::select! {
            _ = shared.cancel.cancelled() => return Ok(()),
            // A server's health changed: which work this one may take may have changed too.
            _ = shared.pool.changed() => continue,
            work = shared.queue.pop_matching(matches) => work,
        };
        let Some(work) = work else { return Ok(()) };
        if !shared.outbox_gate.is_open() || !shared.pool.health(server).is_up() {
            // Things changed while this slot waited for work: it waits again first.
            shared.queue.unpop(work);
            continue;
        }
        // The settings in force now (the file waited; they may have been edited since).
        let current = shared.live.get();
        let Some(work) = unless_its_profile_is_broken(shared, &current, work) else {
            continue;
        };
        let (job, handover) = match work {
            Work::Settled { relative, seen } => {
                match claim_off_thread(shared, relative, seen).await {
                    Some(job) => (job, Handover::default()),
                    None => continue,
                }
            }
            Work::Claimed(job, handover) => (job, handover),
            Work::Recovered(job) => match resume(shared, &current, job).await? {
                Some(job) => (job, Handover::default()),
                None => continue,
            },
        };
        let profile = &current.config.profile_for(&job.relative).name;
        let mut report = Report::new(&current, &job, server, handover.attempts);
        let request = match shared.pool.skipping(server, profile) {
            // Refused this profile a moment ago: hand it on without asking again.
            Some(reason) => Err(Unsent::Skipped(reason)),
            None => prepare::prepare(shared, &current, server, &job, &mut report)
                .await
                .map_err(Unsent::Fails),
        };
        let item = Ready {
            job,
            current,
            handover,
            report,
            request,
        };
        if let Err(mpsc::error::SendError(item)) = send_ready(shared, &ready, item).await {
            // Shutting down: the job was claimed for nothing; it goes back.
            outcome::put_back(shared, &item.job);
            shared.queue.job_ended();
            return Ok(());
        }
    }
}

/// Waits until this slot's server answers and the outbox can be written. `Ok(false)` when
/// drawdrop stops or nothing is left to do first. With `--once`, gives up once *no* server
/// has answered for `timeout_s`.
async fn wait_ready(shared: &Shared, server: usize) -> Result<bool, Unreachable> {
    loop {
        let up = async {
            shared.outbox_gate.wait_open().await;
            shared.pool.health(server).wait_up().await
        };
        let result = tokio::select! {
            _ = shared.cancel.cancelled() => return Ok(false),
            _ = shared.queue.drained() => return Ok(false),
            result = up => result,
        };
        match result {
            Ok(()) => return Ok(true),
            // Another server works: this one keeps waiting for its own.
            Err(_) if shared.pool.any_up() => continue,
            Err(unreachable) => return Err(unreachable),
        }
    }
}

/// A claimed job an earlier run left: counted, so that a file that stops drawdrop at every
/// start is set aside. `None` when it was dealt with.
async fn resume(
    shared: &Arc<Shared>,
    current: &Arc<Current>,
    job: Job,
) -> Result<Option<Job>, Unreachable> {
    if let Err(error) = shared.finisher.discard_staging(&job) {
        tracing::warn!(
            "cannot clear staged files of {}: {error}",
            shown(&job.relative)
        );
    }
    let restarts = job.count_restart().unwrap_or(0);
    if restarts <= MAX_RESTARTS {
        tracing::info!(
            "resuming {} (claimed before drawdrop stopped)",
            shown(&job.relative)
        );
        return Ok(Some(job));
    }
    // It may be what stops drawdrop: never send it again.
    let reason = failure::Failure::Restarts(restarts);
    let report = Report::new(current, &job, 0, 0);
    match outcome::decide(
        shared,
        current.clone(),
        job,
        Handover::default(),
        send::Sent::Failed(reason),
        report,
    )
    .await
    {
        Some(unreachable) => Err(unreachable),
        None => Ok(None),
    }
}

/// Hands a ready job to the sender, unless drawdrop stops first.
async fn send_ready(
    shared: &Shared,
    ready: &mpsc::Sender<Ready>,
    item: Ready,
) -> Result<(), mpsc::error::SendError<Ready>> {
    let permit = tokio::select! {
        _ = shared.cancel.cancelled() => None,
        permit = ready.reserve() => permit.ok(),
    };
    match permit {
        Some(permit) => {
            permit.send(item);
            Ok(())
        }
        None => Err(mpsc::error::SendError(item)),
    }
}

/// Sends ready jobs one at a time and decides them; hands them over to be applied.
async fn send_loop(
    shared: &Arc<Shared>,
    server: usize,
    mut ready: mpsc::Receiver<Ready>,
) -> Result<(), Unreachable> {
    let mut gave_up = None;
    while let Some(Ready {
        job,
        current,
        handover,
        mut report,
        request,
    }) = ready.recv().await
    {
        if shared.cancel.is_cancelled() || gave_up.is_some() {
            outcome::put_back(shared, &job);
            shared.queue.job_ended();
            continue;
        }
        let sent = match request {
            Err(Unsent::Fails(reason)) => send::Sent::Failed(reason),
            Err(Unsent::Skipped(reason)) => send::Sent::HandOver {
                reason,
                refused: true,
            },
            Ok(prepared) => send::send(shared, &current, server, &job, prepared, &mut report).await,
        };
        if let Some(unreachable) =
            outcome::decide(shared, current, job, handover, sent, report).await
        {
            // Stop taking more: the preparer sees the cancellation, what is ready goes back.
            shared.cancel.cancel();
            gave_up = Some(unreachable);
        }
    }
    gave_up.map_or(Ok(()), Err)
}

/// The work, unless its profile broke since it was queued: then it waits in the inbox (a
/// settled file goes back to be watched, a claimed job is put back), never claimed or failed.
fn unless_its_profile_is_broken(shared: &Shared, current: &Current, work: Work) -> Option<Work> {
    let relative = match &work {
        Work::Settled { relative, .. } => relative,
        Work::Claimed(job, _) | Work::Recovered(job) => &job.relative,
    };
    if current.config.waits_for(relative).is_none() {
        return Some(work);
    }
    match work {
        Work::Settled { relative, .. } => shared.queue.hand_back(&relative),
        Work::Claimed(job, _) | Work::Recovered(job) => {
            outcome::put_back(shared, &job);
            shared.queue.job_ended();
        }
    }
    None
}

/// [`take`], off the async threads (a claim renames and syncs).
async fn claim_off_thread(
    shared: &Arc<Shared>,
    relative: PathBuf,
    seen: Observation,
) -> Option<Job> {
    let claimer = shared.clone();
    let path = relative.clone();
    match tokio::task::spawn_blocking(move || take(&claimer, &path, seen)).await {
        Ok(job) => job,
        Err(error) => {
            tracing::error!(
                "cannot claim {}: {error}; it stays in the inbox",
                shown(&relative)
            );
            shared.queue.release(&relative, false);
            None
        }
    }
}

/// Claims a settled file if it is still as it settled. The queue entry is released or
/// handed back either way.
fn take(shared: &Shared, relative: &Path, seen: Observation) -> Option<Job> {
    match seen::observe(&shared.inbox.join(relative)) {
        Ok(now) if now == seen => {}
        Ok(_) => {
            shared.queue.hand_back(relative);
            return None;
        }
        Err(_) => {
            shared.queue.release(relative, false);
            return None;
        }
    }
    let job = match shared.finisher.claims.claim(relative) {
        Ok(Some(job)) => job,
        Ok(None) => {
            shared.queue.release(relative, false);
            return None;
        }
        Err(error) => {
            tracing::error!(
                "cannot claim {}: {error}; it stays in the inbox",
                shown(relative)
            );
            shared.queue.release(relative, false);
            return None;
        }
    };
    // A writer that paused longer than the settle window may still hold the file open.
    if seen::observe(&job.input()).ok() != Some(seen) {
        match shared.finisher.claims.unclaim(&job) {
            Ok(_) => shared.queue.hand_back(relative),
            Err(error) => {
                tracing::error!("cannot put {} back: {error}", shown(relative));
                shared.queue.release(relative, false);
            }
        }
        return None;
    }
    shared.queue.release(relative, true);
    crash_point("claimed");
    Some(job)
}
