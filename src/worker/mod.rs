//! Workers: take settled files from the queue, claim them, send them, and finish them.
//!
//! Each of the `concurrency` slots is a small pipeline, so drawdrop's own work hides behind
//! the server's:
//!
//! ```text
//! preparer: wait for server and outbox -> claim -> read, check, build the body ─┐ (1 ready)
//! sender:   send (retries, waits) -> stage the results + commit ──────────────────┴─> apply (background)
//! ```
//! The preparer claims the next file while the sender's request is in flight; the sender
//! commits a job before it sends the next, so at most the job in flight is ever sent again
//! after a crash; moving files into place (apply) runs in the background.
//! A worker waits while the server is down or the outbox cannot be written (nothing is
//! failed for either), retries what may pass with exponential backoff up to `max_attempts`,
//! fails at once what the server rejects (4xx), and on shutdown puts back what it holds
//! unless its outcome is already committed.

mod outcome;
mod prepare;
mod send;

use crate::claim::Job;
use crate::desktop::Notifications;
use crate::failpoint::crash_point;
use crate::finish::Finisher;
use crate::health::{Health, Unreachable};
use crate::image::Limits;
use crate::inbox_names::shown;
use crate::outbox_gate::OutboxGate;
use crate::queue::{Queue, Work};
use crate::reload::{Current, Live};
use crate::tally::Tally;
use crate::watch::scan;
use crate::watch::settle::Observation;
use outcome::Report;
use prepare::Prepared;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use send::SHUTDOWN_GRACE;

/// Starts that may find the same job unfinished before it is failed: a file that makes
/// drawdrop crash (out of memory, say) must not keep it restarting forever, while a few
/// unrelated stops (a logout, a crash elsewhere) must not fail a good file.
const MAX_RESTARTS: u32 = 10;

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
    /// Jobs claimed and not yet finished.
    pub working: AtomicUsize,
    /// Decided jobs being moved into place in the background; waited for at the end.
    pub applying: TaskTracker,
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
            && self.working.load(Ordering::SeqCst) == 0;
        self.notifications.job_finished(failure, drained);
    }
}

/// A job ready for the sender: claimed, checked and with its request built (or already
/// known to fail).
struct Ready {
    job: Job,
    current: Arc<Current>,
    report: Report,
    request: Result<Prepared, String>,
}

/// Runs one pipeline slot until the queue closes or drawdrop shuts down. Returns an error
/// when `--once` gave up waiting for the server.
pub async fn run(shared: Arc<Shared>) -> Result<(), Unreachable> {
    let (ready_tx, ready_rx) = mpsc::channel::<Ready>(1);
    let preparer = prepare_loop(&shared, ready_tx);
    let sender = send_loop(&shared, ready_rx);
    let (prepared, sent) = tokio::join!(preparer, sender);
    prepared.and(sent)
}

/// Takes work from the queue and makes it ready, one job ahead of the sender.
async fn prepare_loop(shared: &Arc<Shared>, ready: mpsc::Sender<Ready>) -> Result<(), Unreachable> {
    loop {
        let work = tokio::select! {
            _ = shared.cancel.cancelled() => return Ok(()),
            work = shared.queue.pop() => work,
        };
        let Some(work) = work else { return Ok(()) };
        let current = shared.live.get();
        let job = match work {
            Work::Settled { relative, seen } => match take(shared, &relative, seen).await? {
                Some(job) => job,
                None => continue,
            },
            Work::Recovered(job) if job.commit_file().is_file() => {
                shared.working.fetch_add(1, Ordering::SeqCst);
                outcome::apply_in_background(shared, current, job, None);
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
                shared.working.fetch_add(1, Ordering::SeqCst);
                let restarts = job.count_restart().unwrap_or(0);
                if restarts > MAX_RESTARTS {
                    // It may be what stops drawdrop: never send it again.
                    let reason = format!(
                        "drawdrop stopped {restarts} times while this file was being processed; it is set aside so it cannot stop drawdrop again"
                    );
                    let report = Report::new(&current, &job);
                    let sent = send::Sent::Failed(reason);
                    if let Some(unreachable) =
                        outcome::decide(shared, current, job, sent, report).await
                    {
                        return Err(unreachable);
                    }
                    continue;
                }
                job
            }
        };
        let mut report = Report::new(&current, &job);
        let request = prepare::prepare(shared, &current, &job, &mut report).await;
        let item = Ready {
            job,
            current,
            report,
            request,
        };
        if let Err(mpsc::error::SendError(item)) = send_ready(shared, &ready, item).await {
            // Shutting down: the job was claimed for nothing; it goes back.
            outcome::put_back(shared, &item.job);
            shared.working.fetch_sub(1, Ordering::SeqCst);
            return Ok(());
        }
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
    mut ready: mpsc::Receiver<Ready>,
) -> Result<(), Unreachable> {
    let mut gave_up = None;
    while let Some(Ready {
        job,
        current,
        mut report,
        request,
    }) = ready.recv().await
    {
        if shared.cancel.is_cancelled() || gave_up.is_some() {
            outcome::put_back(shared, &job);
            shared.working.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let sent = match request {
            Err(reason) => send::Sent::Failed(reason),
            Ok(prepared) => send::send(shared, &current, &job, prepared, &mut report).await,
        };
        if let Some(unreachable) = outcome::decide(shared, current, job, sent, report).await {
            // Stop taking more: the preparer sees the cancellation, what is ready goes back.
            shared.cancel.cancel();
            gave_up = Some(unreachable);
        }
    }
    gave_up.map_or(Ok(()), Err)
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
    shared.working.fetch_add(1, Ordering::SeqCst);
    shared.queue.release(relative);
    crash_point("claimed");
    Ok(Some(job))
}
