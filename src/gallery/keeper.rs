//! Keeping the gallery up to date while drawdrop runs: a background task woken after every
//! job's `jobs.jsonl` line, so thumbnails and pages are made off the path of the next
//! request. At start it catches up on lines an earlier run left (a crash between a job's
//! line and its gallery update).

use super::Gallery;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the workers hold: tells the keeper a job's line was written.
#[derive(Debug, Clone, Default)]
pub struct Feed {
    wake: Arc<Notify>,
}

impl Feed {
    pub fn job_logged(&self) {
        self.wake.notify_one();
    }
}

/// The background task's side.
pub struct Keeper {
    gallery: Gallery,
    feed: Feed,
    /// Read before every update: `gallery = false` (now) writes nothing.
    enabled: Box<dyn Fn() -> bool + Send + Sync>,
}

impl Keeper {
    pub fn new(gallery: Gallery, enabled: impl Fn() -> bool + Send + Sync + 'static) -> Keeper {
        Keeper {
            gallery,
            feed: Feed::default(),
            enabled: Box::new(enabled),
        }
    }

    pub fn feed(&self) -> Feed {
        self.feed.clone()
    }

    /// Updates the gallery at start and after every job until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut first = true;
        loop {
            let stop = Arc::new(AtomicBool::new(false));
            let updating = self.update(stop.clone(), std::mem::take(&mut first));
            tokio::pin!(updating);
            tokio::select! {
                _ = &mut updating => {}
                _ = cancel.cancelled() => {
                    stop.store(true, Ordering::Relaxed);
                    updating.await;
                    return;
                }
            }
            tokio::select! {
                _ = self.feed.wake.notified() => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    /// The last update before drawdrop exits: what is left, until `deadline` if there is one.
    pub async fn last_update(self: &Arc<Self>, deadline: Option<Instant>) {
        let stop = Arc::new(AtomicBool::new(false));
        let updating = self.update(stop.clone(), false);
        match deadline {
            None => updating.await,
            Some(deadline) => {
                tokio::pin!(updating);
                if tokio::time::timeout_at(deadline, &mut updating)
                    .await
                    .is_err()
                {
                    stop.store(true, Ordering::Relaxed);
                    updating.await;
                }
            }
        }
    }

    /// One update; the `first` of a run also clears what a crash left and says what it
    /// caught up on.
    async fn update(self: &Arc<Self>, stop: Arc<AtomicBool>, first: bool) {
        if !(self.enabled)() {
            return;
        }
        let keeper = self.clone();
        let updated = tokio::task::spawn_blocking(move || {
            let stop = || stop.load(Ordering::Relaxed);
            if first {
                keeper.gallery.update_after_start(&stop)
            } else {
                keeper.gallery.update(&stop)
            }
        })
        .await;
        match updated {
            Ok(Ok(updated)) if updated.behind => tracing::info!(
                "the gallery has {} jobs; the rest is added at the next start",
                updated.total
            ),
            Ok(Ok(updated)) if first && updated.added > 0 => tracing::info!(
                "the gallery caught up on {} jobs ({} in all)",
                updated.added,
                updated.total
            ),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(
                "cannot update the gallery in {}: {error}",
                self.gallery.index().display()
            ),
            Err(panic) => tracing::error!("the gallery update stopped unexpectedly: {panic}"),
        }
    }
}
